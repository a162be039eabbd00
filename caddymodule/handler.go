// Package caddymodule is the Caddy glue of caddy-ucs: the http.handlers.ucs
// handler, its Caddyfile directive, metrics, placeholders and the
// `caddy ucs normalize` command. The JSON rules live in package normalize and
// the sinks in package upstream; this package only wires them to Caddy.
package caddymodule

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/normalize"
	"github.com/ucsedge/caddy-ucs/upstream"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the options; the field comments below repeat them for users.
const (
	DefaultBasePath     = "/genesys/1/cs"
	DefaultMaxBody      = 1 << 20
	DefaultJournalSize  = upstream.DefaultJournalMaxSize
	DefaultJournalKeep  = upstream.DefaultJournalKeep
	maxServiceIDLen     = 128
	maxID32             = 2147483647 // task_id and state_id: a Java int
	contentTypeJSONUTF8 = "application/json;charset=UTF-8"
	contentTypeJSON     = "application/json" // error bodies and the health answer
)

// now is the handler's clock; tests replace it for deterministic timestamps.
var now = time.Now

// Handler intercepts Genesys Context Services' service-event calls (Complete
// Task, `POST {base_path}/services/{service_id}/tasks/{task_id}/end`, and the
// other write calls of the service-event API: see Operations), turns their
// loose JSON bodies into strict JSON (business-attribute names mapped to
// IDs, the canonical UTC timestamp added) and hands each event to a sink: the
// next handler of the route (no sink configured, normally `reverse_proxy`),
// a local journal file (end operations), or an upstream Context Services
// that the handler posts to itself, with an optional durable spool (end
// operations). Every other request goes to the next handler untouched, its
// body unread.
//
// Placeholders, set on every request for later handlers and access logs:
//
//	{http.ucs.operation}   the operation, e.g. task.end ("" when not a call)
//	{http.ucs.service_id}  the service id of the path ("" when not a call)
//	{http.ucs.task_id}     the task id of the path, as sent ("" when none)
//	{http.ucs.outcome}     passed, forwarded, journaled, relayed, spooled,
//	                       rejected, error or shadowed
//	{http.ucs.repairs}     the number of repairs made to the body
//	{http.ucs.exception}   the exception name of an error answer, e.g.
//	                       InvalidJsonException ("" otherwise)
//	{http.ucs.message}     the message of an error answer, why the call
//	                       was refused ("" otherwise)
//	{http.ucs.tenant}      the tenant whose tables were used (its first
//	                       ContactCenterId; "" for the top-level tables)
type Handler struct {
	// BasePath is the Context Services base path in front of `/services/…`.
	// Default: `/genesys/1/cs` (UCS 8.1 installs may use another).
	BasePath string `json:"base_path,omitempty"`

	// BusinessAttributes are files holding Genesys business-attribute
	// metadata, in the shape `GET /genesys/1/cs/metadata/business-attributes`
	// returns (one attribute object or a list). Default: none, so
	// business-attribute names are forwarded unchanged.
	BusinessAttributes []string `json:"business_attributes,omitempty"`

	// Operations are the calls the handler takes: service.start,
	// service.end, state.start, state.end, state.transition, task.start,
	// task.end, service.associate, extension.update. The calls not listed go
	// down the route untouched. Default: all of them (`task.end` alone is
	// the Complete Task call only).
	Operations []string `json:"operations,omitempty"`

	// BusinessAttribute maps a key of Genesys' [business-attributes]
	// section, `<Resource>.<attribute>` (Service, State or Task; `*` for
	// every resource), to the business attribute that backs it, e.g.
	// `Task.type` → `TaskType`. A bare Task End field name is its Task.*
	// key (`media_type` is `Task.media_type`, `task_type` is `Task.type`).
	// Default: `*.application_type` → ApplicationType, `*.resource_type` →
	// ResourceType, `*.media_type` → MediaType, `*.disposition` →
	// DispositionCode, `Service.type` → ServiceType, `State.type` →
	// StateType, `Task.type` → TaskType.
	BusinessAttribute map[string]string `json:"business_attribute,omitempty"`

	// AttributeValues are inline tables, key (as in business_attribute) →
	// value name → dbid, used with or instead of the files. Default: none.
	AttributeValues map[string]map[string]int64 `json:"attribute_values,omitempty"`

	// BusinessAttributesFrom fetches the tables from a Context Services'
	// metadata endpoint at provision and refreshes them in the background;
	// fetched attributes replace a file's attribute of the same name, inline
	// attribute_values replace a key's values. Default: unset.
	BusinessAttributesFrom *AttributesFrom `json:"business_attributes_from,omitempty"`

	// Tenants have tables of their own, chosen by the request's
	// ContactCenterId header (exact, else ignoring case). A request without
	// the header or naming no tenant uses the top-level tables, or is a 400
	// InvalidTenantException when there are none. Default: none.
	Tenants []*Tenant `json:"tenants,omitempty"`

	// UnknownNames says what happens to a business-attribute name that the
	// field's table does not list: `reject` (400) or `pass` (forwarded
	// unchanged, the server validates it). Default: `reject`.
	UnknownNames string `json:"unknown_names,omitempty"`

	// CaseInsensitiveNames also matches names ignoring case and surrounding
	// white space. Default: off (exact match).
	CaseInsensitiveNames bool `json:"case_insensitive_names,omitempty"`

	// FillDefaults fills an omitted business-attribute field of an event
	// with the value its resource's table flags as the default (a Start
	// Service without service_type gets Service.type's default). Not for
	// service.associate, whose fields are all optional. Default: off.
	FillDefaults bool `json:"fill_defaults,omitempty"`

	// MaxBody bounds the body in bytes, after decoding its content coding;
	// a larger body is a 413. Default: 1 MiB (1048576).
	MaxBody int64 `json:"max_body,omitempty"`

	// MaxDepth bounds the nesting of objects and arrays; deeper is a 400.
	// Default: 64.
	MaxDepth int `json:"max_depth,omitempty"`

	// InvalidUTF8 is `replace` (each invalid sequence becomes U+FFFD) or
	// `reject` (400). Default: `replace`.
	InvalidUTF8 string `json:"invalid_utf8,omitempty"`

	// Errors is `genesys` (the handler writes the Context Services error
	// body `{"message":…,"exception":…}`) or `caddy` (the error goes to
	// `handle_errors` with its status, nothing written). Default: `genesys`.
	Errors string `json:"errors,omitempty"`

	// Health turns on `GET {base_path}/ucs/health`, answered by the handler
	// for load balancers: 200 with `{"status":"ok",…}` (the spool's records,
	// bytes and the age of its oldest, the journal's state), or 503 with
	// `"status":"unavailable"` while the journal cannot write or the spool
	// is full, so a balancer stops sending events this gateway would refuse.
	// Default: off (the path goes down the route like any other).
	Health bool `json:"health,omitempty"`

	// Local, when set, appends each end event (service.end, state.end,
	// task.end) as one JSON line to a journal file and answers 204 once it
	// is on disk; the other operations need the server's answer and go on
	// down the route, normalised. Default: unset, so every rewritten request
	// goes on down the route.
	Local *LocalSink `json:"local,omitempty"`

	// Forward, when set, posts each event to an upstream Context Services
	// and relays its answer; with a spool, an unavailable upstream does not
	// lose an end event (the other operations get 502/504, as without a
	// spool). At most one of local and forward. Default: unset.
	Forward *ForwardSink `json:"forward,omitempty"`

	// Shadow, when set, leaves every call as it arrived: it goes down the
	// route byte for byte, and the handler only normalises a copy beside
	// it and records what it would have done against what the route
	// answered (see ShadowMode). Not with local or forward. Default: unset.
	Shadow *ShadowMode `json:"shadow,omitempty"`

	top             *attrSet   // the top-level tables (maybe none)
	tenants         []*attrSet // parallel to Tenants
	tenantByID      map[string]*attrSet
	topHasTables    bool
	journal         *sharedJournal // kept until the last request is done; see sinkStore
	journalKey      string
	journalOpts     upstream.JournalOptions
	journalReleased bool
	fwd             *upstream.Forwarder
	spool           *sharedSpool // kept until the last request is done; see sinkStore
	spoolKey        string
	spoolUse        spoolUse
	spoolDeadLetter string // absolute; "" is the default
	spoolReleased   bool
	ready           chan struct{}   // closed once the ucs app opened the sink; nil without one
	started         *atomic.Bool    // ready is closed: the fast path of ServeHTTP
	configDone      <-chan struct{} // Done of the config that provisioned the handler
	refusals        *refusalLog     // samples the refused-call line
	healthPath      string          // BasePath + "/ucs/health", when Health is on
	basePfx         string          // BasePath + "/"
	baseSegs        []string        // BasePath's segments
	ops             uint16          // bit op: the handler takes the operation
	caddyErrors     bool
	logger          *zap.Logger
	shadow          shadowState
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.ucs",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision checks the options, loads the business-attribute tables, builds
// the normaliser and registers the local journal or the spool with the ucs
// app, which opens them when the config starts (see App): provisioning
// checks the paths but creates no file and takes no lock, so `caddy
// validate` can run beside a running Caddy. Defaults are filled where they
// are used (package upstream, normalize).
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.refusals = new(refusalLog)
	if err := h.checkOptions(); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("ucs: registering metrics: %w", err)
	}
	if h.BasePath == "" {
		h.BasePath = DefaultBasePath
	}
	h.BasePath = strings.TrimRight(h.BasePath, "/")
	h.basePfx = h.BasePath + "/"
	h.ops = parseOperations(h.Operations)
	if h.Health {
		h.healthPath = h.BasePath + "/ucs/health"
	}
	h.baseSegs = baseSegments(h.BasePath)
	if h.MaxBody == 0 {
		h.MaxBody = DefaultMaxBody
	}
	h.caddyErrors = h.Errors == "caddy"

	if err := h.provisionAttributesTLS(ctx, h.logger); err != nil {
		return err
	}
	if err := h.buildSets(); err != nil {
		h.releaseSets()
		return err
	}

	if h.Local != nil {
		if err := h.provisionLocal(); err != nil {
			return err
		}
	}
	if h.Forward != nil {
		if err := h.provisionForward(ctx); err != nil {
			return err
		}
	}
	if h.Shadow != nil {
		if err := h.provisionShadow(); err != nil {
			return err
		}
	}
	// The files are opened by the ucs app when the config starts, never
	// here: `caddy validate` provisions too. The app also writes each
	// handler's startup line.
	app, err := appOf(ctx)
	if err != nil {
		return err
	}
	h.configDone = ctx.Done()
	return app.register(h)
}

