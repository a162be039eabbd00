package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// firstDeliveries checks that every event of every lane arrived, and that the first arrival of
// each is in the lane's order (a restart may send some again: at least once, not exactly once).
func firstDeliveries(t *testing.T, got []laneEvent, lanes, events int) (duplicates int) {
	t.Helper()
	next := map[string]int{}
	for _, ev := range got {
		if ev.N < next[ev.Lane] {
			duplicates++
			continue
		}
		require.Equal(t, next[ev.Lane], ev.N, "lane %s out of order", ev.Lane)
		next[ev.Lane]++
	}
	require.Len(t, next, lanes)
	for l, n := range next {
		assert.Equal(t, events, n, "lane %s", l)
	}
	return duplicates
}

// TestADayLongOutageEndsWithEveryEventDeliveredInOrder: the UCS is down for the equivalent of 24 h
// of retries at the default backoff (the replay's clock skips its waits), then comes back. The
// worker never panics, and every event arrives once, in order per service.
func TestADayLongOutageEndsWithEveryEventDeliveredInOrder(t *testing.T) {
	ucs, srv := newLaneUCS(t, 0)
	ucs.down.Store(true)
	var restarts atomic.Int32
	s := openTunedSpool(t, t.TempDir(), srv.URL, spoolTuning{skipWaits: true}, func(o *SpoolOptions) {
		o.Replay = ReplayPolicy{} // the defaults: 250ms to 30s
		o.OnRestart = func() { restarts.Add(1) }
	})
	const lanes, events = 5, 4
	spoolLanes(t, s, lanes, events)
	// A day of probes at the default backoff: one per 15s to 30s once it reached its cap.
	dayOfProbes := int(24 * time.Hour / (DefaultMaxBackoff * 3 / 4))
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.breaker.probes >= dayOfProbes
	}, 2*time.Minute, 10*time.Millisecond, "a day of failed probes")
	assert.GreaterOrEqual(t, time.Duration(s.skew.Load()), 24*time.Hour, "the replay's clock passed a day")
	assert.Zero(t, restarts.Load(), "the worker never panicked")

	ucs.down.Store(false)
	waitDrained(t, s)
	checkLanes(t, ucs.received(), lanes, events)
}

// TestAPanickingReplayWorkerRestartsFromTheDurablePositionLosingNothing: the worker panics while
// applying a delivery's result; it is logged at error with its stack, counted, and restarted, and
// every event still arrives, the first arrivals in order.
func TestAPanickingReplayWorkerRestartsFromTheDurablePositionLosingNothing(t *testing.T) {
	ucs, srv := newLaneUCS(t, time.Millisecond)
	ucs.down.Store(true)
	core, logs := observer.New(zapcore.InfoLevel)
	var finishes, restarts atomic.Int32
	s := openTunedSpool(t, t.TempDir(), srv.URL, spoolTuning{onFinish: func() {
		if finishes.Add(1) == 25 {
			panic("injected: a bug in the worker")
		}
	}}, func(o *SpoolOptions) {
		o.Logger = zap.New(core)
		o.OnRestart = func() { restarts.Add(1) }
	})
	const lanes, events = 4, 30
	spoolLanes(t, s, lanes, events)
	ucs.down.Store(false)
	s.poke()
	waitDrained(t, s)

	dups := firstDeliveries(t, ucs.received(), lanes, events)
	assert.LessOrEqual(t, dups, DefaultReplayConcurrencyMax, "only what was finished and not yet on disk is sent again")
	assert.Equal(t, int32(1), restarts.Load())
	panics := logs.FilterMessage("spool replay worker panicked; restarting it from the durable position").All()
	require.Len(t, panics, 1)
	assert.Equal(t, zapcore.ErrorLevel, panics[0].Level)
	fields := panics[0].ContextMap()
	assert.Equal(t, "injected: a bug in the worker", fields["panic"])
	assert.Contains(t, fields["stack"], "(*scheduler).finish", "the stack of the panic, not of the recovery")

	// The restarted worker takes new events as the first one did.
	for n := range 3 {
		_, err := s.Submit(context.Background(), laneRequest("svc-late", n))
		require.NoError(t, err)
	}
	waitDrained(t, s)
	late := numbersOf(ucs.received(), "svc-late")
	assert.Equal(t, []int{0, 1, 2}, late, strconv.Itoa(len(late)))
}

