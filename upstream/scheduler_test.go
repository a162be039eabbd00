package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// laneUCS is an upstream that takes lane events ({"lane":…,"n":…}) after a delay, records them in
// arrival order and tracks the highest number of calls it had at once. While down it answers 503;
// hold, when set, answers a lane's events with its status and Retry-After instead.
type laneUCS struct {
	delay time.Duration
	down  atomic.Bool

	mu     sync.Mutex
	got    []laneEvent
	now    int // calls being served
	peak   int
	hold   map[string]int // lane → status answered to it
	frozen bool           // answers 503 without recording, like a crashed gateway's peer
}

type laneEvent struct {
	Lane string `json:"lane"`
	N    int    `json:"n"`
}

func newLaneUCS(t testing.TB, delay time.Duration) (*laneUCS, *httptest.Server) {
	u := &laneUCS{delay: delay, hold: map[string]int{}}
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	return u, srv
}

func (u *laneUCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ev laneEvent
	_ = json.Unmarshal(body, &ev)
	if u.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	u.mu.Lock()
	if status := u.hold[ev.Lane]; status != 0 {
		u.mu.Unlock()
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(status)
		return
	}
	u.now++
	u.peak = max(u.peak, u.now)
	u.mu.Unlock()
	time.Sleep(u.delay)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.now--
	if u.frozen {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	u.got = append(u.got, ev)
	w.WriteHeader(http.StatusNoContent)
}

func (u *laneUCS) received() []laneEvent {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]laneEvent(nil), u.got...)
}

func laneRequest(lane string, n int) ForwardRequest {
	return ForwardRequest{
		Path:   "/genesys/1/cs/services/" + lane + "/tasks/" + strconv.Itoa(n) + "/end",
		Header: http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}},
		Body:   fmt.Appendf(nil, `{"lane":%q,"n":%d}`, lane, n),
		Lane:   lane,
	}
}

// spoolLanes stores events events of each of lanes lanes during an outage, interleaved as a
// contact centre sends them.
func spoolLanes(t testing.TB, s *Spool, lanes, events int) {
	t.Helper()
	for n := range events {
		for l := range lanes {
			resp, err := s.Submit(context.Background(), laneRequest("svc"+strconv.Itoa(l), n))
			require.NoError(t, err)
			require.True(t, resp.Spooled)
		}
	}
}

// checkLanes asserts that every event of every lane arrived exactly once, in order per lane, and
// returns the duplicates.
func checkLanes(t testing.TB, got []laneEvent, lanes, events int) {
	t.Helper()
	next := map[string]int{}
	for _, ev := range got {
		require.Equal(t, next[ev.Lane], ev.N, "lane %s out of order or duplicated", ev.Lane)
		next[ev.Lane]++
	}
	require.Len(t, next, lanes)
	for l, n := range next {
		assert.Equal(t, events, n, "lane %s", l)
	}
}

func TestReplayDeliversLanesConcurrentlyInOrderPerService(t *testing.T) {
	ucs, srv := newLaneUCS(t, 10*time.Millisecond)
	ucs.down.Store(true)
	s := openTestSpool(t, t.TempDir(), srv.URL, nil)
	const lanes, events = 150, 10
	spoolLanes(t, s, lanes, events)
	start := time.Now()
	ucs.down.Store(false)
	waitDrained(t, s)
	took := time.Since(start)
	got := ucs.received()
	checkLanes(t, got, lanes, events)
	ucs.mu.Lock()
	peak := ucs.peak
	ucs.mu.Unlock()
	assert.Greater(t, peak, 1, "lanes go in parallel")
	assert.LessOrEqual(t, peak, DefaultReplayConcurrencyMax)
	t.Logf("%d events of %d services drained in %v against a 10ms upstream: %.0f events/s, peak %d calls at once",
		len(got), lanes, took.Round(time.Millisecond), float64(len(got))/took.Seconds(), peak)
}

// TestHeldLaneDoesNotDelayTheOthers: one service's events are answered 429 with an hour's
// Retry-After; every other service's events still arrive, and a new event of an idle service goes
// straight to the upstream while a new event of the held one queues behind its lane.
func TestHeldLaneDoesNotDelayTheOthers(t *testing.T) {
	ucs, srv := newLaneUCS(t, time.Millisecond)
	ucs.down.Store(true)
	ucs.hold["svc0"] = http.StatusTooManyRequests
	s := openTestSpool(t, t.TempDir(), srv.URL, nil)
	spoolLanes(t, s, 20, 5)
	ucs.down.Store(false)
	require.Eventually(t, func() bool { n, _ := s.Depth(); return n == 5 }, 20*time.Second, time.Millisecond,
		"everything but the held lane drains")
	for _, ev := range ucs.received() {
		assert.NotEqual(t, "svc0", ev.Lane)
	}

	resp, err := s.Submit(context.Background(), laneRequest("svc7", 5))
	require.NoError(t, err)
	assert.False(t, resp.Spooled, "a service with nothing waiting goes direct")
	assert.Equal(t, http.StatusNoContent, resp.Status)

	resp, err = s.Submit(context.Background(), laneRequest("svc0", 5))
	require.NoError(t, err)
	assert.True(t, resp.Spooled, "a service with events waiting queues behind them")
	n, _ := s.Depth()
	assert.Equal(t, 6, n)
}