// provisionLocal resolves and checks the journal's path and options; the
// ucs app opens the journal at start (see openSinks).
func (h *Handler) provisionLocal() error {
	abs, err := filepath.Abs(h.Local.Path)
	if err != nil {
		return fmt.Errorf("ucs: local %q: %w", h.Local.Path, err)
	}
	warnRelative(h.logger, "local", h.Local.Path, abs)
	if err := checkWritableFile("local", abs); err != nil {
		return err
	}
	if !h.Local.FollowSymlinks {
		// Checked again at open; here so that `caddy validate` says it.
		if err := checkNotSymlink(abs); err != nil {
			return fmt.Errorf("ucs: local %q: %w", h.Local.Path, symlinkHint(err, "local"))
		}
	}
	h.journalKey = abs
	h.journalOpts = upstream.JournalOptions{
		NoSync:  h.Local.Fsync == "off",
		MaxSize: cmp.Or(h.Local.MaxSize, DefaultJournalSize),
		Keep:    cmp.Or(h.Local.Keep, DefaultJournalKeep),
		FS:      sinkFS(journalFS, h.Local.FollowSymlinks),
	}
	h.needStart()
	return nil
}

// openSinks opens (or shares) the journal or the spool registered at
// provision, and starts the background refresh of the fetched tables. The
// ucs app calls it when the config starts.
func (h *Handler) openSinks() error {
	if h.journalKey != "" && h.journal == nil {
		sj, err := acquireJournal(h.journalKey, h.journalOpts, journalUse{handler: h, logger: h.logger, opts: h.journalOpts})
		if err != nil {
			return fmt.Errorf("ucs: local %q: opening the journal: %w", h.Local.Path, symlinkHint(err, "local"))
		}
		h.journal = sj
	}
	if h.spoolKey != "" && h.spool == nil {
		s, err := acquireSpool(h.spoolKey, h.spoolDeadLetter, h.spoolUse)
		if err != nil {
			return fmt.Errorf("ucs: forward spool %q: %w", h.Forward.Spool, spoolOpenError(err))
		}
		h.spool = s
	}
	for _, set := range append([]*attrSet{h.top}, h.tenants...) {
		if set != nil && set.from != nil {
			set.from.start()
		}
	}
	if h.starting() {
		h.started.Store(true)
		close(h.ready)
	}
	return nil
}

