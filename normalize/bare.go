package normalize

import "bytes"

// Bare tokens: anything at a value or key position that does not start with
// a quote or a bracket. A bare value runs to ',' '}' ']' '{' '[', the end
// of the line, a comment after white space, or a quote that opens the next
// member's key; a bare key runs to ':' or a quote. It is then classified
// once: strict number or literal (kept), loose literal, digit-grouped
// number, several numbers on one line in an array (missing commas),
// non-JSON number form or word (string).
//
// Structure never becomes text: a bracket always ends a bare value, so
// `[{"a":1{"a":2}]` is a 400 at the second '{', never a string holding an
// object.

// bareStop marks the bytes at which bareRun must look closer.
var bareStop = func() (t [256]bool) {
	for _, c := range []byte{',', '}', ']', '\n', '\r', '/', '#', ':', '{', '[', '"', '\'', 0xE2, '+'} {
		t[c] = true
	}
	return t
}()

// bareRun scans the bare token at s.i and returns its end offset; s.i is
// set to it. A comment starts inside a bare token only after white space,
// so `http://host/x` is one word; straight after a complete number or
// literal (`25/*EUR*/`, `True//checked`) or an elision (`.../* more */`) it
// starts one too, since no word reading of those is meant.
func (s *scanner) bareRun(key bool) int {
	src := s.src
	start := s.i
	i := start
	asked := false // the text before a comment opener was tested once
	quoteFrom := 0 // quotes before this offset cannot open the next member
	s.plus = false
	for i < len(src) {
		c := src[i]
		if !bareStop[c] {
			i++
			continue
		}
		switch c {
		case ',', '}', ']', '\n', '\r', '{', '[':
			s.i = i
			return i
		case ':':
			if key {
				s.i = i
				return i
			}
		case '"':
			// In a key, a quote is a quoted value with the colon left out
			// (`{a "b"}`). In a value, it is text (`C:\dir "x"`) unless it
			// opens the next member's key: `{"a": hello "b": 2}`. After a
			// backslash it ends the token, which the caller refuses
			// (escapedQuote).
			if key || i > start && src[i-1] == '\\' || i >= quoteFrom && s.memberAt(i, &quoteFrom) {
				s.i = i
				return i
			}
		case '\'', 0xE2:
			// An apostrophe inside a word is text (O'Brien, it’s); after
			// white space in a key it opens a quoted value (`{a 'b'}`).
			// After a backslash it ends the token, as a double quote does.
			if c == '\'' && i > start && src[i-1] == '\\' ||
				key && i > start && spaceBefore(src, i) && opensString(src[i:]) {
				s.i = i
				return i
			}
		case '+':
			s.plus = true // only a token holding a '+' pays for plusAt
		case '/', '#':
			if c == '/' && (i+1 >= len(src) || src[i+1] != '/' && src[i+1] != '*') || i == start {
				break
			}
			if spaceBefore(src, i) || elisionBefore(src, start, i) {
				s.i = i
				return i
			}
			if !key && !asked {
				// Tested at the first opener only, so that a long word
				// with many slashes stays linear.
				asked = true
				if completeValue(trimSpace(src[start:i])) {
					s.i = i
					return i
				}
			}
		}
		i++
	}
	s.i = i
	return i
}

// memberAt reports whether the quote at src[i], inside a bare value of an
// object, opens the next member: a double-quoted key on the same line
// followed by ':'. When it does not, *from is set past the quotes that the
// look went over, so that no byte is looked at twice for the same reason.
func (s *scanner) memberAt(i int, from *int) bool {
	if f := s.top(); f == nil || !f.obj {
		*from = len(s.src)
		return false
	}
	src := s.src
	j, ok := quotedEnd(src, i)
	*from = j
	if !ok {
		return false
	}
	if i > 0 && spaceLenBefore(src[:i]) == 0 && (spaceLen(src[i+1:j]) > 0 || bytes.IndexByte(src[i+1:j], ',') >= 0) {
		// Glued to the word, this quote is the word's stray closing quote
		// (`late" , note": 1`): a key from it would start with white space
		// or hold the ',' between two members.
		return false
	}
	k := skipBlanks(src, j+1)
	return k < len(src) && src[k] == ':'
}

