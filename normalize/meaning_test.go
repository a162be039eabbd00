package normalize

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Loose forms whose first reading put data in the output that the client
// never wrote: a comment, a colon or a '+' that stood outside any string
// ended up inside one. Each now has one documented answer: repaired to
// what the client plainly meant, or refused.

func TestElisionIsRefusedWhateverWhiteSpaceOrCommentTouchesIt(t *testing.T) {
	runRejectTable(t, []rejectCase{
		{`[1, 2, .../* more */]`, KindSyntax, 7},
		{"[1, ...// rest\n]", KindSyntax, 4},
		{`{"a": .../*x*/}`, KindSyntax, 6},
		{"{\"a\": ...#x\n}", KindSyntax, 6},
		{`{"a": ... /*x*/}`, KindSyntax, 6},
		{"[1, \u2026/*x*/]", KindSyntax, 4},
		{"[1, ...\u00a0]", KindSyntax, 4},
		{"[1, ...\t/*x*/\n]", KindSyntax, 4},
		{"[/*x*/...]", KindSyntax, 6},
		{`[1 2 ...]`, KindSyntax, 5},        // among numbers: an element, commas left out
		{`[1 2 .../*x*/]`, KindSyntax, 5},   // ... with a comment touching it
		{`{..., "a":1}`, KindSyntax, 1},     // an elided member
		{`{.../*x*/: 1}`, KindSyntax, 1},    // an elided key with a comment touching it
		{`{"a":1, ... }`, KindSyntax, 8},    // an elided last member
		{`{"a": True ...}`, KindSyntax, 11}, // after a literal
		{"{\"a\": ...\r\n}", KindSyntax, 6}, // a CRLF after it
		{"{\"a\": ...//x\r\"b\":1}", KindSyntax, 6},
	})
}

func TestEllipsisInsideTextStaysText(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"note": wait ... what}`, `{"note":"wait ... what"}`, RepairBareWord},
		{`{"note": to be continued...}`, `{"note":"to be continued..."}`, RepairBareWord},
		{`{"a": x .../*c*/}`, `{"a":"x ..."}`, RepairComment}, // a word before it: a sentence, and the comment is cut
	})
	n := newValueNormalizer(t, Options{})
	out, err := n.Value(nil, []byte(`{"a":"...","b":"\u2026"}`), nil)
	require.NoError(t, err)
	assert.Equal(t, `{"a":"...","b":"\u2026"}`, string(out), "a quoted elision is the client's text")
}

func TestUnquotedKeyEndingWithAStrayQuoteGetsItsValue(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{note":"late"}`, `{"note":"late"}`, RepairQuotes},
		{`{"a":1,note":"late"}`, `{"a":1,"note":"late"}`, RepairQuotes},
		{`{note" : "late"}`, `{"note":"late"}`, RepairQuotes},
		{`{note" /*c*/ : "late"}`, `{"note":"late"}`, RepairQuotes},
		{"{note\"\n:\"late\"}", `{"note":"late"}`, RepairQuotes},
		{`{note':'late'}`, `{"note":"late"}`, RepairQuotes},
		{`{note' : 'late', b: 1}`, `{"note":"late","b":1}`, RepairQuotes},
		{"{note\u201d:\u201clate\u201d}", `{"note":"late"}`, RepairQuotes},
		{"{note\u2019: 1}", `{"note":1}`, RepairQuotes},
		{`{it's': 1}`, `{"it's":1}`, RepairQuotes},
		{`{note":late}`, `{"note":"late"}`, RepairQuotes},
	})
}

func TestQuotedKeyMissingItsClosingQuoteGetsItsValue(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"note:"late"}`, `{"note":"late"}`, RepairQuotes},
		{`{"a":1,"note:"late", "b":2}`, `{"a":1,"note":"late","b":2}`, RepairQuotes},
		{`{'note:'late'}`, `{"note":"late"}`, RepairQuotes},
		{`{"note: "late"}`, `{"note":"late"}`, RepairQuotes},
	})
}

func TestQuotedKeyHoldingAColonWithNoColonAfterItIsRefused(t *testing.T) {
	runRejectTable(t, []rejectCase{
		{`{"note: {"a":1}}`, KindSyntax, 1},
		{`{"a":1, "note: 5" }`, KindSyntax, 8},
		{`{"a:b" 1}`, KindSyntax, 1},
	})
}

