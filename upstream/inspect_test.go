package upstream

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInspectSpoolCountsWhatTheReplayWouldSend(t *testing.T) {
	ucs, srv := newLaneUCS(t, 0)
	ucs.down.Store(true)
	dir := t.TempDir()
	s := openTunedSpool(t, dir, srv.URL, spoolTuning{segmentSize: 600}, nil)
	for lane, n := range map[string]int{"svc1": 5, "svc2": 3, "svc3": 1} {
		for k := range n {
			resp, err := s.Submit(context.Background(), laneRequest(lane, k))
			require.NoError(t, err)
			require.True(t, resp.Spooled)
		}
	}
	now := time.Now()
	st, err := InspectSpool(dir, "", 2, now)
	require.NoError(t, err)
	assert.Equal(t, 9, st.Records)
	_, bytes := s.Depth()
	assert.Equal(t, bytes, st.Bytes)
	assert.Equal(t, 3, st.LaneCount)
	require.Len(t, st.TopLanes, 2)
	assert.Equal(t, LaneLoad{Lane: "svc1", Records: 5, Oldest: st.TopLanes[0].Oldest}, st.TopLanes[0])
	assert.Equal(t, "svc2", st.TopLanes[1].Lane)
	require.NotNil(t, st.Oldest)
	assert.False(t, st.Newest.Before(*st.Oldest))
	assert.GreaterOrEqual(t, st.OldestAge, 0.0)

	// svc1 is delivered out of order with the others held: the finished records after the
	// low-water mark are not counted.
	ucs.mu.Lock()
	ucs.hold["svc2"], ucs.hold["svc3"] = http.StatusTooManyRequests, http.StatusTooManyRequests
	ucs.mu.Unlock()
	ucs.down.Store(false)
	s.poke()
	require.Eventually(t, func() bool { n, _ := s.Depth(); return n == 4 }, 10*time.Second, time.Millisecond)
	st, err = InspectSpool(dir, "", 10, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 4, st.Records)
	assert.Equal(t, 2, st.LaneCount)
	assert.Zero(t, st.Dead)
}

// TestInspectSpoolWhileTheSpoolAppends reads a spool that a writer appends to and rotates: every
// answer is consistent, and reading writes nothing.
func TestInspectSpoolWhileTheSpoolAppends(t *testing.T) {
	ucs, srv := newLaneUCS(t, 0)
	ucs.down.Store(true)
	dir := t.TempDir()
	s := openTunedSpool(t, dir, srv.URL, spoolTuning{segmentSize: 2000}, nil)
	var stored atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Submit(context.Background(), laneRequest("svc"+string(rune('a'+k%5)), k)); err == nil {
				stored.Add(1)
			}
		}
	})
	last := 0
	for range 50 {
		before := stored.Load()
		st, err := InspectSpool(dir, "", 3, time.Now())
		require.NoError(t, err)
		assert.GreaterOrEqual(t, int64(st.Records), before, "everything stored before the read is counted")
		assert.GreaterOrEqual(t, st.Records, last)
		last = st.Records
	}
	close(stop)
	wg.Wait()
	st, err := InspectSpool(dir, "", 3, time.Now())
	require.NoError(t, err)
	assert.Equal(t, int(stored.Load()), st.Records)
}

