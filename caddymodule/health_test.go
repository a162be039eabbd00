package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/upstream"
)

const healthURL = "http://localhost:9080/genesys/1/cs/ucs/health"

// getHealth reads the health answer.
func getHealth(t *testing.T, client *http.Client) (int, map[string]any) {
	t.Helper()
	resp, err := client.Get(healthURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var a map[string]any
	require.NoError(t, json.Unmarshal(b, &a), "%s", b)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	return resp.StatusCode, a
}

func TestHealthAnswersForTheJournal(t *testing.T) {
	var full atomic.Bool
	journalFS = faultFS{FileSystem: upstream.OSFileSystem(), full: &full}
	t.Cleanup(func() { journalFS = nil })
	path := filepath.Join(t.TempDir(), "events.jsonl")
	tester := startCaddy(t, "ucs {\nhealth\nlocal "+path+"\n}\nrespond 404")

	status, a := getHealth(t, tester.Client)
	assert.Equal(t, http.StatusOK, status)
	want := map[string]any{"status": "ok", "journal": "ok"}
	if records, bytes, open := leftoverSpools(); open {
		// Spools an earlier test left draining are replayed by this process too.
		want["spool"], want["spool_records"], want["spool_bytes"], want["oldest_age_s"] = "ok", records, bytes, a["oldest_age_s"]
	}
	assert.Equal(t, want, a)

	full.Store(true) // the disk fills up: the next event is refused, and so is the health check
	resp, _ := post(t, tester, taskEndURL, []byte(`{"n":1}`))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	status, a = getHealth(t, tester.Client)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "unavailable", a["status"])
	assert.Contains(t, a["journal"], syscall.ENOSPC.Error())

	full.Store(false) // space again: the next event is journaled and the gateway is healthy
	resp, _ = post(t, tester, taskEndURL, []byte(`{"n":2}`))
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	status, _ = getHealth(t, tester.Client)
	assert.Equal(t, http.StatusOK, status)
}

func TestHealthAnswersForTheSpool(t *testing.T) {
	ucs := newUCSServer(t)
	ucs.stop()
	dir := t.TempDir()
	leftRecords, leftBytes, _ := leftoverSpools()
	tester := startCaddy(t, "ucs {\nhealth\nforward "+ucs.url()+" {\nspool "+dir+"\nmax_spool 2KiB\n}\n}\nrespond 404")

	status, a := getHealth(t, tester.Client)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, map[string]any{"status": "ok", "spool": "ok", "spool_records": leftRecords, "spool_bytes": leftBytes,
		"oldest_age_s": a["oldest_age_s"]}, a)

	accepted := 0
	for n := range 100 {
		resp, _ := post(t, tester, taskEndURL, fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, n, strings.Repeat("x", 100)))
		if resp.StatusCode != http.StatusNoContent {
			break
		}
		accepted++
	}
	status, a = getHealth(t, tester.Client)
	assert.Equal(t, http.StatusServiceUnavailable, status, "the spool is full")
	assert.Equal(t, "full", a["spool"])
	assert.Equal(t, leftRecords+float64(accepted), a["spool_records"])

	ucs.restart() // it drains: healthy again
	require.Eventually(t, func() bool { s, _ := getHealth(t, tester.Client); return s == http.StatusOK }, 20*time.Second, 10*time.Millisecond)
}

func TestHealthIsOffByDefault(t *testing.T) {
	tester := startCaddy(t, "ucs\nrespond 404")
	resp, err := tester.Client.Get(healthURL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "the path goes down the route")
}

// TestHealthCountsASpoolStillDrainingAfterAReloadMovedIt: a reload points spool elsewhere while the
// old directory holds events; until they are delivered, health counts them.
func TestHealthCountsASpoolStillDrainingAfterAReloadMovedIt(t *testing.T) {
	fastReplay(t)
	ucs := newUCSServer(t)
	ucs.stop()
	parent := t.TempDir()
	left, _, _ := leftoverSpools()
	old, _ := forwardHandler(t, ucs.url(), filepath.Join(parent, "old"))
	for n := range 40 {
		require.Equal(t, http.StatusNoContent, serveEvent(t, old, fmt.Sprintf(`{"n":%d}`, n)))
	}
	moved, _ := forwardHandler(t, ucs.url(), filepath.Join(parent, "new"))
	require.NoError(t, old.Cleanup())
	require.Equal(t, http.StatusNoContent, serveEvent(t, moved, `{"n":40}`), "spooled behind the outage")

	health := func() map[string]any {
		w := httptest.NewRecorder()
		require.NoError(t, moved.serveHealth(w, httptest.NewRequest(http.MethodGet, healthURL, nil)))
		var a map[string]any
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &a), w.Body.String())
		return a
	}
	a := health()
	assert.Equal(t, left+41, a["spool_records"], "the draining directory's 40 events and the configured one's")
	assert.Positive(t, a["spool_bytes"])

	ucs.restart()
	require.Eventually(t, func() bool { return health()["spool_records"] == left }, 20*time.Second, 5*time.Millisecond)
}

// leftoverSpools is what the spools left open by earlier tests of this process (draining, their
// UCS gone) add to every health answer: it stays the same during a test.
func leftoverSpools() (records, bytes float64, open bool) {
	r, b, _, open := replayedSpools()
	return float64(r), float64(b), open
}
