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
// missing commas and colons), and records what it wrote as structure: the
// keys, and the objects and arrays. The text it writes (words, strings,
// comments) never holds a bracket, so a bracket inside an output string can
// only be structure that became text.
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
	switch g.next() % 6 {
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

func (g *looseGen) value(depth int) {
	switch c := g.next() % 14; {
	case c == 0 && depth < 4:
		g.object(depth + 1)
	case c == 1 && depth < 4:
		g.array(depth + 1)
	case c == 2:
		g.b.WriteString([]string{"25 000", "-1.5e3", "0", "1'000", "1_234_567.5", "007", "0x1F"}[g.next()%7])
	case c == 3:
		g.b.WriteString([]string{"true", "True", "None", "null", "FALSE", "undefined"}[g.next()%6])
	case c == 4:
		g.b.WriteString(g.word()) // bare word
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
	switch g.next() % 6 {
	case 0:
		g.b.WriteString("/*" + g.word() + "*/")
	case 1:
		g.b.WriteString("//" + g.word() + "\n")
	case 2:
		g.b.WriteString(" #" + g.word() + "\n")
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
	for i := 0; i < n; i++ {
		if i > 0 {
			g.sep()
		}
		g.key()
		g.space()
		g.b.WriteString(":")
		g.space()
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

// outputStructure walks strict JSON and returns its keys, counts of objects
// and arrays, and whether any key or string holds a bracket.
func outputStructure(out []byte) (keys map[string]int, objects, arrays int, bracketInText string, err error) {
	keys = map[string]int{}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	type frame struct{ obj, wantKey bool }
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return keys, objects, arrays, bracketInText, nil
		}
		if err != nil {
			return nil, 0, 0, "", err
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
			if strings.ContainsAny(v, "{}[]") {
				bracketInText = v
			}
		}
	}
}

// FuzzLooseStructure checks the two promises that keep a repair from
// changing what a body says, on loose documents whose structure is known:
// no output member that the input did not write (the output's keys are a
// sub-multiset of the keys written), and no structure turned into text (no
// output string holds a bracket, and there are no more objects or arrays
// than were written). Input with no sure reading may be a 400.
func FuzzLooseStructure(f *testing.F) {
	for _, seed := range []string{
		"\x05\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
		"\x04\x00\x05\x10\x20\x30\x05\x41\x42\x43\x44\x45\x07\x00\x01\x02\x03",
		"\x03\x09\x13\x21\x00\x1e\x07\x08\x05\x10\x10\x10\x0a\x30\x31\x32",
		"\x04\x03\x02\x05\x06\x07\x08\x09\x01\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99",
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
		keys, objects, arrays, bracket, err := outputStructure(out)
		if err != nil {
			t.Fatalf("output %q is not JSON: %v", out, err)
		}
		for k, c := range keys {
			if c > g.keys[k] {
				t.Fatalf("output key %q appears %d times, written %d times\n in  %q\n out %s", k, c, g.keys[k], in, out)
			}
		}
		if bracket != "" {
			t.Fatalf("structure became text %q\n in  %q\n out %s", bracket, in, out)
		}
		if objects > g.objects || arrays > g.arrays {
			t.Fatalf("%d objects and %d arrays out of %d and %d\n in  %q\n out %s",
				objects, arrays, g.objects, g.arrays, in, out)
		}
	})
}