// closeSinks gives back this config's use of its journal or spool; it may
// be called more than once (the app's Stop, the handler's Cleanup).
func (h *Handler) closeSinks() error {
	var err error
	if h.spool != nil && !h.spoolReleased {
		// h.spool stays set: a request still finishing in this config
		// holds its own reference and keeps the spool open.
		h.spoolReleased = true
		err = releaseSpool(h.spoolKey, h.spool, h)
	}
	if h.journal != nil && !h.journalReleased {
		h.journalReleased = true
		err = errors.Join(err, releaseJournal(h.journalKey, h.journal, h))
	}
	return err
}

// needStart marks the handler as having a sink the ucs app opens at start:
// its requests wait for it (see awaitStart).
func (h *Handler) needStart() {
	if h.ready == nil {
		h.ready, h.started = make(chan struct{}), new(atomic.Bool)
	}
}

// starting reports whether the handler's sink waits for the ucs app's Start (Caddy starts its
// apps in no fixed order, so a request may come first).
func (h *Handler) starting() bool { return h.ready != nil && !h.started.Load() }

// awaitStart holds a request that arrived before the ucs app opened the
// handler's sink: Caddy starts its apps in no fixed order, so the http app
// may serve a moment before. A config that fails to start never opens it.
func (h *Handler) awaitStart(r *http.Request) *requestError {
	select {
	case <-h.ready:
		return nil
	case <-h.configDone:
		return errStorage(errors.New("the configuration did not start"))
	case <-r.Context().Done():
		return errClientGone(r.Context().Err())
	}
}

