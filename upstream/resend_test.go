package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// eventNumber reads the n of an event(n) body.
func eventNumber(t *testing.T, body []byte) int {
	t.Helper()
	var ev struct{ N int }
	require.NoError(t, json.Unmarshal(body, &ev))
	return ev.N
}

// numbersLeft are the events a dead-letter file still holds, sorted.
func numbersLeft(t *testing.T, path string) []int {
	t.Helper()
	left, unreadable, err := ReadDeadLetters(path)
	require.NoError(t, err)
	require.Zero(t, unreadable)
	var ns []int
	for _, d := range left {
		_, _, _, _, body, err := d.Request()
		require.NoError(t, err)
		ns = append(ns, eventNumber(t, body))
	}
	sort.Ints(ns)
	return ns
}

// countingUCS accepts every event and counts how often each arrived.
func countingUCS(t *testing.T, answer func(n int) (int, string)) (*httptest.Server, func() map[int]int) {
	t.Helper()
	var mu sync.Mutex
	seen := map[int]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ N int }
		_ = json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		seen[ev.N]++
		mu.Unlock()
		status, body := http.StatusNoContent, ""
		if answer != nil {
			status, body = answer(ev.N)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, func() map[int]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[int]int{}
		for k, v := range seen {
			out[k] = v
		}
		return out
	}
}

// TestResendSavesAsItGoesSoACrashLosesAtMostOneBatch: the file is rewritten every SaveEvery lines;
// a resend that dies at its second rewrite has removed the first batch, and the next resend sends
// only the rest: no event reaches the UCS more than twice.
func TestResendSavesAsItGoesSoACrashLosesAtMostOneBatch(t *testing.T) {
	path := deadLetterFixture(t, 6)
	srv, seen := countingUCS(t, nil)
	to, err := url.Parse(srv.URL)
	require.NoError(t, err)
	saves := 0
	crash := errors.New("killed")
	rep, err := ResendDeadLetters(context.Background(), path, ResendOptions{To: to, SaveEvery: 2,
		Edit: func(edit func([]byte) ([]byte, error)) error {
			if saves++; saves == 2 {
				return crash // the process dies before this rewrite
			}
			return editFile(path, edit)
		}})
	require.ErrorIs(t, err, crash)
	assert.Equal(t, 4, rep.Accepted, "the second batch was sent before the crash")
	assert.Len(t, numbersLeft(t, path), 4, "the first batch is gone from the file")

	rep, err = ResendDeadLetters(context.Background(), path, ResendOptions{To: to, SaveEvery: 2})
	require.NoError(t, err)
	assert.Equal(t, ResendReport{Selected: 4, Accepted: 4, Kept: 0, Saves: 2}, *rep)
	assert.Empty(t, numbersLeft(t, path))
	for n, times := range seen() {
		assert.LessOrEqual(t, times, 2, "event %d", n)
	}
	assert.Len(t, seen(), 6)
}

// TestResendUpdatesTheLineOfARefusedEvent: an event refused again keeps its record, with the new
// time, status, answer and one more attempt; the result carries the UCS's message.
func TestResendUpdatesTheLineOfARefusedEvent(t *testing.T) {
	path := deadLetterFixture(t, 1)
	before, _, err := ReadDeadLetters(path)
	require.NoError(t, err)
	srv, _ := countingUCS(t, func(int) (int, string) {
		return http.StatusUnprocessableEntity, `{"message":"still wrong <here>","exception":"InvalidAttributeException"}`
	})
	to, _ := url.Parse(srv.URL)
	var results []ResendResult
	rep, err := ResendDeadLetters(context.Background(), path, ResendOptions{To: to,
		OnResult: func(r ResendResult) { results = append(results, r) }})
	require.NoError(t, err)
	assert.Equal(t, ResendReport{Selected: 1, Refused: 1, Kept: 1, Saves: 1}, *rep)
	require.Len(t, results, 1)
	assert.Equal(t, ResendRefused, results[0].Outcome)
	assert.Equal(t, "still wrong <here>", results[0].Message)

	after, _, err := ReadDeadLetters(path)
	require.NoError(t, err)
	require.Len(t, after, 1)
	assert.Equal(t, http.StatusUnprocessableEntity, after[0].Status)
	assert.Equal(t, "still wrong <here>", after[0].Message())
	assert.Equal(t, "InvalidAttributeException", after[0].Exception())
	assert.Equal(t, before[0].Attempts+1, after[0].Attempts)
	assert.Equal(t, append(append([]int(nil), before[0].Statuses...), 422), after[0].Statuses)
	assert.NotEqual(t, before[0].FailedAt, after[0].FailedAt)
	assert.Equal(t, string(before[0].Record), string(after[0].Record), "the record is kept byte for byte")
}

// TestResendStopsAfterUnavailableAnswersInARow: with the UCS away, the resend gives up after
// MaxUnavailable lines instead of trying every one, and changes nothing.
func TestResendStopsAfterUnavailableAnswersInARow(t *testing.T) {
	path := deadLetterFixture(t, 8)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	srv, seen := countingUCS(t, func(int) (int, string) { return http.StatusServiceUnavailable, "" })
	to, _ := url.Parse(srv.URL)
	rep, err := ResendDeadLetters(context.Background(), path, ResendOptions{To: to, MaxUnavailable: 3})
	require.NoError(t, err)
	assert.Equal(t, ResendReport{Selected: 8, Unavailable: 3, NotTried: 5, Kept: 8, Stopped: StopUnreachable}, *rep)
	assert.Len(t, seen(), 3)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after)
}

