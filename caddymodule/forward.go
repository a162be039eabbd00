package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// Defaults of the forward sink; the field comments repeat them for users.
const (
	DefaultForwardTimeout = upstream.DefaultForwardTimeout
	DefaultMaxSpool       = upstream.DefaultMaxSpool
)

// ForwardSink posts each normalised event to the same path and query on a
// Context Services server and relays its answer (status, headers, body)
// unchanged. With a spool, an event the upstream cannot take now is stored
// durably, answered 204 and replayed in order later.
type ForwardSink struct {
	// URLs are the base URLs of the upstream Context Services (http or
	// https, with a host; a path is a prefix of the forwarded path). They
	// are tried in order: the next one when one cannot be reached or
	// answers 502, 503 or 504. Required.
	URLs []string `json:"urls,omitempty"`

	// Timeout bounds the whole exchange with the upstream, over every URL
	// tried, from sending the event to the end of the answer. Without a
	// spool, passing it answers 504. Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Spool is a directory that turns on store and forward: when the
	// upstream cannot be reached, times out or answers 502/503/504, the
	// event is written there (fsynced) and the caller gets 204; a
	// background worker replays the spool concurrently, in order per
	// service: a new event of a service that has events waiting queues
	// behind them, other services' events still go straight to the
	// upstream. While the upstream is known to be down (the last
	// deliveries all failed), new events are stored without a direct
	// attempt, so callers are not held for the timeout. One owner per directory:
	// another Caddy process on it fails to start. Default: none, so an
	// unavailable upstream answers 502 or 504.
	Spool string `json:"spool,omitempty"`

	// MaxSpool bounds the bytes waiting in the spool; an event that would
	// pass it is refused with 503 (never dropped silently). Only with
	// spool. Default: 1 GiB (1073741824).
	MaxSpool int64 `json:"max_spool,omitempty"`

	// DeadLetter is the file that receives the spooled events the upstream
	// rejected during replay (any answer but 2xx, 502, 503 and 504), one
	// JSON line `{"failed_at","status","response","record"}` each. Only
	// with spool. Default: `<spool>/dead-letter.jsonl`.
	DeadLetter string `json:"dead_letter,omitempty"`

	// ReplayConcurrency pins the spooled events in flight during replay to
	// a fixed number: sent to the upstream and not yet recorded as finished
	// on disk. Events of one service are still sent one at a time, in
	// order. It is also the bound on the events a crash can make the
	// replay send twice. Only with spool. Default: 0, adaptive (see
	// replay_concurrency_max).
	ReplayConcurrency int `json:"replay_concurrency,omitempty"`

	// ReplayConcurrencyMax bounds the adaptive replay concurrency
	// (`replay_concurrency auto [max]`), used when replay_concurrency is
	// not set: the limit starts at 4, grows while the upstream's round
	// trip stays near its baseline, is cut on 429, 502, 503, 504, timeouts
	// and failed connections, and starts again from 1 after an outage.
	// Direct deliveries count towards it. Only with spool, not with
	// replay_concurrency. Default: 256.
	ReplayConcurrencyMax int `json:"replay_concurrency_max,omitempty"`

	// ReplayBackoff bounds the exponential backoff (with jitter) of a
	// service whose delivery failed, and of the single probe sent while the
	// upstream is down. An upstream's Retry-After is honoured when longer
	// (up to one hour). Only with spool. Default: 250ms to 30s.
	ReplayBackoff *Backoff `json:"replay_backoff,omitempty"`

	// MaxAttempts is how many answers that are not final (408, 429, or a
	// 4xx/5xx without the Context Services error body, such as a servlet
	// container's HTML 404 while the UCS deploys) a spooled event may get
	// before it goes to the dead letter. Unavailability (no answer, 502,
	// 503, 504, timeout) never counts. Only with spool. Default: 10.
	MaxAttempts int `json:"max_attempts,omitempty"`

	// MaxRetryAge is how long after its first non-final answer a spooled
	// event goes on being retried before it goes to the dead letter,
	// whichever of max_attempts and max_retry_age comes first. Only with
	// spool. Default: 1h.
	MaxRetryAge caddy.Duration `json:"max_retry_age,omitempty"`

	// FollowSymlinks lets the spool directory and its files (and the dead
	// letter) be symbolic links. Default: off, a link is refused at open.
	FollowSymlinks bool `json:"follow_symlinks,omitempty"`

	// TLS configures the connections to https URLs exactly as the `tls`
	// object of reverse_proxy's http transport does (the same type and field
	// names, so a block copies between them): trusted CAs (`ca`), a client
	// certificate (`client_certificate_file`, `client_certificate_key_file`),
	// `server_name`, `insecure_skip_verify` (warned about at start). Needs
	// an https URL. Default: the system's trusted roots, no client
	// certificate, the URL's host as the name. A spooled event whose
	// delivery fails on TLS waits in the spool (it is never dead-lettered):
	// fix the config and reload.
	TLS *reverseproxy.TLSConfig `json:"tls,omitempty"`

	urls []*url.URL // URLs, parsed by check
}

