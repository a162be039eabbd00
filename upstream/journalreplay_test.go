package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// journalUCS is a stub UCS recording the calls it took; answer, when set, decides the status and
// body of each (0 means 204).
type journalUCS struct {
	mu     sync.Mutex
	calls  []journalCall
	delay  time.Duration
	answer func(path string, body []byte) (int, string)
}

type journalCall struct {
	path, auth string
	body       string
}

func newJournalUCS(t testing.TB, delay time.Duration) (*journalUCS, *httptest.Server) {
	u := &journalUCS{delay: delay}
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	return u, srv
}

func (u *journalUCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	time.Sleep(u.delay)
	u.mu.Lock()
	answer := u.answer
	u.mu.Unlock()
	status, msg := 0, ""
	if answer != nil {
		status, msg = answer(r.URL.Path, body)
	}
	if status == 0 || status/100 == 2 {
		u.mu.Lock()
		u.calls = append(u.calls, journalCall{path: r.URL.Path, auth: r.Header.Get("Authorization"), body: string(body)})
		u.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

func (u *journalUCS) delivered() []journalCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]journalCall(nil), u.calls...)
}

// writeJournal journals events task.end events over services (event n of service s has task id
// n), one second apart from base, and returns the journal's path.
func writeJournal(t testing.TB, dir string, services, events int, base time.Time) string {
	path := filepath.Join(dir, "events.jsonl")
	j, err := OpenJournal(path, JournalOptions{NoSync: true})
	require.NoError(t, err)
	for n := range events {
		for s := range services {
			at := base.Add(time.Duration(n*services+s) * time.Millisecond)
			ids := TaskEndIDs(fmt.Sprint(s), int64(n))
			body := fmt.Sprintf(`{"timestamp":"%s","disposition":1003,"n":%d}`, at.UTC().Format(receivedAtLayout), n)
			require.NoError(t, j.AppendEvent(at, ids, []byte(body)))
		}
	}
	require.NoError(t, j.Close())
	return path
}

func journalForwarder(t testing.TB, base string) *Forwarder {
	u, err := url.Parse(base)
	require.NoError(t, err)
	f, err := NewForwarder(ForwardOptions{URLs: []*url.URL{u}, Timeout: 5 * time.Second})
	require.NoError(t, err)
	return f
}

func replayJournal(t testing.TB, opts JournalReplayOptions) JournalSummary {
	r, err := OpenJournalReplay(opts)
	require.NoError(t, err)
	defer r.Close()
	sum, err := r.Run(context.Background())
	require.NoError(t, err)
	return sum
}

// checkServiceOrder asserts that each service's first deliveries came in task id order.
func checkServiceOrder(t testing.TB, calls []journalCall) {
	next := map[string]int{}
	seen := map[string]bool{}
	for _, c := range calls {
		if seen[c.path] {
			continue
		}
		seen[c.path] = true
		var sid string
		var n int
		_, err := fmt.Sscanf(strings.ReplaceAll(c.path, "/", " "), " genesys 1 cs services %s tasks %d end", &sid, &n)
		require.NoError(t, err, c.path)
		assert.Equal(t, next[sid], n, "service %s out of order", sid)
		next[sid] = n + 1
	}
}

func TestJournalReplayDeliversEveryEventInServiceOrderThenSendsNothing(t *testing.T) {
	ucs, srv := newJournalUCS(t, time.Millisecond)
	path := writeJournal(t, t.TempDir(), 20, 10, time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	opts := JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL),
		Header: http.Header{"Authorization": {"Basic eDp5"}}, Replay: ReplayPolicy{Concurrency: 8}}

	sum := replayJournal(t, opts)
	assert.Equal(t, 200, sum.Delivered)
	assert.True(t, sum.Complete)
	calls := ucs.delivered()
	require.Len(t, calls, 200)
	checkServiceOrder(t, calls)
	assert.Equal(t, "Basic eDp5", calls[0].auth, "the headers come from the options")
	assert.Contains(t, calls[0].body, `"timestamp":"2026-03-01T08:00:00`, "the event is sent as journaled")

	r, err := OpenJournalReplay(opts)
	require.NoError(t, err)
	defer r.Close()
	assert.Zero(t, r.Plan().Waiting)
	sum, err = r.Run(context.Background())
	require.NoError(t, err)
	assert.Zero(t, sum.Delivered)
	assert.Len(t, ucs.delivered(), 200, "a finished journal sends nothing")
	assert.Zero(t, sum.PossibleDuplicates)
}

