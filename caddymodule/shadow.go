package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/normalize"
	"github.com/ucsedge/caddy-ucs/upstream"
)

// Shadow mode: the gateway reports what it would do before it does
// anything. Every call the handler matches goes down the route as it
// arrived, byte for byte; beside it a copy is normalised with the same
// tables and options as inline mode, and once the route has answered, the
// call gets a verdict, gateway × upstream:
//
//	gateway   same | repaired | rejected | too_large
//	upstream  2xx | 4xx | 5xx | none
//
// rejected × 2xx is "would break" (the UCS accepts today what the gateway
// would refuse), repaired × 4xx is "would fix". The verdicts are counted in
// caddy_ucs_shadow_total and, with a journal, written as JSON lines that
// `caddy ucs shadow report` reads.

// Defaults of the shadow block.
const (
	DefaultShadowSample    = 0.01
	DefaultShadowMaxRecord = 64 << 10
	// maxShadowCapture is how much of a 4xx or 5xx answer's body is kept
	// to read the Genesys {"message","exception"} from.
	maxShadowCapture = 4 << 10
	// maxUpstreamMessage bounds the UCS's message kept in a record.
	maxUpstreamMessage = 512
)

// ShadowMode is the `shadow` block: report-only mode (see Handler.Shadow).
type ShadowMode struct {
	// Journal is a file the handler appends one JSON line to per recorded
	// call: every would-break, would-fix and refused call, and Sample of
	// the others. It holds the callers' bodies, so it is created 0600.
	// Written in the background through a bounded queue: when the queue is
	// full (a slow or failing disk), a record is dropped and counted in
	// caddy_ucs_shadow_dropped_total, and no call ever waits for it.
	// Default: none (metrics and the would-break warnings only).
	Journal string `json:"journal,omitempty"`

	// Sample is the share of the other calls (same or repaired, not would
	// fix) recorded in the journal, from 0 to 1. Default: 0.01 (1 %).
	Sample *float64 `json:"sample,omitempty"`

	// MaxRecord bounds the original and the strict body in a record, in
	// bytes; a longer one is cut and the record says "truncated":true.
	// Default: 64 KiB (65536).
	MaxRecord int64 `json:"max_record,omitempty"`

	// MaxSize rotates the journal before it passes this many bytes, as the
	// local journal rotates. Default: 100 MiB (104857600).
	MaxSize int64 `json:"max_size,omitempty"`

	// Keep is how many rotated journal files are kept. Default: 10.
	Keep int `json:"keep,omitempty"`
}

// shadowState is the handler's runtime state of shadow mode.
type shadowState struct {
	journal   *shadowJournal
	key       string // the journal's absolute path
	opts      upstream.JournalOptions
	released  bool
	sample    float64
	maxRecord int
}

// The verdict's two sides, as label values and record fields.
const (
	gatewaySame = iota
	gatewayRepaired
	gatewayRejected
	gatewayTooLarge
	numGatewayVerdicts
)

const (
	upstream2xx = iota
	upstream4xx
	upstream5xx
	upstreamNone
	numUpstreamVerdicts
)

var (
	gatewayLabels  = [numGatewayVerdicts]string{"same", "repaired", "rejected", "too_large"}
	upstreamLabels = [numUpstreamVerdicts]string{"2xx", "4xx", "5xx", "none"}

	metricShadow = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "shadow_total",
		Help: "Calls seen in shadow mode, by operation, what the gateway would have done (same, repaired, rejected, too_large) and what the route answered (2xx, 4xx, 5xx, none).",
	}, []string{"operation", "gateway", "upstream"})
	metricShadowDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "shadow_dropped_total",
		Help: "Shadow journal records dropped: the queue to the journal was full, or the journal could not be written.",
	})
	shadowByVerdict [normalize.NumOperations][numGatewayVerdicts][numUpstreamVerdicts]prometheus.Counter
)

func init() {
	collectors = append(collectors, metricShadow, metricShadowDropped)
	for op := range normalize.NumOperations {
		for g, gl := range gatewayLabels {
			for u, ul := range upstreamLabels {
				shadowByVerdict[op][g][u] = metricShadow.WithLabelValues(op.String(), gl, ul)
			}
		}
	}
}