// Elisions: `...` or `…` standing for content that a document's example
// left out. The body is then not the whole event, so it must not be
// recorded as one: an elision is refused wherever white space or a comment
// touches it. A comment opener straight after one starts a comment
// (elisionBefore), and a bare value is refused when an elision stands in it
// alone or among numbers and literals (`[1 2 ...]`, elidedAt). In a
// sentence of words (`wait ... what`) it is text.

// elisionBefore reports whether src[start:i], a bare token's text so far,
// ends with an elision that is not glued to the text before it.
func elisionBefore(src []byte, start, i int) bool {
	for _, e := range [...]string{"...", "\u2026"} {
		j := i - len(e)
		if j >= start && string(src[j:i]) == e && (j == start || spaceBefore(src, j)) {
			return true
		}
	}
	return false
}

// elidedAt returns the offset in w, a trimmed bare token, of an elision
// that stands in it alone or among numbers and literals, or -1.
func elidedAt(w []byte) int {
	// The common case, a word, is ruled out by its first byte (each part
	// must be an elision, a number or a literal) or by having no '.' and
	// no 0xE2 (the first byte of …), without a call.
	if len(w) < len("...") || !elidedStart[w[0]] {
		return -1
	}
	dots := false
	for _, c := range w {
		if c == '.' || c == 0xE2 {
			dots = true
			break
		}
	}
	if !dots {
		return -1
	}
	at := -1
	ok := eachToken(w, func(t []byte, i int) bool {
		switch {
		case string(t) == "..." || string(t) == "\u2026":
			if at < 0 {
				at = i
			}
			return true
		default:
			return isNumber(t) || literal(t) != ""
		}
	})
	if !ok {
		return -1
	}
	return at
}

// elidedStart marks the bytes that an elision, a number or a literal
// (strict or loose) starts with.
var elidedStart = func() (t [256]bool) {
	for _, c := range []byte("0123456789-.tTfFnNu\xE2") {
		t[c] = true
	}
	return t
}()

// elided is the error for the elision in w, a bare token at input offset off.
func (s *scanner) elided(w []byte, off int) error {
	at := elidedAt(w)
	e := w[at:]
	if e[0] == '.' {
		e = e[:len("...")]
	} else {
		e = e[:len("\u2026")]
	}
	return s.errorf(KindSyntax, off+at, "\""+string(e)+"\" stands for left-out content; send the whole value")
}

// completeValue reports whether w, a bare token's text, is a whole number
// or literal, strict or loose.
func completeValue(w []byte) bool {
	return isNumber(w) || literal(w) != "" || groupedLen(w) > 0
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
	if escapedQuoteAt(s.src, end) {
		return s.escapedQuote(end - 1)
	}
	w := s.trimCounted(s.src[start:end], start)
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
	case elidedAt(w) >= 0:
		return s.elided(w, start)
	default:
		if s.plus {
			if p := plusAt(w); p >= 0 {
				return s.plusOperator(offsetIn(s.src, w) + p)
			}
		}
		if n := len(w); n > 1 && (w[n-1] == '"' || w[n-1] == 0x9D) {
			// Only a word that may end in a stray quote pays the call.
			if n := strayValueQuote(w); n > 0 {
				// `{"a":late"}`: the opening quote was left out.
				s.repair(RepairQuotes, offsetIn(s.src, w)+len(w)-n)
				w = w[:len(w)-n]
			}
		}
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
		return s.errorf(KindMultipleValues, s.multiOff,
			"more than one top-level value: a second value starts here; send one JSON value per body")
	}
	s.valueDone()
	return nil
}

// offsetIn returns the offset in src of w, a subslice of it.
func offsetIn(src, w []byte) int { return cap(src) - cap(w) }

// escapedQuoteAt reports whether src[i], where a bare token stopped, is a
// quote with a backslash before it.
func escapedQuoteAt(src []byte, i int) bool {
	return i > 0 && i < len(src) && (src[i] == '"' || src[i] == '\'') && src[i-1] == '\\'
}

// A '+' outside any string. Glued inside a word or before a number it is
// text: `C++ developer`, `+44 20 7946 0000`, `+5`. Where it joins two
// values it is an operator, and no reading of a sum or a concatenation is
// sure: refused, like `"a" + "b"` (str, after), whatever white space or
// comment stands around it.

