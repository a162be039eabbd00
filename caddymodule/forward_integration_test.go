package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/testport"
	"github.com/ucsedge/caddy-ucs/normalize"
	"github.com/ucsedge/caddy-ucs/upstream"
)

// seenRequest is one request as the upstream received it.
type seenRequest struct {
	method      string
	path, query string
	header      http.Header
	body        string
}

// n is the "n" member of the event, the test's sequence number (-1 if none).
func (s seenRequest) n() int {
	var ev struct {
		N *int `json:"n"`
	}
	if json.Unmarshal([]byte(s.body), &ev) != nil || ev.N == nil {
		return -1
	}
	return *ev.N
}

// ucsServer stands in for the upstream Context Services: a real
// httptest.Server that records every request in arrival order and answers
// with answer (204 when nil). It can stop and come back on the same
// address, as a UCS does after maintenance.
type ucsServer struct {
	t    *testing.T
	addr string // host:port, fixed for the server's whole life

	mu     sync.Mutex
	srv    *httptest.Server
	seen   []seenRequest
	answer func(seenRequest) (status int, header http.Header, body string)
	delay  time.Duration
	// abandoned counts the requests whose client went away during delay.
	abandoned int
}

func newUCSServer(t *testing.T) *ucsServer {
	u := &ucsServer{t: t}
	// A port of its own: a stopped UCS restarts on it (the kernel would
	// hand a port of its ephemeral range to the next test that asks).
	u.start(testport.Addr(t))
	t.Cleanup(u.stop)
	return u
}

func (u *ucsServer) url() string { return "http://" + u.addr }

func (u *ucsServer) start(addr string) {
	var ln net.Listener
	var err error
	// The old socket may linger for a moment after a stop.
	require.Eventually(u.t, func() bool { ln, err = net.Listen("tcp", addr); return err == nil },
		5*time.Second, 10*time.Millisecond, "listen on %s: %v", addr, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	u.mu.Lock()
	u.srv, u.addr = srv, ln.Addr().String()
	u.mu.Unlock()
}

// stop closes the listener and every connection: the upstream is away.
func (u *ucsServer) stop() {
	u.mu.Lock()
	srv := u.srv
	u.srv = nil
	u.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

// restart brings the upstream back: a new listener on the same address.
func (u *ucsServer) restart() { u.start(u.addr) }

func (u *ucsServer) set(change func(*ucsServer)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	change(u)
}

func (u *ucsServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s := seenRequest{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, header: r.Header.Clone(), body: string(body)}
	u.mu.Lock()
	u.seen = append(u.seen, s)
	answer, delay := u.answer, u.delay
	u.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			u.mu.Lock()
			u.abandoned++
			u.mu.Unlock()
			return
		}
	}
	status, header, text := http.StatusNoContent, http.Header(nil), ""
	if answer != nil {
		status, header, text = answer(s)
	}
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}

func (u *ucsServer) received() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

// numbers are the sequence numbers of the events received, in order.
func (u *ucsServer) numbers() []int {
	var out []int
	for _, s := range u.received() {
		out = append(out, s.n())
	}
	return out
}

func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for n := from; n < to; n++ {
		out = append(out, n)
	}
	return out
}

// fastReplay makes the spools opened by the test retry every few
// milliseconds instead of backing off up to 30s.
func fastReplay(t *testing.T) {
	spoolBackoff = [2]time.Duration{5 * time.Millisecond, 50 * time.Millisecond}
	t.Cleanup(func() { spoolBackoff = [2]time.Duration{} })
}

// sendEvent posts the loose event number n and requires status.
func sendEvent(t *testing.T, tester *caddytest.Tester, n int, status int) []byte {
	t.Helper()
	resp, b := post(t, tester, taskEndURL, fmt.Appendf(nil, "{n: %d, session_id: S%d}", n, n))
	require.Equal(t, status, resp.StatusCode, "event %d: %s", n, b)
	return b
}