// Backoff is a range of retry waits.
type Backoff struct {
	// Min is the first wait. Default: 250ms.
	Min caddy.Duration `json:"min,omitempty"`
	// Max is the longest wait. Default: 30s.
	Max caddy.Duration `json:"max,omitempty"`
}

// replayPolicy is the spool's view of the replay options; zero means the
// upstream default.
func (f *ForwardSink) replayPolicy() upstream.ReplayPolicy {
	p := upstream.ReplayPolicy{
		Concurrency:    f.ReplayConcurrency,
		MaxConcurrency: f.ReplayConcurrencyMax,
		MaxAttempts:    f.MaxAttempts,
		MaxRetryAge:    time.Duration(f.MaxRetryAge),
		MinBackoff:     spoolBackoff[0],
		MaxBackoff:     spoolBackoff[1],
	}
	if b := f.ReplayBackoff; b != nil {
		p.MinBackoff, p.MaxBackoff = time.Duration(b.Min), time.Duration(b.Max)
	}
	return p
}

// check rejects forward options no default can fix, naming the option, and
// parses the base URLs for provisioning.
func (f *ForwardSink) check() error {
	if len(f.URLs) == 0 {
		return errors.New("ucs: forward needs at least one upstream base URL")
	}
	f.urls = make([]*url.URL, len(f.URLs))
	for i, raw := range f.URLs {
		u, err := parseBaseURL(raw)
		if err != nil {
			return fmt.Errorf("ucs: forward: %w", err)
		}
		f.urls[i] = u
	}
	if err := needsHTTPS(f.TLS, "forward", f.URLs...); err != nil {
		return err
	}
	if f.Timeout < 0 {
		return fmt.Errorf("ucs: forward timeout must not be negative, got %s", time.Duration(f.Timeout))
	}
	if f.MaxSpool < 0 {
		return fmt.Errorf("ucs: forward max_spool must not be negative, got %d", f.MaxSpool)
	}
	if f.Spool == "" && f.MaxSpool != 0 {
		return errors.New("ucs: forward max_spool needs spool <dir>")
	}
	if f.Spool == "" && f.DeadLetter != "" {
		return errors.New("ucs: forward dead_letter needs spool <dir>")
	}
	if f.ReplayConcurrency < 0 {
		return fmt.Errorf("ucs: forward replay_concurrency must not be negative, got %d", f.ReplayConcurrency)
	}
	if f.ReplayConcurrencyMax < 0 {
		return fmt.Errorf("ucs: forward replay_concurrency_max must not be negative, got %d", f.ReplayConcurrencyMax)
	}
	if f.ReplayConcurrency > 0 && f.ReplayConcurrencyMax > 0 {
		return fmt.Errorf("ucs: forward replay_concurrency is either a fixed number (%d) or auto with a max (%d), not both",
			f.ReplayConcurrency, f.ReplayConcurrencyMax)
	}
	if f.MaxAttempts < 0 {
		return fmt.Errorf("ucs: forward max_attempts must not be negative, got %d", f.MaxAttempts)
	}
	if f.MaxRetryAge < 0 {
		return fmt.Errorf("ucs: forward max_retry_age must not be negative, got %s", time.Duration(f.MaxRetryAge))
	}
	if b := f.ReplayBackoff; b != nil && (b.Min < 0 || b.Max < 0 || (b.Max > 0 && b.Max < b.Min)) {
		return fmt.Errorf("ucs: forward replay_backoff needs 0 <= min <= max, got %s %s",
			time.Duration(b.Min), time.Duration(b.Max))
	}
	if f.Spool == "" && (f.ReplayConcurrency != 0 || f.ReplayConcurrencyMax != 0 || f.ReplayBackoff != nil || f.MaxAttempts != 0 || f.MaxRetryAge != 0) {
		return errors.New("ucs: forward replay_concurrency, replay_backoff, max_attempts and max_retry_age need spool <dir>")
	}
	return f.checkDeadLetter()
}

