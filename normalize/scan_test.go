package normalize

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fastjson"
)

func newValueNormalizer(t testing.TB, opts Options) *Normalizer {
	t.Helper()
	n, err := New(opts)
	require.NoError(t, err)
	return n
}

// repairCase is one row: loose input, strict output, the repair it counts.
type repairCase struct {
	in   string
	want string
	kind RepairKind
}

func runRepairTable(t *testing.T, rows []repairCase) {
	t.Helper()
	n := newValueNormalizer(t, Options{})
	for _, row := range rows {
		t.Run(row.in, func(t *testing.T) {
			var rep Report
			out, err := n.Value(nil, []byte(row.in), &rep)
			require.NoError(t, err)
			assert.Equal(t, row.want, string(out))
			assert.Positive(t, rep.Counts[row.kind], "repair %s not counted", row.kind)
			assert.False(t, rep.Strict)
			assert.True(t, json.Valid(out), "output is not valid JSON")
			assert.NoError(t, fastjson.ValidateBytes(out))
		})
	}
}

func TestBareWordBecomesString(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"id": 0000CSS0FXZUP6UR}`, `{"id":"0000CSS0FXZUP6UR"}`, RepairBareWord},
		{`{"note": customer info }`, `{"note":"customer info"}`, RepairBareWord},
		{"{\"a\": hello\n}", `{"a":"hello"}`, RepairBareWord},
		{`[a, b c ,d]`, `["a","b c","d"]`, RepairBareWord},
		{`{"url": http://host/x}`, `{"url":"http://host/x"}`, RepairBareWord},
		{`{"url": http://host/x // note` + "\n}", `{"url":"http://host/x"}`, RepairBareWord},
		{`{"tag": a#b}`, `{"tag":"a#b"}`, RepairBareWord},
		{`{"tag": a # note` + "\n}", `{"tag":"a"}`, RepairBareWord},
		{`{"path": C:\dir "x"}`, `{"path":"C:\\dir \"x\""}`, RepairBareWord},
		{`{"w": O'Brien}`, `{"w":"O'Brien"}`, RepairBareWord},
		{`hello`, `"hello"`, RepairBareWord},
		{`{"a": x:y}`, `{"a":"x:y"}`, RepairBareWord},
		{`{"a": 1 2}`, `{"a":"1 2"}`, RepairBareWord},
		{`{"s": none}`, `{"s":"none"}`, RepairBareWord},
		{`{"s": nil}`, `{"s":"nil"}`, RepairBareWord},
	})
}

func TestDigitGroupedNumberBecomesNumber(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"n": 25 000}`, `{"n":25000}`, RepairGroupedNumber},
		{"{\"n\": 25\u00a0000}", `{"n":25000}`, RepairGroupedNumber},
		{"{\"n\": 25\u202f000}", `{"n":25000}`, RepairGroupedNumber},
		{`{"n": 1 234 567.5}`, `{"n":1234567.5}`, RepairGroupedNumber},
		{`{"n": 1_000_000}`, `{"n":1000000}`, RepairGroupedNumber},
		{`{"n": 1'000}`, `{"n":1000}`, RepairGroupedNumber},
		{`{"n": -12 345e3}`, `{"n":-12345e3}`, RepairGroupedNumber},
		{`[25 000]`, `[25000]`, RepairGroupedNumber},
	})
}

func TestNotAGroupedNumberStaysApart(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	rows := []struct{ in, want string }{
		{`[1 2 3]`, `[1,2,3]`},          // three elements, missing commas
		{`[1,234]`, `[1,234]`},          // a comma is never a group separator
		{`{"n": 1 23}`, `{"n":"1 23"}`}, // later groups need exactly three digits
		{`{"n": 1234 567}`, `{"n":"1234 567"}`},
		{`{"n": 01 234}`, `{"n":"01 234"}`},
		{`{"n": 1  234}`, `{"n":"1  234"}`},
		{`[true false null]`, `[true,false,null]`},
	}
	for _, row := range rows {
		out, err := n.Value(nil, []byte(row.in), nil)
		require.NoError(t, err, row.in)
		assert.Equal(t, row.want, string(out), row.in)
	}
}

