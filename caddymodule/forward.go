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
	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// Defaults of the forward sink; the field comments repeat them for users.
const (
	DefaultForwardTimeout = 10 * time.Second
	DefaultMaxSpool       = 1 << 30
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
	// background worker replays the spool in order. While it holds
	// anything, new events queue behind it. One owner per directory:
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

	// FollowSymlinks lets the spool directory and its files (and the dead
	// letter) be symbolic links. Default: off, a link is refused at open.
	FollowSymlinks bool `json:"follow_symlinks,omitempty"`
}

// check rejects forward options no default can fix, naming the option.
func (f *ForwardSink) check() error {
	if len(f.URLs) == 0 {
		return errors.New("ucs: forward needs at least one upstream base URL")
	}
	for _, raw := range f.URLs {
		if _, err := parseBaseURL(raw); err != nil {
			return fmt.Errorf("ucs: forward: %w", err)
		}
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
	if f.Timeout == 0 {
		f.Timeout = caddy.Duration(DefaultForwardTimeout)
	}
	if f.Spool != "" && f.MaxSpool == 0 {
		f.MaxSpool = DefaultMaxSpool
	}
	urls := make([]*url.URL, len(f.URLs))
	for i, raw := range f.URLs {
		u, err := parseBaseURL(raw)
		if err != nil {
			return fmt.Errorf("ucs: forward: %w", err)
		}
		urls[i] = u
	}
	fwd, err := upstream.NewForwarder(upstream.ForwardOptions{
		URLs:    urls,
		Timeout: time.Duration(f.Timeout),
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
	deadLetter := f.DeadLetter
	if deadLetter != "" {
		if deadLetter, err = filepath.Abs(deadLetter); err != nil {
			return fmt.Errorf("ucs: forward dead_letter %q: %w", f.DeadLetter, err)
		}
	}
	use := spoolUse{handler: h, config: ctx.Done(), fwd: fwd, maxBytes: f.MaxSpool, logger: h.logger, followSymlinks: f.FollowSymlinks}
	if h.spool, err = acquireSpool(abs, deadLetter, use); err != nil {
		return fmt.Errorf("ucs: forward spool %q: %w", f.Spool, spoolOpenError(err))
	}
	h.spoolKey, h.spoolUse = abs, use
	return nil
}

// cleanupForward gives the spool back (the last user closes it) and lets
// the forwarder's idle connections go.
func (h *Handler) cleanupForward() error {
	var err error
	if h.spool != nil && !h.spoolReleased {
		// h.spool stays set: a request still finishing in this config
		// holds its own reference and keeps the spool open.
		err = releaseSpool(h.spoolKey, h.spool, h)
		h.spoolReleased = true
	}
	if h.fwd != nil {
		h.fwd.CloseIdleConnections()
	}
	return err
}

// serveForward hands the strict body to the upstream, directly or through
// the spool, and answers the caller: the upstream's answer as it came,
// 204 when spooled, or a Genesys error when the event was not taken.
func (h *Handler) serveForward(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, body []byte, path string) error {
	req := upstream.ForwardRequest{
		Path:     path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header,
		Body:     body,
		Host:     r.Host,
		Proto:    "http",
	}
	if r.TLS != nil {
		req.Proto = "https"
	}
	req.Trusted, _ = caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		req.ClientIP, _, _ = strings.Cut(ip, "%") // an IPv6 zone is local to this host
	}

	var resp *upstream.Response
	var err error
	if h.spool != nil {
		var s *sharedSpool
		if s, err = h.holdSpool(); err == nil {
			resp, err = s.Submit(r.Context(), req)
			h.dropSpool(s)
		}
	} else {
		resp, err = h.fwd.Forward(r.Context(), req)
	}
	if err != nil {
		return h.fail(w, repl, h.forwardError(r.Context(), err))
	}
	if resp.Spooled {
		setOutcome(repl, outcomeSpooled)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	setOutcome(repl, outcomeRelayed)
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
		return errSpoolFull(h.Forward.MaxSpool)
	case errors.As(err, &storage):
		h.logger.Error("the spool refused an event", zap.String("dir", h.spoolKey), zap.Error(err))
		return errStorage(err)
	case errors.As(err, &unavailable):
		h.logger.Warn("upstream unavailable; event refused (no spool configured)",
			zap.String("url", unavailable.URL), zap.Int("status", unavailable.Status),
			zap.Bool("timeout", unavailable.Timeout), zap.NamedError("cause", unavailable.Err))
		if unavailable.Timeout {
			return errUpstreamTimeout(time.Duration(h.Forward.Timeout), err)
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