// checkShadow refuses a shadow block with a sink or with values no default
// can fix.
func (h *Handler) checkShadow() error {
	s := h.Shadow
	if s == nil {
		return nil
	}
	if sink := h.sinkName(); sink != "" {
		return fmt.Errorf("ucs: shadow cannot be combined with %s: in shadow mode the call goes on down the route unchanged (normally to reverse_proxy), and the handler only reports", sink)
	}
	if s.Sample != nil && (*s.Sample < 0 || *s.Sample > 1) {
		return fmt.Errorf("ucs: shadow sample must be between 0 and 1 (0%% and 100%%), got %v", *s.Sample)
	}
	if s.MaxRecord < 0 || s.MaxSize < 0 || s.Keep < 0 {
		return fmt.Errorf("ucs: shadow max_record, max_size and keep must not be negative")
	}
	return nil
}

// provisionShadow fills the defaults and opens (or shares) the journal.
func (h *Handler) provisionShadow() error {
	s := h.Shadow
	h.shadow.sample = DefaultShadowSample
	if s.Sample != nil {
		h.shadow.sample = *s.Sample
	}
	h.shadow.maxRecord = DefaultShadowMaxRecord
	if s.MaxRecord > 0 {
		h.shadow.maxRecord = int(min(s.MaxRecord, 1<<30))
	}
	if s.Journal == "" {
		return nil
	}
	abs, err := filepath.Abs(s.Journal)
	if err != nil {
		return fmt.Errorf("ucs: shadow journal %q: %w", s.Journal, err)
	}
	if journals.isOpen(abs) {
		return fmt.Errorf("ucs: shadow journal %q is the local journal of another ucs handler", s.Journal)
	}
	h.shadow.opts = upstream.JournalOptions{NoSync: true, MaxSize: s.MaxSize, Keep: s.Keep, FS: sinkFS(journalFS, false)}
	h.shadow.journal = acquireShadowJournal(abs, h.shadow.opts, h.logger)
	h.shadow.key = abs
	return nil
}

// cleanupShadow drops this config's use of the shadow journal (see
// sinkStore: requests still running keep it open).
func (h *Handler) cleanupShadow() error {
	if h.shadow.journal == nil || h.shadow.released {
		return nil
	}
	h.shadow.released = true
	return shadowJournals.release(h.shadow.key, h.shadow.journal)
}

// shadowCall is what one call's shadow normalisation found.
type shadowCall struct {
	m          callMatch
	receivedAt time.Time
	method     string
	path       string
	tenant     string
	rerr       *requestError // what the gateway would have refused the call with
	rep        normalize.Report
	original   []byte // the body as the normaliser saw it, or as it arrived when it could not be decoded
	strict     []byte
}

// serveShadow hands the call on down the route exactly as it arrived, and
// classifies it once the route has answered.
func (h *Handler) serveShadow(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, repl *caddy.Replacer, m callMatch, receivedAt time.Time) error {
	op := int(m.op)
	setOutcome(repl, outcomeShadowed, op)
	c := shadowCall{m: m, receivedAt: receivedAt, method: r.Method, path: r.URL.EscapedPath()}
	_, set, rerr := h.checkCall(r, m)
	if set != nil {
		c.tenant = set.tenant
		if repl != nil && set.tenant != "" {
			repl.Set("http.ucs.tenant", set.tenant)
		}
	}

	ob, over, readErr := passOriginal(r, wireLimit(h.MaxBody, contentCoding(r.Header)))
	if ob != nil {
		c.original = *ob.buf
		defer ob.release()
	}
	in, out := bodyPool.Get().(*[]byte), outPool.Get().(*[]byte)
	var body []byte
	switch {
	case rerr != nil:
	case over:
		rerr = errTooLarge(h.MaxBody)
	case readErr != nil:
		rerr = errBodyRead(readErr)
	default:
		body, rerr = decodeCopy(w, r, ob, h.MaxBody, in)
	}
	if rerr == nil {
		c.original = body
		strict, took, err := normalizeEvent(set, m.op, (*out)[:0], body, receivedAt, &c.rep)
		*out = strict
		if err != nil {
			rerr = errFromNormalize(err)
		} else {
			c.strict = strict
			observeReport(&c.rep, op, took)
			h.logReport(m, set.tenant, &c.rep)
			if repl != nil {
				repl.Set("http.ucs.repairs", c.rep.Total())
			}
		}
	}
	if rerr != nil {
		c.rerr = rerr
		metricRejections.WithLabelValues(rerr.reason, operationLabels[op]).Inc()
	}

	sw := shadowWriterPool.Get().(*shadowWriter)
	sw.ResponseWriter = w
	err := next.ServeHTTP(sw, r)
	h.judge(&c, sw)
	putBuf(&bodyPool, in)
	putBuf(&outPool, out)
	// The route is done with the writer once it returned.
	*sw = shadowWriter{capture: sw.capture[:0]}
	shadowWriterPool.Put(sw)
	return err
}

