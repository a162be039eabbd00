package upstream

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/testport"
)

// seen is one request as an upstream received it.
type seen struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	Body                         string
}

// recorder is an upstream that records requests and answers with answer (204 when nil).
type recorder struct {
	mu     sync.Mutex
	got    []seen
	answer func(w http.ResponseWriter, r *http.Request)
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.got = append(rc.got, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Clone(), string(body)})
	answer := rc.answer
	rc.mu.Unlock()
	if answer == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	answer(w, r)
}

func (rc *recorder) requests() []seen {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]seen(nil), rc.got...)
}

func mustURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u
}

func newTestForwarder(t testing.TB, timeout time.Duration, raws ...string) *Forwarder {
	t.Helper()
	var urls []*url.URL
	for _, raw := range raws {
		urls = append(urls, mustURL(t, raw))
	}
	f, err := NewForwarder(ForwardOptions{URLs: urls, Timeout: timeout})
	require.NoError(t, err)
	return f
}

// closedURL returns the URL of a port that nothing listens on any more.
func closedURL(t testing.TB) string {
	t.Helper()
	// Not a closed port of the ephemeral range: a parallel test's server
	// could be given it and answer.
	return "http://" + testport.Addr(t)
}

const taskEndPath = "/genesys/1/cs/services/383-f9a62aec/tasks/42/end"

func TestForwardRelaysBodyAndEndToEndHeadersOnly(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	f := newTestForwarder(t, 0, srv.URL+"/prefix/")

	in := http.Header{
		"Authorization":       {"Basic dXNlcjpwYXNz"},
		"Contactcenterid":     {"cc-1"},
		"Groupid":             {"g-7"},
		"X-Custom":            {"a", "b"},
		"Connection":          {"keep-alive, X-Hop"},
		"X-Hop":               {"named by Connection"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Authorization": {"Basic cHJveHk="},
		"Te":                  {"trailers"},
		"Trailer":             {"X-T"},
		"Upgrade":             {"h2c"},
		"Content-Length":      {"999"},
		"Content-Encoding":    {"gzip"},
		"Content-Type":        {"text/plain; charset=ISO-8859-1"},
	}
	body := `{"session_id":"0000CSS0FXZUP6UR","media_type":1003}`
	resp, err := f.Forward(context.Background(), ForwardRequest{
		Path: taskEndPath, RawQuery: "a=1&b=2", Header: in, Body: []byte(body),
		ClientIP: "192.0.2.7", Proto: "https", Host: "gw.example",
	})
	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, resp.Status)
	assert.False(t, resp.Spooled)

	reqs := rc.requests()
	require.Len(t, reqs, 1)
	got := reqs[0]
	assert.Equal(t, http.MethodPost, got.Method)
	assert.Equal(t, "/prefix"+taskEndPath, got.Path)
	assert.Equal(t, "a=1&b=2", got.RawQuery)
	assert.Equal(t, body, got.Body)

	tests := []struct {
		header string
		want   []string // nil: must be absent
	}{
		{"Authorization", []string{"Basic dXNlcjpwYXNz"}},
		{"Contactcenterid", []string{"cc-1"}},
		{"Groupid", []string{"g-7"}},
		{"X-Custom", []string{"a", "b"}},
		{"Content-Type", []string{"application/json;charset=UTF-8"}},
		{"Content-Length", []string{"51"}}, // set by the transport for the new body
		{"X-Forwarded-For", []string{"192.0.2.7"}},
		{"X-Forwarded-Proto", []string{"https"}},
		{"X-Forwarded-Host", []string{"gw.example"}},
		{"X-Hop", nil},
		{"Keep-Alive", nil},
		{"Proxy-Authorization", nil},
		{"Te", nil},
		{"Trailer", nil},
		{"Upgrade", nil},
		{"Content-Encoding", nil},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, got.Header.Values(tt.header), tt.header)
	}
	assert.Equal(t, "keep-alive, X-Hop", in.Get("Connection"), "the caller's headers are not modified")
}

