package normalize

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Fuzz option flags: the low bits of the fuzzer's second argument.
const (
	fuzzCaseInsensitive = 1 << iota
	fuzzFillDefaults
	fuzzUnknownPass
	fuzzNoTables
)

// fuzzNormalizer is the Normalizer of the options the fuzz flags pick.
func fuzzNormalizer(t *testing.T, tables *Tables, flags uint8) *Normalizer {
	opts := Options{
		Attributes:      tables,
		CaseInsensitive: flags&fuzzCaseInsensitive != 0,
		FillDefaults:    flags&fuzzFillDefaults != 0,
	}
	if flags&fuzzUnknownPass != 0 {
		opts.UnknownNames = UnknownPass
	}
	if flags&fuzzNoTables != 0 {
		opts.Attributes = nil
	}
	n, err := New(opts)
	require.NoError(t, err)
	return n
}

// FuzzTaskEnd checks TaskEnd's guarantee on any input: it never panics; it
// either returns an *Error and leaves dst alone, or appends strict JSON
// (accepted by encoding/json and fastjson) holding an object with a
// canonical timestamp, which TaskEnd returns byte for byte when given it
// again with the same receive time and options (idempotence).
func FuzzTaskEnd(f *testing.F) {
	tables := loadTestTables(f)
	seeds, err := filepath.Glob("testdata/golden/*.in.json")
	require.NoError(f, err)
	seeds = append(seeds, "../testdata/ivr-task-end.json")
	for i, path := range seeds {
		body, err := os.ReadFile(path)
		require.NoError(f, err)
		f.Add(body, uint8(i))
	}
	for _, s := range []string{
		`{"media_type":"EMAIL ","task_type":" customer INFO","timestamp":"2024-01-02 03:04:05.1234+01:00"}`,
		`{"session_id":12345,"state_id":"007","resource_id":" -9 ","timestamp":1732623600}`,
		`{"a":{"timestamp":null},"timestamp":"","disposition":"fax2"}`,
		`[1,2]`, `"x"`, ``, `{}`, `{"timestamp":"2024-02-30T00:00:00Z"}`,
	} {
		f.Add([]byte(s), uint8(fuzzUnknownPass|fuzzFillDefaults|fuzzCaseInsensitive))
	}
	f.Fuzz(func(t *testing.T, body []byte, flags uint8) {
		// TaskEnd is Event(OpTaskEnd): the same properties.
		checkEventProperties(t, fuzzNormalizer(t, tables, flags), OpTaskEnd, body)
	})
}
