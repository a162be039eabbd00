package normalize

// RepairKind is a closed set of repair kinds, small enough to be a metric label.
type RepairKind uint8

// The repairs of the loose-JSON layer (SPEC "Loose JSON → strict JSON"),
// then those of the Task End layer (SPEC field table).
const (
	RepairBareWord        RepairKind = iota // bare word value → string
	RepairGroupedNumber                     // 25 000 → 25000
	RepairNonJSONNumber                     // 007, +5, 0x1F, NaN → string
	RepairLiteral                           // True/None/NULL/undefined → true/null
	RepairUnquotedKey                       // {a: 1} → {"a": 1}
	RepairQuotes                            // 'x', “x” → "x"
	RepairComma                             // trailing comma removed / missing comma inserted
	RepairComment                           // //, /* */, # removed
	RepairControlChar                       // raw control character in a string escaped
	RepairEscape                            // invalid escape (\', \x41) repaired
	RepairWhitespace                        // BOM dropped, no-break space as white space
	RepairInvalidUTF8                       // invalid UTF-8 → U+FFFD
	RepairDuplicateKey                      // last value at the first key's position
	RepairEmptyBody                         // empty body → {}
	RepairMissingColon                      // {"a" 1} → {"a":1}
	RepairExtraCloser                       // {"a":1}} → {"a":1}
	RepairStringifiedBody                   // {\"a\":1} → {"a":1}: a body sent JSON-escaped, unescaped once

	RepairTimestampAdded     // missing/null/"" timestamp set to the receive time
	RepairTimestampRewritten // another timestamp form → canonical UTC ms
	RepairAttributeName      // business-attribute name → dbid
	RepairAttributeDefault   // omitted attribute field filled from its default value
	RepairNumberToString     // 12345 in a string field → "12345"
	RepairStringToInteger    // "40" in an integer field → 40

	NumRepairKinds // number of kinds; not a kind
)

var repairKindNames = [NumRepairKinds]string{
	RepairBareWord:           "bare_word",
	RepairGroupedNumber:      "grouped_number",
	RepairNonJSONNumber:      "non_json_number",
	RepairLiteral:            "literal",
	RepairUnquotedKey:        "unquoted_key",
	RepairQuotes:             "quotes",
	RepairComma:              "comma",
	RepairComment:            "comment",
	RepairControlChar:        "control_char",
	RepairEscape:             "escape",
	RepairWhitespace:         "whitespace",
	RepairInvalidUTF8:        "invalid_utf8",
	RepairDuplicateKey:       "duplicate_key",
	RepairEmptyBody:          "empty_body",
	RepairMissingColon:       "missing_colon",
	RepairExtraCloser:        "extra_closer",
	RepairStringifiedBody:    "stringified_body",
	RepairTimestampAdded:     "timestamp_added",
	RepairTimestampRewritten: "timestamp_rewritten",
	RepairAttributeName:      "attribute_name",
	RepairAttributeDefault:   "attribute_default",
	RepairNumberToString:     "number_to_string",
	RepairStringToInteger:    "string_to_integer",
}

// String returns the kind's stable snake_case name (a metric label value).
func (k RepairKind) String() string { return nameOf(repairKindNames[:], k) }

// nameOf is the name of a value of one of the package's closed sets
// (repair kinds, operations), "unknown" past the set.
func nameOf[K ~uint8](names []string, k K) string {
	if int(k) < len(names) {
		return names[k]
	}
	return "unknown"
}

// MaxListedRepairs is how many repairs a Report keeps with their offsets.
const MaxListedRepairs = 8

// Repair is one repair and where it was made: Offset is the byte offset in
// the input, Field the top-level field for Task End rules ("" otherwise).
type Repair struct {
	Kind   RepairKind
	Offset int
	Field  string
}

// AttributeMiss is an unknown business-attribute name that was passed on
// unchanged (unknown_names pass). Name aliases the output buffer passed to
// TaskEnd (the name as it was written there): copy it to keep it past the
// buffer's reuse.
type AttributeMiss struct {
	Field string
	Name  []byte
}

// MaxListedMisses is how many attribute misses a Report keeps.
const MaxListedMisses = 5

// Report says what a normalisation repaired. It is a plain value so that the
// caller can keep one per request (or pool it) and normalising allocates
// nothing for it; Reset it before reuse.
type Report struct {
	Counts [NumRepairKinds]int
	// First holds the first NumListed repairs in input order.
	First     [MaxListedRepairs]Repair
	NumListed int
	// Misses holds the first NumMisses unknown attribute names passed on.
	Misses    [MaxListedMisses]AttributeMiss
	NumMisses int
	// Strict is true when the body was already strict JSON (fast path).
	Strict bool
}

// Reset clears the report for reuse.
func (r *Report) Reset() { *r = Report{} }

// Total returns the number of repairs of every kind.
func (r *Report) Total() int {
	n := 0
	for _, c := range r.Counts {
		n += c
	}
	return n
}

// add records one repair; r may be nil when the caller wants no report.
func (r *Report) add(kind RepairKind, off int, field string) {
	if r == nil {
		return
	}
	r.Counts[kind]++
	if r.NumListed < MaxListedRepairs {
		r.First[r.NumListed] = Repair{Kind: kind, Offset: off, Field: field}
		r.NumListed++
	}
}

// miss records an unknown attribute name passed on unchanged.
func (r *Report) miss(field string, name []byte) {
	if r == nil || r.NumMisses >= MaxListedMisses {
		return
	}
	r.Misses[r.NumMisses] = AttributeMiss{Field: field, Name: name}
	r.NumMisses++
}
