package normalize

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExampleBodiesBecomeTheirStrictForm runs the README's examples through TaskEnd: the Genesys
// documentation's own Complete Task body (byte for byte as the vendor prints it: an unquoted
// interaction id and digit-grouped prices) and an IVR's Task End with business-attribute names.
func TestExampleBodiesBecomeTheirStrictForm(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		repairs map[RepairKind]int
	}{
		{"Genesys documentation Complete Task example", "../testdata/genesys-complete-task.json",
			map[RepairKind]int{RepairBareWord: 1, RepairGroupedNumber: 2, RepairTimestampAdded: 1}},
		{"IVR task end with attribute names", "../testdata/ivr-task-end.json",
			map[RepairKind]int{RepairAttributeName: 5, RepairStringToInteger: 1, RepairTimestampAdded: 1}},
	}
	n := newTestNormalizer(t, Options{Attributes: loadTestTables(t)})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := os.ReadFile(tt.in)
			require.NoError(t, err)
			want, err := os.ReadFile(strings.TrimSuffix(tt.in, ".json") + ".strict.json")
			require.NoError(t, err)
			var rep Report
			out, err := n.TaskEnd(nil, in, receivedAt, &rep)
			require.NoError(t, err)
			assert.Equal(t, string(bytes.TrimSuffix(want, []byte("\n"))), string(out))
			for kind, count := range tt.repairs {
				assert.Equal(t, count, rep.Counts[kind], "repairs of kind %s", kind)
			}
		})
	}
}