// TestResendInterruptedFinishesTheRequestInFlightAndSaves: a cancelled context stops the resend
// after the request it is sending, whose outcome is saved with the others.
func TestResendInterruptedFinishesTheRequestInFlightAndSaves(t *testing.T) {
	path := deadLetterFixture(t, 5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := 0
	srv, _ := countingUCS(t, func(int) (int, string) {
		if sent++; sent == 2 {
			cancel() // the signal arrives while the second request is in flight
		}
		return http.StatusNoContent, ""
	})
	to, _ := url.Parse(srv.URL)
	rep, err := ResendDeadLetters(ctx, path, ResendOptions{To: to})
	require.NoError(t, err)
	assert.Equal(t, ResendReport{Selected: 5, Accepted: 2, NotTried: 3, Kept: 3, Saves: 1, Stopped: StopInterrupted}, *rep)
	assert.Len(t, numbersLeft(t, path), 3)
}

// runningSpoolWithDeadLetters is a spool whose UCS rejected events 0..4 (its dead letter, at path)
// and is away again with events 5..44 spooled: once sim takes calls again, the replay dead-letters
// those while a test resends the first five.
func runningSpoolWithDeadLetters(t *testing.T, tune spoolTuning) (*ucsSim, *Spool, string) {
	t.Helper()
	sim, srv := newUCSSim(t)
	sim.down = true
	sim.reject = func(string) (int, string) { return http.StatusBadRequest, genesysError }
	s := openTunedSpool(t, t.TempDir(), srv.URL, tune, nil)
	submitSpooled(t, s, 0, 5)
	sim.set(func(u *ucsSim) { u.down = false })
	waitDrained(t, s)
	path := s.DeadLetterPath()
	require.Equal(t, []int{0, 1, 2, 3, 4}, numbersLeft(t, path))
	sim.set(func(u *ucsSim) { u.down = true })
	submitSpooled(t, s, 5, 45)
	return sim, s, path
}

// TestEditDeadLetterKeepsTheSpoolsAppends: a resend rewriting the dead letter of a running spool,
// a line at a time, while its replay dead-letters more events: every appended line survives the
// rewrites, and exactly the resent ones are gone.
func TestEditDeadLetterKeepsTheSpoolsAppends(t *testing.T) {
	sim, s, path := runningSpoolWithDeadLetters(t, spoolTuning{})
	accepting, _ := countingUCS(t, nil)
	to, _ := url.Parse(accepting.URL)
	end, ok := s.TryResend()
	require.True(t, ok)
	_, again := s.TryResend()
	assert.False(t, again, "one resend at a time")
	done := make(chan error, 1)
	go func() {
		defer end()
		_, err := ResendDeadLetters(context.Background(), path, ResendOptions{To: to, SaveEvery: 1, Edit: s.EditDeadLetter})
		done <- err
	}()
	sim.set(func(u *ucsSim) { u.down = false }) // the replay dead-letters 5..44 meanwhile
	require.NoError(t, <-done)
	waitDrained(t, s)
	var want []int
	for n := 5; n < 45; n++ {
		want = append(want, n)
	}
	assert.Equal(t, want, numbersLeft(t, path))
}

// TestTheDeadLetterDoesNotRotateUnderAResend: the replay dead-letters 40 events while a resend
// through the running spool removes the 5 it read. Were the dead letter to rotate meanwhile, the
// lines the resend removes would be in a rotated file its rewrite never looks at, and stay to be
// sent again; so it does not rotate until the resend ends, and rotates again after.
func TestTheDeadLetterDoesNotRotateUnderAResend(t *testing.T) {
	sim, s, path := runningSpoolWithDeadLetters(t, spoolTuning{deadLetterSize: 4096})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(40 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(slow.Close)
	to, _ := url.Parse(slow.URL)
	end, ok := s.TryResend()
	require.True(t, ok)
	done := make(chan error, 1)
	go func() {
		defer end()
		_, err := ResendDeadLetters(context.Background(), path, ResendOptions{To: to, SaveEvery: 1, Edit: s.EditDeadLetter})
		done <- err
	}()
	sim.set(func(u *ucsSim) { u.down = false }) // the replay dead-letters 5..44 meanwhile, ~27 KiB
	waitDrained(t, s)
	require.NoError(t, <-done)
	files, err := wal.Files(path)
	require.NoError(t, err)
	var left []int
	for _, f := range files {
		left = append(left, numbersLeft(t, f)...)
	}
	sort.Ints(left)
	var want []int
	for n := 5; n < 45; n++ {
		want = append(want, n)
	}
	assert.Equal(t, want, left, "the resent events are gone from every file, the new ones kept")

	// After the resend the dead letter rotates at its size again.
	sim.set(func(u *ucsSim) { u.down = true })
	submitSpooled(t, s, 45, 47)
	sim.set(func(u *ucsSim) { u.down = false })
	waitDrained(t, s)
	after, err := wal.Files(path)
	require.NoError(t, err)
	assert.Greater(t, len(after), len(files), "rotating again")
}