func TestKeyWhoseTextEndsInAColonKeepsIt(t *testing.T) {
	runOutputTable(t, []outputCase{
		{`{"note:":"x"}`, `{"note:":"x"}`}, // strict
		{`{"a:" : "b"}`, `{"a:":"b"}`},     // white space before the colon
		{`{O'Brien: 1}`, `{"O'Brien":1}`},  // an apostrophe inside a key is text
		{`{a "b"}`, `{"a":"b"}`},           // a quote after white space opens the value
	})
}

func TestConcatenationIsRefusedWhateverSurroundsThePlus(t *testing.T) {
	runRejectTable(t, []rejectCase{
		{`{"x":"a" + "b"}`, KindSyntax, 8},
		{`{"x":"a" + /* joined */ "b"}`, KindSyntax, 8},
		{`{"x":"a" /* joined */ + "b"}`, KindSyntax, 22},
		{`{"x":"a"/*c*/+"b"}`, KindSyntax, 13},
		{"{\"x\":\"a\" + // c\n \"b\"}", KindSyntax, 8},
		{"{\"x\":'a' + # c\n 'b'}", KindSyntax, 8},
		{"{\"x\":\"a\" // c\n + \"b\"}", KindSyntax, 15},
		{"{\"x\":\"a\"\n+ \"b\"}", KindSyntax, 9},
		{"[\"a\"\n+ \"b\"]", KindSyntax, 5},
		{"{\"x\":\u201ca\u201d + \u201cb\u201d}", KindSyntax, 13},
		{`{"x":"a" + b}`, KindSyntax, 8},    // whatever follows the '+'
		{`{"x":"a" + 1}`, KindSyntax, 8},    // ... a number too
		{`{"a" + "b": 1}`, KindSyntax, 5},   // a key joined
		{`"a" /*c*/ + "b"`, KindSyntax, 10}, // on the top level
		{"{\"x\":\"a\"\u00a0+\u00a0\"b\"}", KindSyntax, 8},
	})
}

func TestQuoteEscapedWithABackslashOutsideAnyStringIsRefused(t *testing.T) {
	// A body partly in its stringified form: read as text, the escaped
	// quotes would become part of a key or value ({"\\":"a\":\"x"}).
	runRejectTable(t, []rejectCase{
		{`{\"a\":"x"}`, KindSyntax, 1},
		{`{"a":\"x\"}`, KindSyntax, 5},
		{`{"a": \"x"}`, KindSyntax, 6},
		{`[\"a\", "b"]`, KindSyntax, 1},
		{`{\"a\": 1, "b": 2}`, KindSyntax, 1},
		{`{"a": 1, \"b\": 2}`, KindSyntax, 9},
		{`{"a":1 \"b\":2}`, KindSyntax, 7},
		{`{"a": x\"y}`, KindSyntax, 7},
		{`{\'a\': 1}`, KindSyntax, 1},
		{`{"a": O\'Brien}`, KindSyntax, 7},
		{"{\"a\":1,\n\\\"b\\\":2}", KindSyntax, 8},
	})
	n := newValueNormalizer(t, Options{})
	_, err := n.Value(nil, []byte(`{"a":\"x\"}`), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `a quote escaped with a backslash (\") outside any string`)
	assert.Contains(t, err.Error(), "line 1, column 6")
}

func TestBackslashThatEscapesNoQuoteOutsideAStringStaysText(t *testing.T) {
	runOutputTable(t, []outputCase{
		{`{"path": C:\dir "x"}`, `{"path":"C:\\dir \"x\""}`},
		{`{"a": x\y}`, `{"a":"x\\y"}`},
		{`{"a":"x\"y"}`, `{"a":"x\"y"}`}, // an escape inside a string keeps its meaning
		{`[\"a\"]`, `["a"]`},             // the whole body escaped: unescaped once
	})
}