func TestNonJSONNumberBecomesStringWithExactText(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"n": 007}`, `{"n":"007"}`, RepairNonJSONNumber},
		{`{"n": +5}`, `{"n":"+5"}`, RepairNonJSONNumber},
		{`{"n": 0x1F}`, `{"n":"0x1F"}`, RepairNonJSONNumber},
		{`{"n": NaN}`, `{"n":"NaN"}`, RepairNonJSONNumber},
		{`{"n": Infinity}`, `{"n":"Infinity"}`, RepairNonJSONNumber},
		{`{"n": -Infinity}`, `{"n":"-Infinity"}`, RepairNonJSONNumber},
		{`{"n": 1.2.3}`, `{"n":"1.2.3"}`, RepairNonJSONNumber},
		{`{"n": .5}`, `{"n":".5"}`, RepairNonJSONNumber},
		{`{"n": 5.}`, `{"n":"5."}`, RepairNonJSONNumber},
		{`[1e]`, `["1e"]`, RepairNonJSONNumber},
	})
}

func TestLooseLiteralBecomesJSONLiteral(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`[True]`, `[true]`, RepairLiteral},
		{`[False]`, `[false]`, RepairLiteral},
		{`[None]`, `[null]`, RepairLiteral},
		{`[TRUE]`, `[true]`, RepairLiteral},
		{`[FALSE]`, `[false]`, RepairLiteral},
		{`[NULL]`, `[null]`, RepairLiteral},
		{`[NONE]`, `[null]`, RepairLiteral},
		{`[tRuE]`, `[true]`, RepairLiteral},
		{`{"a": undefined}`, `{"a":null}`, RepairLiteral},
		{`[True False]`, `[true,false]`, RepairLiteral},
	})
}

func TestUnquotedKeyIsQuoted(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{car_type: 1}`, `{"car_type":1}`, RepairUnquotedKey},
		{`{car type: 1}`, `{"car type":1}`, RepairUnquotedKey},
		{`{ $id : "x" }`, `{"$id":"x"}`, RepairUnquotedKey},
		{"{a:1,\nb:2}", `{"a":1,"b":2}`, RepairUnquotedKey},
		{`{"a": {b: [1]}}`, `{"a":{"b":[1]}}`, RepairUnquotedKey},
	})
}

func TestSingleAndTypographicQuotesBecomeDoubleQuotes(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{'a': 'b'}`, `{"a":"b"}`, RepairQuotes},
		{`{'a': 'say "hi"'}`, `{"a":"say \"hi\""}`, RepairQuotes},
		{`{"a": 'it\'s'}`, `{"a":"it's"}`, RepairQuotes},
		{"{\"a\": \u201cquoted\u201d}", `{"a":"quoted"}`, RepairQuotes},
		{"{\u201ca\u201d: 1}", `{"a":1}`, RepairQuotes},
		{"{\"a\": \u2018x\u2019}", `{"a":"x"}`, RepairQuotes},
		{"{\"a\": \u2018it's\u2019}", `{"a":"it's"}`, RepairQuotes},
		{"{\"a\": \u201ca \"b\"\u201d}", `{"a":"a \"b\""}`, RepairQuotes},
	})
}

func TestCommasAreRepaired(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"a": 1,}`, `{"a":1}`, RepairComma},
		{`[1, 2, ]`, `[1,2]`, RepairComma},
		{"{\"a\": 1\n\"b\": 2}", `{"a":1,"b":2}`, RepairComma},
		{"[\"x\"\n\"y\"]", `["x","y"]`, RepairComma},
		{"[{}\n{}]", `[{},{}]`, RepairComma},
		{"{\"a\": 1,\n// c\n}", `{"a":1}`, RepairComma},
		{`{"a": 1},`, `{"a":1}`, RepairComma},
	})
}

