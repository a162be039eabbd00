package normalize

// Bare tokens: anything at a value or key position that does not start with
// a quote or a bracket. A bare value runs to ',' '}' ']' or the end of the
// line; a bare key runs to ':'. It is then classified once: strict number or
// literal (kept), loose literal, digit-grouped number, several numbers on one
// line in an array (missing commas), non-JSON number form or word (string).

// bareStop marks the bytes at which bareRun must look closer.
var bareStop = func() (t [256]bool) {
	for _, c := range []byte{',', '}', ']', '\n', '\r', '/', '#', ':', '{', '['} {
		t[c] = true
	}
	return t
}()

// bareRun scans the bare token at s.i and returns its end offset; s.i is
// set to it. A comment starts inside a bare token only after white space,
// so `http://host/x` is one word.
func (s *scanner) bareRun(key bool) int {
	src := s.src
	start := s.i
	i := start
	for i < len(src) {
		c := src[i]
		if !bareStop[c] {
			i++
			continue
		}
		switch c {
		case ',', '}', ']', '\n', '\r':
			s.i = i
			return i
		case ':', '{', '[':
			if key {
				s.i = i
				return i
			}
		case '/':
			if i+1 < len(src) && (src[i+1] == '/' || src[i+1] == '*') && i > start && spaceBefore(src, i) {
				s.i = i
				return i
			}
		case '#':
			if i > start && spaceBefore(src, i) {
				s.i = i
				return i
			}
		}
		i++
	}
	s.i = i
	return i
}

// spaceBefore reports whether src[i-1] ends a white-space character.
func spaceBefore(src []byte, i int) bool {
	switch src[i-1] {
	case ' ', '\t':
		return true
	case 0xA0:
		return i >= 2 && src[i-2] == 0xC2
	case 0xAF:
		return i >= 3 && src[i-3] == 0xE2 && src[i-2] == 0x80
	}
	return false
}

// spaceLen returns the length of the white-space character (inside a bare
// token) at the start of b, or 0.
func spaceLen(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	switch b[0] {
	case ' ', '\t', '\f', '\v':
		return 1
	case 0xC2, 0xE2:
		return spaceRuneLen(b)
	}
	return 0
}

// spaceLenBefore returns the length of the white-space character ending b, or 0.
func spaceLenBefore(b []byte) int {
	n := len(b)
	if n == 0 {
		return 0
	}
	switch b[n-1] {
	case ' ', '\t', '\f', '\v':
		return 1
	case 0xA0:
		if n >= 2 && b[n-2] == 0xC2 {
			return 2
		}
	case 0xAF:
		if n >= 3 && b[n-3] == 0xE2 && b[n-2] == 0x80 {
			return 3
		}
	}
	return 0
}

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

// bareValue handles the bare token at s.i in value position; beginElement
// has already run for it.
func (s *scanner) bareValue() error {
	start := s.i
	if end := strictToken(s.src, start); end > start {
		// A strict number or literal that ends where a value ends: the
		// common case, kept as its text without the bare-word machinery.
		s.dst = append(s.dst, s.src[start:end]...)
		s.i = end
		s.valueDone()
		return nil
	}
	end := s.bareRun(false)
	w := trimSpace(s.src[start:end])
	lit := literal(w)
	switch {
	case isNumber(w):
		s.dst = append(s.dst, w...)
	case lit != "":
		if string(w) != lit {
			s.repair(RepairLiteral, start)
		}
		s.dst = append(s.dst, lit...)
	case s.grouped(w, start):
	case s.split(w, start):
	default:
		if looksNumeric(w) {
			s.repair(RepairNonJSONNumber, start)
		} else {
			s.repair(RepairBareWord, start)
		}
		s.dst = append(s.dst, '"')
		var err error
		if s.dst, err = s.escape(s.dst, w, start); err != nil {
			return err
		}
		s.dst = append(s.dst, '"')
	}
	if s.state == stMultiple {
		return s.errorf(ErrMultipleValues, s.multiOff,
			"more than one top-level value: a second value starts here; send one JSON value per body")
	}
	s.valueDone()
	return nil
}