// TestOutageStoresWithoutDirectAttempts: once deliveries keep failing for unavailability, the
// spool stops trying the upstream for each new event (callers are not held for the timeout), and
// the replay sends one probe at a time; the first answer brings direct delivery back. The
// OnUpstreamDown hook (the metric operators alert on) hears both turns.
func TestOutageStoresWithoutDirectAttempts(t *testing.T) {
	var calls atomic.Int64
	var up atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if !up.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	var mu sync.Mutex
	var turns []bool
	downTurns := func() []bool {
		mu.Lock()
		defer mu.Unlock()
		return append([]bool(nil), turns...)
	}
	s := openTestSpool(t, t.TempDir(), srv.URL, func(o *SpoolOptions) {
		o.Replay.MinBackoff, o.Replay.MaxBackoff = 200*time.Millisecond, 200*time.Millisecond
		o.OnUpstreamDown = func(down bool) {
			mu.Lock()
			turns = append(turns, down)
			mu.Unlock()
		}
	})
	for l := range 3 { // three services, each tried directly: the third failure opens the breaker
		resp, err := s.Submit(context.Background(), laneRequest("svc"+strconv.Itoa(l), 0))
		require.NoError(t, err)
		require.True(t, resp.Spooled)
	}
	before, start := calls.Load(), time.Now()
	for l := 3; l < 100; l++ {
		resp, err := s.Submit(context.Background(), laneRequest("svc"+strconv.Itoa(l), 0))
		require.NoError(t, err)
		require.True(t, resp.Spooled)
	}
	// The probes go one at a time, at least half the 200ms backoff apart (its jitter): a loaded
	// machine that takes longer over the 97 submissions sees more of them, never one per event.
	probes := int64(3 + time.Since(start)/(100*time.Millisecond))
	assert.LessOrEqual(t, calls.Load()-before, probes, "97 new events made only probes, no direct attempts")
	assert.Equal(t, []bool{true}, downTurns(), "the third failure in a row reports the upstream down, once")

	up.Store(true)
	waitDrained(t, s)
	resp, err := s.Submit(context.Background(), laneRequest("svc0", 1))
	require.NoError(t, err)
	assert.False(t, resp.Spooled, "after the outage events go direct again")
	assert.Equal(t, []bool{true, false}, downTurns(), "the first answer reports it up again")
}

// TestCrashMidReplayResendsAtMostTheWindow takes a copy of the spool directory in the middle of a
// concurrent replay, as a kill -9 would leave it, with the upstream's record frozen at that
// moment; the copy, opened by a new spool, sends every event the upstream did not record, and
// sends again at most the in-flight window of those it did.
func TestCrashMidReplayResendsAtMostTheWindow(t *testing.T) {
	for round := range 2 {
		t.Run("crash "+strconv.Itoa(round+1), func(t *testing.T) {
			const lanes, events, window = 40, 15, 16
			ucs, srv := newLaneUCS(t, 3*time.Millisecond)
			ucs.down.Store(true)
			dir := t.TempDir()
			s := openTestSpool(t, dir, srv.URL, func(o *SpoolOptions) { o.Replay.Concurrency = window })
			spoolLanes(t, s, lanes, events)
			ucs.down.Store(false)
			require.Eventually(t, func() bool { return len(ucs.received()) >= 150*(round+1) },
				20*time.Second, time.Millisecond)

			ucs.mu.Lock() // nothing is recorded while the files are copied
			crashed := filepath.Join(t.TempDir(), "spool")
			require.NoError(t, os.CopyFS(crashed, os.DirFS(dir)))
			before := append([]laneEvent(nil), ucs.got...)
			ucs.frozen = true // the dead gateway's deliveries in flight never land
			ucs.mu.Unlock()
			require.NoError(t, s.Close())
			require.NoError(t, os.Remove(filepath.Join(crashed, ".lock")))

			ucs2, srv2 := newLaneUCS(t, time.Millisecond)
			s2 := openTestSpool(t, crashed, srv2.URL, nil)
			waitDrained(t, s2)
			after := ucs2.received()

			seen := map[laneEvent]int{}
			for _, ev := range append(before, after...) {
				seen[ev]++
			}
			duplicates := 0
			for l := range lanes {
				for n := range events {
					ev := laneEvent{"svc" + strconv.Itoa(l), n}
					require.Positive(t, seen[ev], "event %v was lost", ev)
					duplicates += seen[ev] - 1
				}
			}
			t.Logf("%d delivered before the crash, %d after it, %d duplicates (window %d)",
				len(before), len(after), duplicates, window)
			assert.LessOrEqual(t, duplicates, window)
			// After the restart each lane is still in order.
			next := map[string]int{}
			for _, ev := range after {
				assert.GreaterOrEqual(t, ev.N, next[ev.Lane], "lane %s", ev.Lane)
				next[ev.Lane] = ev.N
			}
		})
	}
}

func TestFullSpoolAnswerCarriesRetryAfterFromTheDrainRate(t *testing.T) {
	ucs, srv := newLaneUCS(t, 0)
	ucs.down.Store(true)
	s := openTestSpool(t, t.TempDir(), srv.URL, func(o *SpoolOptions) {
		o.MaxBytes = 4 << 10
		o.Replay.MaxBackoff = 7 * time.Second
	})
	var full *SpoolFullError
	for n := 0; ; n++ {
		_, err := s.Submit(context.Background(), laneRequest("svc1", n))
		if err != nil {
			require.ErrorAs(t, err, &full)
			require.ErrorIs(t, err, ErrSpoolFull)
			break
		}
		require.Less(t, n, 1000)
	}
	// Nothing has drained: the estimate is the longest backoff, when the next probe comes at the latest.
	assert.Equal(t, 7*time.Second, full.RetryAfter)

	var m rateMeter
	start := time.Unix(1_000, 0)
	for i := range 5 {
		m.add(start.Add(time.Duration(i)*time.Second), 9000)
	}
	assert.InDelta(t, 5*9000/9.0, m.rate(start.Add(5*time.Second)), 1, "five full seconds of the last nine")
	assert.Zero(t, m.rate(start.Add(time.Minute)), "old seconds drop out")
}