// plusAt returns the offset in w, a trimmed bare token, of a '+' that is
// an operator, or -1: a '+' that stands alone between white space, a
// comment or the token's ends (`a + b`, `+ 2`, `x +`); one followed by a
// quote that opens a string (`a+"b"`, `a +/*c*/ "b"`); or one between
// numbers (`1+2`, `1 +2`).
func plusAt(w []byte) int {
	for i, c := range w {
		if c != '+' {
			continue
		}
		j := i + 1
		before := i == 0 || spaceBefore(w, i) || i >= 2 && w[i-2] == '*' && w[i-1] == '/'
		if after := j == len(w) || spaceLen(w[j:]) > 0 || commentAt(w, j); before && after {
			return i
		}
		if k := gapEnd(w, j); k < len(w) && opensString(w[k:]) {
			return i
		}
	}
	return sumAt(w)
}

// commentAt reports whether a comment opens at w[j].
func commentAt(w []byte, j int) bool {
	return j < len(w) && (w[j] == '#' || w[j] == '/' && j+1 < len(w) && (w[j+1] == '/' || w[j+1] == '*'))
}

// sumAt returns the offset in w of the first '+' when w is numbers joined
// by '+' (white space around it allowed, a sign before the first), or -1.
func sumAt(w []byte) int {
	i, first, n := 0, -1, 0
	if len(w) > 0 && w[0] == '+' {
		i++ // a sign: `+5`, `+44 20 …`
	}
	for {
		e := numberEnd(w, i)
		if e == i {
			return -1
		}
		n++
		i = skipBlanks(w, e)
		if i == len(w) {
			break
		}
		if w[i] != '+' {
			return -1
		}
		if first < 0 {
			first = i
		}
		i = skipBlanks(w, i+1)
	}
	if n < 2 {
		return -1
	}
	return first
}

// strayValueQuote returns the length of a stray closing quote at the end of
// w, a trimmed bare value (`late"`, `late”`): the only double quote in w,
// straight after a character that is not a digit. The value's opening
// quote was left out, as in a key (`{note":"late"}`). After a digit it is
// an inch mark and stays text (`6"`, `5'11"`), as inner quotes glued to a
// number do in a string (`["6" 2" tall"]`); an apostrophe at the end is
// text too (`the students'`). Otherwise 0.
func strayValueQuote(w []byte) int {
	n := len(w)
	switch {
	case n >= 2 && w[n-1] == '"':
		if isDigit(w[n-2]) || bytes.IndexByte(w[:n-1], '"') >= 0 {
			return 0
		}
		return 1
	case n >= 4 && w[n-1] == 0x9D && w[n-2] == 0x80 && w[n-3] == 0xE2:
		if isDigit(w[n-4]) || bytes.Contains(w[:n-3], []byte("\u201c")) || bytes.Contains(w[:n-3], []byte("\u201d")) {
			return 0
		}
		return 3
	}
	return 0
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
	if k < len(src) && !tokenEnd[src[k]] && !valueEnds(src, k) {
		return i
	}
	if k == j && k < len(src) && src[k] == '"' && !quotedNext(src, k) {
		// `6"`, `{"a": 6", "b": 1}`: a quote glued to a number is an inch
		// mark (or a stray quote), text of a bare word, unless it opens
		// what comes next. Read as the opening of a key, it would make
		// `", "` a key the client never wrote.
		return i
	}
	return j
}

// quotedNext reports whether the quote at src[k] opens a string that
// closes on the same line and is followed, after spaces, by ':' (a key),
// ',' or a closer (an element), a line break or the end of input.
func quotedNext(src []byte, k int) bool {
	e, ok := quotedEnd(src, k)
	if !ok {
		return false
	}
	n := skipBlanks(src, e+1)
	return n >= len(src) || src[n] == ':' || tokenEnd[src[n]]
}

// tokenEnd marks the bytes that end a complete number or literal for
// certain, so that compact input decides without a call.
var tokenEnd = func() (t [256]bool) {
	for _, c := range []byte{',', '}', ']', '\n', '\r'} {
		t[c] = true
	}
	return t
}()

