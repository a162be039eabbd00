package normalize

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"
)

// strSafe marks the bytes a string body copies verbatim without a closer
// look: printable ASCII other than the quotes and the backslash.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = true
	}
	t['"'], t['\''], t['\\'] = false, false, false
	return t
}()

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// hasSpecial reports whether any of the 8 bytes in x is not strSafe (a
// control character, a quote, a backslash or a non-ASCII byte), so that
// plain text is skipped 8 bytes at a time.
func hasSpecial(x uint64) bool {
	less := (x - ones*0x20) & ^x
	dq := x ^ (ones * '"')
	sq := x ^ (ones * '\'')
	bs := x ^ (ones * '\\')
	return (less|(dq-ones)&^dq|(sq-ones)&^sq|(bs-ones)&^bs|x)&highs != 0
}

const hexDigits = "0123456789abcdef"

// str scans the string whose opening quote (openLen bytes) is at s.i and
// writes it as a JSON string. q is the closing ASCII quote ('"' or '\”),
// or 0 for a typographic string closed by E2 80 tb. Runs that are already
// valid JSON string text are copied verbatim, so strict strings keep their
// exact bytes (escapes included).
//
// In a value (not a key), a quote like q closes the string only where
// closes says so; otherwise it is an unescaped inner quote and is escaped:
// `"Customer said "call me later" and hung up"` is one string. In strict
// JSON every closing quote is followed by what closes accepts, so strict
// input keeps its meaning.
func (s *scanner) str(q byte, openLen int, tb byte, value bool) error {
	src := s.src
	open := s.i
	s.escaped = false
	i := open + openLen
	if i+1 < len(src) && src[i] == q && src[i+1] == q && q != 0 {
		// Three quotes: a multi-line string, not an empty string and
		// then a quote.
		return s.triple()
	}
	dst := append(s.dst, '"')
	run := i
	inner := -1 // the first quote read as text, for the message at the end
	for {
		for i+8 <= len(src) && !hasSpecial(binary.LittleEndian.Uint64(src[i:])) {
			i += 8
		}
		for i < len(src) && strSafe[src[i]] {
			i++
		}
		if i >= len(src) {
			s.dst = dst
			return s.unclosed(open, inner)
		}
		c := src[i]
		switch {
		case c == '"' || c == '\'':
			if c == q {
				// Compact strict JSON is decided by the next byte alone,
				// without a call.
				if !value || i+1 >= len(src) || closesAtOnce[src[i+1]] && s.closerFits(src[i+1]) {
					dst = append(dst, src[run:i]...)
					s.dst = append(dst, '"')
					s.i = i + 1
					return nil
				}
				switch s.closes(i + 1) {
				case quoteCloses:
					dst = append(dst, src[run:i]...)
					s.dst = append(dst, '"')
					s.i = i + 1
					return nil
				case quoteConcat:
					s.dst = dst
					return s.concatenation(i + 1)
				}
				if p := s.separatorBefore(open+openLen, i); p >= 0 {
					// The string ends before the separator. A tab or line
					// break after it was written escaped (two bytes): take
					// back what was written from p on.
					s.repair(RepairQuotes, p)
					if p < run {
						dst = dst[:len(dst)-(run-p)-bytes.Count(src[p:run], []byte("\t"))-
							bytes.Count(src[p:run], []byte("\n"))-bytes.Count(src[p:run], []byte("\r"))]
					} else {
						dst = append(dst, src[run:p]...)
					}
					s.dst = append(dst, '"')
					s.i = p
					return nil
				}
				s.repair(RepairQuotes, i)
				if inner < 0 {
					inner = i
				}
			}
			if c == '"' {
				// A double quote inside a single- or typographically
				// quoted string is text.
				dst = append(dst, src[run:i]...)
				dst = append(dst, '\\', '"')
				run = i + 1
			}
			i++
		case c == '\\':
			s.escaped = true
			if i+1 >= len(src) {
				s.dst = dst
				return s.unclosed(open, inner)
			}
			switch src[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 <= len(src) && isHex4(src[i+2:i+6]) {
					// Lone surrogates are valid JSON text: kept as written.
					i += 6
					continue
				}
				s.repair(RepairEscape, i)
				dst = append(dst, src[run:i]...)
				dst = append(dst, '\\', '\\')
				i++
				run = i
			case '\'':
				s.repair(RepairEscape, i)
				dst = append(dst, src[run:i]...)
				dst = append(dst, '\'')
				i += 2
				run = i
			case '\n', '\r':
				// A backslash before a line break: JavaScript and JSON5
				// drop both, but the client did write the line break, so
				// only the backslash goes and the break is escaped below
				// (`\n`, `\r\n`): no character of the text is lost.
				s.repair(RepairEscape, i)
				dst = append(dst, src[run:i]...)
				i++
				run = i
			default:
				// \x41 and friends: the backslash is kept as text.
				s.repair(RepairEscape, i)
				dst = append(dst, src[run:i]...)
				dst = append(dst, '\\', '\\')
				i++
				run = i
			}
		case c < 0x20:
			s.repair(RepairControlChar, i)
			dst = append(dst, src[run:i]...)
			dst = appendControl(dst, c)
			i++
			run = i
		default: // c >= 0x80
			if q == 0 && c == 0xE2 && i+2 < len(src) && src[i+1] == 0x80 && src[i+2] == tb {
				dst = append(dst, src[run:i]...)
				s.dst = append(dst, '"')
				s.i = i + 3
				return nil
			}
			r, size := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && size == 1 {
				var err error
				if dst, err = s.invalidByte(dst, src[run:i], c, i); err != nil {
					s.dst = dst
					return err
				}
				i++
				run = i
				continue
			}
			i += size
		}
	}
}

