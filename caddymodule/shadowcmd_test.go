package caddymodule

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestShadowReportFiltersAndEstimates runs the report on a journal of
// three operations over two days: --operation and --since select lines,
// sampled lines stand for 1/sample calls, and lines that are not records
// are counted, not fatal.
func TestShadowReportFiltersAndEstimates(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	recs := []shadowRecord{
		{ReceivedAt: "2026-12-01T10:00:00.000Z", Operation: "task.end", Gateway: "rejected", Upstream: "2xx", Verdict: "would_break",
			Rejection: &shadowRejection{Reason: "unknown_name", Message: "old"}},
		{ReceivedAt: "2026-12-03T10:00:00.000Z", Operation: "task.end", Gateway: "rejected", Upstream: "2xx", Verdict: "would_break",
			Path: "/genesys/1/cs/services/1/tasks/2/end", Rejection: &shadowRejection{Reason: "unknown_name", Message: "new"}},
		{ReceivedAt: "2026-12-03T10:00:01.000Z", Operation: "task.end", Gateway: "same", Upstream: "2xx", Verdict: "neither", Sample: 0.1},
		{ReceivedAt: "2026-12-03T10:00:02.000Z", Operation: "task.end", Gateway: "repaired", Upstream: "4xx", Verdict: "would_fix",
			RepairCounts: map[string]int{"bare_word": 3}, Repairs: []shadowRepair{{Kind: "bare_word", Line: 1, Column: 5}}},
		{ReceivedAt: "2026-12-03T10:00:03.000Z", Operation: "service.start", Gateway: "rejected", Upstream: "2xx", Verdict: "would_break",
			Rejection: &shadowRejection{Reason: "field_type"}},
	}
	var buf bytes.Buffer
	for _, r := range recs {
		b, err := json.Marshal(r)
		require.NoError(t, err)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	buf.WriteString("not a record\n")
	path := filepath.Join(t.TempDir(), "shadow.jsonl")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))

	tests := []struct {
		name                     string
		flags                    reportFlags
		records, breaks, fixes   int
		calls, accepted, percent float64
	}{
		{"everything", reportFlags{}, 5, 3, 1, 14, 13, 100 * 3.0 / 13},
		{"one operation", reportFlags{operations: []string{"task.end"}}, 4, 2, 1, 13, 12, 100 * 2.0 / 12},
		{"since a duration", reportFlags{since: "24h", operations: []string{"task.end"}}, 3, 1, 1, 12, 11, 100 * 1.0 / 11},
		{"since a time", reportFlags{since: "2026-12-02T00:00:00Z"}, 4, 2, 1, 13, 12, 100 * 2.0 / 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.flags.json, tt.flags.examples = true, 1
			var out, errOut bytes.Buffer
			require.Equal(t, 0, runShadowReport(tt.flags, []string{path}, now, &out, &errOut), errOut.String())
			var rep shadowReport
			require.NoError(t, json.Unmarshal(out.Bytes(), &rep))
			assert.Equal(t, tt.records, rep.Records)
			assert.Equal(t, 1, rep.SkippedLines)
			assert.Equal(t, tt.breaks, rep.WouldBreak)
			assert.Equal(t, tt.fixes, rep.WouldFix)
			assert.InDelta(t, tt.calls, rep.Calls, 1e-9)
			assert.InDelta(t, tt.accepted, rep.UCSAccepted, 1e-9)
			assert.InDelta(t, tt.percent, rep.WouldBreakPercent, 1e-9)
			assert.Len(t, rep.WouldBreakExamples, 1, "--examples 1")
		})
	}

	var out, errOut bytes.Buffer
	assert.Equal(t, 2, runShadowReport(reportFlags{since: "yesterday"}, []string{path}, now, &out, &errOut))
	assert.Contains(t, errOut.String(), `--since "yesterday"`)
	errOut.Reset()
	assert.Equal(t, 2, runShadowReport(reportFlags{}, []string{filepath.Join(t.TempDir(), "none.jsonl")}, now, &out, &errOut))
	assert.Contains(t, errOut.String(), "no such file")
}
