package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// replayUCS is the stub UCS of the journal replay tests: 10 ms per call; during the outage it
// answers 503 or resets the connection by turns; an event picked by tooMany gets one 429 with
// Retry-After first; an event picked by reject gets a Genesys 400 every time.
type replayUCS struct {
	latency          time.Duration
	outage           time.Duration // from the first call
	tooMany, reject  func(path string) bool
	mu               sync.Mutex
	first            time.Time
	delivered        []string        // paths answered 204, in order
	told429          map[string]bool // paths answered 429 once
	calls, failures  atomic.Int64
	sawAuthorization atomic.Int64
}

func newReplayUCS(t testing.TB) (*replayUCS, *httptest.Server) {
	u := &replayUCS{latency: 10 * time.Millisecond, told429: map[string]bool{}}
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	return u, srv
}

func (u *replayUCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.ReadAll(r.Body)
	n := u.calls.Add(1)
	if r.Header.Get("Authorization") == "Basic cmVwbGF5OnRlc3Q=" {
		u.sawAuthorization.Add(1)
	}
	time.Sleep(u.latency)
	u.mu.Lock()
	if u.first.IsZero() {
		u.first = time.Now()
	}
	down := time.Since(u.first) < u.outage
	first429 := u.tooMany != nil && u.tooMany(r.URL.Path) && !u.told429[r.URL.Path]
	if first429 && !down {
		u.told429[r.URL.Path] = true
	}
	u.mu.Unlock()
	switch {
	case down && n%2 == 0:
		u.failures.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	case down:
		u.failures.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close() // a reset: no answer at all
		}
	case first429:
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	case u.reject != nil && u.reject(r.URL.Path):
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"message":"disposition 9999 is not a DispositionCode value","exception":"InvalidBusinessAttributeException"}`)
	default:
		u.mu.Lock()
		u.delivered = append(u.delivered, r.URL.Path)
		u.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}
}

func (u *replayUCS) deliveredPaths() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.delivered...)
}

func (u *replayUCS) distinct() int {
	seen := map[string]bool{}
	for _, p := range u.deliveredPaths() {
		seen[p] = true
	}
	return len(seen)
}

// writeReplayJournal journals events task.end events over services, in rounds (event n of every
// service, then n+1), and returns its path.
func writeReplayJournal(t testing.TB, dir string, services, events int) string {
	path := filepath.Join(dir, "events.jsonl")
	j, err := upstream.OpenJournal(path, upstream.JournalOptions{NoSync: true})
	require.NoError(t, err)
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	for n := range events {
		for s := range services {
			at := base.Add(time.Duration(n*services+s) * time.Millisecond)
			body := fmt.Sprintf(`{"timestamp":"%s","disposition":1003,"attached":"%s"}`, at.Format("2006-01-02T15:04:05.000Z"), strings.Repeat("x", 40))
			require.NoError(t, j.AppendEvent(at, upstream.TaskEndIDs(fmt.Sprint(s), int64(n)), []byte(body)))
		}
	}
	require.NoError(t, j.Close())
	return path
}

func TestJournalReplayKilledTwiceDeliversEveryEventOnceInServiceOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const services, events, concurrency = 2000, 10, 64
	bin := buildCaddy(t)
	dir := t.TempDir()
	journal := writeReplayJournal(t, dir, services, events)
	ucs, srv := newReplayUCS(t)
	ucs.outage = 1500 * time.Millisecond
	ucs.tooMany = func(p string) bool { return strings.HasSuffix(p, "7/tasks/4/end") } // 200 events
	rejected := map[string]bool{}
	for _, s := range []int{3, 333, 1001, 1999} {
		rejected[fmt.Sprintf("/genesys/1/cs/services/%d/tasks/5/end", s)] = true
	}
	ucs.reject = func(p string) bool { return rejected[p] }

	// stdout is the --json summary; stderr the progress and Caddy's log line of a status 1.
	run := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(bin, "ucs", "journal", "replay", journal, "--to", srv.URL,
			"--header", "Authorization: Basic cmVwbGF5OnRlc3Q=", "--concurrency", fmt.Sprint(concurrency), "--json")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, io.Discard
		require.NoError(t, cmd.Start())
		return cmd, &out
	}
	killAfter := func(distinct int) {
		cmd, out := run()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.After(60 * time.Second)
		for ucs.distinct() < distinct {
			select {
			case err := <-exited:
				t.Fatalf("the replay ended before the kill: %v\n%s", err, out)
			case <-deadline:
				_ = cmd.Process.Kill()
				t.Fatalf("only %d of %d delivered\n%s", ucs.distinct(), distinct, out)
			case <-time.After(5 * time.Millisecond):
			}
		}
		require.NoError(t, cmd.Process.Kill()) // SIGKILL
		<-exited
	}
	killAfter(4000)
	before := len(ucs.deliveredPaths())
	killAfter(12000)
	require.Greater(t, len(ucs.deliveredPaths()), before)

	cmd, out := run()
	err := cmd.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", out)
	assert.Equal(t, 1, exit.ExitCode(), "events went to the dead letter: %s", out)
	var sum journalTotals
	require.NoError(t, json.Unmarshal(lastLine(out.Bytes()), &sum), "%s", out)
	assert.True(t, sum.Complete)
	assert.Equal(t, len(rejected), sum.DeadLetteredInReplay, "the killed runs' dead letters count too")
	assert.Equal(t, 2*concurrency, sum.PossibleDuplicates, "two interruptions")

	// Every event delivered or dead-lettered with its reason.
	delivered := ucs.deliveredPaths()
	got := map[string]int{}
	for _, p := range delivered {
		got[p]++
	}
	letters, unreadable, err := upstream.ReadDeadLetters(journal + ".dead-letter.jsonl")
	assert.Zero(t, unreadable)
	require.NoError(t, err)
	require.Len(t, letters, len(rejected))
	for _, d := range letters {
		_, p, _, _, _, err := d.Request()
		require.NoError(t, err)
		assert.True(t, rejected[p], p)
		assert.Equal(t, 400, d.Status)
		assert.Contains(t, d.Message(), "not a DispositionCode value")
		got[p]++
	}
	assert.Len(t, got, services*events, "every journaled event")
	dupes := len(delivered) - (services*events - len(rejected))
	t.Logf("%d calls, %d failed for the outage, %d duplicates after two kills", ucs.calls.Load(), ucs.failures.Load(), dupes)
	assert.LessOrEqual(t, dupes, 2*concurrency, "duplicates ≤ concurrency per kill")
	assert.Positive(t, ucs.failures.Load(), "the outage happened")
	assert.Equal(t, ucs.calls.Load(), ucs.sawAuthorization.Load(), "--header on every call")

	// First deliveries in per-service order.
	firstArrivalsInOrder(t, delivered, delivered, nil)

	// A further run sends nothing.
	calls := ucs.calls.Load()
	cmd, out = run()
	require.NoError(t, cmd.Wait(), "%s", out)
	assert.Equal(t, calls, ucs.calls.Load())
	require.NoError(t, json.Unmarshal(lastLine(out.Bytes()), &sum), "%s", out)
	assert.Zero(t, sum.Delivered)
	assert.True(t, sum.Complete)
}

func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

func TestJournalReplayCommandDryRunCountsAndSendsNothing(t *testing.T) {
	dir := t.TempDir()
	journal := writeReplayJournal(t, dir, 30, 2)
	var stdout, stderr bytes.Buffer
	code := runJournalReplay(context.Background(), []string{dir}, journalFlags{dryRun: true, operations: []string{"task.end"},
		where: []string{"service=7", "service=8"}, concurrency: "4", maxConcurrency: 256}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	out := stdout.String()
	assert.Contains(t, out, "would send   4 events (56 skipped by filters")
	assert.Contains(t, out, "operation    task.end     4")
	assert.Contains(t, out, "first        POST /genesys/1/cs/services/7/tasks/0/end {")
	_, err := os.Stat(journal + ".replay-state.json")
	assert.ErrorIs(t, err, os.ErrNotExist, "a dry run writes no state")
}

func TestJournalReplayCommandRefusesBadFlags(t *testing.T) {
	dir := t.TempDir()
	journal := writeReplayJournal(t, dir, 1, 1)
	for _, tc := range []struct {
		name string
		f    journalFlags
		want string
	}{
		{"no URL", journalFlags{concurrency: "1", maxConcurrency: 256}, "--to"},
		{"an operation never journaled", journalFlags{dryRun: true, concurrency: "1", maxConcurrency: 256, operations: []string{"task.start"}}, "not a journaled operation"},
		{"a where that is not a service", journalFlags{dryRun: true, concurrency: "1", maxConcurrency: 256, where: []string{"status=400"}}, "want service=<id>"},
		{"a since that is no time", journalFlags{dryRun: true, concurrency: "1", maxConcurrency: 256, since: "yesterday"}, "--since"},
		{"a header without a colon", journalFlags{dryRun: true, concurrency: "1", maxConcurrency: 256, headers: []string{"Authorization"}}, "Name: value"},
		{"a concurrency of 0", journalFlags{dryRun: true, concurrency: "0", maxConcurrency: 256}, "--concurrency: want auto or a number"},
		{"a concurrency that is a word", journalFlags{dryRun: true, concurrency: "fast", maxConcurrency: 256}, "--concurrency: want auto or a number"},
		{"an adaptive maximum of 0", journalFlags{dryRun: true, concurrency: "auto"}, "--max-concurrency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 2, runJournalReplay(context.Background(), []string{journal}, tc.f, &stdout, &stderr))
			assert.Contains(t, stderr.String(), tc.want)
		})
	}
}

func TestJournalReplayCommandPrintsPlainProgressWhenNotATerminal(t *testing.T) {
	ucs, srv := newReplayUCS(t)
	ucs.latency = 20 * time.Millisecond
	journal := writeReplayJournal(t, t.TempDir(), 10, 10)
	var stdout, stderr bytes.Buffer
	code := runJournalReplay(context.Background(), []string{journal}, journalFlags{to: srv.URL, concurrency: "auto", maxConcurrency: 256,
		progressEvery: 50 * time.Millisecond, maxAttempts: 10, maxRetryAge: time.Hour, timeout: time.Second}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	assert.Regexp(t, `(?m)^journal replay: \d+/100 +\d+% \d+ ev/s ETA \S+ dead 0 oldest waiting (2026-03-01T08:00:\d\dZ|none)$`, stderr.String())
	assert.NotContains(t, stderr.String(), "\r", "no bar drawing off a terminal")
	assert.Contains(t, stdout.String(), "delivered    100")
}

func TestJournalReplayCommandDrawsABarOnATerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildCaddy(t)
	ucs, srv := newReplayUCS(t)
	ucs.latency = 20 * time.Millisecond
	journal := writeReplayJournal(t, t.TempDir(), 10, 20)
	cmd := exec.Command(bin, "ucs", "journal", "replay", journal, "--to", srv.URL, "--concurrency", "4")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	start := time.Now()
	tty, err := pty.StartWithAttrs(cmd, &pty.Winsize{Rows: 24, Cols: 120}, nil)
	require.NoError(t, err)
	defer tty.Close()
	var screen bytes.Buffer
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(&screen, tty) // ends with EIO once the process is gone
		close(copied)
	}()
	require.NoError(t, cmd.Wait())
	elapsed := time.Since(start)
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	out := screen.String()
	assert.Contains(t, out, "\r\x1b[K[", "redrawn in place")
	assert.Regexp(t, `\[=+>? *\] \d+/200 +\d+% \d+ ev/s ETA \S+ dead 0 oldest waiting`, out)
	assert.Contains(t, out, "200/200 100%", "the last redraw shows the end")
	// At most 10 redraws a second, and one at the end.
	assert.LessOrEqual(t, strings.Count(out, "\r\x1b[K"), int(elapsed.Seconds()*10)+1)
	assert.Contains(t, stdout.String(), "delivered    200")
}

func TestJournalReplayCommandInterruptedExits130AndTheNextRunResumes(t *testing.T) {
	ucs, srv := newReplayUCS(t)
	ucs.latency = 20 * time.Millisecond
	journal := writeReplayJournal(t, t.TempDir(), 5, 20)
	f := journalFlags{to: srv.URL, concurrency: "2", maxConcurrency: 256, maxAttempts: 10, maxRetryAge: time.Hour, timeout: time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for ucs.distinct() < 10 {
			time.Sleep(time.Millisecond)
		}
		cancel() // what Ctrl-C does through signal.NotifyContext
	}()
	var stdout, stderr bytes.Buffer
	require.Equal(t, 130, runJournalReplay(ctx, []string{journal}, f, &stdout, &stderr), stderr.String())
	assert.Contains(t, stderr.String(), "interrupted: run the same command again to resume")
	assert.Regexp(t, `state +\S+ \(interrupted, \d+ events left\)`, stdout.String())

	stdout.Reset()
	require.Equal(t, 0, runJournalReplay(context.Background(), []string{journal}, f, &stdout, &stderr), stderr.String())
	assert.Equal(t, 100, ucs.distinct())
	assert.Contains(t, stdout.String(), "duplicates   at most 2 events")
}
