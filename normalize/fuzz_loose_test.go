package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// looseGen writes a loose JSON document chosen by the fuzzer's bytes, in
// the forms hand-built bodies contain (quoted, single-quoted, typographic,
// triple-quoted and bare keys and values, inner quotes, grouped numbers,
// comments straight after values, Unicode spaces, control characters,
// missing commas and colons, elisions, keys with a stray closing quote,
// concatenations of strings, words and numbers, string values missing their
// closing quote before the next key, bare values with a stray closing
// quote, keys and values with backslash-escaped quotes outside any string),
// and records what it wrote as structure: the keys, and the objects and
// arrays. The text it writes (words, strings, comments) never holds a
// bracket, a colon, a '+', an elision, an '@' or a backslash, and never
// ends with a double quote, so any of them inside an output string is
// structure, a separator, an operator, an elision, a comment (each comment
// holds an '@'), an escaped quote or a stray quote that became text.
type looseGen struct {
	in      []byte
	pos     int
	b       strings.Builder
	keys    map[string]int
	objects int
	arrays  int
}

func (g *looseGen) next() byte {
	if g.pos >= len(g.in) {
		return 0
	}
	c := g.in[g.pos]
	g.pos++
	return c
}

// word is text for keys, bare values and strings: letters and digits with
// single spaces inside, never at the ends, never a bracket or a quote.
func (g *looseGen) word() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
	n := int(g.next()%6) + 1
	var w strings.Builder
	w.WriteByte(letters[int(g.next())%26]) // a letter first: not a number
	for i := 1; i < n; i++ {
		c := g.next()
		if c%7 == 0 && i < n-1 {
			w.WriteByte(' ')
			c = g.next()
		}
		w.WriteByte(letters[int(c)%len(letters)])
	}
	return w.String()
}

var looseSpaces = []string{" ", "\n", "\t", "\r\n", "\u00a0", "\u2003", "\u3000", "\u2028", "\ufeff", "\x00", "\x1b", "  "}

func (g *looseGen) space() {
	if c := g.next(); c%3 == 0 {
		g.b.WriteString(looseSpaces[int(c/3)%len(looseSpaces)])
	}
}

func (g *looseGen) key() {
	w := g.word()
	g.keys[w]++
	switch g.next() % 10 {
	case 9:
		// Escaped as in a stringified body, in a body that may not be
		// wholly so: `{\"a\": 1, "b": 2}`.
		g.b.WriteString(`\"` + w + `\"`)
	case 6, 7, 8:
		// The opening quote left out: `note":`, `note':`, `note”:`.
		g.b.WriteString(w + []string{`"`, "'", "\u201d"}[g.next()%3])
	case 0:
		g.b.WriteString("'" + w + "'")
	case 1:
		g.b.WriteString(w) // unquoted
	case 2:
		g.b.WriteString("\u201c" + w + "\u201d")
	case 3:
		g.b.WriteString(`"""` + w + `"""`)
	default:
		g.b.WriteString(`"` + w + `"`)
	}
}

// comment writes a comment (each holds an '@', which no text holds).
func (g *looseGen) comment() string {
	switch g.next() % 3 {
	case 0:
		return "/*@" + g.word() + "*/"
	case 1:
		return "//@" + g.word() + "\n"
	}
	return "#@" + g.word() + "\n"
}

// gap is what may stand around a '+': nothing, white space, a line break
// or a comment.
func (g *looseGen) gap() string {
	switch g.next() % 5 {
	case 0:
		return ""
	case 1:
		return " "
	case 2:
		return "\n"
	}
	return " " + g.comment()
}

// operand is one side of a '+' outside any string: a quoted string, a
// number or a word (kind 0, 1, 2).
func (g *looseGen) operand(kind byte) string {
	switch kind {
	case 0:
		return `"` + g.word() + `"`
	case 1:
		return []string{"1", "25", "-1.5", "2e3", "0"}[g.next()%5]
	}
	return g.word()
}

// plusJoin writes two values joined by a '+' outside any string, in a form
// that is always refused: a word or number then a quoted string (`a +
// "b"`, `a+"b"`), two numbers (`1 + 2`, `1+2`, `1 +2`), or a '+' that stands
// alone (`a + b`, `1 /*c*/ + 2`). A '+' glued to a word on one side only,
// with a word or number on the other (`C++ x`, `a +b`, `18+` ⏎ `2`), is text
// and is not written here.
func (g *looseGen) plusJoin() {
	left, right := g.next()%3, g.next()%3
	if left == 0 {
		left = 2 // a string then '+' is concat's form, written elsewhere
	}
	g1, g2 := g.gap(), g.gap()
	if g1 == "" && g2 != "" && g2 != " " {
		g2 = " " // `a+` at the end of a line is text (`C++`, `18+`)
	}
	if (g1 == "" || g2 == "") && !(left == 1 && right == 1) {
		right = 0 // glued to one side: only a quoted string makes it a join
	}
	g.b.WriteString(g.operand(left) + g1 + "+" + g2 + g.operand(right))
}

