package normalize

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// fieldKind is the rule a member of an event follows (SPEC "Task End
// Event fields", docs/repairs.md "Field rules per event"); every other key is
// attached data.
type fieldKind uint8

const (
	fieldAttached  fieldKind = iota // any other key: copied untouched
	fieldString                     // session_id, interaction_id, disposition_desc, customer_id, …
	fieldInt64                      // application_id, resource_id, est_duration
	fieldInt32                      // state_id, previous_state_id
	fieldAttribute                  // business attribute: name → dbid
	fieldTimestamp                  // canonical UTC ms timestamp
	fieldObject                     // an object whose members follow rules of their own (transition from/to)
)

// fieldRule is one row of an event's field table.
type fieldRule struct {
	kind  fieldKind
	name  string
	limit int          // characters for strings; 0: no limit
	attr  int          // for fieldAttribute: the <Resource>.<attribute> key (attributeKey)
	sub   *eventFields // for fieldObject: the rules inside
}

// eventFields is the field table of one event type (or of an object inside
// one): its rows, whether a timestamp is added, whether fill_defaults
// applies.
type eventFields struct {
	name  string // "Task End Event", for messages
	rules []fieldRule
	// timestamp: a missing timestamp is added (top-level events).
	timestamp bool
	// fillDefaults: with Options.FillDefaults, omitted attribute fields are
	// appended with their table's default value.
	fillDefaults bool
	// byLen lists, per key length, the rows whose name has that length:
	// a key is compared with at most a few names, as a switch would.
	byLen [maxFieldKeyLen + 1]lenBucket
	// timestampBit is the bit of the timestamp's row (0 when none).
	timestampBit uint64
}

// The rows every event shares (docs/repairs.md "Field rules per event": common).
func common(res int) []fieldRule {
	return []fieldRule{
		{kind: fieldString, name: "session_id", limit: 32},
		{kind: fieldString, name: "interaction_id", limit: 50},
		{kind: fieldInt64, name: "application_id"},
		{kind: fieldInt64, name: "resource_id"},
		{kind: fieldAttribute, name: "application_type", attr: attributeKey(res, slotApplicationType)},
		{kind: fieldAttribute, name: "resource_type", attr: attributeKey(res, slotResourceType)},
		{kind: fieldAttribute, name: "media_type", attr: attributeKey(res, slotMediaType)},
		{kind: fieldTimestamp, name: "timestamp"},
	}
}

// The rows of every End event.
func ending(res int) []fieldRule {
	return []fieldRule{
		{kind: fieldAttribute, name: "disposition", attr: attributeKey(res, slotDisposition)},
		{kind: fieldString, name: "disposition_desc", limit: 64},
	}
}

func newEventFields(name string, timestamp, fillDefaults bool, rows ...[]fieldRule) *eventFields {
	ef := &eventFields{name: name, timestamp: timestamp, fillDefaults: fillDefaults}
	for _, r := range rows {
		ef.rules = append(ef.rules, r...)
	}
	for i, r := range ef.rules {
		b := &ef.byLen[len(r.name)]
		if int(b.n) == len(b.rows) {
			panic("normalize: too many field names of length " + strconv.Itoa(len(r.name)) + " in " + name)
		}
		b.rows[b.n] = uint8(i)
		if len(r.name) >= 8 {
			b.head[b.n], b.tail[b.n] = load8(r.name), load8(r.name[len(r.name)-8:])
		}
		b.n++
		if r.kind == fieldTimestamp {
			ef.timestampBit = 1 << i
		}
	}
	return ef
}

// The field table of each event type. Attribute rows are listed in the
// order their defaults are appended.
var (
	serviceStartFields = newEventFields("Service Start Event", true, true, common(resService), []fieldRule{
		{kind: fieldString, name: "customer_id"},
		{kind: fieldString, name: "contact_key"},
		{kind: fieldAttribute, name: "service_type", attr: attributeKey(resService, slotType)},
	})
	serviceEndFields = newEventFields("Service End Event", true, true, common(resService), ending(resService))
	stateStartFields = newEventFields("State Start Event", true, true, common(resState), []fieldRule{
		{kind: fieldAttribute, name: "state_type", attr: attributeKey(resState, slotType)},
		{kind: fieldInt32, name: "previous_state_id"},
	})
	stateEndFields = newEventFields("State End Event", true, true, common(resState), ending(resState))
	// A transition ends the state in "from" and starts the one in "to".
	transitionFromFields = newEventFields(`State Transition Event's "from"`, false, true, []fieldRule{
		{kind: fieldInt32, name: "state_id"},
	}, ending(resState))
	transitionToFields = newEventFields(`State Transition Event's "to"`, false, true, []fieldRule{
		{kind: fieldAttribute, name: "state_type", attr: attributeKey(resState, slotType)},
		{kind: fieldInt64, name: "est_duration"},
	})
	transitionFields = newEventFields("State Transition Event", true, true, common(resState), []fieldRule{
		{kind: fieldObject, name: "from", sub: transitionFromFields},
		{kind: fieldObject, name: "to", sub: transitionToFields},
	})
	taskStartFields = newEventFields("Task Start Event", true, true, common(resTask), []fieldRule{
		{kind: fieldInt32, name: "state_id"},
		{kind: fieldAttribute, name: "task_type", attr: attributeKey(resTask, slotType)},
		{kind: fieldInt64, name: "est_duration"},
	})
	// Task End keeps the rows it always had: state_id and task_type if sent.
	taskEndFields = newEventFields("Task End Event", true, true, common(resTask), ending(resTask), []fieldRule{
		{kind: fieldInt32, name: "state_id"},
		{kind: fieldAttribute, name: "task_type", attr: attributeKey(resTask, slotType)},
	})
	// An association carries optional Service Start fields: the same rules,
	// but an omitted type is not filled, as it would retype the service.
	associateFields = newEventFields("Service Start Event", true, false, common(resService), []fieldRule{
		{kind: fieldString, name: "customer_id"},
		{kind: fieldString, name: "contact_key"},
		{kind: fieldAttribute, name: "service_type", attr: attributeKey(resService, slotType)},
	})

	// fieldsOf is the field table of each operation; nil: no field rules
	// (extension updates).
	fieldsOf = [NumOperations]*eventFields{
		OpServiceStart:     serviceStartFields,
		OpServiceEnd:       serviceEndFields,
		OpStateStart:       stateStartFields,
		OpStateEnd:         stateEndFields,
		OpStateTransition:  transitionFields,
		OpTaskStart:        taskStartFields,
		OpTaskEnd:          taskEndFields,
		OpServiceAssociate: associateFields,
	}
)

