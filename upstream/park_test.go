package upstream

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// writeBacklog writes a spool directory as a process stopped during an outage leaves it: events
// of lanes lanes interleaved ((event k of lane l is number k*lanes+l), in rotated record files of
// about fileSize bytes, and an empty active file. It returns the bytes written.
func writeBacklog(t testing.TB, dir string, lanes, events int, fileSize int) int64 {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, dirPerm))
	at := time.Now().Add(-time.Hour).UTC()
	name := at
	var buf []byte
	var total int64
	flush := func() {
		path := filepath.Join(dir, "spool-"+name.Format(rotatedLayout)+".jsonl")
		require.NoError(t, os.WriteFile(path, buf, filePerm))
		total += int64(len(buf))
		buf, name = buf[:0], name.Add(time.Millisecond)
	}
	for k := range events {
		for l := range lanes {
			req := laneRequest("svc"+strconv.Itoa(l), k)
			// A few hundred bytes, as a Task End is.
			req.Body = fmt.Appendf(nil, `{"lane":%q,"n":%d,"pad":%q}`, req.Lane, k, strings.Repeat("x", 200))
			o := outbound{method: http.MethodPost, path: req.Path, header: req.Header, body: req.Body, lane: req.Lane}
			buf = append(appendSpoolRecord(buf, at, o), '\n')
			if len(buf) >= fileSize {
				flush()
			}
		}
	}
	if len(buf) > 0 {
		flush()
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, spoolFileName), nil, filePerm))
	return total
}

// dirSize is the bytes of the files in dir.
func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// cursorWatchFS records the longest write to the cursor log: one position line each.
type cursorWatchFS struct {
	FileSystem
	mu      sync.Mutex
	longest int
}

func (fs *cursorWatchFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := fs.FileSystem.OpenFile(name, flag, perm)
	if err != nil || !strings.HasPrefix(filepath.Base(name), "cursor") {
		return f, err
	}
	return &cursorWatchFile{File: f, fs: fs}, nil
}

func (fs *cursorWatchFS) max() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.longest
}

type cursorWatchFile struct {
	File
	fs *cursorWatchFS
}

func (f *cursorWatchFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	f.fs.longest = max(f.fs.longest, len(p))
	f.fs.mu.Unlock()
	return f.File.Write(p)
}

// stuckUCS answers 503 to one service forever and hands every other event to ucs, noting when
// each arrived.
type stuckUCS struct {
	ucs   *laneUCS
	stuck string

	mu    sync.Mutex
	times []time.Time
}

func (u *stuckUCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "/services/"+u.stuck+"/") {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	u.ucs.ServeHTTP(w, r)
	u.mu.Lock()
	u.times = append(u.times, time.Now())
	u.mu.Unlock()
}

func (u *stuckUCS) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.times)
}

func (u *stuckUCS) delivered() []time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]time.Time(nil), u.times...)
}

// TestOneStuckServiceCostsOnlyItsOwnRecords: a backlog of 200 000 events of 5 000 services, one of
// which the UCS answers 503 forever. The others drain at a steady rate, the position line stays
// small, and the record files go, but for the stuck service's own records.
func TestOneStuckServiceCostsOnlyItsOwnRecords(t *testing.T) {
	const lanes, events = 5000, 40
	const stuck = "svc77"
	dir := t.TempDir()
	peak := writeBacklog(t, dir, lanes, events, 1<<20)
	inner, _ := newLaneUCS(t, 0)
	ucs := &stuckUCS{ucs: inner, stuck: stuck}
	srv := httptest.NewServer(ucs)
	t.Cleanup(srv.Close)
	fs := &cursorWatchFS{FileSystem: OSFileSystem()}
	s := openTunedSpool(t, dir, srv.URL, spoolTuning{segmentSize: 1 << 20}, func(o *SpoolOptions) {
		o.FS = fs
		o.MaxBytes = 1 << 40
	})

	others := (lanes - 1) * events
	require.Eventually(t, func() bool { return ucs.count() >= others }, 5*time.Minute, 20*time.Millisecond,
		"every other service's events arrive")
	got := inner.received()
	next := map[string]int{}
	for _, ev := range got {
		require.NotEqual(t, stuck, ev.Lane)
		require.Equal(t, next[ev.Lane], ev.N, "lane %s in order, once", ev.Lane)
		next[ev.Lane]++
	}
	assert.Len(t, next, lanes-1)

	// Rates of the first and the last tenth of the drain.
	times := ucs.delivered()
	tenth := len(times) / 10
	first := times[tenth].Sub(times[0])
	last := times[len(times)-1].Sub(times[len(times)-1-tenth])
	ratio := first.Seconds() / last.Seconds()
	t.Logf("other services: first tenth %.0f events/s, last tenth %.0f events/s (%.0f%%); longest position line %d bytes",
		float64(tenth)/first.Seconds(), float64(tenth)/last.Seconds(), 100*ratio, fs.max())
	assert.GreaterOrEqual(t, ratio, 0.8, "the drain rate stays flat")
	assert.Less(t, fs.max(), 1<<20, "the position line stays under 1 MiB")

	records, stuckBytes := s.Depth()
	assert.Equal(t, events, records, "the stuck service's events wait, all of them")
	require.Eventually(t, func() bool { return dirSize(t, dir)-stuckBytes < peak/20 }, time.Minute, 20*time.Millisecond,
		"the record files behind the stuck service's records are removed")
	t.Logf("spool directory: peak %d bytes, now %d bytes, of which %d the stuck service's records", peak, dirSize(t, dir), stuckBytes)
}

// switchUCS answers 503 to the services in stuck, and hands the rest to ucs.
type switchUCS struct {
	ucs   *laneUCS
	mu    sync.Mutex
	stuck map[string]bool
}

func (u *switchUCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	for lane := range u.stuck {
		if strings.Contains(r.URL.Path, "/services/"+lane+"/") {
			u.mu.Unlock()
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
	}
	u.mu.Unlock()
	u.ucs.ServeHTTP(w, r)
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

	ucs.mu.Lock()
	delete(ucs.stuck, "svc0")
	ucs.mu.Unlock()
	waitDrained(t, s)
	got := inner.received()
	var svc0 []int
	for _, ev := range got {
		if ev.Lane == "svc0" {
			svc0 = append(svc0, ev.N)
		}
	}
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
	before := logCursor{Offset: int64(len(buf))}
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