func TestPlusJoiningTwoValuesIsRefused(t *testing.T) {
	runRejectTable(t, []rejectCase{
		{`{"x": a + "b"}`, KindSyntax, 8},
		{`{"x": a+"b"}`, KindSyntax, 7},
		{`{"x": a +"b"}`, KindSyntax, 8},
		{`{"x": a+ "b"}`, KindSyntax, 7},
		{`{"x": a +/*c*/ "b"}`, KindSyntax, 8},
		{`{"x": a + 'b'}`, KindSyntax, 8},
		{"{\"x\": a + \u201cb\u201d}", KindSyntax, 8},
		{`{"x": 1 + "b"}`, KindSyntax, 8},
		{`[1 /*c*/ + 2]`, KindSyntax, 9},
		{`[1 /*c*/ +2]`, KindSyntax, 9},
		{"[1\n+ 2]", KindSyntax, 3},
		{"[1 // c\n+2]", KindSyntax, 8},
		{`{"x": 1 + 2}`, KindSyntax, 8},
		{`{"x": 1+2}`, KindSyntax, 7},
		{`{"x": 1 +2}`, KindSyntax, 8},
		{`{"x": 1+ 2}`, KindSyntax, 7},
		{`{"x": -1.5+2e3}`, KindSyntax, 10},
		{`[1 + 2]`, KindSyntax, 3},
		{`{"x": true + 1}`, KindSyntax, 11},
		{`{"x": a + b}`, KindSyntax, 8},
		{`{"x": + 2}`, KindSyntax, 6},
		{`{"x": a +}`, KindSyntax, 8},
		{`{"x": a + "b": 1}`, KindSyntax, 8}, // the next member's key after it
		{"{\"x\": a +\n\"b\": 1}", KindSyntax, 8},
		{`{"x": [1] + [2]}`, KindSyntax, 10},
		{`{"x": {} + 1}`, KindSyntax, 9},
		{`{a + b: 1}`, KindSyntax, 3},
		{`{a +: 1}`, KindSyntax, 3},
		{`{"a":1} + {"b":2}`, KindSyntax, 8},
	})
}

func TestPlusGluedInsideAWordOrAsASignIsText(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{note: call me at +44 20 7946 0000}`, `{"note":"call me at +44 20 7946 0000"}`, RepairBareWord},
		{`{"a": C++ developer}`, `{"a":"C++ developer"}`, RepairBareWord},
		{`{"a": C++}`, `{"a":"C++"}`, RepairBareWord},
		{`{"blood": A+}`, `{"blood":"A+"}`, RepairBareWord},
		{`{"a": +5}`, `{"a":"+5"}`, RepairNonJSONNumber},
		{`[1, +5]`, `[1,"+5"]`, RepairNonJSONNumber},
		{`{"tel": +1 555 0100}`, `{"tel":"+1 555 0100"}`, RepairBareWord},
		{`{"a": x+y}`, `{"a":"x+y"}`, RepairBareWord},
		{`{"rating": 18+}`, `{"rating":"18+"}`, RepairNonJSONNumber},
		{"[C++\nJava]", `["C++","Java"]`, RepairBareWord}, // a '+' at a line's end is the word's
		{`{C++: 1}`, `{"C++":1}`, RepairUnquotedKey},
	})
	runOutputTable(t, []outputCase{
		{`{"a":1e+5}`, `{"a":1e+5}`},       // an exponent's sign
		{`{"a":"1 + 2"}`, `{"a":"1 + 2"}`}, // quoted: text, whatever it says
	})
}

func TestUnquotedValueEndingWithAStrayQuoteIsRepaired(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"a":late"}`, `{"a":"late"}`, RepairQuotes},
		{`{"a":late", "b":1}`, `{"a":"late","b":1}`, RepairQuotes},
		{`{"a": late" }`, `{"a":"late"}`, RepairQuotes},
		{"{\"a\": late\"\n}", `{"a":"late"}`, RepairQuotes},
		{"{\"a\": late\" // c\n}", `{"a":"late"}`, RepairQuotes},
		{`{"a": late" "b": 1}`, `{"a":"late","b":1}`, RepairQuotes},
		{`{"a": see you later"}`, `{"a":"see you later"}`, RepairQuotes},
		{`[late"]`, `["late"]`, RepairQuotes},
		{`[late", 1]`, `["late",1]`, RepairQuotes},
		{`{"a": true"}`, `{"a":"true"}`, RepairQuotes}, // its opening quote left out: a string
		{"{\"a\": late\u201d}", `{"a":"late"}`, RepairQuotes},
		{`{note":late"}`, `{"note":"late"}`, RepairQuotes},
		// The stray quote never opens a key that would start with white
		// space or hold the ',' between two members.
		{`{"a": late" /*c*/ , note": 1}`, `{"a":"late","note":1}`, RepairQuotes},
		{`{"a": late", "b": 1}`, `{"a":"late","b":1}`, RepairQuotes},
	})
	runOutputTable(t, []outputCase{
		{`{"a": hello "b": 2}`, `{"a":"hello","b":2}`}, // a quote after white space opens the next key
		{`{"a": hello"b": 2}`, `{"a":"hello","b":2}`},  // ... and one glued to the word, when the key is plain
	})
}

