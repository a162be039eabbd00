package normalize

import (
	"bytes"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// The event layer runs the scanner into a pooled scratch buffer; the
// scanner hands back the top-level members' spans in that output, so the
// fields are found without walking it again. Invariant of that output, which
// the rules rely on: compact strict JSON, well-formed escapes, valid UTF-8,
// no duplicate keys. Attached data is copied in runs, byte for byte; only the
// values of the event's fields (its table in fields.go) are rewritten, and
// omitted fields (defaults, then the timestamp) are appended as the last
// members.

// maxPooledScratch keeps one outsized body from pinning its buffer forever.
const maxPooledScratch = 4 << 20

func (n *Normalizer) event(op Operation, dst, src []byte, receivedAt time.Time, rep *Report) ([]byte, error) {
	if op >= NumOperations {
		return dst, errors.New("normalize: unknown operation")
	}
	ef := fieldsOf[op]
	if ef == nil {
		return n.extension(dst, src, rep)
	}
	sc := scratchPool.Get().(*scratch)
	out, err := n.rewriteEvent(dst, src, sc, ef, receivedAt, rep)
	sc.release()
	return out, err
}

// extension normalises an extension update: any JSON object or array,
// repaired, no field rules, no timestamp. An empty body is an error, not
// {}: the body is the extension's data, which the server stores as sent.
func (n *Normalizer) extension(dst, src []byte, rep *Report) ([]byte, error) {
	start := len(dst)
	sc := scratchPool.Get().(*scratch)
	out, err := n.scan(dst, src, rep, sc, false, true)
	sc.release()
	if err != nil {
		return dst, err
	}
	if c := out[start]; c != '{' && c != '[' {
		return dst, newError(KindNotObject, src, firstByteOffset(src), "",
			"an extension is a JSON object or array, got "+jsonTypeName(out[start:]))
	}
	return out, nil
}

func (n *Normalizer) rewriteEvent(dst, src []byte, sc *scratch, ef *eventFields, receivedAt time.Time, rep *Report) ([]byte, error) {
	b, err := n.scan(sc.out[:0], src, rep, sc, true, false)
	sc.out = b[:0]
	if err != nil {
		return dst, err
	}
	// Field offsets count in what the scan read (a stringified body's
	// unescaped text), as the scanner's own do.
	src = sc.src
	if len(b) < 2 || b[0] != '{' {
		return dst, newError(KindNotObject, src, firstByteOffset(src), "",
			"the "+ef.name+" must be a JSON object, got "+jsonTypeName(b))
	}
	closeAt := bytes.LastIndexByte(src, '}')
	if closeAt < 0 {
		closeAt = len(src)
	}
	return n.applyFields(dst, b, sc.top, ef, src, true, closeAt, receivedAt, rep)
}

// applyFields appends the object b (strict, its members' spans in members)
// with ef's rules applied to its members. top says the members' input
// offsets are offsets in src (false for a nested object, whose members were
// found by scanning its strict text again); closeAt is where appended
// members are reported.
func (n *Normalizer) applyFields(dst, b []byte, members []member, ef *eventFields, src []byte, top bool, closeAt int,
	receivedAt time.Time, rep *Report) ([]byte, error) {
	start := len(dst)
	var seen uint64 // bit i: ef.rules[i] is present
	run := 0        // b[run:] has not been copied yet
	for i := range members {
		m := &members[i]
		if m.dup {
			continue // its value is at the first occurrence's position
		}
		ri := ef.matchKey(b[m.key+1 : m.keyEnd-1])
		if ri < 0 {
			continue
		}
		rule := &ef.rules[ri]
		valStart := m.keyEnd + 1 // past ':'
		dst = append(dst, b[run:valStart]...)
		// The value used is the last occurrence's (duplicate keys): its key's
		// input offset lets a repair be located without searching the input.
		keyOff := -1
		if top {
			keyOff = m.off
			if m.last < len(members) {
				keyOff = members[m.last].off
			}
		}
		var err error
		dst, err = n.applyRule(dst, rule, b[valStart:m.end], src, keyOff, receivedAt, rep)
		if err != nil {
			return dst[:start], err
		}
		run = m.end
		seen |= 1 << ri
	}
	dst = append(dst, b[run:len(b)-1]...)
	present := len(b) > 2
	if ef.fillDefaults && n.opts.FillDefaults && n.opts.Attributes != nil {
		for i := range ef.rules {
			r := &ef.rules[i]
			if r.kind != fieldAttribute || seen&(1<<i) != 0 {
				continue
			}
			tb := n.opts.Attributes.table(r.attr)
			if tb == nil || !tb.hasDefault {
				continue
			}
			dst = appendMemberKey(dst, present, r.name)
			dst = strconv.AppendInt(dst, tb.def, 10)
			present = true
			rep.add(RepairAttributeDefault, closeAt, r.name)
		}
	}
	if ef.timestamp && seen&ef.timestampBit == 0 {
		dst = appendMemberKey(dst, present, "timestamp")
		dst = appendTimestampString(dst, timeToMs(receivedAt))
		rep.add(RepairTimestampAdded, closeAt, "timestamp")
	}
	return append(dst, '}'), nil
}

// applyObject appends an object-valued field (the transition's from and
// to) with its own rules applied to its members; null is kept.
func (n *Normalizer) applyObject(dst []byte, rule *fieldRule, v, src []byte, receivedAt time.Time, rep *Report) ([]byte, error) {
	switch v[0] {
	case 'n':
		return append(dst, v...), nil
	case '{':
	default:
		return dst, fieldError(KindFieldType, src, rule.name,
			strconv.Quote(rule.name)+" must be an object, got "+describeValue(v))
	}
	// v is strict: scanning it again only finds its members (no repairs, so
	// no report).
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	b, err := n.scan(sc.out[:0], v, nil, sc, true, false)
	sc.out = b[:0]
	if err != nil {
		return dst, err
	}
	return n.applyFields(dst, b, sc.top, rule.sub, src, false, valueOffset(src, rule.name), receivedAt, rep)
}

// appendMemberKey appends `,"key":` (without the comma for the first member).
func appendMemberKey(dst []byte, comma bool, key string) []byte {
	if comma {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

func appendTimestampString(dst []byte, ms int64) []byte {
	dst = append(dst, '"')
	dst = appendCanonicalTimestamp(dst, ms)
	return append(dst, '"')
}

// matchKey returns the row of the field rule for a raw key (its JSON text
// without the quotes), -1 for attached data, decoding escapes so that
// "\u0074imestamp" is the timestamp, as it is for the server's parser.
func (ef *eventFields) matchKey(raw []byte) int {
	if len(raw) > 6*maxFieldKeyLen {
		return -1
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		if len(raw) > maxFieldKeyLen {
			return -1
		}
		return ef.lookup(raw)
	}
	var buf [maxFieldKeyLen]byte
	key, ok := unescapeString(buf[:0], raw)
	if !ok {
		return -1
	}
	return ef.lookup(key)
}

// applyRule appends the rewritten value v (a strict JSON value) of a field.
func (n *Normalizer) applyRule(dst []byte, rule *fieldRule, v, src []byte, keyOff int, receivedAt time.Time, rep *Report) ([]byte, error) {
	switch rule.kind {
	case fieldString:
		return n.applyString(dst, rule, v, src, keyOff, rep)
	case fieldInt64, fieldInt32:
		return n.applyInteger(dst, rule, v, src, keyOff, rep)
	case fieldAttribute:
		return n.applyAttribute(dst, rule, v, src, keyOff, rep)
	case fieldTimestamp:
		return n.applyTimestamp(dst, v, src, keyOff, receivedAt, rep)
	case fieldObject:
		return n.applyObject(dst, rule, v, src, receivedAt, rep)
	}
	return append(dst, v...), nil
}

// repair records a field repair; the input offset of the value is worked
// out only when the report will list it, from the offset of its key.
func repair(rep *Report, kind RepairKind, src []byte, keyOff int, field string) {
	if rep == nil {
		return
	}
	off := 0
	if rep.NumListed < MaxListedRepairs {
		off = fieldValueOffset(src, keyOff, field)
	}
	rep.add(kind, off, field)
}

// fieldError builds a field-rule error located at the field's value in src.
func fieldError(kind ErrorKind, src []byte, field, msg string) error {
	return newError(kind, src, valueOffset(src, field), field, msg)
}

// applyString: a string within the limit is kept, a number becomes its
// exact text, null is kept (the server treats it as absent).
func (n *Normalizer) applyString(dst []byte, rule *fieldRule, v, src []byte, keyOff int, rep *Report) ([]byte, error) {
	switch {
	case v[0] == '"':
		if rule.limit > 0 {
			if c := runeCount(v[1 : len(v)-1]); c > rule.limit {
				return dst, tooLong(src, rule, c)
			}
		}
		return append(dst, v...), nil
	case isNumberStart(v[0]):
		if rule.limit > 0 && len(v) > rule.limit {
			return dst, tooLong(src, rule, len(v))
		}
		repair(rep, RepairNumberToString, src, keyOff, rule.name)
		dst = append(dst, '"')
		dst = append(dst, v...)
		return append(dst, '"'), nil
	case v[0] == 'n':
		return append(dst, v...), nil
	}
	return dst, fieldError(KindFieldType, src, rule.name,
		strconv.Quote(rule.name)+" must be a string, got "+describeValue(v))
}

func tooLong(src []byte, rule *fieldRule, count int) error {
	return fieldError(KindFieldTooLong, src, rule.name, strconv.Quote(rule.name)+" is "+strconv.Itoa(count)+
		" characters long; the limit is "+strconv.Itoa(rule.limit))
}

// applyInteger: an integer number is kept as its exact text; a decimal
// string (surrounding spaces trimmed, optional sign, leading zeros read as
// decimal) becomes the integer; null is kept; anything else is rejected.
// Negative values pass: the wire type (Java long/int) allows them and the
// server validates IDs.
func (n *Normalizer) applyInteger(dst []byte, rule *fieldRule, v, src []byte, keyOff int, rep *Report) ([]byte, error) {
	switch {
	case isNumberStart(v[0]):
		return appendIntegerNumber(dst, rule, v, src)
	case v[0] == '"':
		var buf [64]byte
		text, ok := decodeSmall(buf[:0], v)
		if !ok {
			return dst, notInteger(src, rule, v)
		}
		x, res := parseInteger(trimASCIISpace(text))
		if res == intSyntax {
			return dst, notInteger(src, rule, v)
		}
		if err := checkRange(src, rule, v, x, res); err != nil {
			return dst, err
		}
		repair(rep, RepairStringToInteger, src, keyOff, rule.name)
		return strconv.AppendInt(dst, x, 10), nil
	case v[0] == 'n':
		return append(dst, v...), nil
	}
	return dst, notInteger(src, rule, v)
}

// appendIntegerNumber keeps a JSON number that is an integer within the
// field's width as its exact text.
func appendIntegerNumber(dst []byte, rule *fieldRule, v, src []byte) ([]byte, error) {
	if !isIntegerText(v) {
		return dst, notInteger(src, rule, v)
	}
	x, res := parseInteger(v)
	if err := checkRange(src, rule, v, x, res); err != nil {
		return dst, err
	}
	return append(dst, v...), nil
}

func notInteger(src []byte, rule *fieldRule, v []byte) error {
	return fieldError(KindFieldType, src, rule.name,
		strconv.Quote(rule.name)+" must be an integer, got "+describeValue(v))
}

// checkRange reports an integer outside its field's width.
func checkRange(src []byte, rule *fieldRule, v []byte, x int64, res intResult) error {
	limit := "a signed 64-bit integer (-9223372036854775808 to 9223372036854775807)"
	if rule.kind == fieldInt32 {
		limit = "a signed 32-bit integer (-2147483648 to 2147483647)"
		if res == intOK && (x < -1<<31 || x > 1<<31-1) {
			res = intOverflow
		}
	}
	if res == intOverflow {
		return fieldError(KindFieldRange, src, rule.name,
			strconv.Quote(rule.name)+" "+excerpt(v)+" does not fit "+limit)
	}
	return nil
}

// decodeSmall returns the decoded content of the strict JSON string v,
// aliasing v when it has no escapes, else decoded into dst's capacity.
func decodeSmall(dst, v []byte) ([]byte, bool) {
	raw := v[1 : len(v)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw, true
	}
	return unescapeString(dst, raw)
}

// applyAttribute: an integer or decimal string is already an ID; a name is
// looked up in the field's table; no table means the name is forwarded.
func (n *Normalizer) applyAttribute(dst []byte, rule *fieldRule, v, src []byte, keyOff int, rep *Report) ([]byte, error) {
	switch {
	case isNumberStart(v[0]):
		return appendIntegerNumber(dst, rule, v, src)
	case v[0] == 'n':
		return append(dst, v...), nil
	case v[0] != '"':
		return dst, fieldError(KindFieldType, src, rule.name,
			strconv.Quote(rule.name)+" must be a business attribute value name or ID, got "+describeValue(v))
	}
	var buf [maxNameLen]byte
	name, decoded := decodeSmall(buf[:0], v)
	if decoded {
		x, res := parseInteger(trimASCIISpace(name))
		if res == intOverflow {
			return dst, checkRange(src, rule, v, x, res)
		}
		if res == intOK {
			repair(rep, RepairStringToInteger, src, keyOff, rule.name)
			return strconv.AppendInt(dst, x, 10), nil
		}
	}
	tb := n.opts.Attributes.table(rule.attr)
	if tb == nil {
		return append(dst, v...), nil
	}
	if decoded {
		if id, ok := tb.lookup(name, n.opts.CaseInsensitive); ok {
			repair(rep, RepairAttributeName, src, keyOff, rule.name)
			return strconv.AppendInt(dst, id, 10), nil
		}
	}
	if n.opts.UnknownNames == UnknownPass {
		dst = append(dst, v...)
		// The name aliases the output (its JSON text without quotes): the
		// scratch buffer goes back to the pool, dst stays with the caller.
		rep.miss(rule.name, dst[len(dst)-len(v)+1:len(dst)-1])
		return dst, nil
	}
	return dst, fieldError(KindUnknownName, src, rule.name, rule.name+" "+excerpt(v)+
		" is not a value of business attribute "+tb.attribute+"; known values: "+tb.known)
}

// applyTimestamp: null, "" or white space only → the receive time; another
// accepted form → canonical; the canonical form is kept byte for byte.
func (n *Normalizer) applyTimestamp(dst, v, src []byte, keyOff int, receivedAt time.Time, rep *Report) ([]byte, error) {
	var (
		ms        int64
		canonical bool
		ok        bool
	)
	switch {
	case v[0] == 'n':
		repair(rep, RepairTimestampAdded, src, keyOff, "timestamp")
		return appendTimestampString(dst, timeToMs(receivedAt)), nil
	case v[0] == '"':
		var buf [64]byte
		text, decoded := decodeSmall(buf[:0], v)
		if !decoded {
			return dst, badTimestamp(src, v)
		}
		trimmed := trimASCIISpace(text)
		if len(trimmed) == 0 {
			repair(rep, RepairTimestampAdded, src, keyOff, "timestamp")
			return appendTimestampString(dst, timeToMs(receivedAt)), nil
		}
		ms, canonical, ok = parseTimestamp(trimmed)
		canonical = canonical && len(v) == canonicalTimestampLen+2
	case v[0] >= '0' && v[0] <= '9':
		ms, ok = parseEpoch(v)
	}
	if !ok {
		return dst, badTimestamp(src, v)
	}
	if canonical {
		return append(dst, v...), nil
	}
	repair(rep, RepairTimestampRewritten, src, keyOff, "timestamp")
	return appendTimestampString(dst, ms), nil
}

func badTimestamp(src, v []byte) error {
	return fieldError(KindTimestamp, src, "timestamp", `"timestamp" `+excerpt(v)+" is not a time; "+timestampForms)
}

func isNumberStart(c byte) bool { return c == '-' || '0' <= c && c <= '9' }

// describeValue names a wrong-typed value for a message: its type for
// containers, an excerpt of its text otherwise.
func describeValue(v []byte) string {
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean (" + string(v) + ")"
	}
	return excerpt(v)
}

// maxExcerpt bounds how much of a value a message repeats: enough to
// recognise it, not a copy of attached data.
const maxExcerpt = 40

// excerpt returns v's JSON text, cut to maxExcerpt characters.
func excerpt(v []byte) string {
	if utf8.RuneCount(v) <= maxExcerpt {
		return string(v)
	}
	cut, n := 0, 0
	for cut < len(v) && n < maxExcerpt {
		_, size := utf8.DecodeRune(v[cut:])
		cut += size
		n++
	}
	return string(v[:cut]) + "…"
}

// jsonTypeName names the type of a strict JSON value for KindNotObject.
func jsonTypeName(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '{':
		return "an object"
	}
	return "a number"
}

// firstByteOffset skips a BOM and white space to where the top-level value
// starts in the input.
func firstByteOffset(src []byte) int {
	i := 0
	if bytes.HasPrefix(src, []byte("\xEF\xBB\xBF")) {
		i = 3
	}
	for i < len(src) && (src[i] == ' ' || src[i] == '\t' || src[i] == '\r' || src[i] == '\n') {
		i++
	}
	return i
}
