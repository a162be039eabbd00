package normalize

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/valyala/fastjson"
)

// FuzzValue checks the general layer's guarantee on any input: no panic;
// strict output (encoding/json and fastjson both accept it) or a typed
// *Error; normalising the output again gives it back byte for byte; and
// input that is already strict JSON without duplicate keys keeps its
// meaning (key order, number text, string values).
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