func TestJournalReplayPicksUpWhatWasAppendedSince(t *testing.T) {
	ucs, srv := newJournalUCS(t, 0)
	dir := t.TempDir()
	path := writeJournal(t, dir, 3, 2, time.Now())
	opts := JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL)}
	replayJournal(t, opts)
	j, err := OpenJournal(path, JournalOptions{NoSync: true})
	require.NoError(t, err)
	require.NoError(t, j.AppendEvent(time.Now(), TaskEndIDs("0", 2), []byte(`{"n":2}`)))
	require.NoError(t, j.Close())

	sum := replayJournal(t, opts)
	assert.Equal(t, 1, sum.Delivered)
	calls := ucs.delivered()
	require.Len(t, calls, 7)
	assert.Equal(t, "/genesys/1/cs/services/0/tasks/2/end", calls[6].path)
}

func TestJournalReplayRebuildsEachOperationsCall(t *testing.T) {
	ucs, srv := newJournalUCS(t, 0)
	path := filepath.Join(t.TempDir(), "events.jsonl")
	j, err := OpenJournal(path, JournalOptions{NoSync: true})
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, j.AppendEvent(now, RecordIDs{Operation: "state.end", ServiceID: "383-f9a6", IDName: "state_id", ID: 7}, []byte(`{"a":1}`)))
	require.NoError(t, j.AppendEvent(now, RecordIDs{Operation: "service.end", ServiceID: "383-f9a6"}, []byte(`{"b":2}`)))
	require.NoError(t, j.AppendEvent(now, TaskEndIDs("9", 3), []byte(`{"c":3}`)))
	require.NoError(t, j.Close())

	replayJournal(t, JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL), BasePath: "/cs/"})
	calls := ucs.delivered()
	require.Len(t, calls, 3)
	got := map[string]string{}
	for _, c := range calls {
		got[c.path] = c.body
	}
	assert.Equal(t, map[string]string{
		"/cs/services/383-f9a6/states/7/end": `{"a":1}`,
		"/cs/services/383-f9a6/end":          `{"b":2}`,
		"/cs/services/9/tasks/3/end":         `{"c":3}`,
	}, got)
}

func TestJournalReplayDeadLettersGenesysRejectionsWithTheirReason(t *testing.T) {
	ucs, srv := newJournalUCS(t, 0)
	ucs.answer = func(path string, _ []byte) (int, string) {
		if strings.HasSuffix(path, "/services/1/tasks/1/end") {
			return http.StatusBadRequest, `{"message":"disposition 1003 is unknown","exception":"InvalidBusinessAttributeException"}`
		}
		return 0, ""
	}
	path := writeJournal(t, t.TempDir(), 3, 3, time.Now())
	sum := replayJournal(t, JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL),
		Header: http.Header{"Authorization": {"Basic secret"}}})
	assert.Equal(t, 8, sum.Delivered)
	assert.Equal(t, 1, sum.DeadLettered)

	letters, unreadable, err := ReadDeadLetters(path + ".dead-letter.jsonl")
	assert.Zero(t, unreadable)
	require.NoError(t, err)
	require.Len(t, letters, 1)
	assert.Equal(t, 400, letters[0].Status)
	assert.Equal(t, "disposition 1003 is unknown", letters[0].Message())
	method, p, _, h, body, err := letters[0].Request()
	require.NoError(t, err, "the dead letter holds a spool record: dead-letter resend can send it")
	assert.Equal(t, "POST", method)
	assert.Equal(t, "/genesys/1/cs/services/1/tasks/1/end", p)
	assert.Empty(t, h.Get("Authorization"), "credentials stay out of the file")
	assert.Contains(t, string(body), `"n":1`)
}

func TestJournalReplayFilters(t *testing.T) {
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name          string
		filter        JournalFilter
		sent, skipped int
	}{
		{"no filter sends all", JournalFilter{}, 40, 0},
		{"an operation not journaled sends none", JournalFilter{Operations: []string{"state.end"}}, 0, 40},
		{"the journaled operation sends all", JournalFilter{Operations: []string{"task.end"}}, 40, 0},
		{"service picks its lane", JournalFilter{Services: []string{"2", "3"}}, 20, 20},
		{"since is inclusive", JournalFilter{Since: base.Add(20 * time.Millisecond)}, 20, 20},
		{"until is exclusive", JournalFilter{Until: base.Add(10 * time.Millisecond)}, 10, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ucs, srv := newJournalUCS(t, 0)
			path := writeJournal(t, t.TempDir(), 4, 10, base)
			sum := replayJournal(t, JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL), Filter: tc.filter})
			assert.Len(t, ucs.delivered(), tc.sent)
			assert.Equal(t, tc.sent, sum.Delivered)
			assert.Equal(t, tc.skipped, sum.Skipped)
		})
	}
}

