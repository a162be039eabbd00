package normalize

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStringifiedBodyIsUnescapedOnce(t *testing.T) {
	runRepairTable(t, []repairCase{
		{`{\"interaction_id\":\"X\",\"disposition\":10}`, `{"interaction_id":"X","disposition":10}`, RepairStringifiedBody},
		{`{ \"a\" : [\"x\", 1] }`, `{"a":["x",1]}`, RepairStringifiedBody},
		{"{\\\"a\\\":1}\n", `{"a":1}`, RepairStringifiedBody},
		{"\ufeff {\\\"a\\\":1}", `{"a":1}`, RepairStringifiedBody},
		{`[\"a\", \"b\"]`, `["a","b"]`, RepairStringifiedBody},
		// One level only: what was escaped twice stays escaped once.
		{`{\"say\":\"\\\"hi\\\"\"}`, `{"say":"\"hi\""}`, RepairStringifiedBody},
		{`{\"path\":\"C:\\\\dir\"}`, `{"path":"C:\\dir"}`, RepairStringifiedBody},
		{`{\"a\":\"caf\u00e9 \ud83d\ude00\"}`, "{\"a\":\"caf\u00e9 \U0001F600\"}", RepairStringifiedBody},
		{`{\"a\":\"x\\ny\"}`, `{"a":"x\ny"}`, RepairStringifiedBody},
		// The unescaped body is loose: its own repairs are counted too.
		{`{\"a\":True,}`, `{"a":true}`, RepairStringifiedBody},
	})
}

func TestEscapedQuoteInANormalBodyKeepsItsMeaning(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	rows := []struct{ in, want string }{
		{`{"a":"x\"y"}`, `{"a":"x\"y"}`},
		{`{"a":"{\"b\":1}"}`, `{"a":"{\"b\":1}"}`},
		{`"{\"a\":1}"`, `"{\"a\":1}"`}, // a JSON string is a string
	}
	for _, row := range rows {
		var rep Report
		out, err := n.Value(nil, []byte(row.in), &rep)
		require.NoError(t, err, row.in)
		assert.Equal(t, row.want, string(out), row.in)
		assert.Zero(t, rep.Counts[RepairStringifiedBody], row.in)
	}
}

// Only a body wholly in the escaped form is unescaped; anything else is
// scanned as it is.
func TestBodyPartlyStringifiedIsNotUnescaped(t *testing.T) {
	n := newValueNormalizer(t, Options{})
	for _, in := range []string{
		`{\"a\":"x"}`,        // a quote that is not escaped
		`{\"a\":\"x\q\"}`,    // \q is no JSON escape
		`{\"a\":\"\ud800\"}`, // a lone surrogate has no text
		`{\"a\":1}\`,         // a backslash at the end
		`{a:\"x\"}`,          // an escaped quote, but not at the start
	} {
		var rep Report
		_, _ = n.Value(nil, []byte(in), &rep)
		assert.Zero(t, rep.Counts[RepairStringifiedBody], in)
	}
	// Read as it stands, each has a quote escaped outside any string:
	// refused there, never a key or value holding the escaped quotes.
	runRejectTable(t, []rejectCase{
		{`{\"a\":\"x\q\"}`, KindSyntax, 1},
		{`{\"a\":\"\ud800\"}`, KindSyntax, 1},
		{`{a:\"x\"}`, KindSyntax, 3},
		{`{\"a\":1}\`, KindSyntax, 1},
	})
}

func TestStringifiedTaskEndGetsItsFieldRules(t *testing.T) {
	n := newTestNormalizer(t, Options{Attributes: loadTestTables(t)})
	var rep Report
	in := `{\"interaction_id\":0000CSS0FXZUP6UR,\"media_type\":\"email\",\"resource_id\":\"12\"}`
	out, err := n.TaskEnd(nil, []byte(in), receivedAt, &rep)
	require.NoError(t, err)
	assert.Equal(t, `{"interaction_id":"0000CSS0FXZUP6UR","media_type":1003,"resource_id":12,`+fixedStamp+`}`, string(out))
	assert.Equal(t, 1, rep.Counts[RepairStringifiedBody])
	assert.Equal(t, Repair{Kind: RepairStringifiedBody}, rep.First[0])
	assert.False(t, rep.Strict)
}