func TestQuoteAtTheEndOfAnUnquotedValueThatIsNotStrayStaysText(t *testing.T) {
	runOutputTable(t, []outputCase{
		{`{"a": 6"}`, `{"a":"6\""}`},                  // an inch mark
		{`{"a": 6", "b": 1}`, `{"a":"6\"","b":1}`},    // never the key `", "`
		{`{"h": 5'11"}`, `{"h":"5'11\""}`},            // feet and inches
		{`{"a": 6" 2" tall}`, `{"a":"6\" 2\" tall"}`}, // never the key `" 2"`
		{`[6" 2" tall]`, `["6\" 2\" tall"]`},
		{`{"a": say "hi"}`, `{"a":"say \"hi\""}`},         // other quotes in it: inner quotes
		{`{"a": the students'}`, `{"a":"the students'"}`}, // an apostrophe is text
		{"{\"a\": it\u2019s}", "{\"a\":\"it\u2019s\"}"},
		{`{"a":1"b":2}`, `{"a":1,"b":2}`}, // a glued quote that opens the next key
		{`[1"x"]`, `[1,"x"]`},             // ... or the next element
	})
}

func TestMissingClosingQuoteBeforeTheNextKeyIsRepaired(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{"note":"ok,"next":1}`, `{"note":"ok","next":1}`, RepairQuotes},
		{`{"url":"http://x/,"id":2}`, `{"url":"http://x/","id":2}`, RepairQuotes},
		{`{"note":"ok, "next":1}`, `{"note":"ok","next":1}`, RepairQuotes},
		{`{"a":"ok,"b":2,"c":"z,"d":4}`, `{"a":"ok","b":2,"c":"z","d":4}`, RepairQuotes},
		{"{'note':'ok,'next':1}", `{"note":"ok","next":1}`, RepairQuotes},
		{`{"a":{"note":"ok,"next" : [1]}}`, `{"a":{"note":"ok","next":[1]}}`, RepairQuotes},
		{"{\"note\":\"ok,\n  \"next\":1}", `{"note":"ok","next":1}`, RepairQuotes},
		{"{\"note\":\"ok,\t\"next\":1}", `{"note":"ok","next":1}`, RepairQuotes},
		{"{\"note\":\"a\tb,\r\n\t\"next\":1}", `{"note":"a\tb","next":1}`, RepairQuotes},
	})
}

func TestCommaInsideAStringBeforeTextStaysText(t *testing.T) {
	runOutputTable(t, []outputCase{
		{`{"a":"x,y","b":1}`, `{"a":"x,y","b":1}`},           // strict
		{`{"a":"x,","b":1}`, `{"a":"x,","b":1}`},             // strict: the quote after the comma closes
		{`{"a":"say, "hi" now"}`, `{"a":"say, \"hi\" now"}`}, // no ':' after the quoted word
		{`["ok,"next",1]`, `["ok,\"next",1]`},                // no key in an array
		{`{"a":"x,\"b\":1"}`, `{"a":"x,\"b\":1"}`},           // escaped quotes are text
	})
}