// judge classifies the call, counts it, warns of a would-break and
// records it when it is to be recorded.
func (h *Handler) judge(c *shadowCall, sw *shadowWriter) {
	gw := gatewaySame
	switch {
	case c.rerr != nil && c.rerr.reason == "too_large":
		gw = gatewayTooLarge
	case c.rerr != nil:
		gw = gatewayRejected
	case c.rep.Total() > c.rep.Counts[normalize.RepairTimestampAdded]:
		gw = gatewayRepaired
	}
	up := upstreamNone
	switch {
	case sw.status == 0:
		// No answer: the upstream could not be reached (reverse_proxy
		// returned the error), or the client went away before it answered.
	case sw.status >= 500:
		up = upstream5xx
	case sw.status >= 400:
		up = upstream4xx
	default:
		// A 3xx did not refuse the call either.
		up = upstream2xx
	}
	shadowByVerdict[c.m.op][gw][up].Inc()

	wouldBreak := gw == gatewayRejected && up == upstream2xx
	if wouldBreak {
		fields := []zap.Field{zap.String("operation", c.m.op.String()), zap.String("path", c.path),
			zap.String("reason", c.rerr.reason), zap.Int("status", c.rerr.status), zap.String("exception", c.rerr.exception)}
		if ne, ok := errors.AsType[*normalize.Error](c.rerr.cause); ok {
			fields = append(fields, zap.Int("line", ne.Line), zap.Int("column", ne.Column), zap.Int("byte", ne.Offset))
		}
		h.logger.Warn("shadow: the gateway would refuse a call the UCS accepted", fields...)
	}
	sj := h.shadow.journal
	if sj == nil {
		return
	}
	wouldFix := gw == gatewayRepaired && up == upstream4xx
	sampled := false
	if !wouldBreak && !wouldFix && c.rerr == nil {
		if sampled = rand.Float64() < h.shadow.sample; !sampled {
			return
		}
	}
	rec := h.shadowRecord(c, gw, up, sw)
	if sampled {
		rec.Sample = h.shadow.sample
	}
	h.offerShadowRecord(rec)
}

// shadowRecord builds the journal line of a call.
func (h *Handler) shadowRecord(c *shadowCall, gw, up int, sw *shadowWriter) *shadowRecord {
	rec := &shadowRecord{
		ReceivedAt:     c.receivedAt.UTC().Format(receivedAtFormat),
		Operation:      c.m.op.String(),
		Method:         c.method,
		Path:           c.path,
		ServiceID:      c.m.sid,
		Tenant:         c.tenant,
		UpstreamStatus: sw.status,
		Gateway:        gatewayLabels[gw],
		Upstream:       upstreamLabels[up],
		Verdict:        verdictName(gw, up),
	}
	switch c.m.idName {
	case "task_id":
		rec.TaskID = c.m.id
	case "state_id":
		rec.StateID = c.m.id
	case "customer_id":
		rec.CustomerID = c.m.id
	}
	if up == upstream4xx || up == upstream5xx {
		var eb struct{ Message, Exception string }
		if json.Unmarshal(sw.capture, &eb) == nil {
			rec.UpstreamException = eb.Exception
			rec.UpstreamMessage, _ = cutText([]byte(eb.Message), maxUpstreamMessage)
		}
	}
	if c.rerr != nil {
		rj := &shadowRejection{Status: c.rerr.status, Exception: c.rerr.exception, Reason: c.rerr.reason, Message: c.rerr.msg}
		if ne, ok := errors.AsType[*normalize.Error](c.rerr.cause); ok {
			rj.Line, rj.Column = ne.Line, ne.Column
		}
		rec.Rejection = rj
	} else {
		for i := range c.rep.NumListed {
			rp := c.rep.First[i]
			line, col := normalize.Position(c.original, rp.Offset)
			rec.Repairs = append(rec.Repairs, shadowRepair{Kind: rp.Kind.String(), Line: line, Column: col, Field: rp.Field})
		}
		for k, n := range c.rep.Counts {
			if n > 0 {
				if rec.RepairCounts == nil {
					rec.RepairCounts = map[string]int{}
				}
				rec.RepairCounts[normalize.RepairKind(k).String()] = n
			}
		}
	}
	var cut bool
	if rec.Original, cut = cutText(c.original, h.shadow.maxRecord); rec.Original == "" && len(c.original) > 0 {
		// Not UTF-8 (a body that could not be decoded, or invalid UTF-8 left
		// for the normaliser to replace): the bytes, base64.
		// A copy: the writer encodes it after the pooled buffer went back.
		b := bytes.Clone(c.original[:min(len(c.original), h.shadow.maxRecord)])
		rec.OriginalBase64, cut = b, len(c.original) > len(b)
	}
	rec.Truncated = cut
	if c.strict != nil {
		var cutStrict bool
		rec.Strict, cutStrict = cutText(c.strict, h.shadow.maxRecord)
		rec.Truncated = rec.Truncated || cutStrict
	}
	return rec
}

