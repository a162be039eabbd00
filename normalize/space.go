package normalize

import "bytes"

// White space and comments between tokens, and the white space at the ends
// of bare words: what counts as space (ASCII, every Unicode White_Space
// character, the BOM, comments) and how it is skipped, trimmed and counted.

// tokenStart marks the bytes at which a token starts for certain, so that
// compact input does not call skipSpace between tokens: printable ASCII
// other than the comment starters '/' and '#'.
var tokenStart = func() (t [256]bool) {
	for c := '!'; c < 0x80; c++ {
		t[c] = true
	}
	t['/'], t['#'] = false, false
	return t
}()

// skipSpace skips white space and comments between tokens. No-break spaces
// and a BOM count as white space here (a repair); inside strings they are text.
func (s *scanner) skipSpace() error {
	src := s.src
	i := s.i
	for i < len(src) {
		c := src[i]
		if c > ' ' && c != '/' && c != '#' && c < 0x80 {
			// The common case: a token starts here.
			break
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			i++
		case '/':
			if i+1 >= len(src) {
				s.i = i
				return nil
			}
			switch src[i+1] {
			case '/':
				s.repair(RepairComment, i)
				i = lineEnd(src, i+len("//"))
			case '*':
				s.repair(RepairComment, i)
				end := bytes.Index(src[i+len("/*"):], []byte("*/"))
				if end < 0 {
					s.i = i
					return s.errorf(KindTruncated, len(src),
						"input ends inside the comment opened at "+s.at(i)+"; close it with \"*/\"")
				}
				i += len("/*") + end + len("*/")
			default:
				s.i = i
				return nil
			}
		case '#':
			s.repair(RepairComment, i)
			i = lineEnd(src, i+len("#"))
		case '\f', '\v':
			s.repair(RepairWhitespace, i)
			i++
		case 0xC2, 0xE1, 0xE2, 0xE3, 0xEF:
			n := spaceRuneLen(src[i:])
			if n == 0 {
				s.i = i
				return nil
			}
			s.repair(RepairWhitespace, i)
			i += n
		default:
			if c < ' ' {
				// Any other control character between tokens (a NUL from a
				// C client, a stray ESC) is white space too: were it read as
				// the start of a bare token it would glue itself to the next
				// token and turn `{"a":1,\x00"b":2}` into a key "\u0000\"b\"".
				s.repair(RepairControlChar, i)
				i++
				continue
			}
			s.i = i
			return nil
		}
	}
	s.i = i
	return nil
}

// lineEnd returns the offset of the LF or CR that ends the line comment
// starting at i (a lone CR ends a line too), or len(src).
func lineEnd(src []byte, i int) int {
	for ; i < len(src); i++ {
		if c := src[i]; c == '\n' || c == '\r' {
			return i
		}
	}
	return i
}

// spaceRuneLen returns the length of the Unicode space at the start of b,
// or 0: every White_Space character above ASCII (U+0085, U+00A0, U+1680,
// U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000) and the
// zero-width ones clients paste in from word processors (U+180E, U+200B,
// U+FEFF, the BOM). Between tokens each is white space; inside a string
// it is text.
func spaceRuneLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[0] {
	case 0xC2: // U+0085, U+00A0
		if b[1] == 0x85 || b[1] == 0xA0 {
			return 2
		}
		return 0
	}
	if len(b) < 3 {
		return 0
	}
	switch b[0] {
	case 0xE1: // U+1680, U+180E
		if b[1] == 0x9A && b[2] == 0x80 || b[1] == 0xA0 && b[2] == 0x8E {
			return 3
		}
	case 0xE2:
		switch b[1] {
		case 0x80: // U+2000–U+200B, U+2028, U+2029, U+202F
			if b[2] >= 0x80 && b[2] <= 0x8B || b[2] == 0xA8 || b[2] == 0xA9 || b[2] == 0xAF {
				return 3
			}
		case 0x81: // U+205F
			if b[2] == 0x9F {
				return 3
			}
		}
	case 0xE3: // U+3000
		if b[1] == 0x80 && b[2] == 0x80 {
			return 3
		}
	case 0xEF: // U+FEFF
		if b[1] == 0xBB && b[2] == 0xBF {
			return 3
		}
	}
	return 0
}

