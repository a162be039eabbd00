package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

const (
	// DefaultForwardTimeout bounds one exchange with the upstream, over every URL tried.
	DefaultForwardTimeout = 10 * time.Second
	// defaultMaxResponse bounds the upstream answer kept in memory for relaying; a Context Services
	// answer to an event is empty or a short JSON error.
	defaultMaxResponse = 1 << 20
	// forwardContentType is what the normalised body is: strict UTF-8 JSON.
	forwardContentType = "application/json;charset=UTF-8"
)

// ForwardOptions configures a Forwarder.
type ForwardOptions struct {
	// URLs are the upstream base URLs (http or https), tried in order: the next one when a URL cannot
	// be reached or answers 502, 503 or 504. A base URL's path is a prefix of the forwarded path.
	URLs []*url.URL
	// Timeout bounds the whole exchange, over all URLs; <= 0 means 10s.
	Timeout time.Duration
	// Transport sends the requests; nil means a pooled keep-alive *http.Transport sized for hundreds
	// of concurrent calls.
	Transport http.RoundTripper
	// TLS is the client side of https URLs (trusted CAs, client certificate, server name) for the
	// default transport; nil means Go's defaults: the system's roots and no client certificate.
	TLS *tls.Config
	// MaxResponse bounds the upstream's answer body kept for relaying; <= 0 means 1 MiB.
	MaxResponse int64
	// Logger receives failover lines at debug and warn; nil means zap.NewNop().
	Logger *zap.Logger
	// Observe, if set, is called after every attempt on one URL, direct or replayed, with the
	// answer's status (0 when there was none), the time from sending to the end of the answer, and
	// the transport error. It runs on the request's goroutine: it must be quick.
	Observe func(status int, took time.Duration, err error)
}

// ForwardRequest is one event to post upstream.
type ForwardRequest struct {
	Method   string      // the request's method; "" means POST
	Path     string      // path of the incoming request, e.g. /genesys/1/cs/services/1/tasks/2/end
	RawQuery string      // its query, without '?'
	Header   http.Header // the caller's headers; read, never modified
	Body     []byte      // the normalised event: strict UTF-8 JSON
	// Lane is the ordering key of a spooled event: events of one lane reach the upstream in the
	// order they were accepted, different lanes are delivered concurrently. The handler uses the
	// service id, so a service's events keep their order.
	Lane string

	// ClientIP is the caller's address, added to X-Forwarded-For.
	ClientIP string
	// Proto ("http" or "https") and Host are what the caller used, for X-Forwarded-Proto/-Host.
	Proto, Host string
	// Trusted says the caller is a trusted proxy: its X-Forwarded-For is extended and its
	// X-Forwarded-Proto/-Host kept, as Caddy's reverse_proxy does with trusted_proxies. Otherwise
	// all three are replaced, so a client cannot forge them.
	Trusted bool
}

// Response is the upstream's answer, relayed to the caller.
type Response struct {
	Status int
	Header http.Header // end-to-end headers only; the relay sets its own Content-Length
	Body   []byte
	// Spooled is set by Spool.Submit when the event was stored for later delivery instead: the
	// caller answers 204 with an empty body.
	Spooled bool
}

// UnavailableError means the event did not reach an upstream that took responsibility for it: no
// URL could be reached, the timeout passed, or the last answer was 502, 503 or 504. These are the
// failures the spool stores the event for; every other outcome is an answer to relay.
type UnavailableError struct {
	URL        string        // the last URL tried
	Status     int           // the last answer's status (502/503/504), or 0 when there was none
	RetryAfter time.Duration // from the last answer's Retry-After header; 0 when absent
	Timeout    bool          // the timeout passed
	Err        error         // the transport error, if any
}

// Error describes the failure without any request data.
func (e *UnavailableError) Error() string {
	switch {
	case e.Timeout:
		return fmt.Sprintf("upstream %s: timed out: %v", e.URL, e.Err)
	case e.Status != 0:
		return fmt.Sprintf("upstream %s: answered %d", e.URL, e.Status)
	default:
		return fmt.Sprintf("upstream %s: %v", e.URL, e.Err)
	}
}

// Unwrap returns the transport error.
func (e *UnavailableError) Unwrap() error { return e.Err }

// ResponseTooLargeError is an upstream answer whose body passed MaxResponse. The event did reach
// the upstream, which answered Status; the caller answers 502.
type ResponseTooLargeError struct {
	URL    string
	Status int
	Limit  int64
}