// verdictName names the two cells that decide a roll-out; the others are
// "neither".
func verdictName(gw, up int) string {
	switch {
	case gw == gatewayRejected && up == upstream2xx:
		return verdictWouldBreak
	case gw == gatewayRepaired && up == upstream4xx:
		return verdictWouldFix
	}
	return verdictNeither
}

const (
	verdictWouldBreak = "would_break"
	verdictWouldFix   = "would_fix"
	verdictNeither    = "neither"
)

// cutText returns b as text, cut to at most limit bytes on a character
// boundary, and whether it was cut; "" when b is not UTF-8.
func cutText(b []byte, limit int) (string, bool) {
	cut := false
	if len(b) > limit {
		i := limit
		for i > 0 && !utf8.RuneStart(b[i]) { // b[i] continues the character before the cut
			i--
		}
		b, cut = b[:i], true
	}
	if !utf8.Valid(b) {
		return "", cut
	}
	return string(b), cut
}

// decodeCopy returns the body as inline mode reads it (content coding,
// legacy charset, max_body): the bytes as they arrived when neither
// applies, else a decoded copy in *in; the request keeps its body.
func decodeCopy(w http.ResponseWriter, r *http.Request, ob *originalBody, limit int64, in *[]byte) ([]byte, *requestError) {
	if ob == nil {
		body := r.Body
		defer func() { r.Body = body }()
		r.Body = http.NoBody
		rerr := readBody(w, r, limit, in)
		return *in, rerr
	}
	if coding := contentCoding(r.Header); coding == "" || coding == "identity" {
		legacy, rerr := declaredCharset(r.Header.Get("Content-Type"))
		if rerr != nil {
			return nil, rerr
		}
		if !legacy { // passOriginal bounded it by limit already
			return *ob.buf, nil
		}
	}
	r.Body = bytesBody{&ob.raw}
	rerr := readBody(w, r, limit, in)
	ob.raw.Reset(*ob.buf)
	r.Body = ob
	return *in, rerr
}

// bytesBody is a request body over a bytes.Reader; pointer-shaped, so
// making it an io.ReadCloser allocates nothing.
type bytesBody struct{ *bytes.Reader }

func (bytesBody) Close() error { return nil }

// passOriginal reads the request body as it arrived, up to limit+1 bytes,
// and gives the request a body that yields exactly the same bytes (and
// the same read error) to the rest of the route: a body over the limit
// goes on whole, the rest streamed from the client, not buffered. The
// framing (Content-Length or chunked) is untouched. It returns nil for a
// request without a body, which keeps its body as it is.
func passOriginal(r *http.Request, limit int64) (ob *originalBody, over bool, err error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, false, nil
	}
	p := bodyPool.Get().(*[]byte)
	b := (*p)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		var n int
		n, err = r.Body.Read(b[len(b):min(int64(cap(b)), limit+1)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			over, err = true, nil
			break
		}
		if err == io.EOF {
			err = nil
			if len(b) == 0 {
				putBuf(&bodyPool, p)
				return nil, false, nil
			}
			break
		}
		if err != nil {
			break
		}
	}
	*p = b
	ob = &originalBody{buf: p, orig: r.Body}
	ob.refs.Store(2) // the handler and the route's reader
	ob.raw.Reset(b)
	switch {
	case over:
		ob.rest = r.Body
	case err != nil:
		ob.rest = errReader{err}
	}
	r.Body = ob
	return ob, over, err
}