func TestForwardSetsXForwardedHeadersLikeReverseProxy(t *testing.T) {
	tests := []struct {
		name               string
		trusted            bool
		prior              http.Header
		wantFor, wantProto string
		wantHost           string
	}{
		{"untrusted caller without prior headers", false, http.Header{},
			"192.0.2.7", "https", "gw.example"},
		{"untrusted caller cannot forge them", false,
			http.Header{"X-Forwarded-For": {"10.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"evil"}},
			"192.0.2.7", "https", "gw.example"},
		{"trusted proxy's chain is extended and kept", true,
			http.Header{"X-Forwarded-For": {"10.0.0.1, 10.0.0.2"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"front"}},
			"10.0.0.1, 10.0.0.2, 192.0.2.7", "http", "front"},
		{"trusted proxy without prior headers", true, http.Header{},
			"192.0.2.7", "https", "gw.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestForwarder(t, 0, "http://ucs.example")
			o := f.prepare(ForwardRequest{Path: taskEndPath, Header: tt.prior,
				ClientIP: "192.0.2.7", Proto: "https", Host: "gw.example", Trusted: tt.trusted})
			assert.Equal(t, tt.wantFor, o.header.Get("X-Forwarded-For"))
			assert.Equal(t, tt.wantProto, o.header.Get("X-Forwarded-Proto"))
			assert.Equal(t, tt.wantHost, o.header.Get("X-Forwarded-Host"))
		})
	}
}

func TestForwardFailsOverToNextURLWhenFirstIsClosed(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	f := newTestForwarder(t, 0, closedURL(t), srv.URL)

	resp, err := f.Forward(context.Background(), ForwardRequest{Path: taskEndPath, Body: []byte(`{}`)})
	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, resp.Status)
	assert.Len(t, rc.requests(), 1)
}

func TestForwardFailsOverPastGatewayErrors(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer bad.Close()
	rc := &recorder{}
	good := httptest.NewServer(rc)
	defer good.Close()
	f := newTestForwarder(t, 0, bad.URL, good.URL)

	resp, err := f.Forward(context.Background(), ForwardRequest{Path: taskEndPath, Body: []byte(`{}`)})
	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, resp.Status)
	assert.Len(t, rc.requests(), 1)
}

func TestForwardTimeoutIsUnavailable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	f := newTestForwarder(t, 50*time.Millisecond, srv.URL)

	_, err := f.Forward(context.Background(), ForwardRequest{Path: taskEndPath, Body: []byte(`{}`)})
	var ue *UnavailableError
	require.ErrorAs(t, err, &ue)
	assert.True(t, ue.Timeout)
	assert.Equal(t, srv.URL+taskEndPath, ue.URL)
	assert.Contains(t, ue.Error(), "timed out")
}