// normalizeOptions are the normaliser options without the tables.
func (h *Handler) normalizeOptions() normalize.Options {
	opts := normalize.Options{
		MaxDepth:        h.MaxDepth,
		CaseInsensitive: h.CaseInsensitiveNames,
		FillDefaults:    h.FillDefaults,
	}
	if h.InvalidUTF8 == "reject" {
		opts.InvalidUTF8 = normalize.UTF8Reject
	}
	if h.UnknownNames == "pass" {
		opts.UnknownNames = normalize.UnknownPass
	}
	return opts
}

// checkOptions rejects values no default can fix, naming the option.
func (h *Handler) checkOptions() error {
	if h.BasePath != "" && !strings.HasPrefix(h.BasePath, "/") {
		return fmt.Errorf("ucs: base_path %q must start with /", h.BasePath)
	}
	if err := oneOf("unknown_names", h.UnknownNames, "reject", "pass"); err != nil {
		return err
	}
	if err := oneOf("invalid_utf8", h.InvalidUTF8, "replace", "reject"); err != nil {
		return err
	}
	if err := oneOf("errors", h.Errors, "genesys", "caddy"); err != nil {
		return err
	}
	if h.MaxBody < 0 {
		return fmt.Errorf("ucs: max_body must not be negative, got %d", h.MaxBody)
	}
	if h.MaxDepth < 0 {
		return fmt.Errorf("ucs: max_depth must not be negative, got %d", h.MaxDepth)
	}
	for _, name := range h.Operations {
		if _, ok := normalize.ParseOperation(name); !ok {
			return fmt.Errorf("ucs: operations: unknown operation %q; the operations are %s", name, normalize.OperationNames())
		}
	}
	for field, attr := range h.BusinessAttribute {
		if field == "" || attr == "" {
			return fmt.Errorf("ucs: business_attribute needs a field and an attribute name, got %q → %q", field, attr)
		}
	}
	if h.BusinessAttributesFrom != nil {
		if err := h.BusinessAttributesFrom.check(""); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for i, t := range h.Tenants {
		if t == nil || len(t.IDs) == 0 {
			return fmt.Errorf("ucs: tenant #%d needs at least one ContactCenterId", i+1)
		}
		where := "tenant " + t.IDs[0] + ": "
		if !t.hasTables() {
			return fmt.Errorf("ucs: %shas no tables: give it business_attributes, attribute_values or business_attributes_from", where)
		}
		for _, id := range t.IDs {
			if id == "" || seen[strings.ToLower(id)] {
				return fmt.Errorf("ucs: %sContactCenterId %q is empty or names another tenant too (ids match ignoring case)", where, id)
			}
			seen[strings.ToLower(id)] = true
		}
		for field, attr := range t.BusinessAttribute {
			if field == "" || attr == "" {
				return fmt.Errorf("ucs: %sbusiness_attribute needs a field and an attribute name, got %q → %q", where, field, attr)
			}
		}
		if t.BusinessAttributesFrom != nil {
			if err := t.BusinessAttributesFrom.check(where); err != nil {
				return err
			}
		}
	}
	if h.Local != nil && h.Forward != nil {
		return errors.New("ucs: only one sink may be configured: local and forward are both set")
	}
	if err := h.checkShadow(); err != nil {
		return err
	}
	if h.Forward != nil {
		if err := h.Forward.check(); err != nil {
			return err
		}
	}
	if l := h.Local; l != nil {
		if l.Path == "" {
			return errors.New("ucs: local needs a file path")
		}
		if err := oneOf("local fsync", l.Fsync, "always", "off"); err != nil {
			return err
		}
		if l.MaxSize < 0 {
			return fmt.Errorf("ucs: local max_size must not be negative, got %d", l.MaxSize)
		}
		if l.Keep < 0 {
			return fmt.Errorf("ucs: local keep must not be negative, got %d", l.Keep)
		}
	}
	return nil
}

// parseOperations turns the checked operation names into a bit set; none
// means all.
func parseOperations(names []string) uint16 {
	if len(names) == 0 {
		return 1<<normalize.NumOperations - 1
	}
	var ops uint16
	for _, name := range names {
		op, _ := normalize.ParseOperation(name)
		ops |= 1 << op
	}
	return ops
}

func oneOf(option, value string, allowed ...string) error {
	if value == "" {
		return nil
	}
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	return fmt.Errorf("ucs: %s must be one of %s, got %q", option, strings.Join(allowed, ", "), value)
}

// Cleanup releases this config's use of the shared journal or spool. On a
// reload, requests of this config may still be running (and more may still
// arrive): they keep the sink, which closes once no config and no request
// uses it (see sinkStore).
func (h *Handler) Cleanup() error {
	h.releaseSets()
	return errors.Join(h.closeSinks(), h.cleanupForward(), h.cleanupShadow())
}

// ServeHTTP intercepts the service-event calls and passes everything else on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	receivedAt := now()
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)

	if h.healthPath != "" && r.URL.Path == h.healthPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		return h.serveHealth(w, r)
	}
	m := h.match(r)
	if repl != nil {
		// Every placeholder is set on every request, so a log format or a
		// header using them never shows an unreplaced {http.ucs.…}.
		op, tid := "", ""
		if m.ok {
			op = m.op.String()
		}
		if m.idName == "task_id" {
			tid = m.id
		}
		repl.Set("http.ucs.operation", op)
		repl.Set("http.ucs.service_id", m.sid)
		repl.Set("http.ucs.task_id", tid)
		repl.Set("http.ucs.repairs", "")
		repl.Set("http.ucs.exception", "")
		repl.Set("http.ucs.message", "")
		repl.Set("http.ucs.tenant", "")
	}
	if !m.ok {
		setOutcome(repl, outcomePassed, opNone)
		return next.ServeHTTP(w, r)
	}
	op := int(m.op)
	if h.starting() {
		if rerr := h.awaitStart(r); rerr != nil {
			return h.fail(w, repl, op, rerr)
		}
	}
	if h.Shadow != nil {
		return h.serveShadow(w, r, next, repl, m, receivedAt)
	}
	id, set, rerr := h.checkCall(r, m)
	if rerr != nil {
		return h.fail(w, repl, op, rerr)
	}
	if repl != nil && set.tenant != "" {
		repl.Set("http.ucs.tenant", set.tenant)
	}

	in := bodyPool.Get().(*[]byte)
	if rerr := readBody(w, r, h.MaxBody, in); rerr != nil {
		putBuf(&bodyPool, in)
		return h.fail(w, repl, op, rerr)
	}
	out := outPool.Get().(*[]byte)
	var rep normalize.Report
	strict, took, err := normalizeEvent(set, m.op, (*out)[:0], *in, receivedAt, &rep)
	*out = strict
	putBuf(&bodyPool, in)
	if err != nil {
		putBuf(&outPool, out)
		return h.fail(w, repl, op, errFromNormalize(err))
	}
	observeReport(&rep, op, took)
	h.logReport(m, set.tenant, &rep)
	if repl != nil {
		repl.Set("http.ucs.repairs", rep.Total())
	}

	if h.journal != nil && m.op.IsEnd() {
		sj, err := h.holdJournal()
		if err == nil {
			err = sj.AppendEvent(receivedAt, upstream.RecordIDs{Operation: m.op.String(), ServiceID: m.sid, IDName: m.idName, ID: id}, strict)
			h.dropJournal(sj)
		}
		putBuf(&outPool, out)
		if err != nil {
			metricJournalErrors.Inc()
			h.logger.Error("the local journal refused an event", zap.String("path", h.journalKey), zap.Error(err))
			return h.fail(w, repl, op, errStorage(err))
		}
		setOutcome(repl, outcomeJournaled, op)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}

	if h.fwd != nil {
		// The buffer goes to the GC, not back to the pool: net/http's
		// transport may still read a request body after the exchange
		// returned, and a failover resends it.
		return h.serveForward(w, r, repl, m, strict)
	}

	// No sink, or a local sink and an operation that needs the server's
	// answer: the normalised request goes on down the route.
	setOutcome(repl, outcomeForwarded, op)
	if m.rewritten {
		// reverse_proxy must send the path the event was matched on, not
		// one the upstream might map elsewhere.
		r.URL.Path, r.URL.RawPath = m.path, ""
	}
	lease := replaceBody(r, out)
	err = next.ServeHTTP(w, r)
	lease.release()
	return err
}