func (g *looseGen) value(depth int) {
	glued := true // a comment may touch the value and still be one
	switch c := g.next() % 20; {
	case c == 0 && depth < 4:
		g.object(depth + 1)
	case c == 1 && depth < 4:
		g.array(depth + 1)
	case c == 2:
		n := g.next() % 7
		g.b.WriteString([]string{"25 000", "-1.5e3", "0", "1'000", "1_234_567.5", "007", "0x1F"}[n])
		glued = n < 5 // 007 and 0x1F are words: a comment starts in one only after white space
	case c == 3:
		g.b.WriteString([]string{"true", "True", "None", "null", "FALSE", "undefined"}[g.next()%6])
	case c == 4:
		g.b.WriteString(g.word()) // bare word
		glued = false
	case c == 14:
		g.b.WriteString([]string{"...", "\u2026"}[g.next()%2]) // an elision: always refused
	case c == 15:
		// A concatenation: always refused, whatever stands around the '+'.
		g.b.WriteString(`"` + g.word() + `"` + g.gap() + "+" + g.gap() + `"` + g.word() + `"`)
	case c == 16:
		g.plusJoin()
		glued = false
	case c == 17:
		// Escaped as in a stringified body: `{"a":\"x\"}`.
		g.b.WriteString(`\"` + g.word() + `\"`)
	case c == 18:
		// A bare word whose opening quote was left out: `late"`. A letter
		// before the quote (after a digit it is an inch mark, text).
		g.b.WriteString(g.word() + `x"`)
		glued = false
	case c == 5:
		// Inner quotes, each followed by text, so no reading ends the
		// string there.
		g.b.WriteString(`"` + g.word() + ` "` + g.word() + `" ` + g.word() + `"`)
	case c == 6:
		g.b.WriteString(`'` + g.word() + `'s ` + g.word() + `'`)
	case c == 7:
		g.b.WriteString(`"""` + g.word() + "\n\"" + g.word() + `" '''` + `"""`)
	case c == 8:
		g.b.WriteString("'''" + g.word() + "\n" + g.word() + "'''")
	case c == 9:
		g.b.WriteString("\u201c" + g.word() + "\u201d")
	case c == 10:
		g.b.WriteString(`"` + g.word() + "\\\n" + g.word() + `"`)
	default:
		g.b.WriteString(`"` + g.word() + `"`)
	}
	if g.next()%2 == 0 {
		if !glued || g.next()%2 == 0 {
			g.b.WriteString(" ")
		}
		g.b.WriteString(g.comment())
	}
}

// sep writes what stands between two members or elements: a comma, or a
// line break for a comma left out.
func (g *looseGen) sep() {
	if g.next()%4 == 0 {
		g.b.WriteString("\n")
		return
	}
	g.b.WriteString(",")
	g.space()
}

func (g *looseGen) object(depth int) {
	g.objects++
	g.b.WriteString("{")
	g.space()
	n := int(g.next() % 5)
	unclosed := false // the last value's closing quote was left out
	for i := 0; i < n; i++ {
		switch {
		case unclosed:
			// The quote that the value lacks opens this key.
			w := g.word()
			g.keys[w]++
			g.b.WriteString(w + `"`)
		case i > 0:
			g.sep()
			g.key()
		default:
			g.key()
		}
		g.space()
		g.b.WriteString(":")
		g.space()
		unclosed = i < n-1 && g.next()%8 == 0
		if unclosed {
			// A string value whose closing quote was left out before the
			// next member's key: `"ok, "next":`.
			g.b.WriteString(`"` + g.word() + ",")
			g.space()
			g.b.WriteString(`"`)
			continue
		}
		g.value(depth)
		g.space()
	}
	if n > 0 && g.next()%5 == 0 {
		g.b.WriteString(",") // trailing comma
	}
	g.b.WriteString("}")
}

func (g *looseGen) array(depth int) {
	g.arrays++
	g.b.WriteString("[")
	g.space()
	n := int(g.next() % 5)
	for i := 0; i < n; i++ {
		if i > 0 {
			g.sep()
		}
		g.value(depth)
		g.space()
	}
	g.b.WriteString("]")
}

