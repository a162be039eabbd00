package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fastjson"
)

// Fuzz option flags: the low bits of the fuzzer's second argument.
const (
	fuzzCaseInsensitive = 1 << iota
	fuzzFillDefaults
	fuzzUnknownPass
	fuzzNoTables
)

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
		prefix := []byte("prefix")
		out, err := n.TaskEnd(prefix, body, receivedAt, nil)
		if err != nil {
			var e *Error
			require.True(t, errors.As(err, &e), "error of type %T: %v", err, err)
			require.Equal(t, "prefix", string(out), "dst changed on error")
			return
		}
		require.True(t, bytes.HasPrefix(out, prefix), "dst prefix lost")
		out = out[len(prefix):]
		require.True(t, json.Valid(out), "encoding/json rejects %q", out)
		require.NoError(t, fastjson.ValidateBytes(out), "fastjson rejects %q", out)
		v, err := fastjson.ParseBytes(out)
		require.NoError(t, err)
		require.Equal(t, fastjson.TypeObject, v.Type(), "not an object: %q", out)
		ts := v.GetStringBytes("timestamp")
		_, canonical, ok := parseTimestamp(ts)
		require.True(t, ok && canonical, "timestamp %q is not canonical in %q", ts, out)

		again, err := n.TaskEnd(nil, out, receivedAt, nil)
		require.NoError(t, err, "output %q is rejected", out)
		require.Equal(t, string(out), string(again), "not idempotent")
	})
}