// checkCall checks the ids of a matched call's path and picks its tables:
// the 32-bit id of the path (task_id or state_id; 0 for none) and the
// tenant's attrSet, or the error the call is refused with.
func (h *Handler) checkCall(r *http.Request, m callMatch) (int64, *attrSet, *requestError) {
	if m.encodedAt != "" {
		return 0, nil, errEncodedDelimiter(m.encodedAt, m.encoded)
	}
	if m.op != normalize.OpServiceStart {
		if rerr := checkServiceID(m.sid); rerr != nil {
			return 0, nil, rerr
		}
	}
	var id int64
	if m.idName == "task_id" || m.idName == "state_id" {
		var rerr *requestError
		if id, rerr = parseID32(m.idName, m.id); rerr != nil {
			return 0, nil, rerr
		}
	}
	set := h.tenantSet(r)
	if set == nil {
		return 0, nil, errUnknownTenant(r.Header.Get(tenantHeader))
	}
	return id, set, nil
}

// normalizeEvent normalises one event body with the tables of set,
// appending to dst, and returns how long that took.
func normalizeEvent(set *attrSet, op normalize.Operation, dst, in []byte, receivedAt time.Time, rep *normalize.Report) ([]byte, time.Duration, error) {
	start := time.Now()
	norm := set.norm.Load()
	strict, err := norm.Event(op, dst, in, receivedAt, rep)
	if err != nil && set.from != nil && isUnknownName(err) && set.from.cold() {
		// A cold miss: the name may be new on the UCS. One early refresh
		// (rate-limited), then the body once more with the new tables.
		if n2 := set.norm.Load(); n2 != norm {
			*rep = normalize.Report{}
			strict, err = n2.Event(op, dst, in, receivedAt, rep)
		}
	}
	return strict, time.Since(start), err
}