func TestCommentsAreRemoved(t *testing.T) {
	runRepairTable(t, []repairCase{
		{"{\"a\": 1 // one\n}", `{"a":1}`, RepairComment},
		{"{\"a\": 1 // one\r\n}", `{"a":1}`, RepairComment},
		{"{\"a\": 1, // one\r\"b\": 2}", `{"a":1,"b":2}`, RepairComment},
		{`{/* c */"a": /* c */ 1}`, `{"a":1}`, RepairComment},
		{"# header\n{\"a\": 1}", `{"a":1}`, RepairComment},
		{"{\"a\": [1, # one\n2]}", `{"a":[1,2]}`, RepairComment},
		{"{\"a\": 1} // trailing", `{"a":1}`, RepairComment},
	})
}

func TestRawControlCharacterInStringIsEscaped(t *testing.T) {
	runRepairTable(t, []repairCase{
		{"{\"a\": \"x\ny\"}", `{"a":"x\ny"}`, RepairControlChar},
		{"{\"a\": \"x\ty\"}", `{"a":"x\ty"}`, RepairControlChar},
		{"{\"a\": \"x\x01y\"}", `{"a":"x\u0001y"}`, RepairControlChar},
		{"{\"a\": \"\r\n\"}", `{"a":"\r\n"}`, RepairControlChar},
	})
}

func TestInvalidEscapeIsRepairedLosslessly(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"a": "it\'s"}`, `{"a":"it's"}`, RepairEscape},
		{`{"a": "\x41"}`, `{"a":"\\x41"}`, RepairEscape},
		{`{"a": "C:\dir"}`, `{"a":"C:\\dir"}`, RepairEscape},
		{`{"a": "\u12"}`, `{"a":"\\u12"}`, RepairEscape},
		{`{"a": "\uZZZZ"}`, `{"a":"\\uZZZZ"}`, RepairEscape},
	})
}

func TestBOMAndNoBreakSpacesAreWhiteSpace(t *testing.T) {
	runRepairTable(t, []repairCase{
		{"\ufeff{\"a\": 1}", `{"a":1}`, RepairWhitespace},
		{"{\u00a0\"a\":\u00a01}", `{"a":1}`, RepairWhitespace},
		{"{\"a\":\u202f1}", `{"a":1}`, RepairWhitespace},
		{"{\"a\":\f1}", `{"a":1}`, RepairWhitespace},
	})
}

func TestInvalidUTF8IsReplaced(t *testing.T) {
	runRepairTable(t, []repairCase{
		{"{\"a\": \"x\xffy\"}", "{\"a\":\"x\ufffdy\"}", RepairInvalidUTF8},
		{"{\"a\": x\xffy}", "{\"a\":\"x\ufffdy\"}", RepairInvalidUTF8},
		{"{\"a\": \"\xc3\"}", "{\"a\":\"\ufffd\"}", RepairInvalidUTF8},
		{"{\"a\": \"\xed\xa0\x80\"}", "{\"a\":\"\ufffd\ufffd\ufffd\"}", RepairInvalidUTF8},
	})
}

func TestDuplicateKeyKeepsLastValueAtFirstPosition(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"a":1,"b":2,"a":3}`, `{"a":3,"b":2}`, RepairDuplicateKey},
		{`{"a":1,"a":2,"a":3}`, `{"a":3}`, RepairDuplicateKey},
		{`{"a":{"x":1,"x":2},"b":[{"y":1,"y":{"z":0}}]}`, `{"a":{"x":2},"b":[{"y":{"z":0}}]}`, RepairDuplicateKey},
		{`{"a":1,"\u0061":2}`, `{"a":2}`, RepairDuplicateKey},
		{`{a:1,"a":2}`, `{"a":2}`, RepairDuplicateKey},
		{`{"a":1,"b":{"a":2},"a":{"c":3}}`, `{"a":{"c":3},"b":{"a":2}}`, RepairDuplicateKey},
	})
}