// strictToken returns the end of the strict number or literal at src[i:]
// when only spaces stand between it and ',', '}', ']', the end of the line
// or the end of input, else i. (Anything else after white space may
// continue a bare token: `25 000`, `1 2`, `1 // note`.)
func strictToken(src []byte, i int) int {
	j := i
	switch src[i] {
	case 't':
		if len(src)-i >= 4 && string(src[i:i+4]) == "true" {
			j = i + 4
		}
	case 'f':
		if len(src)-i >= 5 && string(src[i:i+5]) == "false" {
			j = i + 5
		}
	case 'n':
		if len(src)-i >= 4 && string(src[i:i+4]) == "null" {
			j = i + 4
		}
	default:
		j = numberEnd(src, i)
	}
	if j == i {
		return i
	}
	k := j
	for k < len(src) && (src[k] == ' ' || src[k] == '\t') {
		k++
	}
	if k < len(src) {
		switch src[k] {
		case ',', '}', ']', '\n', '\r':
		default:
			return i
		}
	}
	return j
}

// numberEnd returns the end of the JSON number at src[i:], or i.
func numberEnd(src []byte, i int) int {
	j := i
	if j < len(src) && src[j] == '-' {
		j++
	}
	if j >= len(src) {
		return i
	}
	if src[j] == '0' {
		j++
	} else if src[j] >= '1' && src[j] <= '9' {
		for j < len(src) && isDigit(src[j]) {
			j++
		}
	} else {
		return i
	}
	if j < len(src) && src[j] == '.' {
		j++
		d := j
		for j < len(src) && isDigit(src[j]) {
			j++
		}
		if j == d {
			return i
		}
	}
	if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
		j++
		if j < len(src) && (src[j] == '+' || src[j] == '-') {
			j++
		}
		d := j
		for j < len(src) && isDigit(src[j]) {
			j++
		}
		if j == d {
			return i
		}
	}
	return j
}

// stMultiple is set by split when several values stand on the top level.
const stMultiple = -1

// isNumber reports whether w is a JSON number (RFC 8259 grammar).
func isNumber(w []byte) bool { return len(w) > 0 && numberEnd(w, 0) == len(w) }

func isDigit(c byte) bool { return c-'0' < 10 }

// literal returns the JSON literal that w spells, strictly or loosely
// (True, FALSE, None, NULL, undefined), or "".
func literal(w []byte) string {
	switch len(w) {
	case 4:
		if equalFold(w, "true") {
			return "true"
		}
		if equalFold(w, "null") {
			return "null"
		}
		// Python's None; a lower-case "none" may well be a word, so it stays one.
		if string(w) == "None" || string(w) == "NONE" {
			return "null"
		}
	case 5:
		if equalFold(w, "false") {
			return "false"
		}
	case 9:
		if string(w) == "undefined" {
			return "null"
		}
	}
	return ""
}

// equalFold compares ASCII w with lower-case word, ignoring case.
func equalFold(w []byte, word string) bool {
	if len(w) != len(word) {
		return false
	}
	for i := range w {
		if w[i]|0x20 != word[i] {
			return false
		}
	}
	return true
}

// looksNumeric reports whether w is a number-like token that JSON does not
// allow (007, +5, 0x1F, .5, 1.2.3, NaN, Infinity): kept as a string, but
// counted apart from words.
func looksNumeric(w []byte) bool {
	if len(w) == 0 {
		return false
	}
	for _, c := range w {
		// Digits, signs, points, exponents and hex digits only: a word
		// like 0000CSS0FXZUP6UR is an ID, not a number form.
		if !isDigit(c) && !isHex(c) && c != '.' && c != '+' && c != '-' && c != 'x' && c != 'X' {
			return string(w) == "NaN" || string(w) == "Infinity" || string(w) == "-Infinity" ||
				string(w) == "+Infinity"
		}
	}
	switch c := w[0]; {
	case isDigit(c), c == '.':
		return true
	case c == '+' || c == '-':
		w = w[1:]
		if len(w) > 0 && (isDigit(w[0]) || w[0] == '.') {
			return true
		}
	}
	return string(w) == "NaN" || string(w) == "Infinity"
}

