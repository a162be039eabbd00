package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// writeLaneBacklog writes a spool file holding first's event 0, then events of others lanes
// (others×events of them, interleaved), as a process stopped during an outage leaves it.
func writeLaneBacklog(t *testing.T, dir, first string, others, events int) {
	t.Helper()
	at := time.Now().UTC()
	rec := func(buf []byte, lane string, n int) []byte {
		req := laneRequest(lane, n)
		return append(appendSpoolRecord(buf, at, outbound{method: http.MethodPost, path: req.Path,
			header: req.Header, body: req.Body, lane: lane}), '\n')
	}
	buf := rec(nil, first, 0)
	for n := range events {
		for l := range others {
			buf = rec(buf, "svc"+strconv.Itoa(l), n)
		}
	}
	require.NoError(t, os.MkdirAll(dir, dirPerm))
	require.NoError(t, os.WriteFile(filepath.Join(dir, spoolFileName), buf, filePerm))
}

// gateUCS holds the first request of one lane until released, then answers it 503 with a
// Retry-After; everything else goes to ucs.
type gateUCS struct {
	ucs        *laneUCS
	lane       string
	retryAfter string
	entered    chan struct{}
	release    chan struct{}
	once       sync.Once
	first      atomic.Bool
}

func (u *gateUCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "/services/"+u.lane+"/") && u.first.CompareAndSwap(false, true) {
		u.once.Do(func() { close(u.entered) })
		<-u.release
		w.Header().Set("Retry-After", u.retryAfter)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	u.ucs.ServeHTTP(w, r)
}

// TestALaneDueForParkingWhoseAttemptOpensTheBreakerIsProbedAgain: the lane holding the mark is
// due for parking while its delivery is in flight (it will be parked when the attempt ends); the
// attempt fails and opens the breaker, so no park may start. The lane must go on as any paused
// lane does: probed, and delivered once the UCS is back. It was left in no queue, so nothing
// was ever probed again.
func TestALaneDueForParkingWhoseAttemptOpensTheBreakerIsProbedAgain(t *testing.T) {
	const others, events = 41, 100 // parkForce records finish behind the stuck lane's head
	dir := t.TempDir()
	writeLaneBacklog(t, dir, "stuck", others, events)
	inner, _ := newLaneUCS(t, 0)
	ucs := &gateUCS{ucs: inner, lane: "stuck", retryAfter: "1", entered: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(ucs)
	t.Cleanup(srv.Close)
	s := openTestSpool(t, dir, srv.URL, func(o *SpoolOptions) {
		o.Forwarder = newTestForwarder(t, time.Minute, srv.URL) // the held attempt does not time out
	})
	t.Cleanup(func() {
		select {
		case <-ucs.release:
		default:
			close(ucs.release)
		}
	})

	<-ucs.entered // the stuck lane's head is in flight
	require.Eventually(t, func() bool { n, _ := s.Depth(); return n == 1 }, time.Minute, time.Millisecond,
		"every other service drains behind the stuck lane's head")
	require.GreaterOrEqual(t, others*events, parkForce)

	// The UCS goes down: two direct attempts fail (the full spool refuses them), and the stuck
	// lane's answer is the third failure in a row.
	inner.down.Store(true)
	s.SetMaxBytes(1)
	for n := range 2 {
		_, err := s.Submit(context.Background(), laneRequest("new"+strconv.Itoa(n), 0))
		require.ErrorIs(t, err, ErrSpoolFull)
	}
	close(ucs.release)
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.breaker.open
	}, 10*time.Second, time.Millisecond, "three failures in a row open the breaker")

	inner.down.Store(false)
	s.SetMaxBytes(0)
	require.Eventually(t, func() bool { n, _ := s.Depth(); return n == 0 }, 20*time.Second, 2*time.Millisecond,
		"the stuck lane is probed and its event delivered once the UCS is back")
	stuck := numbersOf(inner.received(), "stuck")
	assert.Equal(t, []int{0}, stuck)
}

