package upstream

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// switchUCS answers 503 to the services in stuck (with retryAfter as its Retry-After when set),
// and hands the rest to ucs.
type switchUCS struct {
	ucs        *laneUCS
	retryAfter string
	mu         sync.Mutex
	stuck      map[string]bool
}

func (u *switchUCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	for lane := range u.stuck {
		if strings.Contains(r.URL.Path, "/services/"+lane+"/") {
			u.mu.Unlock()
			if u.retryAfter != "" {
				w.Header().Set("Retry-After", u.retryAfter)
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
	}
	u.mu.Unlock()
	u.ucs.ServeHTTP(w, r)
}

// release lets the UCS take the service's events again.
func (u *switchUCS) release(lane string) {
	u.mu.Lock()
	delete(u.stuck, lane)
	u.mu.Unlock()
}

// numbersOf is the event numbers of one lane, in the order they arrived.
func numbersOf(evs []laneEvent, lane string) []int {
	var ns []int
	for _, ev := range evs {
		if ev.Lane == lane {
			ns = append(ns, ev.N)
		}
	}
	return ns
}

// TestAParkedServiceGetsEveryEventInOrderOnceItRecovers: one service is answered 503 while the
// others drain, so it is parked, while its caller goes on sending events; once the UCS takes it
// again, all its events arrive once, in order, the new ones after the spooled ones.
func TestAParkedServiceGetsEveryEventInOrderOnceItRecovers(t *testing.T) {
	inner, _ := newLaneUCS(t, 0)
	ucs := &switchUCS{ucs: inner, stuck: map[string]bool{"svc0": true}}
	srv := httptest.NewServer(ucs)
	t.Cleanup(srv.Close)
	core, logs := observer.New(zapcore.InfoLevel)
	inner.down.Store(true)
	s := openTunedSpool(t, t.TempDir(), srv.URL, spoolTuning{segmentSize: 64 << 10}, func(o *SpoolOptions) {
		o.Logger = zap.New(core)
	})
	const lanes, events = 40, 60
	spoolLanes(t, s, lanes, events)
	inner.down.Store(false)
	s.poke()

	// svc0's caller keeps sending while it is stuck and parked: each new event queues behind.
	late := events
	parked := func() bool { return logs.FilterMessage(parkedMsg).Len() > 0 }
	for ; !parked() || late < events+20; late++ {
		resp, err := s.Submit(context.Background(), laneRequest("svc0", late))
		require.NoError(t, err)
		require.True(t, resp.Spooled, "queued behind the service's waiting events")
		time.Sleep(time.Millisecond)
	}
	require.Eventually(t, func() bool { n, _ := s.Depth(); return n == late }, 20*time.Second, 5*time.Millisecond,
		"every other service drains")

	ucs.release("svc0")
	waitDrained(t, s)
	got := inner.received()
	svc0 := numbersOf(got, "svc0")
	want := make([]int, late)
	for i := range want {
		want[i] = i
	}
	assert.Equal(t, want, svc0, "once each, in order")
	assert.Len(t, got, lanes*events-events+late)
}

// parkedMsg is logged when a stuck service's events are moved to the end of the spool.
const parkedMsg = "a service's events hold up the spool; moved them to its end, in order"

// writeParkState writes a spool left by a process that died during a park of lane a: its events
// a0..a4 among b's, then copies of the first copied of them (all five when complete) with their
// marks, and no position line.
func writeParkState(t *testing.T, dir string, copied int) {
	t.Helper()
	var buf []byte
	var as [][]byte
	at := time.Now().UTC()
	for n := range 5 {
		for _, lane := range []string{"a", "b"} {
			req := laneRequest(lane, n)
			start := len(buf)
			buf = append(appendSpoolRecord(buf, at, outbound{method: http.MethodPost, path: req.Path, header: req.Header, body: req.Body, lane: lane}), '\n')
			if lane == "a" {
				as = append(as, buf[start:len(buf)-1])
			}
		}
	}
	before := wal.Cursor{Offset: int64(len(buf))}
	var copies []byte
	for n, rec := range as[:copied] {
		copies = append(appendParked(copies, rec, "a", false, parkMark{Before: before, N: n, Of: len(as)}), '\n')
	}
	require.NoError(t, os.MkdirAll(dir, dirPerm))
	require.NoError(t, os.WriteFile(filepath.Join(dir, spoolFileName), append(buf, copies...), filePerm))
}

// TestAParkCutShortByACrashSendsEachEventOnce: the copies of a park are on disk but no position
// line says so. Complete, they replace the originals; cut short, they are dropped. Either way
// every event arrives once, in order.
func TestAParkCutShortByACrashSendsEachEventOnce(t *testing.T) {
	for _, copied := range []int{5, 3, 1} {
		t.Run(fmt.Sprintf("%d of 5 copied", copied), func(t *testing.T) {
			dir := t.TempDir()
			writeParkState(t, dir, copied)
			ucs, srv := newLaneUCS(t, 0)
			ucs.down.Store(true)
			s := openTestSpool(t, dir, srv.URL, nil)
			records, _ := s.Depth()
			assert.Equal(t, 10, records, "each event counted once")
			st, err := InspectSpool(dir, "", 5, time.Now())
			require.NoError(t, err)
			assert.Equal(t, 10, st.Records, "spool status counts as the replay does")
			ucs.down.Store(false)
			s.poke()
			waitDrained(t, s)
			checkLanes(t, ucs.received(), 2, 5)
		})
	}
}