func TestDuplicateKeyInLargeObjectUsesTheIndex(t *testing.T) {
	var in, want strings.Builder
	in.WriteString("{")
	want.WriteString("{")
	for i := 0; i < 40; i++ {
		if i > 0 {
			in.WriteString(",")
			want.WriteString(",")
		}
		k := "k" + strconv.Itoa(i)
		in.WriteString(`"` + k + `":0`)
		want.WriteString(`"` + k + `":`)
		if i == 3 {
			want.WriteString("9")
		} else {
			want.WriteString("0")
		}
	}
	in.WriteString(`,"k3":9}`)
	want.WriteString("}")
	runRepairTable(t, []repairCase{{in.String(), want.String(), RepairDuplicateKey}})
}

func TestEmptyBodyBecomesEmptyObject(t *testing.T) {
	runRepairTable(t, []repairCase{
		{``, `{}`, RepairEmptyBody},
		{" \n\t", `{}`, RepairEmptyBody},
		{"// nothing\n/* at all */", `{}`, RepairEmptyBody},
	})
}

func TestMissingColonIsInserted(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"a" 1}`, `{"a":1}`, RepairMissingColon},
		{`{"a" "b", "c" [1]}`, `{"a":"b","c":[1]}`, RepairMissingColon},
	})
}

func TestStrictInputKeepsItsExactText(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	rows := []struct{ in, want string }{
		{`{"id": 12345678901234567890123, "f": 1.50e+10, "neg": -0}`, `{"id":12345678901234567890123,"f":1.50e+10,"neg":-0}`},
		{`{ "z" : 1 , "a" : [ true , false , null ] }`, `{"z":1,"a":[true,false,null]}`},
		{`"\u00e9\n\/\ud800"`, `"\u00e9\n\/\ud800"`},
		{"\"caf\u00e9 \u2028\"", "\"caf\u00e9 \u2028\""},
		{` 42 `, `42`},
		{`[]`, `[]`},
		{`{}`, `{}`},
		{`{"":""}`, `{"":""}`},
	}
	for _, row := range rows {
		var rep Report
		out, err := n.Value(nil, []byte(row.in), &rep)
		require.NoError(t, err, row.in)
		assert.Equal(t, row.want, string(out), row.in)
		assert.True(t, rep.Strict, row.in)
		assert.Zero(t, rep.Total(), row.in)
	}
}

func TestValueAppendsToDst(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	out, err := n.Value([]byte("prefix:"), []byte(`{a: 1}`), nil)
	require.NoError(t, err)
	assert.Equal(t, `prefix:{"a":1}`, string(out))

	out, err = n.Value([]byte("prefix:"), []byte(`{"a": 1`), nil)
	require.Error(t, err)
	assert.Equal(t, "prefix:", string(out))
}

func TestReportListsRepairsWithOffsets(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	var rep Report
	_, err := n.Value(nil, []byte(`{a: True, "b": 'x',}`), &rep)
	require.NoError(t, err)
	require.Equal(t, 4, rep.NumListed)
	assert.Equal(t, Repair{Kind: RepairUnquotedKey, Offset: 1}, rep.First[0])
	assert.Equal(t, Repair{Kind: RepairLiteral, Offset: 4}, rep.First[1])
	assert.Equal(t, Repair{Kind: RepairQuotes, Offset: 15}, rep.First[2])
	assert.Equal(t, Repair{Kind: RepairComma, Offset: 18}, rep.First[3])
}

func TestNeverRepairedInputIsATypedError(t *testing.T) {
	n := newValueNormalizer(t, Options{MaxDepth: 3})
	rows := []struct {
		name       string
		in         string
		kind       ErrorKind
		line, col  int
		msgContain string
	}{
		{"object cut off", "{\"a\": 1,\n \"b\": 2", KindTruncated, 2, 8, `closing "}" of the object opened at line 1, column 1`},
		{"array cut off", `{"a": [1, 2`, KindTruncated, 1, 12, `closing "]" of the array opened at line 1, column 7`},
		{"string cut off", `{"a": "abc`, KindTruncated, 1, 11, `string opened at line 1, column 7`},
		{"key cut off", `{"a`, KindTruncated, 1, 4, `string opened at line 1, column 2`},
		{"escape at end", `"abc\`, KindTruncated, 1, 6, `string opened`},
		{"comment cut off", `{"a": 1 /* x`, KindTruncated, 1, 13, `comment opened at line 1, column 9`},
		{"bare word then end", `{"a": abc`, KindTruncated, 1, 10, `object opened at line 1, column 1`},
		{"two objects", `{"a":1} {"b":2}`, KindMultipleValues, 1, 9, `more than one top-level value`},
		{"two lines", "1\n2", KindMultipleValues, 2, 1, `more than one top-level value`},
		{"two numbers one line", "1 2", KindMultipleValues, 1, 3, `more than one top-level value`},
		{"value after comma", `{},{}`, KindMultipleValues, 1, 4, `more than one top-level value`},
		{"too deep", `[[[[1]]]]`, KindTooDeep, 1, 4, `limit of 3 levels`},
		{"stray closer after an array", `[1]]`, KindSyntax, 1, 4, `no object or array is open`},
		{"stray closer alone", `}`, KindSyntax, 1, 1, `no object or array is open`},
		{"value after a stray closer", `{"a":1}}{"b":2}`, KindMultipleValues, 1, 9, `more than one top-level value`},
		{"mismatched closer", `{"a":[1}`, KindSyntax, 1, 8, `array opened at line 1, column 6 is still open`},
		{"missing value", `{"a":}`, KindSyntax, 1, 6, `expected a value`},
		{"empty element", `[1,,2]`, KindSyntax, 1, 4, `a value is missing`},
		{"key without value", `{"a"}`, KindSyntax, 1, 5, `has no value`},
		{"bare key without colon", `{a b}`, KindSyntax, 1, 5, `has no value`},
		{"colon for value", `[:]`, KindSyntax, 1, 2, `expected a value`},
		{"brace as key", `{{}}`, KindSyntax, 1, 2, `expected a key`},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			out, err := n.Value(nil, []byte(row.in), nil)
			require.Error(t, err)
			assert.Nil(t, out)
			var e *Error
			require.True(t, errors.As(err, &e))
			assert.Equal(t, row.kind, e.Kind)
			assert.Equal(t, row.line, e.Line, "line")
			assert.Equal(t, row.col, e.Column, "column")
			assert.Contains(t, e.Msg, row.msgContain)
		})
	}
}

func TestInvalidUTF8IsRejectedUnderReject(t *testing.T) {
	n := newValueNormalizer(t, Options{InvalidUTF8: UTF8Reject})
	rows := []struct {
		in  string
		off int
	}{
		{"{\"a\": \"x\xffy\"}", 8},
		{"{\"a\": x\xffy}", 7},
	}
	for _, row := range rows {
		_, err := n.Value(nil, []byte(row.in), nil)
		var e *Error
		require.True(t, errors.As(err, &e), row.in)
		assert.Equal(t, KindInvalidUTF8, e.Kind)
		assert.Equal(t, row.off, e.Offset)
	}
}

func TestNumberOrLiteralFollowedByMoreTextIsOneBareToken(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	rows := []struct{ in, want string }{
		{"[1 // note\n]", `[1]`},
		{"[1 # note\n, 2]", `[1,2]`},
		{`{"a": 1   }`, `{"a":1}`},
		{"{\"a\": 1\t,\"b\": null \n}", `{"a":1,"b":null}`},
		{`[1  x]`, `["1  x"]`},
		{`[true story]`, `["true story"]`},
		{`[nullable]`, `["nullable"]`},
		{`[1x]`, `["1x"]`},
		{`[-]`, `["-"]`},
		{"[1\n2]", `[1,2]`},
	}
	for _, row := range rows {
		out, err := n.Value(nil, []byte(row.in), nil)
		require.NoError(t, err, row.in)
		assert.Equal(t, row.want, string(out), row.in)
	}
}

// A backslash before a line break is dropped, and the line break the
// client wrote is kept (JSON5 would drop both).
func TestBackslashBeforeLineBreakKeepsTheLineBreak(t *testing.T) {
	runRepairTable(t, []repairCase{
		{"'a \\\nb'", `"a \nb"`, RepairEscape},
		{"'a \\\r\nb'", `"a \r\nb"`, RepairEscape},
		{"'a \\\rb'", `"a \rb"`, RepairEscape},
		{"{\"a\":\"first\\\nsecond\"}", `{"a":"first\nsecond"}`, RepairEscape},
	})
}

func TestHasSpecialFindsEveryByteThatNeedsACloserLook(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(b[i])
			}
			assert.Equal(t, !strSafe[c], hasSpecial(x), "byte %#x at %d", c, pos)
		}
	}
}

// outputCase is one row: input and the output it must give, whatever it
// repairs.
type outputCase struct{ in, want string }

func runOutputTable(t *testing.T, rows []outputCase) {
	t.Helper()
	n := newValueNormalizer(t, Options{})
	for _, row := range rows {
		out, err := n.Value(nil, []byte(row.in), nil)
		require.NoError(t, err, row.in)
		assert.Equal(t, row.want, string(out), row.in)
	}
}

// rejectCase is one row of input that no repair makes sure: the error kind
// and the byte offset it names.
type rejectCase struct {
	in   string
	kind ErrorKind
	off  int
}

func runRejectTable(t *testing.T, rows []rejectCase) {
	t.Helper()
	n := newValueNormalizer(t, Options{})
	for _, row := range rows {
		t.Run(row.in, func(t *testing.T) {
			out, err := n.Value(nil, []byte(row.in), nil)
			var e *Error
			require.True(t, errors.As(err, &e), "want an *Error, got %v and %q", err, out)
			assert.Equal(t, row.kind, e.Kind, e.Error())
			assert.Equal(t, row.off, e.Offset, e.Error())
		})
	}
}

func TestControlCharacterBetweenTokensIsWhiteSpace(t *testing.T) {
	runRepairTable(t, []repairCase{
		{"{\"a\":1,\x00\"b\":2}", `{"a":1,"b":2}`, RepairControlChar},
		{"{\"a\":1\x00,\"b\":2}", `{"a":1,"b":2}`, RepairControlChar},
		{"\x00{\"a\":\x1b\"x\"}\x00", `{"a":"x"}`, RepairControlChar},
		{"[\x00]", `[]`, RepairControlChar},
		{"{\"a\": x\x01}", `{"a":"x"}`, RepairControlChar},
		{"{\x02a: 1}", `{"a":1}`, RepairControlChar},
	})
}

func TestControlCharacterInsideABareWordIsText(t *testing.T) {
	runRepairTable(t, []repairCase{
		{"{\"a\": x\x00y}", `{"a":"x\u0000y"}`, RepairBareWord},
	})
}

func TestCommentStraightAfterAValueEndsIt(t *testing.T) {
	runRepairTable(t, []repairCase{
		{"{\"price\":25/*EUR*/, \"ok\":true//checked\n}", `{"price":25,"ok":true}`, RepairComment},
		{"{\"a\":null#none\n}", `{"a":null}`, RepairComment},
		{"{\"a\":-1.5e3/**/}", `{"a":-1.5e3}`, RepairComment},
		{"{\"a\":\"x\"//c\n,\"b\":'y'#c\n}", `{"a":"x","b":"y"}`, RepairComment},
		{"{\"a\":True//c\n}", `{"a":true}`, RepairComment},
		{"{\"a\":None#c\n}", `{"a":null}`, RepairComment},
		{"{\"a\":25 000/*EUR*/}", `{"a":25000}`, RepairComment},
		{"[1/*a*/2]", `[1,2]`, RepairComment},
	})
}

// Bare words keep their rule: a comment starts inside one only after white
// space, so URLs and paths stay whole.
func TestCommentInsideABareWordNeedsWhiteSpaceBeforeIt(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	rows := []struct{ in, want string }{
		{`{"u": http://host/x}`, `{"u":"http://host/x"}`},
		{`{"u": a/*b*/c}`, `{"u":"a/*b*/c"}`},
		{`{"u": a#b}`, `{"u":"a#b"}`},
		{`{"u": a /*b*/}`, `{"u":"a"}`},
		{"{\"u\": a //b\n}", `{"u":"a"}`},
		{`{"u": 1x/*b*/}`, `{"u":"1x/*b*/"}`},
	}
	for _, row := range rows {
		out, err := n.Value(nil, []byte(row.in), nil)
		require.NoError(t, err, row.in)
		assert.Equal(t, row.want, string(out), row.in)
	}
}

// unicodeSpaces is every Unicode space the scanner reads as white space
// between tokens.
var unicodeSpaces = []string{
	"\u0085", "\u00a0", "\u1680", "\u180e",
	"\u2000", "\u2001", "\u2002", "\u2003", "\u2004", "\u2005", "\u2006", "\u2007", "\u2008", "\u2009", "\u200a",
	"\u200b", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff",
}

func TestEveryUnicodeSpaceIsWhiteSpaceBetweenTokens(t *testing.T) {
	var rows []repairCase
	for _, sp := range unicodeSpaces {
		rows = append(rows,
			repairCase{`{"a":` + sp + `"x"` + sp + `,` + sp + `"b":` + sp + `1` + sp + `}`, `{"a":"x","b":1}`, RepairWhitespace},
			repairCase{sp + `{a` + sp + `:1}`, `{"a":1}`, RepairWhitespace},
		)
	}
	runRepairTable(t, rows)
}

func TestUnicodeSpaceIsTrimmedFromTheEndsOfABareWord(t *testing.T) {
	var rows []repairCase
	for _, sp := range unicodeSpaces {
		rows = append(rows, repairCase{`{"a": customer` + sp + `info` + sp + `}`, `{"a":"customer` + sp + `info"}`, RepairWhitespace})
		rows = append(rows, repairCase{`[7` + sp + `]`, `[7]`, RepairWhitespace})
	}
	runRepairTable(t, rows)
}

func TestUnicodeSpaceInsideAStringIsText(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	for _, sp := range unicodeSpaces {
		in := `{"a":"` + sp + `x` + sp + `"}`
		var rep Report
		out, err := n.Value(nil, []byte(in), &rep)
		require.NoError(t, err)
		assert.Equal(t, in, string(out))
		assert.True(t, rep.Strict)
	}
}

func TestTripleQuotedStringIsOneStringWithItsExactText(t *testing.T) {
	runRepairTable(t, []repairCase{
		{"{\"note\": \"\"\"two\nlines\"\"\"}", `{"note":"two\nlines"}`, RepairQuotes},
		{"{\"note\": '''it's \"so\"\n\tC:\\dir'''}", `{"note":"it's \"so\"\n\tC:\\dir"}`, RepairQuotes},
		{"[\"\"\"\"\"\", '''''']", `["",""]`, RepairQuotes},
		{"{'''k''': 1, \"\"\"l\"\"\": 2}", `{"k":1,"l":2}`, RepairQuotes},
	})
}

func TestTripleQuotedStringWithoutItsEndIsRejected(t *testing.T) {
	runRejectTable(t, []rejectCase{
		{"{\"note\": \"\"\"two\nlines\"}", KindTruncated, 23},
		{"{\"note\": '''two''}", KindTruncated, 18},
	})
}

// A bare word or number never runs on across a bracket or the next
// member's quoted key: the value ends there and what follows is structure.
func TestStructureNeverBecomesText(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`[1{"a":2}]`, `[1,{"a":2}]`, RepairComma},
		{`[x[1]]`, `["x",[1]]`, RepairComma},
		{`{"a":1 "b":2}`, `{"a":1,"b":2}`, RepairComma},
		{`{"a":true"b":2}`, `{"a":true,"b":2}`, RepairComma},
		{`{"a": hello "b": 2}`, `{"a":"hello","b":2}`, RepairComma},
		{`{"a": 25 000 "b": 2}`, `{"a":25000,"b":2}`, RepairComma},
		{`{"path": C:\dir "x"}`, `{"path":"C:\\dir \"x\""}`, RepairBareWord}, // a quote that opens no member is text
	})
}