// unclosed is the error for the string opened at open when the input ends
// inside it. When a quote in it was read as text (inner, else -1), the
// message names that quote: the input may be whole, and that quote the
// end the client meant.
func (s *scanner) unclosed(open, inner int) error {
	msg := "input ends inside the string opened at " + s.at(open) + "; the closing quote is missing"
	if inner >= 0 {
		msg += " (the quote at " + s.at(inner) + " is read as text, since what follows it cannot end a value there: " +
			"add the missing comma or colon after it, or escape it as \\\")"
	}
	return s.errorf(KindTruncated, len(s.src), msg)
}

// closerFits reports whether c, a byte straight after a quote that may end
// a string value, lets the quote end it: any byte that closesAtOnce marks,
// except a closer that does not close the innermost open object or array.
// Such a closer would be a 400 (`"the list [1, 2"] more"`); read as text,
// with the quote before it, the string goes on to its real end.
func (s *scanner) closerFits(c byte) bool {
	if c != ']' && c != '}' {
		return true
	}
	return s.cur != nil && s.cur.obj == (c == '}')
}

// closesAtOnce marks the bytes after which a quote certainly closes a
// string: what strict JSON puts straight after one.
var closesAtOnce = func() (t [256]bool) {
	for _, c := range []byte{',', '}', ']', ':'} {
		t[c] = true
	}
	return t
}()

// What a quote that could close a string value turns out to be.
const (
	quoteInner  = iota // text inside the string, escaped
	quoteCloses        // the end of the string
	quoteConcat        // the end of a string joined to the next with '+': rejected
)

// closes says what a quote that would close a string value, just before
// src[j], is. It closes the string when what follows, after white space,
// is ',' '}' ']' ':', a line break, a comment, the end of input, or the
// next member's quoted key and its ':' (a comma left out). In an array or
// on the top level, the next element's quoted string followed by ',' ']',
// a line break or the end counts too, and so does an opening bracket or a
// number or literal that ends an element (elementAt). A '+' is a
// concatenation, which no reading makes sure. Anything else makes it an
// inner quote.
func (s *scanner) closes(j int) int {
	src := s.src
	if j >= len(src) || closesAtOnce[src[j]] && s.closerFits(src[j]) {
		return quoteCloses
	}
	k := j
	for k < len(src) {
		if c := src[k]; c == '\n' || c == '\r' {
			return quoteCloses
		}
		n := spaceLen(src[k:])
		if n == 0 {
			break
		}
		k += n
	}
	if k >= len(src) {
		return quoteCloses
	}
	switch src[k] {
	case ',', ':', '#':
		return quoteCloses
	case '}', ']':
		if s.closerFits(src[k]) {
			return quoteCloses
		}
	case '/':
		if k+1 < len(src) && (src[k+1] == '/' || src[k+1] == '*') {
			return quoteCloses
		}
	case '+':
		// Whatever follows the '+' (white space, a comment, a line
		// break, a string): no reading of a string joined to something
		// is sure, and looking past a comment for the next string would
		// let a comment decide it.
		return quoteConcat
	default:
		e, ok := quotedEnd(src, k)
		if !ok {
			if f := s.top(); (f == nil || !f.obj) && e == k && (src[k] == '{' || src[k] == '[' || elementAt(src, k)) {
				// `["x" 3]`, `["x" {"a":1}]`: the next element, a comma
				// left out. Structure never becomes text.
				return quoteCloses
			}
			return quoteInner
		}
		n := skipBlanks(src, e+1)
		if f := s.top(); f != nil && f.obj {
			if n < len(src) && src[n] == ':' {
				return quoteCloses
			}
			return quoteInner
		}
		if n >= len(src) || src[n] == ',' || src[n] == ']' || src[n] == '\n' || src[n] == '\r' {
			return quoteCloses
		}
	}
	return quoteInner
}

