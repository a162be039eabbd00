package normalize

import (
	"bytes"
	"strconv"
	"sync"
)

// The general layer is one pass over the input that writes compact strict
// JSON as it goes. Strict input takes only the verbatim branches (strings
// are copied run by run, numbers and literals as their text), so it comes out
// with exactly its meaning; every other branch is a repair and is counted.
//
// Guarantee: the output is strict RFC 8259 JSON, or the result is an *Error.
// Every step consumes input or moves to a state that must consume input, and
// no byte is scanned more than a constant number of times, so the scan is
// O(n) whatever the input. Nesting uses an explicit stack bounded by
// MaxDepth, never recursion.

// Scanner states: what the next significant byte may be.
const (
	stValue = iota // a value (top level, after '[' or ',' in an array, after ':')
	stAfter        // a value has just ended: ',' or a closing bracket
	stKey          // a key or '}' (after '{' or ',' in an object)
	stColon        // a key has just ended: ':'
)

// linearDupLimit is how many members an object may have before duplicate
// keys are looked up in a hash index instead of by comparing with each
// earlier key; small objects are the common case and need no hashing.
const linearDupLimit = 32

// frame is one open object or array.
type frame struct {
	obj      bool
	dup      bool   // a duplicate key was seen: rebuild on close
	indexed  bool   // this object's keys are in scratch.index
	open     int    // input offset of the opening bracket (for messages)
	out      int    // output offset of the opening bracket
	memStart int    // index in scratch.members of the object's first member
	count    int    // members or elements written so far
	serial   uint64 // distinguishes this object's keys in the shared index
	seen     uint64 // one bit per key tag seen, while the object is small: most new keys skip the linear look
}

// member is one object member as written to the output.
type member struct {
	key, keyEnd int    // output span of the quoted key; ':' is at keyEnd
	end         int    // output offset just past the value
	last        int    // index of the member holding the last value for this key
	tag         uint32 // cheap key summary (length, first and last byte) compared first
	dup         bool
	off         int // input offset of the key
}