func TestMissingCommaAfterAStringInAnArrayIsInserted(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`["x" 3]`, `["x",3]`, RepairComma},
		{`["a)" true]`, `["a)",true]`, RepairComma},
		{`["x" 3, 4]`, `["x",3,4]`, RepairComma},
		{`["x" 3 "y"]`, `["x",3,"y"]`, RepairComma},
		{`["x" {"a":1}]`, `["x",{"a":1}]`, RepairComma},
		{`["x" [1]]`, `["x",[1]]`, RepairComma},
		{`["the list "[1, 2]" here"]`, `["the list ",[1,2]," here"]`, RepairComma}, // structure never becomes text
		{`["x" -1.5e3 ]`, `["x",-1.5e3]`, RepairComma},
		{`["x" None]`, `["x",null]`, RepairComma},
		{"['x' 3 // n\n]", `["x",3]`, RepairComma},
		{`{"a":["x" false, "y" null]}`, `{"a":["x",false,"y",null]}`, RepairComma},
	})
}

func TestQuoteBeforeTextInAnArrayStaysAnInnerQuote(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`["He is 6" 2" tall", 1]`, `["He is 6\" 2\" tall",1]`, RepairQuotes},
		{`["a "1" b"]`, `["a \"1\" b"]`, RepairQuotes},
	})
}

func TestStringThatNeverEndsNamesTheQuoteReadAsText(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	rows := []struct {
		in    string
		quote string // "line L, column C" of the quote read as text
	}{
		{`["x" y]`, "line 1, column 4"},
		{`{"d":"said "hi" and`, "line 1, column 12"},
		{`{"a":"x"]`, "line 1, column 8"},
	}
	for _, row := range rows {
		_, err := n.Value(nil, []byte(row.in), nil)
		var e *Error
		require.True(t, errors.As(err, &e), row.in)
		assert.Equal(t, KindTruncated, e.Kind, row.in)
		assert.Contains(t, e.Msg, "the quote at "+row.quote+" is read as text", row.in)
	}
	_, err := n.Value(nil, []byte(`{"a": "abc`), nil)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "read as text", "no quote was read as text")
}

func TestQuoteBeforeACloserThatClosesNothingIsText(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`"the list [1, 2"] more"`, `"the list [1, 2\"] more"`, RepairQuotes},
		{`{"a":"the list [1, 2"] more"}`, `{"a":"the list [1, 2\"] more"}`, RepairQuotes},
		{`{"a":"x"], "b":1}`, `{"a":"x\"]","b":1}`, RepairQuotes}, // the next key ends it at the comma
		{`["the set {1, 2"} more"]`, `["the set {1, 2\"} more"]`, RepairQuotes},
		{`{"a":"the list [1, 2" ] more"}`, `{"a":"the list [1, 2\" ] more"}`, RepairQuotes},
	})
}

func TestQuoteBeforeTheCloserOfItsOwnArrayEndsTheString(t *testing.T) {
	runRejectTable(t, []rejectCase{
		// The ']' closes the array, so the quote ends the string and
		// ` more"` is a second value: refused, never joined.
		{`["the list [1, 2"] more"]`, KindMultipleValues, 19},
	})
}

func TestRootWithoutBracesStaysRefused(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	_, err := n.Value(nil, []byte(`a: 1, b: 2`), nil)
	var e *Error
	require.True(t, errors.As(err, &e))
	assert.Equal(t, KindMultipleValues, e.Kind)

	_, err = n.TaskEnd(nil, []byte("a: 1\nb: 2"), receivedAt, nil)
	require.True(t, errors.As(err, &e))
	assert.Equal(t, KindMultipleValues, e.Kind)
}

// refusal is a golden refusal: what TaskEnd answers a body that must not
// be recorded, as testdata/golden/refused/*.out.json holds it.
type refusal struct {
	Kind    string `json:"kind"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

// TestGoldenRefusals runs every testdata/golden/refused/*.in.json through
// TaskEnd and compares the error with *.out.json: these bodies are refused,
// never recorded with data the client did not send.
func TestGoldenRefusals(t *testing.T) {
	n := newTestNormalizer(t, Options{Attributes: loadTestTables(t)})
	eachGoldenPair(t, "testdata/golden/refused/*.in.json", func(t *testing.T, in, raw []byte) {
		var want refusal
		require.NoError(t, json.Unmarshal(raw, &want))
		out, err := n.TaskEnd(nil, in, receivedAt, nil)
		var e *Error
		require.True(t, errors.As(err, &e), "want a refusal, got %s", out)
		assert.Equal(t, want, refusal{Kind: e.Kind.String(), Line: e.Line, Column: e.Column, Message: e.Msg})
	})
}