// separatorBefore says whether the quote at src[i], inside a string value
// of an object whose text starts at body, opens the next member's key
// after a closing quote left out: a ',' ends the text before it (white
// space between), and a quoted key and its ':' follow on the same line,
// as in `{"note":"ok,"next":1}`. It returns the offset of that ',', where
// the string ends, or -1. Strict input never gets here: its closing quote
// is followed by what closes accepts.
func (s *scanner) separatorBefore(body, i int) int {
	if f := s.top(); f == nil || !f.obj {
		return -1
	}
	src := s.src
	p := i - 1
	for p >= body && (src[p] == ' ' || src[p] == '\t' || src[p] == '\n' || src[p] == '\r') {
		p--
	}
	if p < body || src[p] != ',' {
		return -1
	}
	e, ok := quotedEnd(src, i)
	if !ok {
		return -1
	}
	if k := skipBlanks(src, e+1); k >= len(src) || src[k] != ':' {
		return -1
	}
	return p
}

// elementAt reports whether src[k:] is a number or literal, strict or
// loose (`3`, `-1.5`, `true`, `None`), that ends where an array element
// ends: spaces, then ',' ']', a line break, a comment or the end of input;
// or white space and a string that closes on the same line (the next
// element, a comma left out again: `["x" 3 "y"]`).
func elementAt(src []byte, k int) bool {
	e := k
	for e < len(src) && !bareStop[src[e]] && src[e] != ' ' && src[e] != '\t' {
		e++
	}
	if w := src[k:e]; !isNumber(w) && literal(w) == "" {
		return false
	}
	n := skipBlanks(src, e)
	if n >= len(src) {
		return true
	}
	switch src[n] {
	case ',', ']', '\n', '\r', '#':
		return true
	case '/':
		return n+1 < len(src) && (src[n+1] == '/' || src[n+1] == '*')
	}
	_, ok := quotedEnd(src, n)
	return ok && n > e // `["6" 2" tall"]`: a quote glued to the number is text
}

// quotedEnd returns the offset of the last byte of the quote that closes
// the string opened by the quote at src[i] (ASCII or typographic) on the
// same line, and true; or the offset of the line break or end of input
// that comes first, and false; or i and false when no quote opens at i.
// Backslash escapes are skipped.
func quotedEnd(src []byte, i int) (int, bool) {
	q, tb := src[i], byte(0)
	if q != '"' && q != '\'' {
		if tb = typoQuote(src[i:]); tb == 0 {
			return i, false
		}
		q = 0 // closed by E2 80 tb, found below
		i += 2
	}
	for j := i + 1; j < len(src); j++ {
		switch c := src[j]; c {
		case '\\':
			if j+1 < len(src) && src[j+1] != '\n' && src[j+1] != '\r' {
				j++
			}
		case '\n', '\r':
			return j, false
		case q:
			if tb == 0 {
				return j, true
			}
		case 0xE2:
			if tb != 0 && j+2 < len(src) && src[j+1] == 0x80 && src[j+2] == tb {
				return j + 2, true
			}
		}
	}
	return len(src), false
}

// triple scans a Python or Hjson multi-line string at s.i, `"""…"""` or
// the same with single quotes, and writes the exact text between the
// delimiters as one JSON string. Read as ordinary quotes, it would give an
// empty string and then keys and values the client never wrote.
func (s *scanner) triple() error {
	open := s.i
	delim := s.src[open : open+len(`"""`)] // str saw all three
	body := open + len(delim)
	end := bytes.Index(s.src[body:], delim)
	if end < 0 {
		return s.errorf(KindTruncated, len(s.src), "input ends inside the triple-quoted string opened at "+
			s.at(open)+"; the closing "+string(delim)+" is missing")
	}
	s.repair(RepairQuotes, open)
	s.dst = append(s.dst, '"')
	var err error
	if s.dst, err = s.escape(s.dst, s.src[body:body+end], body); err != nil {
		return err
	}
	s.dst = append(s.dst, '"')
	s.escaped = true
	s.i = body + end + len(delim)
	return nil
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !isHex(c) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c-'0' < 10 || (c|0x20)-'a' < 6
}