func TestInspectSpoolOfAMissingDirectoryFails(t *testing.T) {
	_, err := InspectSpool(filepath.Join(t.TempDir(), "nope"), "", 3, time.Now())
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// deadLetterFixture spools events of services 1..n during an outage and has the UCS reject them
// all with a Context Services error, so the dead letter holds n records; it returns its path.
func deadLetterFixture(t *testing.T, n int) string {
	t.Helper()
	sim, srv := newUCSSim(t)
	sim.down = true
	sim.reject = func(string) (int, string) { return http.StatusBadRequest, genesysError }
	dir := t.TempDir()
	s := openTestSpool(t, dir, srv.URL, nil)
	submitSpooled(t, s, 0, n)
	sim.set(func(u *ucsSim) { u.down = false })
	waitDrained(t, s)
	require.NoError(t, s.Close())
	return filepath.Join(dir, "dead-letter.jsonl")
}

func TestReadDeadLettersGivesStatusMessageAndRequest(t *testing.T) {
	path := deadLetterFixture(t, 2)
	letters, unreadable, err := ReadDeadLetters(path)
	require.NoError(t, err)
	require.Len(t, letters, 2)
	assert.Zero(t, unreadable)
	assert.Equal(t, "InvalidFieldException", letters[0].Exception())
	assert.Equal(t, 400, letters[0].Status)
	assert.Equal(t, "Invalid field", letters[0].Message())
	method, p, _, header, body, err := letters[1].Request()
	require.NoError(t, err)
	assert.Equal(t, http.MethodPost, method)
	assert.Equal(t, taskEndPath, p)
	assert.Equal(t, "cc-1", header.Get("ContactCenterId"))
	assert.JSONEq(t, event(1), string(body))
}

func TestResendRemovesOnlyTheAcceptedLines(t *testing.T) {
	path := deadLetterFixture(t, 6)
	var got []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ N int }
		_ = json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		if ev.N%2 == 1 { // the odd events are still refused
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(genesysError))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	to, err := url.Parse(srv.URL)
	require.NoError(t, err)
	rep, err := ResendDeadLetters(context.Background(), path, ResendOptions{
		To: to, Header: http.Header{"Authorization": {"Bearer fresh"}},
	})
	require.NoError(t, err)
	assert.Equal(t, ResendReport{Selected: 6, Accepted: 3, Refused: 3, Kept: 3, Saves: 1}, *rep)
	assert.Len(t, got, 6)
	assert.Equal(t, "POST "+taskEndPath+" Bearer fresh", got[0], "own method and path, the header overridden")
	left, _, err := ReadDeadLetters(path)
	require.NoError(t, err)
	require.Len(t, left, 3)
	for _, d := range left {
		_, _, _, _, body, err := d.Request()
		require.NoError(t, err)
		var ev struct{ N int }
		require.NoError(t, json.Unmarshal(body, &ev))
		assert.Equal(t, 1, ev.N%2, "only the rejected records are kept")
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(filePerm), fi.Mode().Perm(), "the rewrite keeps the file's permissions")
}

func TestResendDryRunAndWhereChangeNothing(t *testing.T) {
	path := deadLetterFixture(t, 3)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	var selected []int
	rep, err := ResendDeadLetters(context.Background(), path, ResendOptions{
		DryRun:   true,
		Where:    func(d DeadLetter) bool { return d.Line != 2 },
		OnResult: func(r ResendResult) { selected = append(selected, r.Letter.Line) },
	})
	require.NoError(t, err)
	assert.Equal(t, ResendReport{Selected: 2, Accepted: 0, Kept: 3}, *rep)
	assert.Equal(t, []int{1, 3}, selected)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after)
}

func TestResendCrashMidRewriteLeavesTheOldFile(t *testing.T) {
	path := deadLetterFixture(t, 2)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	to, _ := url.Parse(srv.URL)
	rewriteRename = func(string, string) error { return os.ErrDeadlineExceeded } // the process dies here
	defer func() { rewriteRename = os.Rename }()
	_, err = ResendDeadLetters(context.Background(), path, ResendOptions{To: to})
	require.Error(t, err)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the old file is intact")
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.Contains(e.Name(), ".tmp-"), "no temporary file is left: %s", e.Name())
	}
}

// TestInspectSpoolWithoutACursorFileCountsEverything: a spool copied off a machine, or one that
// never delivered anything and lost its empty cursor file, is read from its first record.
func TestInspectSpoolWithoutACursorFileCountsEverything(t *testing.T) {
	ucs, srv := newLaneUCS(t, 0)
	ucs.down.Store(true)
	dir := t.TempDir()
	s := openTestSpool(t, dir, srv.URL, nil)
	spoolLanes(t, s, 3, 2)
	require.NoError(t, s.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, "cursor.jsonl")))
	st, err := InspectSpool(dir, "", 5, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 6, st.Records)
	assert.Equal(t, 3, st.LaneCount)

	empty := t.TempDir()
	st, err = InspectSpool(empty, "", 5, time.Now())
	require.NoError(t, err)
	assert.Zero(t, st.Records)
}