// Error names the URL, the status and the limit.
func (e *ResponseTooLargeError) Error() string {
	return fmt.Sprintf("upstream %s: answer %d has a body over %d bytes", e.URL, e.Status, e.Limit)
}

// Forwarder posts events to the upstream Context Services. It knows HTTP, not Caddy, and is safe
// for concurrent use.
type Forwarder struct {
	urls        []*url.URL
	timeout     time.Duration
	client      *http.Client
	maxResponse int64
	logger      *zap.Logger
	observe     func(int, time.Duration, error)
}

// NewForwarder checks the options and builds a Forwarder.
func NewForwarder(opts ForwardOptions) (*Forwarder, error) {
	if len(opts.URLs) == 0 {
		return nil, errors.New("forward: at least one upstream URL is needed")
	}
	for _, u := range opts.URLs {
		if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("forward: upstream %v is not an http or https URL with a host", u)
		}
	}
	f := &Forwarder{
		urls:        opts.URLs,
		timeout:     opts.Timeout,
		maxResponse: opts.MaxResponse,
		logger:      opts.Logger,
		observe:     opts.Observe,
	}
	if f.timeout <= 0 {
		f.timeout = DefaultForwardTimeout
	}
	if f.maxResponse <= 0 {
		f.maxResponse = defaultMaxResponse
	}
	if f.logger == nil {
		f.logger = zap.NewNop()
	}
	rt := opts.Transport
	if rt == nil {
		rt = newTransport(opts.TLS)
	}
	// Redirects are relayed, not followed: a POST must not silently turn into a GET.
	f.client = &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return f, nil
}

// Timeout is the bound of one exchange, over every URL tried.
func (f *Forwarder) Timeout() time.Duration { return f.timeout }

// CloseIdleConnections closes the kept-alive connections that no request is using: a Forwarder
// replaced by a config reload lets its connections go at once instead of after the idle timeout.
func (f *Forwarder) CloseIdleConnections() { f.client.CloseIdleConnections() }