// parseBaseURL accepts an absolute http or https URL with a host and no
// fragment; its path and query are kept as prefixes of the forwarded ones.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("%q is not an http or https base URL with a host, e.g. http://ucs.example.com:8080", raw)
	}
	return u, nil
}

// provisionForward builds the forwarder and, with a spool, takes (or
// shares) the spool directory and its replay worker.
func (h *Handler) provisionForward(ctx caddy.Context) error {
	f := h.Forward
	tlsConfig, err := clientTLS(ctx, f.TLS, "forward", h.logger)
	if err != nil {
		return err
	}
	fwd, err := upstream.NewForwarder(upstream.ForwardOptions{
		URLs:    f.urls, // parsed by check
		Timeout: time.Duration(f.Timeout),
		TLS:     tlsConfig,
		Logger:  h.logger,
		Observe: observeUpstream,
	})
	if err != nil {
		return fmt.Errorf("ucs: %w", err)
	}
	h.fwd = fwd
	if f.Spool == "" {
		return nil
	}
	abs, err := filepath.Abs(f.Spool)
	if err != nil {
		return fmt.Errorf("ucs: forward spool %q: %w", f.Spool, err)
	}
	warnRelative(h.logger, "forward spool", f.Spool, abs)
	if err := checkWritableDir("forward spool", abs); err != nil {
		return err
	}
	if !f.FollowSymlinks {
		// Checked again at open; here so that `caddy validate` says it.
		if err := checkNotSymlink(abs); err != nil {
			return fmt.Errorf("ucs: forward spool %q: %w", f.Spool, symlinkHint(err, "forward"))
		}
	}
	deadLetter := f.DeadLetter
	if deadLetter != "" {
		if deadLetter, err = filepath.Abs(deadLetter); err != nil {
			return fmt.Errorf("ucs: forward dead_letter %q: %w", f.DeadLetter, err)
		}
		warnRelative(h.logger, "forward dead_letter", f.DeadLetter, deadLetter)
		if err := checkWritableFile("forward dead_letter", deadLetter); err != nil {
			return err
		}
	}
	h.spoolUse = spoolUse{handler: h, config: ctx.Done(), fwd: fwd, maxBytes: f.MaxSpool, policy: f.replayPolicy(),
		logger: h.logger, followSymlinks: f.FollowSymlinks}
	h.spoolKey, h.spoolDeadLetter = abs, deadLetter
	h.needStart()
	return nil
}

// cleanupForward lets the forwarder's idle connections go (the spool is
// given back by closeSinks).
func (h *Handler) cleanupForward() error {
	if h.fwd != nil {
		h.fwd.CloseIdleConnections()
	}
	return nil
}