// outputTexts walks strict JSON and returns its keys, counts of objects and
// arrays, and every key and string.
func outputTexts(out []byte) (keys map[string]int, objects, arrays int, texts []string, err error) {
	keys = map[string]int{}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	type frame struct{ obj, wantKey bool }
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return keys, objects, arrays, texts, nil
		}
		if err != nil {
			return nil, 0, 0, nil, err
		}
		isKey := len(stack) > 0 && stack[len(stack)-1].obj && stack[len(stack)-1].wantKey
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].wantKey = !stack[len(stack)-1].wantKey
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				objects++
				stack = append(stack, frame{obj: true, wantKey: true})
			case '[':
				arrays++
				stack = append(stack, frame{})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					// The closed container was a value: a key comes next.
					stack[len(stack)-1].wantKey = true
				}
			}
		case string:
			if isKey {
				keys[v]++
			}
			texts = append(texts, v)
		}
	}
}

// FuzzLooseStructure checks the promises that keep a repair from changing
// what a body says, on loose documents whose structure is known: no output
// member that the input did not write (the output's keys are a
// sub-multiset of the keys written); no structure turned into text (no
// output string holds a bracket, and there are no more objects or arrays
// than were written); and no output string holds what the input had
// outside every string: a comment (an '@'), the colon between a key and
// its value, the '+' of a concatenation or a sum, an elision, a backslash
// before a quote, or a bare value's stray closing quote (no output string
// ends with '"'). Input with no sure reading may be a 400.
func FuzzLooseStructure(f *testing.F) {
	for _, seed := range []string{
		"\x05\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
		"\x04\x00\x05\x10\x20\x30\x05\x41\x42\x43\x44\x45\x07\x00\x01\x02\x03",
		"\x03\x09\x13\x21\x00\x1e\x07\x08\x05\x10\x10\x10\x0a\x30\x31\x32",
		"\x04\x03\x02\x05\x06\x07\x08\x09\x01\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99",
		"\x01\x01\x01\x00\x00\x01\x01\x01\x10\x02\x00\x01\x01\x00\x01\x00\x02\x01\x01\x01\x01", // {a:b + "c"}
		"\x01\x01\x01\x00\x00\x01\x01\x01\x10\x01\x01\x01\x01\x00\x01\x01\x01\x01\x01",         // {a:1 + 25}
		"\xbb;\xecC}EES\xa7\\\x1e\xdeO\x9e\xbcV",                                               // {\"vg\":"o"}
		"\x8b\x01\xe7\x8ad|.\b9s\xf1do\x14a\x16",                                               // {"w":\"hL\"}
		"se\xbaNb`<\x05\x1f&$\xbf\xbf\x04\x95D",                                                // {u":jx"}
	} {
		f.Add([]byte(seed))
	}
	n, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g := looseGen{in: data, keys: map[string]int{}}
		g.space()
		g.object(0)
		g.space()
		in := g.b.String()
		out, err := n.Value(nil, []byte(in), nil)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is not an *Error: %v", err)
			}
			return
		}
		keys, objects, arrays, texts, err := outputTexts(out)
		if err != nil {
			t.Fatalf("output %q is not JSON: %v", out, err)
		}
		for _, v := range texts {
			if strings.ContainsAny(v, "{}[]") {
				t.Fatalf("structure became text %q\n in  %q\n out %s", v, in, out)
			}
			if strings.Contains(v, "@") {
				t.Fatalf("a comment became text %q\n in  %q\n out %s", v, in, out)
			}
			if strings.Contains(v, ":") {
				t.Fatalf("a key's colon became text %q\n in  %q\n out %s", v, in, out)
			}
			if strings.Contains(v, "+") {
				t.Fatalf("a concatenation became text %q\n in  %q\n out %s", v, in, out)
			}
			if strings.Contains(v, "...") || strings.Contains(v, "\u2026") {
				t.Fatalf("an elision became text %q\n in  %q\n out %s", v, in, out)
			}
			if strings.Contains(v, `\`) {
				t.Fatalf("an escaped quote outside a string became text %q\n in  %q\n out %s", v, in, out)
			}
			if strings.HasSuffix(v, `"`) {
				t.Fatalf("a stray closing quote became text %q\n in  %q\n out %s", v, in, out)
			}
		}
		for k, c := range keys {
			if c > g.keys[k] {
				t.Fatalf("output key %q appears %d times, written %d times\n in  %q\n out %s", k, c, g.keys[k], in, out)
			}
		}
		if objects > g.objects || arrays > g.arrays {
			t.Fatalf("%d objects and %d arrays out of %d and %d\n in  %q\n out %s",
				objects, arrays, g.objects, g.arrays, in, out)
		}
	})
}