func TestJournalReplayRefusesAStateWrittenUnderAnotherFilter(t *testing.T) {
	_, srv := newJournalUCS(t, 0)
	path := writeJournal(t, t.TempDir(), 2, 2, time.Now())
	replayJournal(t, JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL),
		Filter: JournalFilter{Services: []string{"1"}}})
	_, err := OpenJournalReplay(JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `filter "service=1"`)
}

func TestJournalReplayRefusesAStateAnotherReplayHolds(t *testing.T) {
	_, srv := newJournalUCS(t, 0)
	path := writeJournal(t, t.TempDir(), 1, 1, time.Now())
	opts := JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL)}
	r, err := OpenJournalReplay(opts)
	require.NoError(t, err)
	defer r.Close()
	_, err = OpenJournalReplay(opts)
	assert.ErrorIs(t, err, ErrReplayLocked)
}

func TestJournalReplaySkipsATornLastLineAndDeadLettersGarbage(t *testing.T) {
	ucs, srv := newJournalUCS(t, 0)
	path := writeJournal(t, t.TempDir(), 2, 2, time.Now())
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	torn := `{"received_at":"2026-03-01T08:00:00.000Z","operation":"task.end","service_id":"1","ta`
	_, err = f.WriteString("not an event\n" + torn)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	r, err := OpenJournalReplay(JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL)})
	require.NoError(t, err)
	defer r.Close()
	assert.Equal(t, 5, r.Plan().Waiting)
	assert.Equal(t, 1, r.Plan().Unreadable)
	assert.Equal(t, int64(len(torn)), r.Plan().TornBytes)
	sum, err := r.Run(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 4, sum.Delivered)
	assert.Equal(t, 1, sum.DeadLettered)
	assert.Equal(t, int64(len(torn)), sum.TornBytes)
	assert.Len(t, ucs.delivered(), 4)
	letters, unreadable, err := ReadDeadLetters(path + ".dead-letter.jsonl")
	assert.Zero(t, unreadable)
	require.NoError(t, err)
	require.Len(t, letters, 1)
	assert.Contains(t, letters[0].Message(), "not a journal line")
}

func TestJournalReplayInterruptedResumesWithAtMostConcurrencyDuplicates(t *testing.T) {
	ucs, srv := newJournalUCS(t, 2*time.Millisecond)
	path := writeJournal(t, t.TempDir(), 50, 20, time.Now())
	opts := JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL), Replay: ReplayPolicy{Concurrency: 16}}
	r, err := OpenJournalReplay(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for r.Progress().Delivered < 300 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	sum, err := r.Run(ctx)
	require.NoError(t, err)
	r.Close()
	assert.False(t, sum.Complete)
	assert.Positive(t, sum.Remaining)

	r, err = OpenJournalReplay(opts)
	require.NoError(t, err)
	defer r.Close()
	assert.Equal(t, 16, r.Plan().PossibleDuplicates, "an interrupted run may have sent its window twice")
	sum, err = r.Run(context.Background())
	require.NoError(t, err)
	assert.True(t, sum.Complete)
	calls := ucs.delivered()
	checkServiceOrder(t, calls)
	distinct := map[string]bool{}
	for _, c := range calls {
		distinct[c.path] = true
	}
	assert.Len(t, distinct, 1000)
	assert.LessOrEqual(t, len(calls)-1000, 16)
}

func TestJournalFilesAreTheActiveFilesBesideNoDeadLetter(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"events.jsonl", "events-20260301T080000.000Z.jsonl", "other.jsonl",
		"events.jsonl.dead-letter.jsonl", "events.jsonl.dead-letter-20260301T080000.000Z.jsonl",
		"events.jsonl.replay-state.json", "notes.txt"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), nil, 0o600))
	}
	got, err := JournalFiles(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "other.jsonl")}, got)
}