// newTransport is sized for hundreds of concurrent events to a few upstreams, each keeping its
// connection alive for the next one.
func newTransport(tlsConfig *tls.Config) *http.Transport {
	return &http.Transport{
		TLSClientConfig: tlsConfig,
		Proxy:           http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   3 * time.Second, // a dead URL fails over well inside the exchange timeout
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// outbound is a request ready to send: what the spool stores and replays.
type outbound struct {
	method, path, rawQuery string
	header                 http.Header
	body                   []byte
	lane                   string // ordering key in the spool; not sent
}

// Forward posts req.Body to the same path and query on the upstream and returns its answer. Errors:
// *UnavailableError (see there), *ResponseTooLargeError, or the caller's context error when ctx
// ended first.
func (f *Forwarder) Forward(ctx context.Context, req ForwardRequest) (*Response, error) {
	return f.send(ctx, f.prepare(req))
}

// prepare builds the outbound request: the caller's end-to-end headers without those that
// described the old body, plus X-Forwarded-*.
func (f *Forwarder) prepare(req ForwardRequest) outbound {
	h := make(http.Header, len(req.Header)+4)
	for k, v := range req.Header {
		h[k] = slices.Clone(v)
	}
	removeHopByHop(h)
	// The body is new: its length, coding and type are the forwarder's. Accept-Encoding is left to
	// the transport, which then decodes the answer itself, so the relayed body is plain.
	for _, k := range []string{"Content-Length", "Content-Encoding", "Content-Type", "Accept-Encoding", "Expect", "Host"} {
		delete(h, k)
	}
	h.Set("Content-Type", forwardContentType)

	xff := req.ClientIP
	if prior := h.Values("X-Forwarded-For"); req.Trusted && len(prior) > 0 && req.ClientIP != "" {
		xff = strings.Join(prior, ", ") + ", " + req.ClientIP
	}
	setOrDelete(h, "X-Forwarded-For", xff)
	if !req.Trusted || h.Get("X-Forwarded-Proto") == "" {
		setOrDelete(h, "X-Forwarded-Proto", req.Proto)
	}
	if !req.Trusted || h.Get("X-Forwarded-Host") == "" {
		setOrDelete(h, "X-Forwarded-Host", req.Host)
	}
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	return outbound{method: method, path: req.Path, rawQuery: req.RawQuery, header: h, body: req.Body, lane: req.Lane}
}

func setOrDelete(h http.Header, k, v string) {
	if v == "" {
		h.Del(k)
		return
	}
	h.Set(k, v)
}

// removeHopByHop deletes the headers that describe one connection (RFC 9110 section 7.6.1),
// including those named in Connection.
func removeHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for k := range h {
		switch textproto.CanonicalMIMEHeaderKey(k) {
		case "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
			delete(h, k)
		default:
			if strings.HasPrefix(textproto.CanonicalMIMEHeaderKey(k), "Proxy-") {
				delete(h, k)
			}
		}
	}
}

// errForwardTimeout is the cause of the exchange's own deadline, told apart from the caller's.
var errForwardTimeout = errors.New("forward timeout")

// send tries the URLs in order within one timeout.
func (f *Forwarder) send(parent context.Context, o outbound) (*Response, error) {
	ctx, cancel := context.WithTimeoutCause(parent, f.timeout, errForwardTimeout)
	defer cancel()
	var last *UnavailableError
	for i, base := range f.urls {
		target := joinURL(base, o.path, o.rawQuery)
		resp, err := f.try(ctx, target, o)
		switch {
		case err == nil && !gatewayFailure(resp.Status):
			return resp, nil
		case err == nil:
			last = &UnavailableError{URL: target, Status: resp.Status,
				RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
		case parent.Err() != nil:
			// The caller went away (or shut down): not the upstream's fault.
			return nil, context.Cause(parent)
		case errors.Is(context.Cause(ctx), errForwardTimeout):
			return nil, &UnavailableError{URL: target, Timeout: true, Err: err}
		default:
			var tooLarge *ResponseTooLargeError
			if errors.As(err, &tooLarge) {
				return nil, err
			}
			last = &UnavailableError{URL: target, Err: err}
		}
		if i+1 < len(f.urls) {
			f.logger.Warn("upstream unavailable; trying the next one",
				zap.String("url", target), zap.Int("status", last.Status), zap.NamedError("cause", last.Err))
		}
	}
	return nil, last
}

// try makes one request and reads the bounded answer, reporting it to the Observe hook.
func (f *Forwarder) try(ctx context.Context, target string, o outbound) (*Response, error) {
	if f.observe == nil {
		return f.exchange(ctx, target, o)
	}
	start := time.Now()
	resp, err := f.exchange(ctx, target, o)
	status, observed := 0, err
	var tooLarge *ResponseTooLargeError
	switch {
	case resp != nil:
		status = resp.Status
	case errors.As(err, &tooLarge):
		status, observed = tooLarge.Status, nil // an answer came: its class is what counts
	}
	f.observe(status, time.Since(start), observed)
	return resp, err
}

// exchange makes one request and reads the bounded answer.
func (f *Forwarder) exchange(ctx context.Context, target string, o outbound) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, o.method, target, bytes.NewReader(o.body))
	if err != nil {
		return nil, err
	}
	req.Header = o.header.Clone()
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxResponse+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > f.maxResponse {
		return nil, &ResponseTooLargeError{URL: target, Status: resp.StatusCode, Limit: f.maxResponse}
	}
	h := resp.Header
	removeHopByHop(h)
	h.Del("Content-Length") // the relay writes the body it has
	return &Response{Status: resp.StatusCode, Header: h, Body: body}, nil
}

// gatewayFailure is an answer from a proxy or load balancer in front of the UCS saying that it could
// not hand the event on: the event was not processed, so it may be sent again.
func gatewayFailure(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable ||
		status == http.StatusGatewayTimeout
}

// joinURL appends path to the base URL's path and joins the queries, as reverse proxies do.
func joinURL(base *url.URL, path, rawQuery string) string {
	u := *base
	u.Path = strings.TrimSuffix(base.Path, "/") + path
	u.RawPath = ""
	switch {
	case base.RawQuery == "":
		u.RawQuery = rawQuery
	case rawQuery != "":
		u.RawQuery = base.RawQuery + "&" + rawQuery
	}
	return u.String()
}

// maxRetryAfter caps an upstream's Retry-After, so a bogus far-future value cannot stall the spool.
const maxRetryAfter = time.Hour

// parseRetryAfter reads a Retry-After value, delay-seconds or an HTTP date (RFC 9110 section
// 10.2.3), as a delay from now. Absent, malformed or past values give 0; the result is at most one
// hour.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = textproto.TrimString(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 63); err == nil {
		d = time.Duration(min(secs, uint64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