// TestAProbeIsNeverSentToALaneWhoseRecordsWereJustParked: a park leaves its lane empty until the
// worker reads the copies at the tail, and back in the paused queue while its last backoff runs.
// If the breaker opens meanwhile and no lane is ready, the probe goes to the lane that waited
// longest: it must not be the empty one (sending its head panicked, restarting the worker).
func TestAProbeIsNeverSentToALaneWhoseRecordsWereJustParked(t *testing.T) {
	ucs, srv := newLaneUCS(t, 0)
	ucs.down.Store(true)
	s := openTestSpool(t, t.TempDir(), srv.URL, nil)
	sc := s.newScheduler(resumePoint{seg: s.records.First()})
	t.Cleanup(sc.reader.Close)
	now := s.now()

	l := &lane{key: "svc0", readyAt: -1, pausedAt: -1, failures: parkFailures, retryAt: now.Add(time.Minute), parking: true}
	sc.lanes[l.key] = l
	sc.parkBusy = true
	sc.parked(parkResult{job: &parkJob{lane: l}, ok: true})
	require.Empty(t, l.queue, "its copies are not read yet")

	require.NotPanics(t, func() { sc.dispatch(now, breaker{open: true, probeAt: now}) })
	assert.Zero(t, sc.sending, "nothing to probe")

	// Its copies are read: it is a paused lane as before, probed in its turn.
	l.queue = []*pending{{seq: 1, lane: l}}
	sc.markReady(l)
	assert.True(t, l.readyAt >= 0 || l.pausedAt >= 0, "queued to be sent")
}

// TestAParkThatPanicsRestartsTheWorkerAndSendsEachEventOnceInOrder: a park panics once its
// copies are on disk. Like a panic of the worker or of a delivery, it must not take the process
// down: the worker restarts from the durable position, finds the copies no position line records,
// and every event arrives once, in order.
func TestAParkThatPanicsRestartsTheWorkerAndSendsEachEventOnceInOrder(t *testing.T) {
	const others, events = 41, 100
	dir := t.TempDir()
	writeLaneBacklog(t, dir, "stuck", others, events)
	inner, _ := newLaneUCS(t, 0)
	ucs := &switchUCS{ucs: inner, stuck: map[string]bool{"stuck": true}}
	srv := httptest.NewServer(ucs)
	t.Cleanup(srv.Close)
	var parks, restarts atomic.Int32
	s := openTunedSpool(t, dir, srv.URL, spoolTuning{onPark: func() {
		if parks.Add(1) == 1 {
			panic("injected: a bug in the park")
		}
	}}, func(o *SpoolOptions) {
		o.OnRestart = func() { restarts.Add(1) }
	})
	require.Eventually(t, func() bool { return parks.Load() >= 1 && restarts.Load() >= 1 }, 20*time.Second,
		time.Millisecond, "the stuck lane is parked, and the park panics")

	ucs.release("stuck")
	waitDrained(t, s)
	got := inner.received()
	stuck := numbersOf(got, "stuck")
	assert.Equal(t, []int{0}, stuck, "once")
	next := map[string]int{}
	for _, ev := range got {
		if ev.N >= next[ev.Lane] { // a first delivery (a restart may send some again)
			require.Equal(t, next[ev.Lane], ev.N, "lane %s in order", ev.Lane)
			next[ev.Lane]++
		}
	}
	assert.Len(t, next, others+1)
	assert.Equal(t, int32(1), restarts.Load())
}