// writeLongLine appends a line of n bytes (and its '\n') to path, a chunk at a time.
func writeLongLine(t testing.TB, path string, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	require.NoError(t, err)
	defer f.Close()
	chunk := []byte(strings.Repeat("x", 1<<20))
	for n > 0 {
		c := chunk[:min(n, len(chunk))]
		_, err := f.Write(c)
		require.NoError(t, err)
		n -= len(c)
	}
	_, err = f.Write([]byte("\n"))
	require.NoError(t, err)
}

// TestInspectSpoolCountsLinesThatAreNotRecordsApart: garbage, blank and over-long lines are
// corrupt, not events; a record without a time is an event with no age; the 300 MB line is
// skipped without being loaded.
func TestInspectSpoolCountsLinesThatAreNotRecordsApart(t *testing.T) {
	dir := t.TempDir()
	accepted := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	rec := func(at time.Time, lane string) []byte {
		req := laneRequest(lane, 0)
		return appendSpoolRecord(nil, at, outbound{method: http.MethodPost, path: req.Path, header: req.Header, body: req.Body, lane: lane})
	}
	path := filepath.Join(dir, spoolFileName)
	lines := [][]byte{rec(accepted, "svc1"), []byte("not a record"), nil, rec(time.Time{}, "svc2"), []byte(`{"half":`), rec(accepted.Add(time.Second), "svc1")}
	var content []byte
	for _, l := range lines {
		content = append(append(content, l...), '\n')
	}
	require.NoError(t, os.WriteFile(path, content, 0o600))
	writeLongLine(t, path, 300<<20)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write(append(rec(accepted.Add(2*time.Second), "svc3"), '\n'))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	st, err := InspectSpool(dir, "", 10, accepted.Add(time.Hour))
	runtime.ReadMemStats(&after)
	require.NoError(t, err)

	assert.Equal(t, 4, st.Records, "the three records with a time and the one without")
	assert.Equal(t, 4, st.Corrupt, "garbage, blank, a torn object and the 300 MB line")
	assert.Equal(t, 1, st.TooLong)
	assert.Equal(t, int64(len(lines[0])+len(lines[3])+len(lines[5])+len(rec(accepted, "svc3"))+4), st.Bytes)
	require.NotNil(t, st.Oldest)
	assert.Equal(t, accepted, *st.Oldest, "a record without a time is not the oldest")
	assert.Equal(t, accepted.Add(2*time.Second), *st.Newest)
	assert.InDelta(t, time.Hour.Seconds(), st.OldestAge, 0.001)
	assert.Equal(t, 3, st.LaneCount)
	for _, l := range st.TopLanes {
		if l.Lane == "svc2" {
			assert.True(t, l.Oldest.IsZero(), "no age from a zero time")
		}
	}
	// Reading up to the bound costs about twice the bound (the buffer doubles), whatever the
	// line's length: the line itself (300 MB, more than 4 bounds) is not loaded.
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(4*MaxSpoolLine), "the 300 MB line is not loaded")

	// Read at a time before the records were accepted (a clock step back): no negative age.
	st, err = InspectSpool(dir, "", 10, accepted.Add(-time.Hour))
	require.NoError(t, err)
	assert.Zero(t, st.OldestAge)
}

// TestReplayDeadLettersALineTooLongToReadAndDeliversTheRest: a line over MaxSpoolLine in the
// spool goes to the dead letter with its start only; the events around it are delivered.
func TestReplayDeadLettersALineTooLongToReadAndDeliversTheRest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, spoolFileName)
	rec := func(n int) []byte {
		req := laneRequest("svc1", n)
		return append(appendSpoolRecord(nil, time.Now(), outbound{method: http.MethodPost, path: req.Path, header: req.Header, body: req.Body, lane: "svc1"}), '\n')
	}
	require.NoError(t, os.WriteFile(path, rec(0), 0o600))
	writeLongLine(t, path, MaxSpoolLine+1<<20)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write(rec(1))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	ucs, srv := newLaneUCS(t, 0)
	s := openTestSpool(t, dir, srv.URL, nil)
	waitDrained(t, s)
	checkLanes(t, ucs.received(), 1, 2)
	dead, err := os.ReadFile(filepath.Join(dir, deadLetterFileName))
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(dead), "\n"))
	assert.Less(t, len(dead), 64<<10, "the line's start, not the line")
	assert.Contains(t, string(dead), "longer than")
}