func TestStructureAfterAValueWithNoRepairIsRejectedWhereItStarts(t *testing.T) {
	runRejectTable(t, []rejectCase{
		{`[{"a":1{"a":2}]`, KindSyntax, 7},
		{`{"a": see [1]}`, KindSyntax, 10},
		{`{"a": x{"b":1}}`, KindSyntax, 7},
	})
}

func TestUnescapedInnerQuotesStayInTheString(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"disposition_desc":"Customer said "call me later" and hung up","state_id":3}`,
			`{"disposition_desc":"Customer said \"call me later\" and hung up","state_id":3}`, RepairQuotes},
		{`{"a":"say "hi""}`, `{"a":"say \"hi\""}`, RepairQuotes},
		{`{"a":"5" screen"}`, `{"a":"5\" screen"}`, RepairQuotes},
		{`["He said "hi" to me", 2]`, `["He said \"hi\" to me",2]`, RepairQuotes},
		{`{'a': 'it's ok'}`, `{"a":"it's ok"}`, RepairQuotes},
		{"{\"a\":\"x \"y\" z\"\n}", `{"a":"x \"y\" z"}`, RepairQuotes},
		{`{"interaction_id":0000CSS0FXZUP6UR, "task_type":customer info, "d":"said "yes" twice"}`,
			`{"interaction_id":"0000CSS0FXZUP6UR","task_type":"customer info","d":"said \"yes\" twice"}`, RepairQuotes},
	})
}