func TestJournalLineHeadReadsAsTheWholeLineDoes(t *testing.T) {
	at := time.Date(2026, 3, 1, 8, 0, 0, 123e6, time.UTC)
	for _, ids := range []RecordIDs{
		TaskEndIDs("95", 3),
		{Operation: "state.end", ServiceID: "383-f9a62aec", IDName: "state_id", ID: 2147483647},
		{Operation: "service.end", ServiceID: "-1"},
	} {
		t.Run(ids.Operation, func(t *testing.T) {
			line := AppendEventRecord(nil, at, ids, []byte(`{"task_id":"not this one","service_id":"nor this"}`))
			fast, ok := fastJournalMeta(line)
			require.True(t, ok, "%s", line)
			slow, _, ok := parseJournalLine(line)
			require.True(t, ok)
			assert.Equal(t, slow, fast)
			assert.Equal(t, ids.ServiceID, fast.sid)
			assert.Equal(t, ids.ID, fast.id)
		})
	}
	for _, line := range []string{
		`{"received_at":"2026-03-01T08:00:00.000Z","operation":"task.end","service_id":"a\"b","task_id":1,"event":{}}`,
		`{"operation":"task.end","received_at":"2026-03-01T08:00:00.000Z","service_id":"1","event":{}}`,
		`{"received_at":"2026-03-01T08:00:00.000Z","operation":"task.end","service_id":"1","task_id":1`,
		`not json`,
	} {
		_, ok := fastJournalMeta([]byte(line))
		assert.False(t, ok, "%s: left to the decoder", line)
	}
}

// TestJournalReplayReadsTheFilesCaddysKeepRemovesMeanwhile: Caddy's keep removes rotated journal
// files while a replay runs, one before the replay reached it and one whose records it keeps on
// disk to read again (one service: its queue beyond the first few records is read back by
// position). The replay holds every file it listed open, so it still delivers every event once,
// in order, and ends by itself.
func TestJournalReplayReadsTheFilesCaddysKeepRemovesMeanwhile(t *testing.T) {
	ucs, srv := newJournalUCS(t, 2*time.Millisecond)
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	j, err := OpenJournal(path, JournalOptions{NoSync: true, MaxSize: 2048, Keep: 100})
	require.NoError(t, err)
	at := time.Now()
	for n := range 60 {
		require.NoError(t, j.AppendEvent(at, TaskEndIDs("1", int64(n)), fmt.Appendf(nil, `{"n":%d,"pad":"%0100d"}`, n, 0)))
	}
	require.NoError(t, j.Close())
	files, err := filepath.Glob(filepath.Join(dir, "events-*.jsonl"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 3, "rotated files")

	r, err := OpenJournalReplay(JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL),
		Replay: ReplayPolicy{Concurrency: 1}})
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, os.Remove(files[1])) // before the replay reached it
	go func() {
		for len(ucs.delivered()) < 2 {
			time.Sleep(time.Millisecond)
		}
		_ = os.Remove(files[0]) // while its records wait in the service's queue
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sum, err := r.Run(ctx)
	require.NoError(t, err)
	require.NoError(t, ctx.Err(), "it ended by itself, not at the test's deadline")
	assert.True(t, sum.Complete)
	var want, got []string
	for n := range 60 {
		want = append(want, fmt.Sprintf("/genesys/1/cs/services/1/tasks/%d/end", n))
	}
	for _, c := range ucs.delivered() {
		got = append(got, c.path)
	}
	assert.Equal(t, want, got, "every event once, in order")
}

// TestJournalReplayHoldsItsDeadLetterWhileItRuns: a resend must not rewrite the dead letter a
// replay appends to (the appends would go to the replaced file), so the replay holds the dead
// letter's lock for its run, and lets it go at the end.
func TestJournalReplayHoldsItsDeadLetterWhileItRuns(t *testing.T) {
	ucs, srv := newJournalUCS(t, 20*time.Millisecond)
	path := writeJournal(t, t.TempDir(), 2, 10, time.Now())
	r, err := OpenJournalReplay(JournalReplayOptions{Journal: path, Forwarder: journalForwarder(t, srv.URL),
		Replay: ReplayPolicy{Concurrency: 1}})
	require.NoError(t, err)
	defer r.Close()
	done := make(chan error, 1)
	go func() { _, err := r.Run(context.Background()); done <- err }()
	require.Eventually(t, func() bool { return len(ucs.delivered()) > 0 }, 10*time.Second, time.Millisecond)
	_, err = LockDeadLetter(path + ".dead-letter.jsonl")
	assert.ErrorContains(t, err, "a journal replay appends to it", "held while the replay runs")
	require.NoError(t, <-done)
	release, err := LockDeadLetter(path + ".dead-letter.jsonl")
	require.NoError(t, err, "let go at the end")
	require.NoError(t, release())
}
