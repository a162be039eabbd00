package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/testport"
	"github.com/ucsedge/caddy-ucs/upstream"
)

// TestResendKilledMidwaySendsEachEventAtMostTwice resends 200 dead letters in three runs of the
// real binary: through the admin API of the Caddy owning the spool, which is killed with SIGKILL
// mid-resend; then with Caddy stopped, from the files, the command stopped with SIGTERM; then
// through a restarted Caddy to the end. Every event reaches the UCS, none more than twice (at
// most the batch the kill lost), and the dead letter ends empty.
func TestResendKilledMidwaySendsEachEventAtMostTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary; skipped with -short")
	}
	const events, saveEvery = 200, 20
	dir := t.TempDir()
	bin := buildCaddy(t)
	refusing := newUCSServer(t)
	refusing.set(func(u *ucsServer) {
		u.answer = func(seenRequest) (int, http.Header, string) {
			return http.StatusBadRequest, http.Header{"Content-Type": {"application/json"}},
				`{"message":"Service not found","exception":"InvalidParameterException"}`
		}
	})
	refusing.stop()

	spool := filepath.Join(dir, "spool")
	deadLetter := filepath.Join(spool, "dead-letter.jsonl")
	port, adminAddr := testport.Free(t), fmt.Sprintf("localhost:%d", testport.Free(t))
	cfg := filepath.Join(dir, "Caddyfile")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, `{
	admin %s
	persist_config off
	storage file_system %s
}
http://127.0.0.1:%d {
	ucs {
		forward %s {
			timeout 2s
			spool %s
			replay_backoff 5ms 50ms
		}
	}
	respond 404
}
`, adminAddr, filepath.Join(dir, "storage"), port, refusing.url(), spool), 0o600))
	caddy := startBinary(t, bin, dir, cfg, port)
	defer func() { killHard(t, caddy) }()
	for n := range events {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/genesys/1/cs/services/%d/tasks/1/end", port, n%7), "application/json",
			strings.NewReader(fmt.Sprintf("{n: %d}", n)))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
	}
	refusing.restart()
	require.Eventually(t, func() bool {
		letters, _, _ := upstream.ReadDeadLetters(deadLetter)
		return len(letters) == events
	}, 60*time.Second, 10*time.Millisecond)

	fixed := newUCSServer(t)
	fixed.set(func(u *ucsServer) { u.delay = 5 * time.Millisecond })
	resend := func(args ...string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, append([]string{"ucs", "dead-letter", "resend", deadLetter, "--to", fixed.url(),
			"--address", adminAddr, "--save-every", fmt.Sprint(saveEvery), "--save-interval", "1h"}, args...)...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		return cmd, &out
	}
	received := func() int { return len(fixed.received()) }

	// 1. Through the running Caddy; the Caddy dies mid-resend.
	cli, out := resend()
	require.Eventually(t, func() bool { return received() >= 70 }, 30*time.Second, time.Millisecond, out.String)
	killHard(t, caddy)
	_ = cli.Wait()
	assert.Contains(t, out.String(), "ended the resend without a report", "the command went through the Caddy")
	afterKill := received()

	// 2. From the files, Caddy stopped: SIGTERM stops after the request in flight and saves.
	cli, out = resend()
	require.Eventually(t, func() bool { return received() >= afterKill+50 }, 30*time.Second, time.Millisecond, out.String)
	require.NoError(t, cli.Process.Signal(syscall.SIGTERM))
	err := cli.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, out.String())
	assert.Equal(t, 1, exit.ExitCode(), out.String())
	assert.Contains(t, out.String(), "interrupted: stopped after the request in flight, progress saved", out.String())
	left, _, err := upstream.ReadDeadLetters(deadLetter)
	require.NoError(t, err)
	sent := map[int]int{}
	for _, s := range fixed.received() {
		sent[s.n()]++
	}
	for _, d := range left {
		var ev struct{ N int }
		_, _, _, _, body, err := d.Request()
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(body, &ev))
		assert.Zero(t, sent[ev.N], "event %d was accepted, yet its line stayed after SIGTERM", ev.N)
	}
	assert.Equal(t, events, len(left)+len(sent), "every event is either accepted or still in the file")

	// 3. Through a restarted Caddy, to the end.
	caddy = startBinary(t, bin, dir, cfg, port)
	cli, out = resend()
	require.NoError(t, cli.Wait(), out.String())
	assert.Contains(t, out.String(), "0 refused again", out.String())
	left, _, err = upstream.ReadDeadLetters(deadLetter)
	require.NoError(t, err)
	assert.Empty(t, left)

	sent = map[int]int{}
	for _, s := range fixed.received() {
		sent[s.n()]++
	}
	twice := 0
	for n := range events {
		assert.Contains(t, sent, n, "event %d never reached the UCS", n)
		assert.LessOrEqual(t, sent[n], 2, "event %d", n)
		if sent[n] == 2 {
			twice++
		}
	}
	assert.LessOrEqual(t, twice, saveEvery, "only the batch the kill lost is sent again")
	t.Logf("%d events, %d sent twice (the SIGKILL lost the last batch of at most %d)", events, twice, saveEvery)
}
