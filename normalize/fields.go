package normalize

import (
	"bytes"
	"unicode/utf8"
)

// fieldKind is the rule a top-level member of a Task End Event follows
// (SPEC "Task End Event fields"); every other key is attached data.
type fieldKind uint8

const (
	fieldAttached  fieldKind = iota // any other key: copied untouched
	fieldString                     // session_id, interaction_id, disposition_desc
	fieldInt64                      // application_id, resource_id
	fieldInt32                      // state_id
	fieldAttribute                  // business attribute: name → dbid
	fieldTimestamp                  // canonical UTC ms timestamp
)

// fieldRule is one row of the SPEC field table.
type fieldRule struct {
	kind  fieldKind
	name  string
	limit int // characters for strings
	attr  int // index in AttributeFields for fieldAttribute
}

var (
	ruleSessionID       = fieldRule{kind: fieldString, name: "session_id", limit: 32}
	ruleInteractionID   = fieldRule{kind: fieldString, name: "interaction_id", limit: 50}
	ruleDispositionDesc = fieldRule{kind: fieldString, name: "disposition_desc", limit: 64}
	ruleApplicationID   = fieldRule{kind: fieldInt64, name: "application_id"}
	ruleResourceID      = fieldRule{kind: fieldInt64, name: "resource_id"}
	ruleStateID         = fieldRule{kind: fieldInt32, name: "state_id"}
	ruleTimestamp       = fieldRule{kind: fieldTimestamp, name: "timestamp"}
	ruleAttributes      = [len(AttributeFields)]fieldRule{
		{kind: fieldAttribute, name: AttributeFields[0], attr: 0},
		{kind: fieldAttribute, name: AttributeFields[1], attr: 1},
		{kind: fieldAttribute, name: AttributeFields[2], attr: 2},
		{kind: fieldAttribute, name: AttributeFields[3], attr: 3},
		{kind: fieldAttribute, name: AttributeFields[4], attr: 4},
	}
)

// lookupField returns the rule for a decoded top-level key. The switch on
// string(key) compiles to comparisons and does not allocate.
func lookupField(key []byte) *fieldRule {
	switch string(key) {
	case "session_id":
		return &ruleSessionID
	case "interaction_id":
		return &ruleInteractionID
	case "disposition_desc":
		return &ruleDispositionDesc
	case "application_id":
		return &ruleApplicationID
	case "resource_id":
		return &ruleResourceID
	case "state_id":
		return &ruleStateID
	case "timestamp":
		return &ruleTimestamp
	case "application_type":
		return &ruleAttributes[0]
	case "resource_type":
		return &ruleAttributes[1]
	case "media_type":
		return &ruleAttributes[2]
	case "disposition":
		return &ruleAttributes[3]
	case "task_type":
		return &ruleAttributes[4]
	}
	return nil
}

// maxFieldKeyLen is the longest field name; a longer key is attached data.
const maxFieldKeyLen = len("application_type")

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