// scratch is the per-call state that is reused through a pool, so that the
// steady state allocates nothing.
type scratch struct {
	stack   []frame
	members []member
	top     []member // the top-level object's members, kept by scan(keepTop)
	index   keyIndex
	buf     []byte
	out     []byte // the Task End layer's copy of the scanner's output
	unesc   []byte // the unescaped text of a stringified body
	src     []byte // what the last scan read: its input, or unescaped text
	serial  uint64
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// scanner is the state of one call. Invariant: src[:i] has been consumed
// and its strict form appended to dst; state says what may come next.
type scanner struct {
	src     []byte
	dst     []byte
	i       int
	repairs int
	// The scanner's repairs, handed to the caller's Report when the scan
	// ends. The scanner holds no pointer to the Report: the compiler cannot
	// tell the scanner's fields apart, and the input and output slices it
	// holds do reach the heap, so a Report pointer kept here would move
	// every caller's Report to the heap too.
	counts   [numScanRepairKinds]int
	listed   [MaxListedRepairs]scanRepair
	nListed  int
	reject   bool
	maxDepth int
	sc       *scratch
	keepTop  bool // keep the top-level object's members in sc.top
	// noEmpty refuses a body with no value instead of making it {}: an
	// extension update's body is the data, which is never invented.
	noEmpty bool

	state    int
	sawComma bool   // a ',' was consumed and no value or key has followed yet
	commaOff int    // input offset of that ','
	topDone  bool   // the top-level value is complete
	topObj   bool   // ... and it is an object
	bareKey  bool   // the key that just ended was unquoted
	multiOff int    // input offset of a second top-level value found by split
	escaped  bool   // the last string written may contain a backslash
	plus     bool   // the last bare token that bareRun read holds a '+'
	cur      *frame // innermost open frame (cached top of sc.stack), nil on the top level
}

// value is Value: one pass of the scanner over src, output appended to dst.
func (n *Normalizer) value(dst, src []byte, rep *Report) ([]byte, error) {
	sc := scratchPool.Get().(*scratch)
	out, err := n.scan(dst, src, rep, sc, false, false)
	sc.release()
	return out, err
}

// scan runs the scanner over src with the caller's scratch. With keepTop,
// the members of a top-level object are left in sc.top (output spans, in
// output order, duplicates flagged), so that the Task End layer finds its
// fields without walking the output again.
func (n *Normalizer) scan(dst, src []byte, rep *Report, sc *scratch, keepTop, noEmpty bool) ([]byte, error) {
	s := scanner{
		src:      src,
		dst:      dst,
		reject:   n.opts.InvalidUTF8 == UTF8Reject,
		maxDepth: n.opts.MaxDepth,
		sc:       sc,
		keepTop:  keepTop,
		noEmpty:  noEmpty,
	}
	if s.maxDepth <= 0 {
		s.maxDepth = DefaultMaxDepth
	}
	sc.stack = sc.stack[:0]
	sc.members = sc.members[:0]
	sc.top = sc.top[:0]
	if stringifiedStart(src) {
		body, ok := unstringify(sc.unesc[:0], src)
		sc.unesc = body[:0]
		if ok {
			s.src = body
			s.repair(RepairStringifiedBody, 0)
		}
	}
	sc.src = s.src
	if err := s.run(); err != nil {
		return dst, err
	}
	s.report(rep)
	return s.dst, nil
}

// report adds the scanner's repairs to rep (which may be nil).
func (s *scanner) report(rep *Report) {
	if rep == nil {
		return
	}
	rep.Strict = s.repairs == 0
	for k, c := range s.counts {
		rep.Counts[k] += c
	}
	for _, r := range s.listed[:s.nListed] {
		if rep.NumListed == MaxListedRepairs {
			break
		}
		rep.First[rep.NumListed] = Repair{Kind: r.kind, Offset: r.off}
		rep.NumListed++
	}
}

// release clears the scratch and hands it back to the pool. Very large
// scratch from one odd body is not kept for every later call.
func (sc *scratch) release() {
	sc.index.reset()
	if cap(sc.buf) > 1<<20 {
		sc.buf = nil
	}
	if cap(sc.out) > maxPooledScratch {
		sc.out = nil
	}
	if cap(sc.unesc) > maxPooledScratch {
		sc.unesc = nil
	}
	sc.src = nil
	if cap(sc.stack) > 1024 {
		sc.stack = nil
	}
	if cap(sc.members) > 1<<16 {
		sc.members = nil
	}
	if cap(sc.top) > 1<<16 {
		sc.top = nil
	}
	scratchPool.Put(sc)
}

// numScanRepairKinds is the number of repair kinds of the general layer
// (the Task End layer's kinds follow).
const numScanRepairKinds = int(RepairStringifiedBody) + 1

// scanRepair is one listed repair of the scanner.
type scanRepair struct {
	kind RepairKind
	off  int
}

func (s *scanner) repair(kind RepairKind, off int) {
	s.repairs++
	s.counts[kind]++
	if s.nListed < MaxListedRepairs {
		s.listed[s.nListed] = scanRepair{kind, off}
		s.nListed++
	}
}

// concatenation is the error for a string joined with '+' at off: which
// string the client meant is not sure, so it is never guessed.
func (s *scanner) concatenation(off int) error {
	return s.errorf(KindSyntax, off, "a string concatenation (\"a\" + \"b\") is not JSON; send the joined string")
}

// plusOperator is the error for a '+' at off that joins two values outside
// any string (`1 + 2`, `a + "b"`): a sum or a concatenation, which no
// reading makes sure.
func (s *scanner) plusOperator(off int) error {
	return s.errorf(KindSyntax, off, "a \"+\" between values (a sum or a concatenation) is not JSON; send the one value meant")
}

// escapedQuote is the error for the backslash at off, outside any string,
// before a quote: part of a body sent in its stringified form. Read as
// text it would put the escaped quotes into a key or value.
func (s *scanner) escapedQuote(off int) error {
	return s.errorf(KindSyntax, off, "a quote escaped with a backslash (\\"+string(s.src[off+1])+
		") outside any string: the body is partly stringified; send it unescaped, or wholly escaped")
}

func (s *scanner) errorf(kind ErrorKind, off int, msg string) error {
	return newError(kind, s.src, off, "", msg)
}

// at describes an input offset for messages: "line 3, column 9".
func (s *scanner) at(off int) string {
	line, col := Position(s.src, off)
	return "line " + strconv.Itoa(line) + ", column " + strconv.Itoa(col)
}

func (s *scanner) run() error {
	s.state = stValue
	for {
		if s.i >= len(s.src) {
			return s.eof()
		}
		c := s.src[s.i]
		if !tokenStart[c] {
			// White space, a comment or an odd byte: the slow path.
			if err := s.skipSpace(); err != nil {
				return err
			}
			if s.i >= len(s.src) {
				return s.eof()
			}
			c = s.src[s.i]
		}
		var err error
		switch s.state {
		case stValue:
			err = s.startValue(c)
		case stAfter:
			err = s.after(c)
		case stKey:
			err = s.key(c)
		case stColon:
			err = s.colon(c)
		}
		if err != nil {
			return err
		}
	}
}

// opensString reports whether b starts with a quote that opens a string.
func opensString(b []byte) bool {
	return b[0] == '"' || b[0] == '\'' || typoQuote(b) != 0
}

// typoQuote returns the third byte of the closing quote for the typographic
// opening quote at the start of b (U+201D for “ and ”, U+2019 for ‘ and ’),
// or 0 when b does not start with one.
func typoQuote(b []byte) byte {
	if len(b) < 3 || b[0] != 0xE2 || b[1] != 0x80 {
		return 0
	}
	switch b[2] {
	case 0x9C, 0x9D:
		return 0x9D
	case 0x98, 0x99:
		return 0x99
	}
	return 0
}

func (s *scanner) eof() error {
	if n := len(s.sc.stack); n > 0 {
		f := s.sc.stack[n-1]
		closer, what := "]", "array"
		if f.obj {
			closer, what = "}", "object"
		}
		return s.errorf(KindTruncated, len(s.src),
			"input ends before the closing \""+closer+"\" of the "+what+" opened at "+s.at(f.open))
	}
	if !s.topDone {
		if s.noEmpty {
			return s.errorf(KindSyntax, len(s.src), "the body is empty (nothing but white space and comments)")
		}
		s.repair(RepairEmptyBody, 0)
		s.dst = append(s.dst, '{', '}')
	}
	return nil
}

// top returns the innermost open frame, or nil on the top level.
func (s *scanner) top() *frame { return s.cur }

// setTop refreshes the cached innermost frame after a push or a pop.
func (s *scanner) setTop() {
	if n := len(s.sc.stack); n > 0 {
		s.cur = &s.sc.stack[n-1]
	} else {
		s.cur = nil
	}
}

func (s *scanner) push(obj bool) error {
	if len(s.sc.stack) >= s.maxDepth {
		return s.errorf(KindTooDeep, s.i,
			"nesting is deeper than the limit of "+strconv.Itoa(s.maxDepth)+" levels (max_depth)")
	}
	f := frame{obj: obj, open: s.i, out: len(s.dst), memStart: len(s.sc.members)}
	if obj {
		s.sc.serial++
		f.serial = s.sc.serial
		s.dst = append(s.dst, '{')
		s.state = stKey
	} else {
		s.dst = append(s.dst, '[')
		s.state = stValue
	}
	s.sc.stack = append(s.sc.stack, f)
	s.setTop()
	s.sawComma = false
	s.i++
	return nil
}

// valueDone moves on after a complete value.
func (s *scanner) valueDone() {
	s.state = stAfter
	s.sawComma = false
	f := s.top()
	if f == nil {
		s.topDone = true
		return
	}
	if f.obj {
		s.sc.members[len(s.sc.members)-1].end = len(s.dst)
	}
}

// beginElement writes the ',' before an array element.
func (s *scanner) beginElement() {
	if f := s.top(); f != nil && !f.obj {
		if f.count > 0 {
			s.dst = append(s.dst, ',')
		}
		f.count++
	}
}

func (s *scanner) startValue(c byte) error {
	switch c {
	case '{', '[':
		s.beginElement()
		return s.push(c == '{')
	case '"':
		s.beginElement()
		if err := s.str('"', 1, 0, true); err != nil {
			return err
		}
		s.valueDone()
		return nil
	case '\'':
		s.repair(RepairQuotes, s.i)
		s.beginElement()
		if err := s.str('\'', 1, 0, true); err != nil {
			return err
		}
		s.valueDone()
		return nil
	case ']':
		if f := s.top(); f != nil && !f.obj {
			return s.close(c)
		}
		if f := s.top(); f != nil && f.obj {
			return s.errorf(KindSyntax, s.i, "expected a value after \":\", found \"]\"")
		}
		return s.close(c)
	case '}':
		if f := s.top(); f != nil && f.obj {
			return s.errorf(KindSyntax, s.i, "expected a value after \":\", found \"}\"")
		}
		return s.close(c)
	case ',':
		return s.errorf(KindSyntax, s.i, "expected a value, found \",\"; a value is missing")
	case ':':
		return s.errorf(KindSyntax, s.i, "expected a value, found \":\"")
	}
	if tb := typoQuote(s.src[s.i:]); tb != 0 {
		s.repair(RepairQuotes, s.i)
		s.beginElement()
		if err := s.str(0, 3, tb, true); err != nil {
			return err
		}
		s.valueDone()
		return nil
	}
	s.beginElement()
	return s.bareValue()
}

func (s *scanner) after(c byte) error {
	f := s.top()
	switch c {
	case ',':
		if f == nil {
			if s.sawComma {
				return s.errorf(KindSyntax, s.i, "unexpected \",\" after the end of the value")
			}
			// A trailing comma after the top-level value is harmless; a
			// value after it is a second value (reported below).
			s.sawComma = true
			s.commaOff = s.i
			s.repair(RepairComma, s.i)
			s.i++
			return nil
		}
		s.sawComma = true
		s.commaOff = s.i
		s.i++
		if f.obj {
			s.state = stKey
		} else {
			s.state = stValue
		}
		return nil
	case '}', ']':
		return s.close(c)
	case ':':
		return s.errorf(KindSyntax, s.i, "unexpected \":\" after a value")
	case '+':
		if s.dst[len(s.dst)-1] == '"' {
			// A string, then a comment or a line break, then '+': the
			// concatenation that str refuses when the '+' comes first.
			return s.concatenation(s.i)
		}
		// A number, literal or closer, then '+' (`[1 /*c*/ + 2]`,
		// `1` ⏎ `+2`): a sum or a concatenation, never the start of the
		// next element, whatever white space or comment stands between.
		return s.plusOperator(s.i)
	}
	if f == nil {
		return s.errorf(KindMultipleValues, s.i,
			"more than one top-level value: a second value starts here; send one JSON value per body")
	}
	// Another value or key follows without a comma: insert one.
	s.repair(RepairComma, s.i)
	if f.obj {
		s.state = stKey
	} else {
		s.state = stValue
	}
	return nil
}

func (s *scanner) close(c byte) error {
	f := s.top()
	if f == nil {
		if s.topObj {
			// Closers after a complete top-level object, such as
			// `{"a":1}}`, close nothing and hide no data: dropped. What
			// else follows is still a second value (after).
			s.repair(RepairExtraCloser, s.i)
			s.i++
			return nil
		}
		return s.errorf(KindSyntax, s.i, "unexpected \""+string(c)+"\": no object or array is open here")
	}
	want, what := byte(']'), "array"
	if f.obj {
		want, what = '}', "object"
	}
	if c != want {
		return s.errorf(KindSyntax, s.i, "found \""+string(c)+"\" but the "+what+" opened at "+
			s.at(f.open)+" is still open; close it with \""+string(want)+"\"")
	}
	if s.sawComma {
		s.repair(RepairComma, s.commaOff)
	}
	if f.dup {
		s.rebuild(f)
	}
	s.dst = append(s.dst, c)
	if s.keepTop && f.obj && len(s.sc.stack) == 1 {
		s.sc.top = append(s.sc.top[:0], s.sc.members[f.memStart:]...)
	}
	s.sc.members = s.sc.members[:f.memStart]
	s.topObj = f.obj && len(s.sc.stack) == 1
	s.sc.stack = s.sc.stack[:len(s.sc.stack)-1]
	s.setTop()
	s.i++
	s.valueDone()
	return nil
}

func (s *scanner) key(c byte) error {
	switch c {
	case '}', ']':
		return s.close(c)
	case '"':
		s.beginMember()
		if err := s.str('"', 1, 0, false); err != nil {
			return err
		}
		if s.i < len(s.src) && s.src[s.i] == ':' {
			// Strict input: the colon follows at once.
			if err := s.endKey(false); err != nil {
				return err
			}
			return s.colon(':')
		}
		return s.quotedKeyEnd()
	case '\'':
		s.repair(RepairQuotes, s.i)
		s.beginMember()
		if err := s.str('\'', 1, 0, false); err != nil {
			return err
		}
		return s.quotedKeyEnd()
	case ',', ':', '{', '[':
		return s.errorf(KindSyntax, s.i, "expected a key, found \""+string(c)+"\"")
	}
	if tb := typoQuote(s.src[s.i:]); tb != 0 {
		s.repair(RepairQuotes, s.i)
		s.beginMember()
		if err := s.str(0, 3, tb, false); err != nil {
			return err
		}
		return s.endKey(false)
	}
	s.repair(RepairUnquotedKey, s.i)
	s.beginMember()
	start := s.i
	end := s.bareRun(true)
	if escapedQuoteAt(s.src, end) {
		return s.escapedQuote(end - 1)
	}
	w := s.trimCounted(s.src[start:end], start)
	if elidedAt(w) >= 0 {
		return s.elided(w, start)
	}
	if s.plus {
		if p := plusAt(w); p >= 0 {
			return s.plusOperator(offsetIn(s.src, w) + p)
		}
	}
	if last := w[len(w)-1]; s.i < len(s.src) && s.src[s.i] == '"' || last == '\'' || last == 0x99 || last == 0x9D {
		w = s.strayKeyQuote(w, start) // only a key that may have one pays the call
	}
	var err error
	s.dst = append(s.dst, '"')
	s.dst, err = s.escape(s.dst, w, start)
	if err != nil {
		return err
	}
	s.dst = append(s.dst, '"')
	return s.endKey(true)
}

// A key with one of its quotes left out. The quote that is there must not
// carry the colon into a string: `{note":"late"}` read as a key and then a
// string would give note the value `:"late`, and `{"note:"late"}` the key
// `note:`. Both are the member "note":"late", which is what the reference
// repairers answer.

// strayKeyQuote handles an unquoted key whose opening quote was left out:
// w, the key's text at input offset start, and a closing quote straight
// after it (`note"`, `note'`, `note”`), then the colon. The quote is
// dropped and w without it returned; any other w is returned as it is.
func (s *scanner) strayKeyQuote(w []byte, start int) []byte {
	src := s.src
	if s.i < len(src) && src[s.i] == '"' {
		// bareRun stops a key at a double quote.
		if k := gapEnd(src, s.i+len(`"`)); k < len(src) && src[k] == ':' {
			s.repair(RepairQuotes, s.i)
			s.i += len(`"`)
		}
		return w
	}
	n := 0
	switch {
	case len(w) > 1 && w[len(w)-1] == '\'':
		n = 1
	case len(w) > 3 && w[len(w)-3] == 0xE2 && w[len(w)-2] == 0x80 && (w[len(w)-1] == 0x99 || w[len(w)-1] == 0x9D):
		n = 3 // ’ or ”
	}
	if n == 0 {
		return w
	}
	if k := gapEnd(src, s.i); k < len(src) && src[k] == ':' {
		s.repair(RepairQuotes, start+len(w)-n)
		return w[:len(w)-n]
	}
	return w
}

// quotedKeyEnd ends a quoted key that the colon does not follow at once.
// When the key's text ends with ':' (spaces may follow it) and its closing
// quote is glued to a string that closes on the same line
// (`{"note:"late"}`, `{"note: "late"}`), the key's closing quote was left
// out: the colon inside is the separator and the quote opens the value.
// Any other key that holds a ':' and has no ':' after it is refused.
func (s *scanner) quotedKeyEnd() error {
	src := s.src
	if s.i < len(src) && src[s.i] == ':' {
		return s.endKey(false) // `'a':`: nothing is left out
	}
	m := &s.sc.members[len(s.sc.members)-1]
	body := s.dst[m.key+1 : len(s.dst)-1]
	c := len(body) - 1
	for c > 0 && (body[c] == ' ' || body[c] == '\t') {
		c--
	}
	if c > 0 && body[c] == ':' && s.i < len(src) && !gapAfterQuote(src[s.i]) {
		if _, ok := quotedEnd(src, s.i-1); ok {
			s.repair(RepairQuotes, s.i-1)
			s.dst = append(s.dst[:m.key+1+c], '"')
			if err := s.endKey(false); err != nil {
				return err
			}
			s.i-- // the quote opens the value
			s.dst = append(s.dst, ':')
			s.state = stValue
			return nil
		}
	}
	if bytes.IndexByte(body, ':') >= 0 {
		if k := gapEnd(src, s.i); k >= len(src) || src[k] != ':' {
			// `{"note: {"a":1}}`: the colon inside may be the separator
			// of a key whose closing quote was left out, and no reading
			// is sure.
			return s.errorf(KindSyntax, m.off, "the key "+string(s.dst[m.key:])+
				" holds a \":\" and no \":\" follows it; close the key before its \":\"")
		}
	}
	return s.endKey(false)
}

// gapAfterQuote reports whether c, straight after a quote, separates it
// from what follows: white space or a separator.
func gapAfterQuote(c byte) bool {
	return c <= ' ' || c == ':' || c == ',' || c == '}' || c == ']' || c == '/' || c == '#'
}

// beginMember writes the ',' before an object member and records it.
func (s *scanner) beginMember() {
	f := s.top()
	if f.count > 0 {
		s.dst = append(s.dst, ',')
	}
	f.count++
	s.sawComma = false
	idx := len(s.sc.members)
	s.sc.members = append(s.sc.members, member{key: len(s.dst), last: idx, off: s.i})
}

func (s *scanner) endKey(bare bool) error {
	idx := len(s.sc.members) - 1
	m := &s.sc.members[idx]
	if s.escaped && bytes.IndexByte(s.dst[m.key:], '\\') >= 0 {
		// Keys are compared as output bytes, so a key with escapes is
		// rewritten in one canonical form (same decoded value).
		s.sc.buf = canonicalKey(s.sc.buf[:0], s.dst[m.key:])
		s.dst = append(s.dst[:m.key], s.sc.buf...)
	}
	m.keyEnd = len(s.dst)
	m.tag = keyTag(s.dst[m.key:m.keyEnd])
	s.checkDup(idx)
	s.bareKey = bare
	s.state = stColon
	return nil
}

func (s *scanner) colon(c byte) error {
	if c == ':' {
		s.dst = append(s.dst, ':')
		s.i++
		s.state = stValue
		return nil
	}
	m := s.sc.members[len(s.sc.members)-1]
	switch c {
	case '}', ']', ',':
		return s.errorf(KindSyntax, s.i, "the key "+string(s.dst[m.key:m.keyEnd])+" has no value")
	case '+':
		return s.concatenation(s.i)
	}
	if s.bareKey && !opensString(s.src[s.i:]) {
		// `{a b}` has no sure reading; `{a "b"}` reads like `{"a" "b"}`.
		return s.errorf(KindSyntax, s.i, "expected \":\" after the key "+string(s.dst[m.key:m.keyEnd]))
	}
	s.repair(RepairMissingColon, s.i)
	s.dst = append(s.dst, ':')
	s.state = stValue
	return nil
}
