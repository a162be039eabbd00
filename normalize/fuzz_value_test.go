package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// FuzzValue checks the general layer's guarantee on any input: no panic;
// strict output (encoding/json and fastjson both accept it) or a typed
// *Error; normalising the output again gives it back byte for byte; input
// that is already strict JSON without duplicate keys keeps its meaning (key
// order, number text, string values); and no output key is text the input
// did not write (keysWritten). FuzzLooseStructure checks the stronger form
// of that, and that no structure becomes text, on documents whose structure
// is known.
func FuzzValue(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"b":[true,false,null],"c":"x"}`,
		`{car type: 25 000, 'x': “y”, n: 007, t: True,}`,
		"{\"a\": 1 // c\n\"b\": 2 # c\r\"c\": /* c */ 3}",
		`{"a": http://host/x, "b": C:\dir}`,
		"\ufeff{\"a\":\u00a01\u202f}",
		`{"a":1,"a":2,"b":{"c":1,"c":2}}`,
		`[1 2 3, 1 234 567.5, 1_000, 1'000, 0x1F, NaN, -Infinity, 1.2.3]`,
		`{"a": "\x41\'\u12\ud800"}`,
		"{\"a\": \"x\ny\x01\xff\"}",
		`{"a" 1}`,
		`{"a": [1, 2`,
		`{} {}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		`"\u0061\u00e9\ud83d\ude00"`,
		`{"\u0061":1,"a":2}`,
		"'line 1 \\\nline 2'",
		``,
		"{\"a\":1,\x00\"b\":2}",
		"{\"price\":25/*EUR*/, \"ok\":true//checked\n}",
		"{\"a\":\u2003\"x\"\u3000,\u2028\"b\":\u205f1\u200b}",
		"{\"note\": \"\"\"two\nlines\"\"\", '''k''': '''v'''}",
		`[{"a":1{"a":2}]`,
		`{"d":"Customer said "call me later" and hung up","s":3}`,
		`{"a":"x" "b":"y"}`,
		`{"a":1}}`,
		`{a "b"}`,
		`{"a": "x" + "y"}`,
		`{"x":"a" + /* joined */ "b"}`,
		"{\"x\":\"a\" // c\n + \"b\"}",
		`[1, 2, .../* more */]`,
		"{\"a\": ...// rest\n}",
		`{note":"late"}`,
		`{"a":1,"note:"late"}`,
		`{"note":"ok,"next":1}`,
		"{\"note\":\"a\tb,\r\n\t\"next\":1}",
		`{"note: "late", "a:b" 1}`,
		`["x" {"a":1} [2] "y" 3]`,
		`["x" 3, "a)" true]`,
		`"the list [1, 2"] more"`,
		`{\"interaction_id\":\"X\",\"disposition\":10}`,
		`a: 1, b: 2`,
		`{\"a\":"x", "b":\"y\", c\": 1}`,
		`{"x": a + "b", "y": [1 /*c*/ + 2], "z": 1+2, "w": C++ +44}`,
		`{"a":late", "b": 6", "c": late" /*c*/ , d": 1}`,
	} {
		f.Add([]byte(seed))
	}
	n, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := n.Value(nil, in, nil)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is not an *Error: %v", err)
			}
			if e.Offset < 0 || e.Offset > len(in) || e.Line < 1 || e.Column < 1 {
				t.Fatalf("error position out of range: %+v", e)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("encoding/json rejects the output %q", out)
		}
		if err := fastjson.ValidateBytes(out); err != nil {
			t.Fatalf("fastjson rejects the output %q: %v", out, err)
		}
		if k, ok := keysWritten(in, out); !ok {
			t.Fatalf("output key %q is more often a key in the output than text in the input %q: %q", k, in, out)
		}
		again, err := n.Value(nil, out, nil)
		if err != nil {
			t.Fatalf("normalising the output %q failed: %v", out, err)
		}
		if string(again) != string(out) {
			t.Fatalf("not idempotent:\n%q\n%q", out, again)
		}
		if json.Valid(in) && !hasDuplicateKey(in) {
			want, err := orderedJSON(in)
			if err != nil {
				t.Fatalf("ordered decode of the input: %v", err)
			}
			got, err := orderedJSON(out)
			if err != nil {
				t.Fatalf("ordered decode of the output: %v", err)
			}
			if want != got {
				t.Fatalf("strict input changed its meaning:\n in  %s\n out %s", want, got)
			}
		}
	})
}

// keysWritten checks that every key of out, strict JSON normalised from in,
// is text that in holds at least as many times as out uses it as a key: a
// repair never invents a member. Keys the input may have spelled with
// escapes (in holds a backslash) or that hold U+FFFD (invalid UTF-8
// replaced) are not comparable as text and are skipped.
func keysWritten(in, out []byte) (string, bool) {
	if bytes.IndexByte(in, '\\') >= 0 {
		return "", true
	}
	keys, _, _, _, err := outputTexts(out)
	if err != nil {
		return "", true // reported by the validity checks
	}
	for k, c := range keys {
		if k == "" || strings.ContainsRune(k, utf8.RuneError) {
			continue
		}
		found := 0
		for i := 0; i+len(k) <= len(in) && found < c; i++ {
			if string(in[i:i+len(k)]) == k {
				found++
			}
		}
		if found < c {
			return k, false
		}
	}
	return "", true
}