// TestADayLongOutageThenADayWithOneServiceStuck: the UCS is down for a day of retries, then comes
// back for every service but one, which it answers 503 for another day, while callers go on
// sending events to the others. The worker never panics; the others' events, spooled and new,
// arrive once and in order while the stuck one waits; once it is taken again, its events arrive
// once and in order too.
func TestADayLongOutageThenADayWithOneServiceStuck(t *testing.T) {
	inner, _ := newLaneUCS(t, 0)
	inner.down.Store(true)
	const stuck = "svc3"
	ucs := &switchUCS{ucs: inner, stuck: map[string]bool{stuck: true}}
	var stuckCalls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/services/"+stuck+"/") {
			stuckCalls.Add(1)
		}
		ucs.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	var restarts atomic.Int32
	s := openTunedSpool(t, t.TempDir(), srv.URL, spoolTuning{skipWaits: true}, func(o *SpoolOptions) {
		o.Replay = ReplayPolicy{} // the defaults: 250ms to 30s, no attempt or age limit
		o.OnRestart = func() { restarts.Add(1) }
	})
	const lanes, events = 6, 4
	spoolLanes(t, s, lanes, events)
	day := int(24 * time.Hour / (DefaultMaxBackoff * 3 / 4))
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.breaker.probes >= day
	}, 2*time.Minute, 10*time.Millisecond, "a day of failed probes")

	// The UCS is back but for the stuck service; the callers go on sending, a pass of events
	// while the stuck service's retries pass another day on the replay's clock.
	inner.down.Store(false)
	back := time.Duration(s.skew.Load())
	more := 0
	require.Eventually(t, func() bool {
		for l := range lanes {
			if lane := "svc" + strconv.Itoa(l); lane != stuck {
				_, err := s.Submit(context.Background(), laneRequest(lane, events+more))
				require.NoError(t, err)
			}
		}
		more++
		return time.Duration(s.skew.Load())-back >= 24*time.Hour
	}, 2*time.Minute, 20*time.Millisecond, "a second day passes on the replay's clock")
	total := events + more
	require.Eventually(t, func() bool { return len(inner.received()) >= (lanes-1)*total }, 20*time.Second, 5*time.Millisecond,
		"every event of the other services arrives while the stuck one waits")
	assert.Greater(t, stuckCalls.Load(), int64(100), "the stuck service is tried again through the day")
	assert.Zero(t, restarts.Load(), "the worker never panicked")
	t.Logf("%d events for each of the %d other services; %d calls to the stuck service; replay clock ahead by %s",
		total, lanes-1, stuckCalls.Load(), time.Duration(s.skew.Load()).Round(time.Hour))
	got := inner.received()
	for l := range lanes {
		lane := "svc" + strconv.Itoa(l)
		if lane == stuck {
			assert.Empty(t, numbersOf(got, lane), "nothing of the stuck service arrived while it was stuck")
			continue
		}
		want := make([]int, total)
		for i := range want {
			want[i] = i
		}
		assert.Equal(t, want, numbersOf(got, lane), "lane %s: every event once, in order", lane)
	}

	ucs.release(stuck)
	require.Eventually(t, func() bool { n, _ := s.Depth(); return n == 0 }, time.Minute, 5*time.Millisecond,
		"the stuck service's events drain once the UCS takes them")
	assert.Equal(t, []int{0, 1, 2, 3}, numbersOf(inner.received(), stuck), "the stuck service's events once, in order")
	assert.Zero(t, restarts.Load(), "the worker never panicked")
}