// lookup returns the row of the rule for a decoded key, -1 for attached
// data. The comparison string(key) == r.name does not allocate.
func (ef *eventFields) lookup(key []byte) int {
	if len(key) > maxFieldKeyLen {
		return -1
	}
	b := &ef.byLen[len(key)]
	if len(key) >= 8 {
		// Two 8-byte words, the first and the last, cover a name of up to
		// 16 bytes: most keys are told apart without comparing strings.
		head, tail := load8(key), load8(key[len(key)-8:])
		for j := range b.n {
			if b.head[j] == head && b.tail[j] == tail && (len(key) <= 16 || ef.rules[b.rows[j]].name == string(key)) {
				return int(b.rows[j])
			}
		}
		return -1
	}
	for j := range b.n {
		if ef.rules[b.rows[j]].name == string(key) {
			return int(b.rows[j])
		}
	}
	return -1
}

// lenBucket is the rows of one key length, with the first and last 8
// bytes of each name of 8 bytes or more.
type lenBucket struct {
	n          uint8
	rows       [4]uint8
	head, tail [4]uint64
}

// load8 reads 8 bytes of b (a string or a byte slice) as one word.
func load8[T string | []byte](b T) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// maxFieldKeyLen is the longest field name; a longer key is attached data.
const maxFieldKeyLen = len("previous_state_id")

// unescapeString appends the decoded content of a strict JSON string (raw,
// without its quotes) to dst. It fails instead of growing dst past its
// capacity, so callers can decode into a stack buffer; the input is the
// scanner's strict output, so escapes are well formed.
func unescapeString(dst, raw []byte) ([]byte, bool) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			j := bytes.IndexByte(raw[i:], '\\')
			if j < 0 {
				j = len(raw) - i
			}
			if len(dst)+j > cap(dst) {
				return dst, false
			}
			dst = append(dst, raw[i:i+j]...)
			i += j
			continue
		}
		if i+1 >= len(raw) {
			return dst, false
		}
		var r rune
		switch raw[i+1] {
		case '"', '\\', '/':
			r = rune(raw[i+1])
		case 'b':
			r = '\b'
		case 'f':
			r = '\f'
		case 'n':
			r = '\n'
		case 'r':
			r = '\r'
		case 't':
			r = '\t'
		case 'u':
			r1, ok := hex4(raw, i+2)
			if !ok {
				return dst, false
			}
			i += 6
			r = r1
			if utf16IsHigh(r1) {
				if r2, ok := hex4(raw, i+2); ok && i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' && utf16IsLow(r2) {
					r = (r1-0xD800)<<10 + (r2 - 0xDC00) + 0x10000
					i += 6
				} else {
					r = utf8.RuneError
				}
			} else if utf16IsLow(r1) {
				r = utf8.RuneError
			}
			if len(dst)+utf8.RuneLen(r) > cap(dst) {
				return dst, false
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			return dst, false
		}
		if len(dst)+1 > cap(dst) {
			return dst, false
		}
		dst = append(dst, byte(r))
		i += 2
	}
	return dst, true
}

func utf16IsHigh(r rune) bool { return r >= 0xD800 && r < 0xDC00 }
func utf16IsLow(r rune) bool  { return r >= 0xDC00 && r < 0xE000 }