func hexVal(c byte) rune {
	if c-'0' < 10 {
		return rune(c - '0')
	}
	return rune((c|0x20)-'a') + 10
}

// appendControl writes control character c as a JSON escape.
func appendControl(dst []byte, c byte) []byte {
	switch c {
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
}

// invalidByte handles byte c at input offset off, which is not part of valid UTF-8: an error with
// invalid_utf8 reject; otherwise the pending text and U+FFFD are appended, counted as a repair.
func (s *scanner) invalidByte(dst, pending []byte, c byte, off int) ([]byte, error) {
	if s.reject {
		return dst, s.errorf(KindInvalidUTF8, off, "the body is not valid UTF-8 (byte 0x"+
			string(hexDigits[c>>4])+string(hexDigits[c&15])+"); send UTF-8 text")
	}
	s.repair(RepairInvalidUTF8, off)
	dst = append(dst, pending...)
	return append(dst, "\uFFFD"...), nil
}

// escape writes raw text w (a bare word, found at input offset off) as the
// body of a JSON string: quotes, backslashes and control characters are
// escaped, invalid UTF-8 is replaced or rejected per policy.
func (s *scanner) escape(dst, w []byte, off int) ([]byte, error) {
	run := 0
	for i := 0; i < len(w); {
		c := w[i]
		switch {
		case c >= 0x20 && c < 0x80 && c != '"' && c != '\\':
			i++
		case c == '"' || c == '\\':
			dst = append(dst, w[run:i]...)
			dst = append(dst, '\\', c)
			i++
			run = i
		case c < 0x20:
			dst = append(dst, w[run:i]...)
			dst = appendControl(dst, c)
			i++
			run = i
		default:
			r, size := utf8.DecodeRune(w[i:])
			if r == utf8.RuneError && size == 1 {
				var err error
				if dst, err = s.invalidByte(dst, w[run:i], c, off+i); err != nil {
					return dst, err
				}
				i++
				run = i
				continue
			}
			i += size
		}
	}
	return append(dst, w[run:]...), nil
}

// canonicalKey rewrites the quoted JSON string k (valid output of str or
// escape) with every escape that can be written as plain UTF-8 decoded, so
// that two spellings of one key compare equal as bytes. Escapes that must
// stay (quote, backslash, control characters, lone surrogates) get one
// fixed spelling.
func canonicalKey(dst, k []byte) []byte {
	body := k[1 : len(k)-1]
	dst = append(dst, '"')
	for i := 0; i < len(body); {
		c := body[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		e := body[i+1]
		switch e {
		case '"', '\\':
			dst = append(dst, '\\', e)
			i += 2
			continue
		case '/':
			dst = append(dst, '/')
			i += 2
			continue
		case 'b', 'f', 'n', 'r', 't':
			dst = append(dst, '\\', e)
			i += 2
			continue
		}
		// \uXXXX (str and escape emit no other escape).
		r := hexVal(body[i+2])<<12 | hexVal(body[i+3])<<8 | hexVal(body[i+4])<<4 | hexVal(body[i+5])
		i += 6
		switch {
		case r < 0x20:
			dst = appendControl(dst, byte(r))
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r >= 0xD800 && r < 0xDC00 && i+6 <= len(body) && body[i] == '\\' && body[i+1] == 'u' &&
			isHex4(body[i+2:i+6]):
			r2 := hexVal(body[i+2])<<12 | hexVal(body[i+3])<<8 | hexVal(body[i+4])<<4 | hexVal(body[i+5])
			if r2 >= 0xDC00 && r2 < 0xE000 {
				dst = utf8.AppendRune(dst, 0x10000+(r-0xD800)<<10+(r2-0xDC00))
				i += 6
			} else {
				dst = appendU(dst, r)
			}
		case r >= 0xD800 && r < 0xE000:
			dst = appendU(dst, r)
		default:
			dst = utf8.AppendRune(dst, r)
		}
	}
	return append(dst, '"')
}

func appendU(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', hexDigits[r>>12&15], hexDigits[r>>8&15], hexDigits[r>>4&15], hexDigits[r&15])
}