// originalBody is the request body as it arrived: the bytes the handler
// read, then what it did not read (a body over max_body) or the error that
// stopped it. Its pooled buffer goes back once both the handler and the
// reader are done with it: net/http's transport may still read a request
// body after the exchange returned (see bodyLease). A body never closed
// leaves the buffer to the GC.
type originalBody struct {
	raw    bytes.Reader
	buf    *[]byte
	rest   io.Reader // nil: EOF after raw
	orig   io.Closer
	refs   atomic.Int32
	closed atomic.Bool
}

func (b *originalBody) Read(p []byte) (int, error) {
	if b.raw.Len() > 0 {
		return b.raw.Read(p)
	}
	if b.rest == nil {
		return 0, io.EOF
	}
	return b.rest.Read(p)
}

func (b *originalBody) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := b.orig.Close()
	b.release()
	return err
}

// release drops one of the two uses of the buffer.
func (b *originalBody) release() {
	if b.refs.Add(-1) == 0 {
		putBuf(&bodyPool, b.buf)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// shadowWriter passes the route's answer through unchanged, as it is
// written, and notes its status and, for a 4xx or 5xx, up to 4 KiB of its
// body. Flush, hijacking and trailers go through to the real writer
// (Unwrap for http.ResponseController, Flush and Hijack for the type
// assertions; trailers are headers).
var shadowWriterPool = sync.Pool{New: func() any { return new(shadowWriter) }}

type shadowWriter struct {
	caddyhttp.ResponseWriterWrapper
	status  int // the final status; 0 until one is written
	capture []byte
}

func (w *shadowWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // 1xx answers are interim
		w.status = code
	}
	w.ResponseWriterWrapper.WriteHeader(code)
}

func (w *shadowWriter) Write(p []byte) (int, error) {
	w.note(p)
	return w.ResponseWriterWrapper.Write(p)
}

// ReadFrom keeps the real writer's fast path (sendfile, splice) for the
// answers whose body is not captured.
func (w *shadowWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= 400 && len(w.capture) < maxShadowCapture {
		return io.Copy(writerOnly{w}, r)
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// Flush and Hijack serve the handlers that assert http.Flusher and
// http.Hijacker instead of using http.ResponseController.
func (w *shadowWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK // a flush sends the header
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *shadowWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *shadowWriter) note(p []byte) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= 400 && len(w.capture) < maxShadowCapture {
		w.capture = append(w.capture, p[:min(len(p), maxShadowCapture-len(w.capture))]...)
	}
}

// writerOnly hides ReadFrom, so io.Copy goes through Write.
type writerOnly struct{ io.Writer }

// unmarshalShadow parses the shadow block:
//
//	shadow {
//		journal    <path>
//		sample     <percent>%|<fraction>
//		max_record <size>
//		max_size   <size>
//		keep       <n>
//	}
func (h *Handler) unmarshalShadow(d *caddyfile.Dispenser) error {
	if h.Shadow != nil {
		return d.Errf("shadow is already set")
	}
	if sink := h.sinkName(); sink != "" {
		return d.Errf("shadow cannot be combined with %s: in shadow mode the call goes on down the route unchanged", sink)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	s := new(ShadowMode)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "journal":
			s.Journal, err = oneArg(d)
		case "sample":
			var f float64
			f, err = shareArg(d, "shadow sample")
			s.Sample = &f
		case "max_record":
			s.MaxRecord, err = sizeArg(d, "shadow max_record")
		case "max_size":
			s.MaxSize, err = sizeArg(d, "shadow max_size")
		case "keep":
			s.Keep, err = positiveIntArg(d, "shadow keep")
		default:
			return d.Errf("unknown shadow option %q; the options are journal, sample, max_record, max_size and keep", opt)
		}
		if err != nil {
			return err
		}
	}
	h.Shadow = s
	return nil
}

// parseShare reads "5%" or "0.05" as 0.05.
func parseShare(v string) (float64, error) {
	num, pct := strings.CutSuffix(v, "%")
	f, err := strconv.ParseFloat(num, 64)
	if err == nil && pct {
		f /= 100
	}
	if err != nil || f < 0 || f > 1 {
		return 0, fmt.Errorf("%q is not a share: give a percentage such as 5%% or a fraction from 0 to 1", v)
	}
	return f, nil
}