func TestForwardReturnsCallerCancellationAsIs(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	f := newTestForwarder(t, time.Minute, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()

	_, err := f.Forward(ctx, ForwardRequest{Path: taskEndPath, Body: []byte(`{}`)})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var ue *UnavailableError
	assert.NotErrorAs(t, err, &ue)
}

func TestForwardNoReachableURLIsUnavailable(t *testing.T) {
	first, second := closedURL(t), closedURL(t)
	f := newTestForwarder(t, 0, first, second)
	_, err := f.Forward(context.Background(), ForwardRequest{Path: taskEndPath, Body: []byte(`{}`)})
	var ue *UnavailableError
	require.ErrorAs(t, err, &ue)
	assert.Equal(t, second+taskEndPath, ue.URL)
	assert.Zero(t, ue.Status)
	assert.False(t, ue.Timeout)
	assert.Error(t, ue.Err)
}

func TestUpstreamAnswerIsRelayedOrUnavailable(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		retryAfter  string
		unavailable bool
		wantRetry   time.Duration
	}{
		{"bad request relayed", http.StatusBadRequest, "", false, 0},
		{"not found relayed", http.StatusNotFound, "", false, 0},
		{"conflict relayed", http.StatusConflict, "", false, 0},
		{"internal error relayed", http.StatusInternalServerError, "", false, 0},
		{"created relayed", http.StatusCreated, "", false, 0},
		{"bad gateway unavailable", http.StatusBadGateway, "", true, 0},
		{"service unavailable with Retry-After", http.StatusServiceUnavailable, "7", true, 7 * time.Second},
		{"gateway timeout unavailable", http.StatusGatewayTimeout, "", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"message":"Invalid field media_type","exception":"InvalidFieldException"}`
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Ucs-Trace", "t-1")
				w.Header().Set("Connection", "close")
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, body)
			}))
			defer srv.Close()
			f := newTestForwarder(t, 0, srv.URL)

			resp, err := f.Forward(context.Background(), ForwardRequest{Path: taskEndPath, Body: []byte(`{}`)})
			if tt.unavailable {
				var ue *UnavailableError
				require.ErrorAs(t, err, &ue)
				assert.Equal(t, tt.status, ue.Status)
				assert.Equal(t, tt.wantRetry, ue.RetryAfter)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.status, resp.Status)
			assert.Equal(t, body, string(resp.Body))
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.Equal(t, "t-1", resp.Header.Get("X-Ucs-Trace"))
			assert.Empty(t, resp.Header.Values("Connection"))
			assert.Empty(t, resp.Header.Values("Content-Length"))
		})
	}
}

func TestAnswerOverMaxResponseIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "0123456789")
	}))
	defer srv.Close()
	f, err := NewForwarder(ForwardOptions{URLs: []*url.URL{mustURL(t, srv.URL)}, MaxResponse: 9})
	require.NoError(t, err)

	_, err = f.Forward(context.Background(), ForwardRequest{Path: taskEndPath, Body: []byte(`{}`)})
	var tooLarge *ResponseTooLargeError
	require.ErrorAs(t, err, &tooLarge)
	assert.Equal(t, http.StatusBadRequest, tooLarge.Status)
	assert.Equal(t, int64(9), tooLarge.Limit)
}

func TestNewForwarderRejectsUnusableURLs(t *testing.T) {
	tests := []struct {
		name string
		urls []*url.URL
	}{
		{"no URL", nil},
		{"nil URL", []*url.URL{nil}},
		{"no scheme", []*url.URL{{Host: "ucs:8080"}}},
		{"other scheme", []*url.URL{{Scheme: "ftp", Host: "ucs"}}},
		{"no host", []*url.URL{{Scheme: "http", Path: "/x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewForwarder(ForwardOptions{URLs: tt.urls})
			assert.Error(t, err)
		})
	}
}

func TestJoinURLKeepsBasePrefixAndQueries(t *testing.T) {
	tests := []struct {
		base, path, query, want string
	}{
		{"http://ucs:8080", "/genesys/1/cs/x", "", "http://ucs:8080/genesys/1/cs/x"},
		{"http://ucs:8080/", "/genesys/1/cs/x", "a=1", "http://ucs:8080/genesys/1/cs/x?a=1"},
		{"https://ucs/pre/", "/x", "", "https://ucs/pre/x"},
		{"https://ucs/pre?k=v", "/x", "a=1", "https://ucs/pre/x?k=v&a=1"},
		{"https://ucs/pre?k=v", "/x", "", "https://ucs/pre/x?k=v"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, joinURL(mustURL(t, tt.base), tt.path, tt.query), tt.base)
	}
}

func TestRetryAfterReadsSecondsOrHTTPDate(t *testing.T) {
	now := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"120", 2 * time.Minute},
		{" 5 ", 5 * time.Second},
		{"Thu, 26 Nov 2026 20:00:30 GMT", 30 * time.Second},
		{"Thu, 26 Nov 2026 19:59:00 GMT", 0}, // in the past
		{"99999999", time.Hour},              // capped
		{"Fri, 27 Nov 2026 20:00:00 GMT", time.Hour},
		{"-3", 0},
		{"soon", 0},
		{"1.5", 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, parseRetryAfter(tt.value, now), tt.value)
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, seed := range []string{"", "0", "120", "Thu, 26 Nov 2026 20:00:30 GMT", "-1", "99999999999999999999"} {
		f.Add(seed)
	}
	now := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v, now)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("parseRetryAfter(%q) = %v, outside [0, %v]", v, d, maxRetryAfter)
		}
		// Delay-seconds under the cap are taken exactly.
		if secs, err := strconv.ParseUint(textproto.TrimString(v), 10, 32); err == nil && secs < 3600 {
			if d != time.Duration(secs)*time.Second {
				t.Fatalf("parseRetryAfter(%q) = %v, want %ds", v, d, secs)
			}
		}
	})
}

func TestObserveSeesEveryAttemptWithItsStatus(t *testing.T) {
	sim, srv := newUCSSim(t)
	sim.reject = func(string) (int, string) { return http.StatusBadRequest, `{"message":"no"}` }
	type attempt struct {
		status int
		failed bool
	}
	var mu sync.Mutex
	var seen []attempt
	f, err := NewForwarder(ForwardOptions{
		URLs: []*url.URL{mustURL(t, closedURL(t)), mustURL(t, srv.URL)},
		Observe: func(status int, took time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			assert.Positive(t, took)
			seen = append(seen, attempt{status, err != nil})
		},
	})
	require.NoError(t, err)

	resp, err := f.Forward(context.Background(), ForwardRequest{Path: taskEndPath, Body: []byte(`{}`)})

	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, resp.Status)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []attempt{{0, true}, {http.StatusBadRequest, false}}, seen)
}