func TestForwardPostsTheStrictBodyAndRelaysTheAnswerUnchanged(t *testing.T) {
	ucs := newUCSServer(t)
	tester := startCaddy(t, "ucs {\nbusiness_attributes "+attrsFile+"\nforward "+ucs.url()+"/prefix\n}\nrespond 404")
	body := `{media_type: email, session_id: 0000CSS0FXZUP6UR, price: 25 000}`
	want := strictOf(t, normalize.Options{Attributes: attributeTables(t)}, body)
	const genesysError = `{"message":"Service 42 not found","exception":"ServiceNotFoundException"}`

	tests := []struct {
		name   string
		status int
		header http.Header
		answer string
	}{
		{"204 accepted", http.StatusNoContent, http.Header{"X-Ucs-Node": {"ucs1"}}, ""},
		{"4xx error body relayed unchanged", http.StatusNotFound,
			http.Header{"Content-Type": {"application/json"}, "X-Ucs-Node": {"ucs1"}}, genesysError},
		{"500 relayed, not retried", http.StatusInternalServerError,
			http.Header{"Content-Type": {"text/plain"}}, "internal error"},
		{"200 with a body", http.StatusOK, http.Header{"Content-Type": {"application/json"}}, `{"ok":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ucs.set(func(u *ucsServer) {
				u.seen = nil
				u.answer = func(seenRequest) (int, http.Header, string) { return tt.status, tt.header, tt.answer }
			})
			resp, got := post(t, tester, taskEndURL+"?trace=1", []byte(body),
				"Authorization", "Basic dXNlcjpwYXNz",
				"ContactCenterId", "cc-1",
				"GroupId", "g-7",
				"X-Request-Trace", "t-1",
				"Connection", "X-Hop",
				"X-Hop", "must not pass",
				"X-Forwarded-For", "203.0.113.66", // forged: the caller is not a trusted proxy
				"Content-Type", "text/plain")

			assert.Equal(t, tt.status, resp.StatusCode)
			assert.Equal(t, tt.answer, string(got))
			for k := range tt.header {
				assert.Equal(t, tt.header.Get(k), resp.Header.Get(k), k)
			}
			seen := ucs.received()
			require.Len(t, seen, 1, "one POST, no retry")
			s := seen[0]
			assert.Equal(t, string(want), s.body)
			assert.Equal(t, "/prefix/genesys/1/cs/services/42/tasks/7/end", s.path)
			assert.Equal(t, "trace=1", s.query)
			assert.Equal(t, "Basic dXNlcjpwYXNz", s.header.Get("Authorization"))
			assert.Equal(t, "cc-1", s.header.Get("ContactCenterId"))
			assert.Equal(t, "g-7", s.header.Get("GroupId"))
			assert.Equal(t, "t-1", s.header.Get("X-Request-Trace"))
			assert.Empty(t, s.header.Get("X-Hop"))
			assert.Equal(t, "application/json;charset=UTF-8", s.header.Get("Content-Type"))
			assert.Equal(t, "127.0.0.1", s.header.Get("X-Forwarded-For"))
			assert.Equal(t, "http", s.header.Get("X-Forwarded-Proto"))
			assert.Equal(t, caddyHost, s.header.Get("X-Forwarded-Host"))
		})
	}
}

func TestForwardFailsOverToTheSecondURL(t *testing.T) {
	good := newUCSServer(t)
	gateway := newUCSServer(t)
	gateway.set(func(u *ucsServer) {
		u.answer = func(seenRequest) (int, http.Header, string) { return http.StatusServiceUnavailable, nil, "" }
	})
	closed := newUCSServer(t)
	closed.stop()

	tests := []struct {
		name  string
		first string
	}{
		{"first cannot be reached", closed.url()},
		{"first answers 503", gateway.url()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good.set(func(u *ucsServer) { u.seen = nil })
			tester := startCaddy(t, "ucs {\nforward "+tt.first+" "+good.url()+"\n}\nrespond 404")
			sendEvent(t, tester, 1, http.StatusNoContent)
			assert.Equal(t, []int{1}, good.numbers())
		})
	}
}

func TestForwardWithoutSpoolAnswers502Or504(t *testing.T) {
	ucs := newUCSServer(t)
	tests := []struct {
		name      string
		setup     func()
		status    int
		message   string
		outcome   string
		exception string
	}{
		{"unreachable", ucs.stop, http.StatusBadGateway,
			"the upstream Context Services could not be reached; the event was not delivered", "error", "UpstreamUnavailableException"},
		{"answers 503", func() {
			ucs.set(func(u *ucsServer) {
				u.answer = func(seenRequest) (int, http.Header, string) { return http.StatusServiceUnavailable, nil, "busy" }
			})
		}, http.StatusBadGateway, "the upstream Context Services answered 503; the event was not delivered", "error", "UpstreamUnavailableException"},
		{"times out", func() { ucs.set(func(u *ucsServer) { u.delay = 5 * time.Second }) }, http.StatusGatewayTimeout,
			"the upstream Context Services did not answer within 300ms; the event may not have been delivered", "error", "UpstreamUnavailableException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ucs.stop()
			ucs.restart()
			ucs.set(func(u *ucsServer) { u.answer, u.delay, u.abandoned = nil, 0, 0 })
			tt.setup()
			tester := startCaddy(t, `
	header {
		defer
		X-Outcome "{http.ucs.outcome}"
	}
	ucs {
		forward `+ucs.url()+` {
			timeout 300ms
		}
	}
	respond 404`)
			resp, b := post(t, tester, taskEndURL, []byte(`{"n":1}`))
			assert.Equal(t, tt.status, resp.StatusCode)
			if tt.status == http.StatusGatewayTimeout {
				// The gateway hung up on the slow UCS rather than waiting for its answer.
				assert.Eventually(t, func() bool {
					ucs.mu.Lock()
					defer ucs.mu.Unlock()
					return ucs.abandoned == 1
				}, 10*time.Second, 10*time.Millisecond, "the timeout ends the exchange")
			}
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var eb errorBody
			require.NoError(t, json.Unmarshal(b, &eb), "%s", b)
			assert.Equal(t, errorBody{Message: tt.message, Exception: tt.exception}, eb)
			assert.Equal(t, tt.outcome, resp.Header.Get("X-Outcome"))
		})
	}
}

// spoolSeries is a spool metric's series name for dir.
func spoolSeries(t *testing.T, name, dir string) string {
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)
	return fmt.Sprintf(`caddy_ucs_%s{spool=%q}`, name, abs)
}

func TestOutageIsSpooledAndReplayedInOrder(t *testing.T) {
	fastReplay(t)
	ucs := newUCSServer(t)
	dir := t.TempDir()
	tester := startCaddy(t, `
	header {
		defer
		X-Outcome "{http.ucs.outcome}"
	}
	ucs {
		forward `+ucs.url()+` {
			timeout 2s
			spool `+dir+`
		}
	}
	respond 404`)
	// The spool's counters and down gauge are exposed at 0 from the start:
	// an alert on increase() sees the first dead letter only after a 0.
	for _, name := range []string{"spool_replayed_total", "spool_dead_lettered_total", "spool_worker_restarts_total", "spool_upstream_down"} {
		v, ok := sample(t, spoolSeries(t, name, dir))
		assert.True(t, ok && v == 0, "%s exposed at 0 when the spool opens (exposed %t, value %g)", name, ok, v)
	}
	replayedBefore := scrape(t, spoolSeries(t, "spool_replayed_total", dir))
	classBefore := scrape(t, `caddy_ucs_upstream_responses_total{class="2xx"}`)

	// Up: delivered directly, the upstream's 204 relayed.
	resp, _ := post(t, tester, taskEndURL, []byte(`{n: 0}`))
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, "relayed", resp.Header.Get("X-Outcome"))

	// Down: every event is acknowledged from the spool.
	ucs.stop()
	for n := 1; n <= 100; n++ {
		resp, _ := post(t, tester, taskEndURL, fmt.Appendf(nil, "{n: %d}", n))
		require.Equal(t, http.StatusNoContent, resp.StatusCode, "event %d", n)
		require.Equal(t, "spooled", resp.Header.Get("X-Outcome"), "event %d", n)
	}
	assert.Equal(t, 100.0, scrape(t, spoolSeries(t, "spool_records", dir)))
	assert.Positive(t, scrape(t, spoolSeries(t, "spool_bytes", dir)))
	assert.Equal(t, []int{0}, ucs.numbers())
	assert.Equal(t, 1.0, scrape(t, spoolSeries(t, "spool_upstream_down", dir)), "the outage is reported")

	// Back, and slow enough that the events sent now meet a replay in
	// progress: they queue behind the spool.
	ucs.set(func(u *ucsServer) { u.delay = 5 * time.Millisecond })
	ucs.restart()
	queued := 0
	for n := 101; n <= 120; n++ {
		resp, _ := post(t, tester, taskEndURL, fmt.Appendf(nil, "{n: %d}", n))
		require.Equal(t, http.StatusNoContent, resp.StatusCode, "event %d", n)
		if resp.Header.Get("X-Outcome") == "spooled" {
			queued++
		}
	}
	require.Positive(t, queued, "events sent during the replay queue behind it")
	// Drained: nothing waits and nothing is in flight, so a duplicate would have arrived.
	require.Eventually(t, func() bool {
		return scrape(t, spoolSeries(t, "spool_records", dir)) == 0 &&
			scrape(t, spoolSeries(t, "spool_in_flight", dir)) == 0 &&
			scrape(t, spoolSeries(t, "spool_oldest_age_seconds", dir)) == 0
	}, 20*time.Second, 10*time.Millisecond, "records, in flight and oldest age fall to 0 once drained")

	assert.Equal(t, seq(0, 121), ucs.numbers(), "every event exactly once, in acceptance order")
	assert.Zero(t, scrape(t, spoolSeries(t, "spool_bytes", dir)))
	assert.Zero(t, scrape(t, spoolSeries(t, "spool_upstream_down", dir)), "the UCS answers again")
	assert.GreaterOrEqual(t, scrape(t, spoolSeries(t, "spool_replayed_total", dir))-replayedBefore, 100.0)
	assert.GreaterOrEqual(t, scrape(t, `caddy_ucs_upstream_responses_total{class="2xx"}`)-classBefore, 121.0)
	assert.Positive(t, scrape(t, "caddy_ucs_upstream_duration_seconds_count"))
	for _, s := range ucs.received() {
		assert.Equal(t, "127.0.0.1", s.header.Get("X-Forwarded-For"), "a replayed event keeps its headers")
	}
}

type deadLetterLine struct {
	FailedAt string          `json:"failed_at"`
	Status   int             `json:"status"`
	Response json.RawMessage `json:"response"`
	Record   struct {
		Path string          `json:"path"`
		Body json.RawMessage `json:"body"`
	} `json:"record"`
}

func TestRejectedReplayGoesToTheDeadLetterAndTheSpoolMovesOn(t *testing.T) {
	fastReplay(t)
	ucs := newUCSServer(t)
	dir := t.TempDir()
	deadLetter := filepath.Join(t.TempDir(), "rejected.jsonl")
	tester := startCaddy(t, "ucs {\nforward "+ucs.url()+" {\nspool "+dir+"\ndead_letter "+deadLetter+"\n}\n}\nrespond 404")
	deadBefore := scrape(t, spoolSeries(t, "spool_dead_lettered_total", dir))

	ucs.stop()
	for n := range 10 {
		sendEvent(t, tester, n, http.StatusNoContent)
	}
	const answer = `{"message":"attribute not found","exception":"InvalidBusinessAttributeException"}`
	ucs.set(func(u *ucsServer) {
		u.answer = func(s seenRequest) (int, http.Header, string) {
			if n := s.n(); n == 3 || n == 7 {
				return http.StatusBadRequest, http.Header{"Content-Type": {"application/json"}}, answer
			}
			return http.StatusNoContent, nil, ""
		}
	})
	ucs.restart()
	require.Eventually(t, func() bool { return len(ucs.received()) >= 10 }, 20*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return scrape(t, spoolSeries(t, "spool_records", dir)) == 0 }, 5*time.Second, 10*time.Millisecond)

	assert.Equal(t, seq(0, 10), ucs.numbers(), "each event tried once; the rejected ones did not block the rest")
	assert.Equal(t, 2.0, scrape(t, spoolSeries(t, "spool_dead_lettered_total", dir))-deadBefore)
	data, err := os.ReadFile(deadLetter)
	require.NoError(t, err)
	var lines []deadLetterLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l deadLetterLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), "%s", sc.Text())
		lines = append(lines, l)
	}
	require.Len(t, lines, 2)
	for i, n := range []int{3, 7} {
		assert.Equal(t, http.StatusBadRequest, lines[i].Status)
		assert.JSONEq(t, answer, string(lines[i].Response))
		assert.Equal(t, "/genesys/1/cs/services/42/tasks/7/end", lines[i].Record.Path)
		assert.Equal(t, n, seenRequest{body: string(lines[i].Record.Body)}.n())
		_, err := time.Parse("2006-01-02T15:04:05.000Z", lines[i].FailedAt)
		assert.NoError(t, err)
	}
}

func TestFullSpoolAnswers503AndStoresNothingMore(t *testing.T) {
	ucs := newUCSServer(t)
	ucs.stop()
	dir := t.TempDir()
	tester := startCaddy(t, "ucs {\nforward "+ucs.url()+" {\nspool "+dir+"\nmax_spool 2KiB\n}\n}\nrespond 404")

	accepted := 0
	var refused []byte
	retryAfter := ""
	for n := range 100 {
		resp, b := post(t, tester, taskEndURL, fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, n, strings.Repeat("x", 100)))
		if resp.StatusCode != http.StatusNoContent {
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			refused, retryAfter = b, resp.Header.Get("Retry-After")
			break
		}
		accepted++
	}
	require.NotNil(t, refused, "the spool must fill up")
	secs, err := strconv.Atoi(retryAfter)
	require.NoError(t, err, "Retry-After %q", retryAfter)
	assert.GreaterOrEqual(t, secs, 1, "nothing drains during the outage: at least a second")
	var eb errorBody
	require.NoError(t, json.Unmarshal(refused, &eb))
	assert.Equal(t, "UpstreamUnavailableException", eb.Exception)
	assert.Contains(t, eb.Message, "the spool is full (max_spool 2048 bytes)")
	assert.Equal(t, float64(accepted), scrape(t, spoolSeries(t, "spool_records", dir)))
	assert.LessOrEqual(t, scrape(t, spoolSeries(t, "spool_bytes", dir)), 2048.0)
}

func TestDiskFullWhileSpoolingAnswers503AndLeavesNoPartialRecord(t *testing.T) {
	var full atomic.Bool
	spoolFS = faultFS{FileSystem: upstream.OSFileSystem(), full: &full}
	t.Cleanup(func() { spoolFS = nil })
	fastReplay(t)
	ucs := newUCSServer(t)
	ucs.stop()
	dir := t.TempDir()
	tester := startCaddy(t, "ucs {\nforward "+ucs.url()+" {\nspool "+dir+"\n}\n}\nrespond 404")

	sendEvent(t, tester, 1, http.StatusNoContent)
	full.Store(true)
	b := sendEvent(t, tester, 2, http.StatusServiceUnavailable)
	full.Store(false)
	sendEvent(t, tester, 3, http.StatusNoContent)

	var eb errorBody
	require.NoError(t, json.Unmarshal(b, &eb))
	assert.Equal(t, "StorageException", eb.Exception)
	assert.Contains(t, eb.Message, "no space left on device")
	data, err := os.ReadFile(filepath.Join(dir, "spool.jsonl"))
	require.NoError(t, err)
	assert.Equal(t, 2, bytes.Count(data, []byte("\n")), "spool: %q", data)
	assert.True(t, bytes.HasSuffix(data, []byte("\n")))
	assert.NotContains(t, string(data), `"n":2`)

	ucs.restart()
	require.Eventually(t, func() bool { return len(ucs.received()) >= 2 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, []int{1, 3}, ucs.numbers())
}

func TestReloadKeepsOneSpoolAndReplaysToTheNewURL(t *testing.T) {
	fastReplay(t)
	oldUCS, newUCS := newUCSServer(t), newUCSServer(t)
	oldUCS.stop()
	dir := t.TempDir()
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)
	site := func(url string) string {
		return "ucs {\nforward " + url + " {\nspool " + dir + "\n}\n}\nrespond 404"
	}

	tester := startCaddy(t, site(oldUCS.url()))
	for n := range 5 {
		sendEvent(t, tester, n, http.StatusNoContent)
	}
	before := openSinkOf(spools, abs)
	// The new config is provisioned while the old one still owns the
	// spool: it shares it, and its forwarder takes over the replay.
	loadSite(t, tester, site(newUCS.url()))
	sendEvent(t, tester, 5, http.StatusNoContent)

	require.Eventually(t, func() bool { return len(newUCS.received()) >= 6 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, seq(0, 6), newUCS.numbers())
	assert.Same(t, before, openSinkOf(spools, abs), "one spool across the reload")
	refs, ok := referencesOf(spools, abs)
	assert.True(t, ok)
	assert.Equal(t, 1, refs)
}

func TestTwoSinksOfOneConfigCannotShareASpool(t *testing.T) {
	ucs := newUCSServer(t)
	dir := t.TempDir()
	ctx, cancel := newTestContext(t)
	defer cancel()
	first := &Handler{Forward: &ForwardSink{URLs: []string{ucs.url()}, Spool: dir}}
	require.NoError(t, first.Provision(ctx))
	defer first.Cleanup()

	second := &Handler{Forward: &ForwardSink{URLs: []string{ucs.url()}, Spool: dir}}
	err := second.Provision(ctx)

	require.Error(t, err)
	assert.Contains(t, err.Error(), "already the spool of another forward sink in this config")
	require.NoError(t, second.Cleanup())
	startUCSApp(t, ctx)
	abs, _ := filepath.Abs(dir)
	refs, _ := referencesOf(spools, abs)
	assert.Equal(t, 1, refs, "the refused sink holds no reference")

	// Outside the pool (another process, in effect), the flock refuses it.
	u, err := url.Parse(ucs.url())
	require.NoError(t, err)
	fwd, err := upstream.NewForwarder(upstream.ForwardOptions{URLs: []*url.URL{u}})
	require.NoError(t, err)
	_, err = upstream.OpenSpool(upstream.SpoolOptions{Dir: abs, Forwarder: fwd})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is in use by another spool")
}

func TestTwoSitesOfOneConfigCannotShareASpool(t *testing.T) {
	startCaddy(t, "respond 404") // skips with -short; the config below replaces this one if it loads
	dir := t.TempDir()
	cfg := globalOptions + fmt.Sprintf(`
%[2]s {
	ucs {
		forward http://127.0.0.1:1 {
			spool %[1]s
		}
	}
}
http://localhost:%[3]d {
	ucs {
		forward http://127.0.0.1:2 {
			spool %[1]s
		}
	}
}
`, dir, caddyURL, testport.Free(t))
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	require.NoError(t, err)

	err = caddy.Load(cfgJSON, true)

	require.Error(t, err)
	assert.Contains(t, err.Error(), "already the spool of another forward sink in this config")
	abs, _ := filepath.Abs(dir)
	_, ok := referencesOf(spools, abs)
	assert.False(t, ok, "the failed config holds no spool")
}
