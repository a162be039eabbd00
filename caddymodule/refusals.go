package caddymodule

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// The info line of refused calls is sampled the way Caddy samples its
// repeated log entries: the first refusalBurst lines of each
// refusalWindow are written, the rest only counted, and the next line
// written says how many were left out (`dropped`), so a flood of bad calls
// cannot flood the log while every refusal stays counted (the
// caddy_ucs_rejections_total metric counts each one too).
const (
	refusalBurst  = 10
	refusalWindow = time.Second
)

// refusalLog is one handler's sampler of the refused-call line.
type refusalLog struct {
	mu      sync.Mutex
	window  time.Time // start of the current window; guarded by mu
	written int       // lines written in the window; guarded by mu
	dropped int       // lines left out since the last written; guarded by mu
}

// allow reports whether a line may be written at t and, when it may, how
// many were left out before it.
func (l *refusalLog) allow(t time.Time) (ok bool, dropped int) {
	if l == nil {
		return true, 0 // a handler built by a test without Provision
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.Sub(l.window) >= refusalWindow || t.Before(l.window) {
		l.window, l.written = t, 0
	}
	if l.written >= refusalBurst {
		l.dropped++
		return false, 0
	}
	l.written++
	dropped, l.dropped = l.dropped, 0
	return true, dropped
}

// logRefusal writes the info line of a refused call: what was refused and
// why, never the body.
func (h *Handler) logRefusal(op int, sid string, e *requestError) {
	c := h.logger.Check(zap.InfoLevel, "event refused")
	if c == nil {
		return
	}
	ok, dropped := h.refusals.allow(now())
	if !ok {
		return
	}
	fields := []zap.Field{
		zap.String("operation", operationLabels[op]), zap.String("service_id", sid), zap.Int("status", e.status),
		zap.String("exception", e.exception), zap.String("message", e.msg),
	}
	if dropped > 0 {
		fields = append(fields, zap.Int("dropped", dropped))
	}
	c.Write(fields...)
}

// logStartup says, once the config started, what the handler does: its
// sink, the spool's depth, the tables it loaded and its tenants. With no
// table anywhere it warns that business-attribute names pass unmapped.
func (h *Handler) logStartup() {
	fields := []zap.Field{zap.String("sink", h.startupSink())}
	switch {
	case h.journalKey != "":
		fields = append(fields, zap.String("journal", h.journalKey), zap.Bool("fsync", !h.journalOpts.NoSync),
			zap.Int64("max_size", h.journalOpts.MaxSize), zap.Int("keep", h.journalOpts.Keep))
	case h.spool != nil:
		records, bytes := h.spool.Depth()
		fields = append(fields, zap.String("spool", h.spoolKey), zap.Int("spool_records", records), zap.Int64("spool_bytes", bytes))
	}
	if h.Forward != nil {
		fields = append(fields, zap.Strings("urls", h.Forward.URLs))
	}
	tables := map[string]int{}
	if h.topHasTables {
		addSizes(tables, "", h.top)
	}
	tenants := make([]string, 0, len(h.tenants))
	for _, s := range h.tenants {
		tenants = append(tenants, s.tenant)
		addSizes(tables, s.tenant+": ", s)
	}
	fields = append(fields, zap.Any("tables", tables), zap.Strings("tenants", tenants))
	h.logger.Info("ucs handler started", fields...)
	if !h.topHasTables && len(h.tenants) == 0 {
		h.logger.Warn("no business-attribute table is configured: attribute names pass through unmapped; " +
			"set business_attributes, attribute_values or business_attributes_from")
	}
}

// addSizes adds the table sizes of s (attribute → names) to into, each
// name prefixed.
func addSizes(into map[string]int, prefix string, s *attrSet) {
	if s == nil {
		return
	}
	n := s.norm.Load()
	if n == nil {
		return
	}
	for name, size := range n.Options().Attributes.Sizes() {
		into[prefix+name] = size
	}
}

// startupSink names where the handler's events go, for the startup line.
func (h *Handler) startupSink() string {
	switch {
	case h.Shadow != nil:
		return "shadow"
	case h.Local != nil:
		return "local"
	case h.Forward != nil && h.Forward.Spool != "":
		return "forward+spool"
	case h.Forward != nil:
		return "forward"
	default:
		return "next"
	}
}
