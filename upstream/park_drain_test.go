//go:build !race

package upstream

import (
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

	"github.com/ucsedge/caddy-ucs/internal/wal"
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
		path := wal.RotatedPath(filepath.Join(dir, spoolFileName), name)
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
//
// It delivers 200 000 events through HTTP, which takes tens of seconds on 2 cores, and far longer
// under the race detector, so the race build leaves it out (the smaller park tests run there).
func TestOneStuckServiceCostsOnlyItsOwnRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("200 000 deliveries: skipped with -short")
	}
	const lanes, events = 5000, 40
	const stuck = "svc77"
	dir := t.TempDir()
	peak := writeBacklog(t, dir, lanes, events, 1<<20)
	inner, _ := newLaneUCS(t, 0)
	ucs := &stuckUCS{ucs: inner, stuck: stuck}
	srv := httptest.NewServer(ucs)
	t.Cleanup(srv.Close)
	fs := &cursorWatchFS{FileSystem: OSFileSystem()}
	core, logs := observer.New(zapcore.InfoLevel)
	s := openTunedSpool(t, dir, srv.URL, spoolTuning{segmentSize: 1 << 20}, func(o *SpoolOptions) {
		o.FS = fs
		o.Logger = zap.New(core)
		o.MaxBytes = 1 << 40
		o.Replay.Concurrency = 256 // the drain is bound by the position line's fsync: share it more
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
	for _, e := range logs.FilterMessage(parkedMsg).All() {
		t.Logf("parked at %s: %v", e.Time.Format("15:04:05.000"), e.ContextMap())
	}
	t.Logf("drain from %s to %s", times[0].Format("15:04:05.000"), times[len(times)-1].Format("15:04:05.000"))
	assert.GreaterOrEqual(t, ratio, 0.8, "the drain rate stays flat")
	assert.Less(t, fs.max(), 1<<20, "the position line stays under 1 MiB")

	records, stuckBytes := s.Depth()
	assert.Equal(t, events, records, "the stuck service's events wait, all of them")
	require.Eventually(t, func() bool { return dirSize(t, dir)-stuckBytes < peak/20 }, time.Minute, 20*time.Millisecond,
		"the record files behind the stuck service's records are removed")
	t.Logf("spool directory: peak %d bytes, now %d bytes, of which %d the stuck service's records", peak, dirSize(t, dir), stuckBytes)
}
