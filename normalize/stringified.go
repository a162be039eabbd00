package normalize

import (
	"unicode/utf16"
	"unicode/utf8"
)

// A stringified body is a whole JSON body sent as the text of a JSON
// string, without the string's quotes: `{\"interaction_id\":\"X\"}`. Legacy
// clients that build JSON by string concatenation send it. It is unescaped
// once, before the scan, and only when the whole body is in that form: it
// opens with '{' or '[' and an escaped quote, it holds no quote that is not
// escaped, and every backslash starts a JSON escape. Strict JSON never has
// a backslash outside a string, so it never matches; a normal body with a
// `\"` inside one of its strings has unescaped quotes too, so it keeps its
// meaning. Positions in errors and repairs then count in the unescaped text.

// stringifiedStart reports whether src opens like a stringified body: white
// space (a BOM too), '{' or '[', white space, then `\"`. Only the first
// bytes are looked at, so a normal body pays next to nothing.
func stringifiedStart(src []byte) bool {
	i := skipLeadingSpace(src, 0)
	if i >= len(src) || src[i] != '{' && src[i] != '[' {
		return false
	}
	i = skipLeadingSpace(src, i+1)
	return i+1 < len(src) && src[i] == '\\' && src[i+1] == '"'
}

// skipLeadingSpace returns the offset of the first byte at or after i that
// is not ASCII white space or a BOM.
func skipLeadingSpace(src []byte, i int) int {
	for i < len(src) {
		switch {
		case src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r':
			i++
		case len(src)-i >= 3 && src[i] == 0xEF && src[i+1] == 0xBB && src[i+2] == 0xBF:
			i += 3
		default:
			return i
		}
	}
	return i
}

// unstringify appends to dst the text that src, read as the inside of a
// JSON string, stands for. ok is false when src is not wholly in that form:
// a quote that is not escaped, a backslash that starts no JSON escape, or
// a \u escape of a lone surrogate (no text to write for it).
func unstringify(dst, src []byte) (out []byte, ok bool) {
	run := 0
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case '"':
			return dst, false
		case '\\':
			if i+1 >= len(src) {
				return dst, false
			}
			dst = append(dst, src[run:i]...)
			e := src[i+1]
			i++
			switch e {
			case '"', '\\', '/':
				dst = append(dst, e)
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r, n := unicodeEscape(src[i-1:])
				if n == 0 {
					return dst, false
				}
				dst = utf8.AppendRune(dst, r)
				i += n - len(`\u`)
			default:
				return dst, false
			}
			run = i + 1
		}
	}
	return append(dst, src[run:]...), true
}

// unicodeEscape decodes the \uXXXX escape at the start of b, joined with a
// second one when the two are a surrogate pair, and returns the rune and
// the length of the escapes; n is 0 for a malformed escape or a lone
// surrogate.
func unicodeEscape(b []byte) (r rune, n int) {
	r, ok := hex4(b, len(`\u`))
	switch {
	case !ok || utf16IsLow(r):
		return 0, 0
	case !utf16IsHigh(r):
		return r, len(`\uXXXX`)
	}
	if len(b) < 12 || b[6] != '\\' || b[7] != 'u' {
		return 0, 0
	}
	r2, ok := hex4(b, 8)
	if !ok || !utf16IsLow(r2) {
		return 0, 0
	}
	return utf16.DecodeRune(r, r2), len(`\uXXXX\uXXXX`)
}
