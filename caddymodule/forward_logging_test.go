package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// forwardHandler provisions a forward sink with spool dir outside a
// server, its logs (and its spool's) going to the returned observer.
func forwardHandler(t *testing.T, url, dir string) (*Handler, *observer.ObservedLogs) {
	return forwardHandlerWith(t, &ForwardSink{URLs: []string{url}, Spool: dir})
}

func forwardHandlerWith(t *testing.T, sink *ForwardSink) (*Handler, *observer.ObservedLogs) {
	t.Helper()
	ctx, cancel := newTestContext(t)
	t.Cleanup(cancel)
	core, logs := observer.New(zapcore.DebugLevel)
	h := &Handler{Forward: sink}
	require.NoError(t, h.checkOptions())
	h.logger = zap.New(core).Named("http.handlers.ucs")
	require.NoError(t, h.buildSets())
	h.BasePath, h.basePfx, h.ops = DefaultBasePath, DefaultBasePath+"/", parseOperations(nil)
	h.MaxBody = DefaultMaxBody
	require.NoError(t, h.provisionForward(ctx))
	require.NoError(t, h.openSinks()) // what the ucs app does at start
	t.Cleanup(func() { _ = h.Cleanup() })
	return h, logs
}

func serveEvent(t *testing.T, h *Handler, body string) int {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/genesys/1/cs/services/42/tasks/7/end", strings.NewReader(body))
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	require.NoError(t, h.ServeHTTP(w, r, next))
	return w.Code
}

func TestOutageStartAndEndAreLoggedWithTheDepthButNoEventData(t *testing.T) {
	fastReplay(t)
	ucs := newUCSServer(t)
	ucs.stop()
	h, logs := forwardHandler(t, ucs.url(), t.TempDir())
	const secret = "card-4111111111111111"

	for n := range 3 {
		require.Equal(t, http.StatusNoContent, serveEvent(t, h, fmt.Sprintf("{n: %d, note: '%s'}", n, secret)))
	}
	ucs.restart()
	require.Eventually(t, func() bool {
		return logs.FilterMessage("spool drained; delivering directly again").Len() == 1
	}, 10*time.Second, 5*time.Millisecond)

	start := logs.FilterMessage("upstream unavailable; spooling events").All()
	require.Len(t, start, 1)
	assert.Equal(t, zapcore.WarnLevel, start[0].Level)
	assert.Equal(t, "http.handlers.ucs.spool", start[0].LoggerName)
	assert.Equal(t, int64(1), start[0].ContextMap()["records"])
	end := logs.FilterMessage("spool drained; delivering directly again").All()[0]
	assert.Equal(t, zapcore.InfoLevel, end.Level)
	assert.Equal(t, int64(3), end.ContextMap()["replayed"])
	assert.Equal(t, int64(0), end.ContextMap()["dead_lettered"])
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if e.Level > zapcore.DebugLevel {
				assert.NotContains(t, fmt.Sprint(v), secret, "field %s of %q", k, e.Message)
			}
		}
	}
}

func TestSpoolLogsFollowTheNewestConfig(t *testing.T) {
	fastReplay(t)
	ucs := newUCSServer(t)
	ucs.stop()
	dir := t.TempDir()
	old, oldLogs := forwardHandler(t, ucs.url(), dir)
	_, newLogs := forwardHandler(t, ucs.url(), dir) // a reload: provisioned before the old one is cleaned up
	require.NoError(t, old.Cleanup())

	require.Equal(t, http.StatusNoContent, serveEvent(t, old, `{"n":1}`), "a request still in the old config")
	assert.Equal(t, 1, newLogs.FilterMessage("upstream unavailable; spooling events").Len())
	assert.Zero(t, oldLogs.FilterMessage("upstream unavailable; spooling events").Len())
}

func TestFullSpoolIsAWarning(t *testing.T) {
	ucs := newUCSServer(t)
	ucs.stop()
	h, logs := forwardHandlerWith(t, &ForwardSink{URLs: []string{ucs.url()}, Spool: t.TempDir(), MaxSpool: 1000})

	status := http.StatusNoContent
	for n := 0; status == http.StatusNoContent && n < 10; n++ {
		status = serveEvent(t, h, fmt.Sprintf(`{"n":%d,"pad":"%s"}`, n, strings.Repeat("x", 50)))
	}

	require.Equal(t, http.StatusServiceUnavailable, status)
	full := logs.FilterMessage("spool is full; refusing the event").All()
	require.Len(t, full, 1)
	assert.Equal(t, zapcore.WarnLevel, full[0].Level)
	assert.Equal(t, int64(1000), full[0].ContextMap()["max_bytes"])
	assert.Positive(t, full[0].ContextMap()["records"])
}