// skipBlanks returns the offset of the first byte at or after i that is
// not a space, a tab or a Unicode space.
func skipBlanks(src []byte, i int) int {
	for i < len(src) {
		switch c := src[i]; {
		case c == ' ' || c == '\t':
			i++
		case c >= 0x80:
			n := spaceRuneLen(src[i:])
			if n == 0 {
				return i
			}
			i += n
		default:
			return i
		}
	}
	return i
}

// gapEnd returns the offset of the first byte at or after i that is
// neither white space (line breaks included) nor inside a comment; an
// unclosed block comment runs to the end. Nothing is counted: it only looks
// ahead, and skipSpace counts what it skips when the scan gets there.
func gapEnd(src []byte, i int) int {
	for i < len(src) {
		switch c := src[i]; {
		case c == '\n' || c == '\r':
			i++
		case c == '#':
			i = lineEnd(src, i+len("#"))
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			i = lineEnd(src, i+len("//"))
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := bytes.Index(src[i+len("/*"):], []byte("*/"))
			if end < 0 {
				return len(src)
			}
			i += len("/*") + end + len("*/")
		default:
			n := spaceLen(src[i:])
			if n == 0 {
				return i
			}
			i += n
		}
	}
	return i
}

// spaceBefore reports whether src[i-1] ends a white-space character.
func spaceBefore(src []byte, i int) bool { return spaceLenBefore(src[:i]) > 0 }

// spaceLen returns the length of the white-space character (inside a bare
// token) at the start of b, or 0: a space, a tab, any other control
// character but a line break (which ends the token), or a Unicode space.
func spaceLen(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	if c := b[0]; c < 0x80 {
		if c == ' ' || c < ' ' {
			return 1
		}
		return 0
	}
	return spaceRuneLen(b)
}

// spaceLenBefore returns the length of the white-space character ending b, or 0.
func spaceLenBefore(b []byte) int {
	n := len(b)
	if n == 0 {
		return 0
	}
	if c := b[n-1]; c < 0x80 {
		if c == ' ' || c < ' ' {
			return 1
		}
		return 0
	}
	if n >= 3 && spaceRuneLen(b[n-3:]) == 3 {
		return 3
	}
	if n >= 2 && spaceRuneLen(b[n-2:]) == 2 {
		return 2
	}
	return 0
}

// trimSpace trims white space from both ends of a bare token.
func trimSpace(w []byte) []byte {
	for {
		n := spaceLen(w)
		if n == 0 {
			break
		}
		w = w[n:]
	}
	for {
		n := spaceLenBefore(w)
		if n == 0 {
			break
		}
		w = w[:len(w)-n]
	}
	return w
}

// trimCounted is trimSpace for a bare token at input offset off that
// becomes a value or key: spaces and tabs are ordinary white space, a
// Unicode space cut off is a whitespace repair and a control character a
// control_char repair, as they are between tokens.
func (s *scanner) trimCounted(raw []byte, off int) []byte {
	if n := len(raw); n > 0 && raw[0]-'!' < 0x80-'!' && raw[n-1]-'!' < 0x80-'!' {
		return raw // printable ASCII at both ends: nothing to trim
	}
	w := trimSpace(raw)
	if len(w) == len(raw) {
		return w
	}
	head := len(raw) - len(trimSpaceHead(raw))
	s.countSpace(raw[:head], off)
	s.countSpace(raw[head+len(w):], off+head+len(w))
	return w
}

// trimSpaceHead trims white space from the start of w only.
func trimSpaceHead(w []byte) []byte {
	for {
		n := spaceLen(w)
		if n == 0 {
			return w
		}
		w = w[n:]
	}
}

// countSpace counts the repairs in b, a run of white space at offset off.
func (s *scanner) countSpace(b []byte, off int) {
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == ' ' || c == '\t':
			i++
		case c < ' ':
			s.repair(RepairControlChar, off+i)
			i++
		default:
			s.repair(RepairWhitespace, off+i)
			i += max(spaceLen(b[i:]), 1)
		}
	}
}