func isUnknownName(err error) bool {
	var ne *normalize.Error
	return errors.As(err, &ne) && ne.Kind == normalize.KindUnknownName
}

// match reports whether r is one of the handler's calls and returns its raw
// path ids, matching on the path cleaned as the UCS cleans it (see
// path.go); the ids are checked by the caller so that a malformed id is a
// 400, not a silent pass.
func (h *Handler) match(r *http.Request) callMatch {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		return callMatch{}
	}
	return h.matchPath(r.Method, r.URL)
}

// fail answers a refused request: the Genesys error body, or with
// `errors caddy` the error for handle_errors (and nothing written).
// op is the operation's index (normalize.Operation).
func (h *Handler) fail(w http.ResponseWriter, repl *caddy.Replacer, op int, e *requestError) error {
	outcome := outcomeRejected
	if e.status >= 500 {
		outcome = outcomeError
	}
	setOutcome(repl, outcome, op)
	sid := ""
	if repl != nil {
		repl.Set("http.ucs.exception", e.exception)
		repl.Set("http.ucs.message", e.msg)
		sid, _ = repl.GetString("http.ucs.service_id")
	}
	metricRejections.WithLabelValues(e.reason, operationLabels[op]).Inc()
	h.logRefusal(op, sid, e)
	if h.caddyErrors {
		return caddyhttp.Error(e.status, e)
	}
	body := appendErrorBody(make([]byte, 0, 64+len(e.msg)), e)
	hdr := w.Header()
	hdr.Set("Content-Type", contentTypeJSON)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	_, _ = w.Write(body) // the client went away: nothing left to tell it
	return nil
}

// setOutcome counts the request and sets {http.ucs.outcome}; op is the
// operation's index, opNone for a request that is not a call.
func setOutcome(repl *caddy.Replacer, outcome string, op int) {
	requestsByOutcome[outcome][op].Inc()
	if repl != nil {
		repl.Set("http.ucs.outcome", outcome)
	}
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
