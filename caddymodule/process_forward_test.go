package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/testport"
)

// TestKillDuringOutageLosesNoAcknowledgedEvent runs the built binary with a
// spool in front of an upstream that is down, loads it with concurrent
// calls, kills it with SIGKILL mid-load, restarts it, brings the upstream
// back, kills it again in the middle of the replay and restarts it: every
// call answered 204 must reach the upstream at least once. A second process
// on the same spool directory must refuse to start meanwhile.
func TestKillDuringOutageLosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildCaddy(t)
	ucs := newUCSServer(t)
	// Slow enough that the second kill lands in the middle of the replay.
	ucs.set(func(u *ucsServer) { u.delay = time.Millisecond })
	ucs.stop()

	spool := filepath.Join(dir, "spool")
	// A window of 4: the replay's promise is at most replay_concurrency
	// duplicates per crash (a service's delivered events wait in the window
	// until a position line covering them is on disk, which a loaded disk
	// delays), and a small window keeps that bound tight.
	const window = 4
	config := func(port int) string {
		return writeForwardConfig(t, dir, port, ucs.url(), spool, fmt.Sprintf("replay_concurrency %d", window))
	}
	port := testport.Free(t)
	cfg := config(port)
	cmd := startBinary(t, bin, dir, cfg, port)
	url := fmt.Sprintf("http://127.0.0.1:%d/genesys/1/cs/services/42/tasks/7/end", port)
	client := &http.Client{Timeout: 5 * time.Second}

	load := startLoad(client, url, 1000)
	load.waitAcked(t, 300)

	// One owner per spool directory, across processes too.
	otherPort := testport.Free(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, bin, "run", "--config", config(otherPort), "--adapter", "caddyfile")
	second.Dir = dir
	second.Env = append(os.Environ(), "HOME="+dir)
	out, err := second.CombinedOutput()
	require.Error(t, err, "a second process on the same spool must not start")
	assert.Contains(t, string(out), "is in use by another spool")

	killHard(t, cmd)
	acked := load.stop()

	// Restart with the upstream still away, then bring it back.
	cmd = startBinary(t, bin, dir, cfg, port)
	ucs.restart()
	require.Eventually(t, func() bool { return len(ucs.received()) >= 50 }, 30*time.Second, time.Millisecond)
	killHard(t, cmd) // in the middle of the replay
	delivered := len(ucs.received())

	cmd = startBinary(t, bin, dir, cfg, port)
	defer killHard(t, cmd)
	duplicates := waitAllArrive(t, ucs, acked, 60*time.Second)
	t.Logf("%d calls acknowledged; %d delivered before the kill during replay; %d events received, %d of them duplicates",
		len(acked), delivered, len(ucs.received()), duplicates)
	assert.LessOrEqual(t, duplicates, 2*window, "at most the replay window is resent at each kill")
	data, err := os.ReadFile(filepath.Join(spool, "dead-letter.jsonl"))
	if err == nil {
		assert.Empty(t, bytes.TrimSpace(data), "nothing was rejected")
	}
}

// TestKillDuringConcurrentReplayLosesNothing spools the events of many
// services during an outage, brings back a UCS that takes 10 ms per call,
// and kills the gateway with SIGKILL twice in the middle of the concurrent
// replay: every acknowledged event arrives, each service's first deliveries
// keep their order, and the events sent twice are at most the in-flight
// window per kill.
func TestKillDuringConcurrentReplayLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary; skipped with -short")
	}
	const window = 16
	dir := t.TempDir()
	bin := buildCaddy(t)
	ucs := newUCSServer(t)
	ucs.stop()
	spool := filepath.Join(dir, "spool")
	port := testport.Free(t)
	cfg := writeForwardConfig(t, dir, port, ucs.url(), spool,
		fmt.Sprintf("replay_concurrency %d\nreplay_backoff 5ms 100ms", window))
	cmd := startBinary(t, bin, dir, cfg, port)
	client := &http.Client{Timeout: 5 * time.Second}
	// Caller g owns services g, g+8, …: each service's events are sent in order.
	urlOf := func(g, i int) string {
		return fmt.Sprintf("http://127.0.0.1:%d/genesys/1/cs/services/%d/tasks/%d/end", port, 100+g+8*(i%25), i)
	}
	load := startLoadOn(client, urlOf, 200)
	load.waitAcked(t, 1500)
	acked := load.stop()

	ucs.set(func(u *ucsServer) { u.delay = 10 * time.Millisecond })
	ucs.restart()
	for kill := range 2 {
		already := len(ucs.received())
		require.Eventually(t, func() bool { return len(ucs.received()) >= already+200 }, 60*time.Second, time.Millisecond)
		killHard(t, cmd) // in the middle of the replay
		t.Logf("kill %d: %d events received so far", kill+1, len(ucs.received()))
		cmd = startBinary(t, bin, dir, cfg, port)
	}
	defer killHard(t, cmd)

	duplicates := waitAllArrive(t, ucs, acked, 120*time.Second)
	services := firstDeliveriesInOrder(t, ucs, nil)
	t.Logf("%d calls acknowledged by %d services; %d events received, %d duplicates (bound %d: the window of %d per kill)",
		len(acked), services, len(ucs.received()), duplicates, 2*window, window)
	assert.LessOrEqual(t, duplicates, 2*window)
}