// A closing quote followed by the next member's key, the next element or
// a line break still ends the string: those are commas left out.
func TestQuoteBeforeTheNextMemberStillEndsTheString(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"a":"x" "b":"y"}`, `{"a":"x","b":"y"}`, RepairComma},
		{`{"a":"x" 'b':"y"}`, `{"a":"x","b":"y"}`, RepairComma},
		{`["a" "b"]`, `["a","b"]`, RepairComma},
		{"{\"a\":\"x\"\n\"b\":\"y\"}", `{"a":"x","b":"y"}`, RepairComma},
	})
}

func TestStrayCloserAfterTopLevelObjectIsDropped(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"a":1}}`, `{"a":1}`, RepairExtraCloser},
		{`{"a":1}]`, `{"a":1}`, RepairExtraCloser},
		{"{\"a\":1} ]}\n", `{"a":1}`, RepairExtraCloser},
	})
}

func TestUnquotedKeyBeforeAQuotedValueGetsItsColon(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{a "b"}`, `{"a":"b"}`, RepairMissingColon},
		{`{a 'b', c "d"}`, `{"a":"b","c":"d"}`, RepairMissingColon},
		{"{a \u201cb\u201d}", `{"a":"b"}`, RepairMissingColon},
		{`{car type "sedan"}`, `{"car type":"sedan"}`, RepairMissingColon},
	})
}

// Decisions: each of these could be read more than one way, or is not a
// body a Context Services client sends; rejecting is safer than guessing.
func TestUnsureLooseFormsAreRejected(t *testing.T) {
	runRejectTable(t, []rejectCase{
		{`{"a":2]`, KindSyntax, 6},                         // mismatched closer: may be truncation
		{`[{"b":2]`, KindSyntax, 7},                        // mismatched closer
		{`{"a":1, ...}`, KindSyntax, 8},                    // elided member
		{`[1, ...]`, KindSyntax, 4},                        // elided element
		{"[1, \u2026]", KindSyntax, 4},                     // elided element (ellipsis character)
		{`{"a": "x" + "y"}`, KindSyntax, 9},                // string concatenation
		{"{\"a\": 'x' +\n 'y'}", KindSyntax, 9},            // string concatenation across lines
		{"```json\n{\"a\":1}\n```", KindMultipleValues, 8}, // Markdown code fence
		{`callback({"a":1})`, KindMultipleValues, 9},       // JSONP wrapper
		{`{a b}`, KindSyntax, 4},                           // no quoted value after an unquoted key
	})
}

func TestTypographicKeyAfterAStringValueIsTheNextMember(t *testing.T) {
	runRepairTable(t, []repairCase{
		{"{\"a\":\"x\" \u201cb\u201d: 1}", `{"a":"x","b":1}`, RepairComma},
		{"[\"x\" \u2018y\u2019]", `["x","y"]`, RepairComma},
	})
}
