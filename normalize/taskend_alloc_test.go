//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation
// counts are only meaningful without it.

package normalize

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStrictTaskEndDoesNotAllocate(t *testing.T) {
	n := newTestNormalizer(t, Options{Attributes: loadTestTables(t), CaseInsensitive: true})
	tests := []struct {
		name string
		body []byte
	}{
		{"attribute names and a canonical timestamp", strictBody()},
		{"timestamp rewritten, ids as strings, names folded",
			[]byte(`{"session_id":123,"resource_id":"12","media_type":" EMAIL ","timestamp":"2026-11-26 12:00:00.123456+01:00"}`)},
		{"timestamp added", []byte(`{"a":[1,{"b":"c"}]}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rep Report
			dst, err := n.TaskEnd(nil, tt.body, receivedAt, &rep)
			require.NoError(t, err)
			allocs := testing.AllocsPerRun(50, func() {
				rep.Reset()
				dst, err = n.TaskEnd(dst[:0], tt.body, receivedAt, &rep)
			})
			require.NoError(t, err)
			assert.Zero(t, allocs)
		})
	}
}