// serveForward hands the strict body to the upstream, directly or (end
// operations) through the spool, and answers the caller: the upstream's
// answer as it came, 204 when spooled, or a Genesys error when the event was
// not taken. The other operations need the answer the server makes (the id
// it assigns): they never go into the spool, so an unavailable upstream is
// a 502 or 504 for them, as without a spool.
func (h *Handler) serveForward(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, m callMatch, body []byte) error {
	op := int(m.op)
	req := upstream.ForwardRequest{
		Method:   r.Method,
		Path:     m.path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header,
		Body:     body,
		Host:     r.Host,
		Proto:    "http",
	}
	if r.TLS != nil {
		req.Proto = "https"
	}
	// A service's events keep their order in the spool; services are independent.
	req.Lane = m.sid
	req.Trusted, _ = caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		req.ClientIP, _, _ = strings.Cut(ip, "%") // an IPv6 zone is local to this host
	}

	var resp *upstream.Response
	var err error
	if h.spool != nil && m.op.IsEnd() {
		var s *sharedSpool
		if s, err = h.holdSpool(); err == nil {
			resp, err = s.Submit(r.Context(), req)
			h.dropSpool(s)
		}
	} else {
		resp, err = h.fwd.Forward(r.Context(), req)
	}
	if err != nil {
		if full, ok := errors.AsType[*upstream.SpoolFullError](err); ok {
			secs := int64((full.RetryAfter + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
		}
		return h.fail(w, repl, op, h.forwardError(r.Context(), err))
	}
	if resp.Spooled {
		setOutcome(repl, outcomeSpooled, op)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	setOutcome(repl, outcomeRelayed, op)
	hdr := w.Header()
	for k, v := range resp.Header {
		hdr[k] = v
	}
	if bodyAllowed(resp.Status) {
		hdr.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	}
	w.WriteHeader(resp.Status)
	if len(resp.Body) > 0 && bodyAllowed(resp.Status) {
		_, _ = w.Write(resp.Body) // the client went away: nothing left to tell it
	}
	return nil
}

// bodyAllowed is false for the statuses that carry no body (RFC 9110).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// forwardError turns a failed delivery into the caller's answer and logs
// why (the log names the upstream URL; the caller's message does not).
func (h *Handler) forwardError(ctx context.Context, err error) *requestError {
	var unavailable *upstream.UnavailableError
	var tooLarge *upstream.ResponseTooLargeError
	var storage *upstream.StorageError
	switch {
	case errors.Is(err, upstream.ErrSpoolFull):
		// The spool logs the refusal at warn, with its depth.
		return errSpoolFull(h.spool.MaxBytes())
	case errors.As(err, &storage):
		h.logger.Error("the spool refused an event", zap.String("dir", h.spoolKey), zap.Error(err))
		return errStorage(err)
	case errors.As(err, &unavailable):
		h.logger.Warn("upstream unavailable; event refused (no spool configured, or an operation that needs the server's answer)",
			zap.String("url", unavailable.URL), zap.Int("status", unavailable.Status),
			zap.Bool("timeout", unavailable.Timeout), zap.NamedError("cause", unavailable.Err), upstream.TLSField(unavailable.Err))
		if unavailable.Timeout {
			return errUpstreamTimeout(h.fwd.Timeout(), err)
		}
		return errUpstreamUnavailable(unavailable.Status, err)
	case errors.As(err, &tooLarge):
		h.logger.Warn("upstream answer too large to relay", zap.String("url", tooLarge.URL),
			zap.Int("status", tooLarge.Status), zap.Int64("limit", tooLarge.Limit))
		return errUpstreamAnswerTooLarge(tooLarge, err)
	case ctx.Err() != nil:
		return errClientGone(err)
	default:
		h.logger.Error("forwarding failed", zap.Error(err))
		return errUpstreamUnavailable(0, err)
	}
}