// hex4 reads the four hex digits of a \u escape at raw[i:].
func hex4(raw []byte, i int) (rune, bool) {
	if i+4 > len(raw) {
		return 0, false
	}
	var r rune
	for _, c := range raw[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// runeCount counts the characters of a strict JSON string's decoded value
// from its raw content: one per escape (a surrogate pair is one), one per
// UTF-8 sequence (the scanner's output is valid UTF-8).
func runeCount(raw []byte) int {
	n := 0
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\' && i+1 < len(raw) && raw[i+1] == 'u':
			r1, _ := hex4(raw, i+2)
			i += 6
			if utf16IsHigh(r1) && i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
				if r2, ok := hex4(raw, i+2); ok && utf16IsLow(r2) {
					i += 6
				}
			}
		case c == '\\':
			i += 2
		default:
			i++
		}
		if c&0xC0 != 0x80 { // not a UTF-8 continuation byte
			n++
		}
	}
	return n
}

// trimASCIISpace trims spaces and tabs: the "surrounding spaces" of a
// decimal string such as " 40 ".
func trimASCIISpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// intResult says what parseInteger found.
type intResult uint8

const (
	intOK       intResult = iota
	intSyntax             // not a decimal integer
	intOverflow           // a decimal integer outside int64
)

// parseInteger parses an optional sign and decimal digits (leading zeros
// allowed: "007" is 7, as Java's Long.parseLong reads it) into an int64.
func parseInteger(b []byte) (int64, intResult) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, intSyntax
	}
	// Accumulate negatively so that -9223372036854775808 fits.
	const minInt64 = -1 << 63
	var v int64
	overflow := false
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, intSyntax
		}
		d := int64(c - '0')
		if v < (minInt64+d)/10 {
			overflow = true
			continue
		}
		v = v*10 - d
	}
	if overflow || (!neg && v == minInt64) {
		return 0, intOverflow
	}
	if !neg {
		v = -v
	}
	return v, intOK
}

// isIntegerText reports whether a strict JSON number has no fraction or
// exponent.
func isIntegerText(num []byte) bool {
	return !bytes.ContainsAny(num, ".eE")
}

// valueOffset finds, for error messages and repair offsets, where field's
// value starts in the original input. The scanner's output offsets differ
// from input offsets, so the input is searched: the first occurrence of the
// field name as a key (not preceded by a name character, followed by an
// optional closing quote, white space and ':') at nesting depth 1, outside
// double-quoted strings; else the first such occurrence at any depth. For
// duplicate keys that is the first one's position, where the winning value
// is written. Loose quoting can mislead the depth count, so this is a best
// effort; 0 if the name is not found.
func valueOffset(src []byte, field string) int {
	depth := 0
	for i := 0; i < len(src); i++ {
		switch c := src[i]; {
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		case c == '"':
			if depth == 1 {
				if off := keyValueAt(src, i+1, field); off > 0 {
					return off
				}
			}
			for i++; i < len(src) && src[i] != '"'; i++ {
				if src[i] == '\\' {
					i++
				}
			}
		case depth == 1 && c == field[0] && !isNameByte(src[i-1]):
			if off := keyValueAt(src, i, field); off > 0 {
				return off
			}
		}
	}
	return anyDepthValueOffset(src, field)
}

// fieldValueOffset returns the input offset of the value of the member whose
// key starts at keyOff (the scanner's record of it), falling back to a search
// for keys that do not appear literally (escaped, e.g. "\u0074imestamp").
func fieldValueOffset(src []byte, keyOff int, field string) int {
	if keyOff >= 0 && keyOff < len(src) {
		i := keyOff
		switch {
		case src[i] == '"' || src[i] == '\'':
			i++
		case i+3 <= len(src) && src[i] == 0xE2 && src[i+1] == 0x80:
			i += 3 // a typographic quote
		}
		if off := keyValueAt(src, i, field); off > 0 {
			return off
		}
	}
	return anyDepthValueOffset(src, field)
}

// anyDepthValueOffset is valueOffset without the depth rule: the first
// occurrence of field as a key at any depth. It uses bytes.Index, so it is
// cheap enough for repair offsets on the hot path.
func anyDepthValueOffset(src []byte, field string) int {
	for from := 0; from < len(src); {
		i := bytes.Index(src[from:], []byte(field))
		if i < 0 {
			return 0
		}
		i += from
		from = i + 1
		if i > 0 && isNameByte(src[i-1]) {
			continue
		}
		if off := keyValueAt(src, i, field); off > 0 {
			return off
		}
	}
	return 0
}

// keyValueAt returns the offset of the value when src[i:] starts with
// field used as a key, else 0.
func keyValueAt(src []byte, i int, field string) int {
	if !bytes.HasPrefix(src[i:], []byte(field)) {
		return 0
	}
	j := i + len(field)
	switch {
	case j < len(src) && (src[j] == '"' || src[j] == '\''):
		j++
	case j+3 <= len(src) && src[j] == 0xE2 && src[j+1] == 0x80 && (src[j+2] == 0x99 || src[j+2] == 0x9D):
		j += 3 // ’ or ” closing a typographically quoted key
	}
	for j < len(src) && (src[j] == ' ' || src[j] == '\t') {
		j++
	}
	if j >= len(src) || src[j] != ':' {
		return 0
	}
	j++
	for j < len(src) && (src[j] == ' ' || src[j] == '\t' || src[j] == '\r' || src[j] == '\n') {
		j++
	}
	return j
}

func isNameByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