// TestMoreStuckServicesThanParkRulesDoNotStopTheReading: more services than maxParkRules are
// answered 429 with an hour's Retry-After, their events first in the spool. Each is parked in turn
// while the mark holds at the first of them, until no rule is left; the next one then holds the
// mark for good. Reading must not stop behind it (maxBehind) for good: an event stored after
// that, behind its service's waiting events, arrives too.
func TestMoreStuckServicesThanParkRulesDoNotStopTheReading(t *testing.T) {
	if testing.Short() {
		t.Skip("about 10 000 deliveries: skipped with -short")
	}
	const stuck, others, long = maxParkRules + 4, 41, 3000
	events := maxBehind/others + 40
	dir := t.TempDir()
	at := time.Now().UTC()
	var buf []byte
	rec := func(lane string, n int) {
		req := laneRequest(lane, n)
		buf = append(appendSpoolRecord(buf, at, outbound{method: http.MethodPost, path: req.Path,
			header: req.Header, body: req.Body, lane: lane}), '\n')
	}
	ucs, srv := newLaneUCS(t, 0)
	for l := range stuck {
		lane := "stuck" + strconv.Itoa(l)
		ucs.hold[lane] = http.StatusTooManyRequests // an answer: the breaker stays closed
		rec(lane, 0)
	}
	for n := range events {
		for l := range others {
			rec("svc"+strconv.Itoa(l), n)
		}
	}
	for n := range long { // one service with a long queue: still waiting when the rules run out
		rec("long", n)
	}
	require.NoError(t, os.MkdirAll(dir, dirPerm))
	require.NoError(t, os.WriteFile(filepath.Join(dir, spoolFileName), buf, filePerm))
	core, logs := observer.New(zapcore.InfoLevel)
	s := openTestSpool(t, dir, srv.URL, func(o *SpoolOptions) {
		o.Replay.MaxAttempts, o.Replay.MaxRetryAge = 1<<30, 1000*time.Hour // never dead-lettered
		// A fixed window: this tests the reading and the parking. With auto, the 260 services'
		// 429s are back-pressure that holds the limit low, and the 10 000 deliveries took 62s
		// under the race detector against 16s at 64.
		o.Replay.Concurrency = 64
		o.Logger = zap.New(core)
	})

	require.Eventually(t, func() bool {
		return logs.FilterMessage(parkedMsg).Len() >= maxParkRules && len(ucs.received()) >= maxBehind+others
	}, time.Minute, 5*time.Millisecond, "the stuck services are parked until no rule is left, and maxBehind events finished behind them")
	resp, err := s.Submit(context.Background(), laneRequest("long", long))
	require.NoError(t, err)
	require.True(t, resp.Spooled, "queued behind the service's waiting events")
	require.Eventually(t, func() bool { n, _ := s.Depth(); return n == stuck }, 30*time.Second, 5*time.Millisecond,
		"every other service's events arrive, the one stored last too")
	next := map[string]int{}
	for _, ev := range ucs.received() {
		require.Equal(t, next[ev.Lane], ev.N, "lane %s in order, once", ev.Lane)
		next[ev.Lane]++
	}
	assert.Equal(t, long+1, next["long"])
	assert.Len(t, next, others+1)
}

// TestTheOutageProbeDoesNotKeepGoingToTheStuckServices: a few services still answer 503 when
// the UCS is back, and their events are the oldest. The probe must reach a service that answers,
// which closes the breaker: the others drain. It went to the oldest waiting event, one of the
// stuck services' (each due again by the time of the next probe), for as long as they failed.
func TestTheOutageProbeDoesNotKeepGoingToTheStuckServices(t *testing.T) {
	const stuck, others, events = 3, 5, 4
	inner, _ := newLaneUCS(t, 0)
	ucs := &switchUCS{ucs: inner, retryAfter: "1", stuck: map[string]bool{}}
	for l := range stuck {
		ucs.stuck["stuck"+strconv.Itoa(l)] = true
	}
	srv := httptest.NewServer(ucs)
	t.Cleanup(srv.Close)
	inner.down.Store(true)
	s := openTestSpool(t, t.TempDir(), srv.URL, nil)
	for l := range stuck {
		lane := "stuck" + strconv.Itoa(l)
		resp, err := s.Submit(context.Background(), laneRequest(lane, 0))
		require.NoError(t, err)
		require.True(t, resp.Spooled)
	}
	spoolLanes(t, s, others, events)
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.breaker.open
	}, 10*time.Second, time.Millisecond, "the outage opens the breaker")

	inner.down.Store(false) // back, but for the stuck services
	require.Eventually(t, func() bool { n, _ := s.Depth(); return n == stuck }, 10*time.Second, 5*time.Millisecond,
		"a probe reaches a service that answers, and the others drain")
	checkLanes(t, inner.received(), others, events)
}
