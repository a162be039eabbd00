package normalize

import "strconv"

// ErrorKind classifies why a body cannot be normalised. The HTTP layer maps
// each kind to a status and a Context Services exception name in one table.
type ErrorKind uint8

const (
	// KindSyntax: bytes that no repair can make sense of (a stray '}', a
	// missing value that cannot be inferred, ...).
	KindSyntax ErrorKind = iota + 1
	// KindTruncated: the input ends before its closing brackets or quotes.
	// A truncated event must never be recorded as complete.
	KindTruncated
	// KindMultipleValues: more than one top-level value.
	KindMultipleValues
	// KindTooDeep: nesting deeper than Options.MaxDepth.
	KindTooDeep
	// KindInvalidUTF8: invalid UTF-8 with Options.InvalidUTF8 == UTF8Reject.
	KindInvalidUTF8
	// KindNotObject: the event layer needs a top-level object.
	KindNotObject
	// KindFieldType: a known field holds a value of the wrong type
	// (an object where a string is expected, "abc" for an integer, ...).
	KindFieldType
	// KindFieldTooLong: a string field is longer than its documented limit.
	KindFieldTooLong
	// KindFieldRange: an integer field does not fit its width (32/64 bits).
	KindFieldRange
	// KindTimestamp: the timestamp field is present but cannot be parsed.
	KindTimestamp
	// KindUnknownName: a business-attribute field holds a name that the
	// configured table does not list, and unknown names are rejected.
	KindUnknownName
)

var errorKindNames = [...]string{
	KindSyntax:         "syntax",
	KindTruncated:      "truncated",
	KindMultipleValues: "multiple_values",
	KindTooDeep:        "too_deep",
	KindInvalidUTF8:    "invalid_utf8",
	KindNotObject:      "not_object",
	KindFieldType:      "field_type",
	KindFieldTooLong:   "field_too_long",
	KindFieldRange:     "field_range",
	KindTimestamp:      "timestamp",
	KindUnknownName:    "unknown_name",
}

// String returns the kind's stable snake_case name (used as a metric label).
func (k ErrorKind) String() string {
	if int(k) < len(errorKindNames) && errorKindNames[k] != "" {
		return errorKindNames[k]
	}
	return "error_kind_" + strconv.Itoa(int(k))
}

// IsField reports whether the error is about a Task End field's value rather
// than about the JSON text itself.
func (k ErrorKind) IsField() bool { return k >= KindFieldType }

// Error is the only error type the normaliser returns. Offset is a byte
// offset into the input; Line and Column are 1-based (Column counts bytes).
// Field is set for field-rule errors (Kind.IsField()).
type Error struct {
	Kind   ErrorKind
	Offset int
	Line   int
	Column int
	Field  string
	// Msg is a sentence a person can act on, without the position, e.g.
	// `"session_id" is 40 characters long; the limit is 32`.
	Msg string
}

// Error returns the message with its position, e.g.
// `input ends before the closing "}" of the object opened at line 1, column 1 (line 3, column 9, byte 41)`.
func (e *Error) Error() string {
	return e.Msg + " (line " + strconv.Itoa(e.Line) + ", column " + strconv.Itoa(e.Column) +
		", byte " + strconv.Itoa(e.Offset) + ")"
}

// Position computes the 1-based line and byte column of offset off in src,
// as errors and repair reports give them (Repair.Offset is such an offset).
// Only called on the error and reporting paths, so a second pass over the
// input is fine. CRLF and a lone CR each end one line, like the comment rule.
func Position(src []byte, off int) (line, col int) {
	if off > len(src) {
		off = len(src)
	}
	line, lineStart := 1, 0
	for i := 0; i < off; i++ {
		switch src[i] {
		case '\n':
			line++
			lineStart = i + 1
		case '\r':
			if i+1 < len(src) && src[i+1] == '\n' {
				continue
			}
			line++
			lineStart = i + 1
		}
	}
	return line, off - lineStart + 1
}

// newError builds an *Error with its line and column filled in.
func newError(kind ErrorKind, src []byte, off int, field, msg string) *Error {
	line, col := Position(src, off)
	return &Error{Kind: kind, Offset: off, Line: line, Column: col, Field: field, Msg: msg}
}
