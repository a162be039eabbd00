package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fastjson"
)

// corpusDir is the shared test corpus, read in place (never copied here).
const corpusDir = "../../shared/corpus"

func corpusFiles(t *testing.T, sub string) []string {
	t.Helper()
	dir := filepath.Join(corpusDir, sub)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("corpus %s is absent (%v); it lives beside the repository in ../shared/corpus", dir, err)
	}
	var files []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	}))
	sort.Strings(files)
	return files
}

// orderedJSON decodes strict JSON and writes it back in a canonical form
// that keeps what "the same meaning" means here: key order, number text,
// decoded string values; a repeated key keeps its first position and takes
// the last value (Jackson's rule, which the normaliser follows).
func orderedJSON(data []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var b strings.Builder
	if err := orderedValue(dec, &b); err != nil {
		return "", err
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", errors.New("data after the top-level value")
	}
	return b.String(), nil
}

func orderedValue(dec *json.Decoder, b *strings.Builder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			b.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					b.WriteByte(',')
				}
				if err := orderedValue(dec, b); err != nil {
					return err
				}
			}
			_, err := dec.Token()
			b.WriteByte(']')
			return err
		}
		var keys []string
		vals := map[string]string{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			k := kt.(string)
			var vb strings.Builder
			if err := orderedValue(dec, &vb); err != nil {
				return err
			}
			if _, ok := vals[k]; !ok {
				keys = append(keys, k)
			}
			vals[k] = vb.String()
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			b.WriteString(vals[k])
		}
		b.WriteByte('}')
	case string:
		sb, _ := json.Marshal(v)
		b.Write(sb)
	case json.Number:
		b.WriteString(string(v))
	case bool:
		if v {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case nil:
		b.WriteString("null")
	}
	return nil
}

// hasDuplicateKey reports whether strict JSON data repeats a key in an object.
func hasDuplicateKey(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type obj struct {
		seen      map[string]bool
		expectKey bool
	}
	var stack []*obj
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *obj
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.expectKey
		if top != nil {
			top.expectKey = !top.expectKey
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &obj{seen: map[string]bool{}, expectKey: true})
			case '[':
				stack = append(stack, nil)
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1] != nil {
					// The container was a value: the parent now expects a key.
					stack[len(stack)-1].expectKey = true
				}
				continue
			}
			if top != nil {
				// An opening bracket is a value of the parent.
				top.expectKey = true
			}
			if len(stack) > 0 && stack[len(stack)-1] == nil {
				continue
			}
		case string:
			if isKey {
				if top.seen[v] {
					return true
				}
				top.seen[v] = true
			}
		}
	}
}

// checkStrictOrError is the property for input of unknown quality: strict
// output that normalises to itself again, or a typed *Error.
func checkStrictOrError(t *testing.T, n *Normalizer, name string, in []byte) {
	t.Helper()
	out, err := n.Value(nil, in, nil)
	if err != nil {
		var e *Error
		assert.True(t, errors.As(err, &e), "%s: error is not an *Error: %v", name, err)
		return
	}
	assert.True(t, json.Valid(out), "%s: invalid output %q", name, out)
	assert.NoError(t, fastjson.ValidateBytes(out), "%s: fastjson rejects %q", name, out)
	again, err := n.Value(nil, out, nil)
	assert.NoError(t, err, name)
	assert.Equal(t, string(out), string(again), "%s: not idempotent", name)
}

func TestJSONTestSuiteAcceptedFilesKeepTheirMeaning(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	for _, p := range corpusFiles(t, "JSONTestSuite/test_parsing") {
		name := filepath.Base(p)
		if !strings.HasPrefix(name, "y_") {
			continue
		}
		in, err := os.ReadFile(p)
		require.NoError(t, err)
		var rep Report
		out, err := n.Value(nil, in, &rep)
		require.NoError(t, err, name)
		assert.True(t, json.Valid(out), "%s: invalid output %q", name, out)
		want, err := orderedJSON(in)
		require.NoError(t, err, name)
		got, err := orderedJSON(out)
		require.NoError(t, err, name)
		assert.Equal(t, want, got, name)
		if !hasDuplicateKey(in) {
			assert.True(t, rep.Strict, "%s: strict input took a repair: %+v", name, rep.First[:rep.NumListed])
		}
	}
}

