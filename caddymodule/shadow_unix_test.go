//go:build unix

package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/internal/unprivileged"
)

// TestAShadowJournalInAnUnwritableDirectoryNeverHoldsACall points the
// journal at a directory of mode 0500 (the test runs as nobody when the
// tests run as root): the writer cannot open the file and waits to retry,
// the queue fills, the records beyond it are dropped and counted, and every
// call goes on and is answered at once.
func TestAShadowJournalInAnUnwritableDirectoryNeverHoldsACall(t *testing.T) {
	if !unprivileged.Run(t) {
		return
	}
	oldLen, oldRetry := shadowQueueLen, shadowRetry
	shadowQueueLen, shadowRetry = 4, time.Hour
	t.Cleanup(func() { shadowQueueLen, shadowRetry = oldLen, oldRetry })
	dir := filepath.Join(t.TempDir(), "journal")
	require.NoError(t, os.Mkdir(dir, 0o500)) // readable, not writable
	ctx, cancel := newTestContext(t)
	defer cancel()
	h := &Handler{Shadow: &ShadowMode{Journal: filepath.Join(dir, "shadow.jsonl")}}
	require.NoError(t, h.Provision(ctx))
	defer h.Cleanup()
	h.logger = zap.NewNop() // forty would-break warnings
	passed := 0
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.Copy(io.Discard, r.Body)
		passed++
		w.WriteHeader(http.StatusNoContent)
		return err
	})
	dropped := counterValue(t, metricShadowDropped)
	const calls = 40
	// A call that waited for the writer would wait out its hour-long retry.
	for i := range calls {
		// Not an object: refused by the gateway, so always recorded.
		req := httptest.NewRequest(http.MethodPost, "/genesys/1/cs/services/42/tasks/7/end", strings.NewReader("[1]"))
		w := httptest.NewRecorder()
		require.NoError(t, h.ServeHTTP(w, req, next))
		assert.Equal(t, http.StatusNoContent, w.Code)
		if i == 0 {
			// The writer takes the first record and waits to retry the open.
			require.Eventually(t, func() bool { return len(h.shadow.journal.queue) == 0 }, 5*time.Second, time.Millisecond)
		}
	}
	assert.Equal(t, calls, passed)
	assert.Equal(t, float64(calls-1-4), counterValue(t, metricShadowDropped)-dropped, "one record held by the writer, four queued")
	_, err := os.Stat(filepath.Join(dir, "shadow.jsonl"))
	assert.True(t, os.IsNotExist(err))
}

// counterValue reads a counter without a server.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 1)
	return mfs[0].GetMetric()[0].GetCounter().GetValue()
}
