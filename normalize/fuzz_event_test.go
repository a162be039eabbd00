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

// FuzzEvent checks FuzzTaskEnd's guarantee for every event type, the
// operation picked from the input (op modulo NumOperations): no panic; an
// *Error with dst left alone, or strict JSON (encoding/json and fastjson
// accept it) holding an object (an object or an array for an extension
// update) with a canonical timestamp where the event has one, which Event
// returns byte for byte when given it again (idempotence).
func FuzzEvent(f *testing.F) {
	tables := loadTestTables(f)
	seeds, err := filepath.Glob("testdata/golden/events/*.in.json")
	require.NoError(f, err)
	for i, path := range seeds {
		body, err := os.ReadFile(path)
		require.NoError(f, err)
		for op := range NumOperations {
			f.Add(body, uint8(i), uint8(op))
		}
	}
	for _, s := range []string{
		`{"from":{"state_id":"7","disposition":"RESOLVED "},"to":{"state_type":"menu","est_duration":"1 200"}}`,
		`{"from":1,"to":[]}`, `{"from":{"from":{}},"to":{"to":null}}`,
		`{"service_type":"sales","customer_id":12,"contact_key":null,"previous_state_id":"-1"}`,
		`[1,2]`, `"x"`, ``, `{}`,
	} {
		for op := range NumOperations {
			f.Add([]byte(s), uint8(fuzzUnknownPass|fuzzFillDefaults|fuzzCaseInsensitive), uint8(op))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, flags, opByte uint8) {
		checkEventProperties(t, fuzzNormalizer(t, tables, flags), Operation(opByte%uint8(NumOperations)), body)
	})
}

// checkEventProperties checks the fuzz properties of one body for op: an
// *Error with dst left alone, or strict JSON of the event's shape with a
// canonical timestamp where the event has one, returned again unchanged.
func checkEventProperties(t *testing.T, n *Normalizer, op Operation, body []byte) {
	prefix := []byte("prefix")
	out, err := n.Event(op, prefix, body, receivedAt, nil)
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
	if op == OpExtensionUpdate {
		require.Contains(t, []fastjson.Type{fastjson.TypeObject, fastjson.TypeArray}, v.Type(), "%s: %q", op, out)
	} else {
		require.Equal(t, fastjson.TypeObject, v.Type(), "%s: not an object: %q", op, out)
		ts := v.GetStringBytes("timestamp")
		_, canonical, ok := parseTimestamp(ts)
		require.True(t, ok && canonical, "%s: timestamp %q is not canonical in %q", op, ts, out)
	}

	again, err := n.Event(op, nil, out, receivedAt, nil)
	require.NoError(t, err, "%s: output %q is rejected", op, out)
	require.Equal(t, string(out), string(again), "%s: not idempotent", op)
}