// separatorLen returns the length of a digit-group separator at the start
// of b (space, U+00A0, U+202F, '_', '\”), or 0.
func separatorLen(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	switch b[0] {
	case ' ', '_', '\'':
		return 1
	case 0xC2, 0xE2:
		if n := spaceRuneLen(b); n > 0 {
			return n
		}
	}
	return 0
}

// grouped writes w as a number when it is a digit-grouped number (25 000,
// 1 234 567.5): a first group of 1–3 digits, then groups of exactly three,
// each after one separator, then an optional fraction and exponent.
func (s *scanner) grouped(w []byte, off int) bool {
	i := 0
	if i < len(w) && w[i] == '-' {
		i++
	}
	g := i
	for i < len(w) && isDigit(w[i]) {
		i++
	}
	if n := i - g; n == 0 || n > 3 || w[g] == '0' {
		return false
	}
	groups := 0
	for {
		n := separatorLen(w[i:])
		if n == 0 || i+n+3 > len(w) || !isDigit(w[i+n]) || !isDigit(w[i+n+1]) || !isDigit(w[i+n+2]) ||
			(i+n+3 < len(w) && isDigit(w[i+n+3])) {
			break
		}
		i += n + 3
		groups++
	}
	if groups == 0 {
		return false
	}
	rest := w[i:]
	if len(rest) > 0 && (rest[0] != '.' && rest[0] != 'e' && rest[0] != 'E') {
		return false
	}
	if len(rest) > 0 {
		// The fraction and exponent follow JSON's grammar after any digit.
		var tmp [1]byte
		tmp[0] = '0'
		if !isNumber(append(tmp[:], rest...)) {
			return false
		}
	}
	s.repair(RepairGroupedNumber, off)
	for j := 0; j < len(w); {
		if n := separatorLen(w[j:]); n > 0 && j < i {
			j += n
			continue
		}
		s.dst = append(s.dst, w[j])
		j++
	}
	return true
}

// split handles `1 2 3` in an array: several numbers or literals separated
// by white space are elements with missing commas. On the top level they
// are more than one value. Elsewhere (an object value) the token stays one
// string.
func (s *scanner) split(w []byte, off int) bool {
	f := s.top()
	if f != nil && f.obj {
		return false
	}
	parts := 0
	for i := 0; i < len(w); {
		if n := spaceLen(w[i:]); n > 0 {
			i += n
			continue
		}
		j := i
		for j < len(w) && spaceLen(w[j:]) == 0 {
			j++
		}
		if t := w[i:j]; !isNumber(t) && literal(t) == "" {
			return false
		}
		parts++
		i = j
	}
	if parts < 2 {
		return false
	}
	first := true
	for i := 0; i < len(w); {
		if n := spaceLen(w[i:]); n > 0 {
			i += n
			continue
		}
		j := i
		for j < len(w) && spaceLen(w[j:]) == 0 {
			j++
		}
		t := w[i:j]
		if !first {
			if f == nil {
				s.state = stMultiple
				s.multiOff = off + i
				return true
			}
			s.repair(RepairComma, off+i)
			s.dst = append(s.dst, ',')
			f.count++
		}
		first = false
		lit := literal(t)
		switch {
		case isNumber(t):
			s.dst = append(s.dst, t...)
		case lit != string(t):
			s.repair(RepairLiteral, off+i)
			s.dst = append(s.dst, lit...)
		default:
			s.dst = append(s.dst, lit...)
		}
		i = j
	}
	return true
}