// valueEnds reports whether a complete number or literal ends before
// src[k], the first byte after it and its spaces: a separator or closer,
// a line break, a comment (`25/*EUR*/`), or structure that a token never
// runs across: a bracket or a double quote (`[1{"a":2}]`, `{"a":1 "b":2}`).
// An apostrophe ends it too, unless a digit follows (`1'000` is a grouped
// number).
func valueEnds(src []byte, k int) bool {
	switch src[k] {
	case ',', '}', ']', '\n', '\r', '{', '[', '"', '#':
		return true
	case '/':
		return k+1 < len(src) && (src[k+1] == '/' || src[k+1] == '*')
	case '\'':
		return k+1 >= len(src) || !isDigit(src[k+1])
	}
	return false
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
	end, ok := fracExpEnd(src, j)
	if !ok {
		return i
	}
	return end
}

// fracExpEnd returns the end of the optional JSON fraction and exponent at src[j:] (".5",
// "e3", ".5e-3"); ok is false when one of them has no digits.
func fracExpEnd(src []byte, j int) (end int, ok bool) {
	if j < len(src) && src[j] == '.' {
		j++
		d := j
		for j < len(src) && isDigit(src[j]) {
			j++
		}
		if j == d {
			return j, false
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
			return j, false
		}
	}
	return j, true
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
	case 0xC2: // U+00A0
		if len(b) >= 2 && b[1] == 0xA0 {
			return 2
		}
	case 0xE2: // U+202F
		if len(b) >= 3 && b[1] == 0x80 && b[2] == 0xAF {
			return 3
		}
	}
	return 0
}

// grouped writes w as a number when it is a digit-grouped number (25 000,
// 1 234 567.5): a first group of 1–3 digits, then groups of exactly three,
// each after one separator, then an optional fraction and exponent.
func (s *scanner) grouped(w []byte, off int) bool {
	i := groupedLen(w)
	if i <= 0 {
		return false
	}
	s.repair(RepairGroupedNumber, off)
	// The sign and first group, then each later group of three without
	// its separator, then the fraction and exponent: a run at a time.
	j := 0
	for j < i && (w[j] == '-' || isDigit(w[j])) {
		j++
	}
	s.dst = append(s.dst, w[:j]...)
	for j < i {
		j += separatorLen(w[j:])
		s.dst = append(s.dst, w[j:j+3]...)
		j += 3
	}
	s.dst = append(s.dst, w[i:]...)
	return true
}

// groupedLen returns, when w is a digit-grouped number, the end of its
// groups (where the fraction or exponent starts), else 0.
func groupedLen(w []byte) int {
	i := 0
	if i < len(w) && w[i] == '-' {
		i++
	}
	g := i
	for i < len(w) && isDigit(w[i]) {
		i++
	}
	if n := i - g; n == 0 || n > 3 || w[g] == '0' {
		return 0
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
		return 0
	}
	rest := w[i:]
	if len(rest) > 0 && (rest[0] != '.' && rest[0] != 'e' && rest[0] != 'E') {
		return 0
	}
	if len(rest) > 0 {
		// The fraction and exponent follow JSON's grammar.
		if !fractionOrExponent(rest) {
			return 0
		}
	}
	return i
}

// fractionOrExponent reports whether rest is a JSON fraction and/or
// exponent (".5", "e3", ".5e-3").
func fractionOrExponent(rest []byte) bool {
	end, ok := fracExpEnd(rest, 0)
	return ok && end == len(rest)
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
	ok := eachToken(w, func(t []byte, _ int) bool {
		parts++
		return isNumber(t) || literal(t) != ""
	})
	if !ok || parts < 2 {
		return false
	}
	first := true
	eachToken(w, func(t []byte, i int) bool {
		if !first {
			if f == nil {
				s.state = stMultiple
				s.multiOff = off + i
				return false
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
		return true
	})
	return true
}

// eachToken calls fn with each run of w between white space and its offset in w, until fn
// returns false; it reports whether every call returned true.
func eachToken(w []byte, fn func(t []byte, i int) bool) bool {
	for i := 0; i < len(w); {
		if n := spaceLen(w[i:]); n > 0 {
			i += n
			continue
		}
		j := i
		for j < len(w) && spaceLen(w[j:]) == 0 {
			j++
		}
		if !fn(w[i:j], i) {
			return false
		}
		i = j
	}
	return true
}