func TestJSONTestSuiteOtherFilesGiveStrictOutputOrTypedError(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	for _, sub := range []string{"JSONTestSuite/test_parsing", "JSONTestSuite/test_transform"} {
		for _, p := range corpusFiles(t, sub) {
			name := filepath.Base(p)
			if strings.HasPrefix(name, "y_") {
				continue
			}
			in, err := os.ReadFile(p)
			require.NoError(t, err)
			checkStrictOrError(t, n, name, in)
		}
	}
}

func TestJSON5ValidFilesGiveTheirMeaning(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	expected := 0
	for _, p := range corpusFiles(t, "json5-tests") {
		ext := filepath.Ext(p)
		if ext != ".json" && ext != ".json5" {
			continue
		}
		rel, err := filepath.Rel(filepath.Join(corpusDir, "json5-tests"), p)
		require.NoError(t, err)
		name := strings.ReplaceAll(rel, string(filepath.Separator), "__")
		in, err := os.ReadFile(p)
		require.NoError(t, err)
		out, err := n.Value(nil, in, nil)
		require.NoError(t, err, name)
		assert.True(t, json.Valid(out), "%s: invalid output %q", name, out)
		assert.NoError(t, fastjson.ValidateBytes(out), name)
		again, err := n.Value(nil, out, nil)
		require.NoError(t, err, name)
		assert.Equal(t, string(out), string(again), "%s: not idempotent", name)

		want, err := os.ReadFile(filepath.Join("testdata", "json5", strings.TrimSuffix(name, ext)+".json"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		expected++
		assert.Equal(t, string(bytes.TrimSpace(want)), string(out), name)
	}
	assert.GreaterOrEqual(t, expected, 25, "hand-written expectations in testdata/json5")
}

func TestJSON5InvalidFilesGiveStrictOutputOrTypedError(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	for _, p := range corpusFiles(t, "json5-tests") {
		if ext := filepath.Ext(p); ext != ".js" && ext != ".txt" {
			continue
		}
		in, err := os.ReadFile(p)
		require.NoError(t, err)
		checkStrictOrError(t, n, p, in)
	}
}

func TestOrderedJSONAppliesTheLastValueRule(t *testing.T) {
	rows := []struct{ in, want string }{
		{`{"a":1,"b":2,"a":3}`, `{"a":3,"b":2}`},
		{`[1.50, "\u0041", {"z":null}]`, `[1.50,"A",{"z":null}]`},
	}
	for _, row := range rows {
		got, err := orderedJSON([]byte(row.in))
		require.NoError(t, err)
		assert.Equal(t, row.want, got)
	}
	assert.True(t, hasDuplicateKey([]byte(`{"a":{"b":1},"a":2}`)))
	assert.False(t, hasDuplicateKey([]byte(`{"a":{"a":1},"b":[{"a":2}]}`)))
}

// A .json5 file with a .json twin of the same name (misc/npm-package) must
// normalise to the twin's meaning.
func TestJSON5FileWithJSONTwinGivesTheTwinsMeaning(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	pairs := 0
	for _, p := range corpusFiles(t, "json5-tests") {
		if filepath.Ext(p) != ".json5" {
			continue
		}
		twin, err := os.ReadFile(strings.TrimSuffix(p, ".json5") + ".json")
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		pairs++
		in, err := os.ReadFile(p)
		require.NoError(t, err)
		out, err := n.Value(nil, in, nil)
		require.NoError(t, err, p)
		want, err := orderedJSON(twin)
		require.NoError(t, err, p)
		got, err := orderedJSON(out)
		require.NoError(t, err, p)
		assert.Equal(t, want, got, p)
	}
	assert.Positive(t, pairs)
}
