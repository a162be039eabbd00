package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/upstream"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI serves the spools and dead letters of the running Caddy on its admin endpoint, the way
// `caddy reload` talks to a running Caddy: the process that owns a spool's files does the work,
// so a dead letter is rewritten under the spool's own lock, in step with the replay's appends.
// It has no configuration; Caddy mounts every admin.api module when the admin endpoint starts.
//
//	GET  /ucs/spools                       every open spool's status (as `caddy ucs spool status --json`)
//	GET  /ucs/dead-letter?spool=…&where=…  a spool's dead letters, filtered
//	POST /ucs/dead-letter/resend           resend a spool's dead letters; streams one JSON line per
//	                                       event, then the report
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.ucs",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the /ucs/ routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/ucs/spools", Handler: caddy.AdminHandlerFunc(a.serveSpools)},
		{Pattern: "/ucs/dead-letter", Handler: caddy.AdminHandlerFunc(a.serveDeadLetter)},
		{Pattern: "/ucs/dead-letter/resend", Handler: caddy.AdminHandlerFunc(a.serveResend)},
	}
}

// liveSpools returns the spools this process has open: those a config uses and those draining
// after a reload moved them. It is the one place the admin API learns what the process owns.
func liveSpools() []*sharedSpool {
	list := openSpools()
	slices.SortFunc(list, func(a, b *sharedSpool) int { return strings.Compare(a.dir, b.dir) })
	return list
}

// holdSpool returns the open spool that name designates (its directory or its dead-letter file;
// "" designates the only one open) with a reference taken, so a reload that drops it meanwhile
// does not close it under the caller; the caller drops it.
func holdSpool(name string) (*sharedSpool, error) {
	s, err := findSpool(name)
	if err != nil {
		return nil, err
	}
	if !s.refs.tryAcquire() {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("the spool %s closed", s.dir)}
	}
	return s, nil
}

// findSpool returns the open spool that name designates.
func findSpool(name string) (*sharedSpool, error) {
	list := liveSpools()
	if name == "" {
		if len(list) == 1 {
			return list[0], nil
		}
		return nil, caddy.APIError{HTTPStatus: http.StatusBadRequest,
			Err: fmt.Errorf("%d spools are open: name one with ?spool=<dir>", len(list))}
	}
	if abs, err := filepath.Abs(name); err == nil {
		name = abs
	}
	for _, s := range list {
		if s.dir == name || s.DeadLetterPath() == name {
			return s, nil
		}
	}
	return nil, caddy.APIError{HTTPStatus: http.StatusNotFound,
		Err: fmt.Errorf("no open spool has the directory or dead letter %s", name)}
}

func methodIs(r *http.Request, method string) error {
	if r.Method != method {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed: use %s", r.Method, method)}
	}
	return nil
}

// serveSpools answers GET /ucs/spools[?top=<n>]: a JSON list of every open spool's status.
func (a *AdminAPI) serveSpools(w http.ResponseWriter, r *http.Request) error {
	if err := methodIs(r, http.MethodGet); err != nil {
		return err
	}
	top := 10
	if v := r.URL.Query().Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("top=%q: want a number of services", v)}
		}
		top = n
	}
	out := []*upstream.SpoolStatus{}
	for _, s := range liveSpools() {
		st, err := upstream.InspectSpool(s.dir, s.DeadLetterPath(), top, time.Now())
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
		}
		out = append(out, st)
	}
	return writeJSON(w, out)
}

// serveDeadLetter answers GET /ucs/dead-letter?spool=<dir>&where=<cond>…: the spool's dead
// letters that every where condition selects.
func (a *AdminAPI) serveDeadLetter(w http.ResponseWriter, r *http.Request) error {
	if err := methodIs(r, http.MethodGet); err != nil {
		return err
	}
	q := r.URL.Query()
	s, err := holdSpool(q.Get("spool"))
	if err != nil {
		return err
	}
	defer dropHeld(s)
	where, err := parseWhere(q["where"])
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("where: %w", err)}
	}
	list, err := listDeadLetters(s.DeadLetterPath(), where)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	list.Spool = s.dir
	return writeJSON(w, list)
}

// serveResend answers POST /ucs/dead-letter/resend (a resendRequest): one JSON line per selected
// event as it is handled (resendEvent.Result), then the report (resendEvent.Report). A client
// that goes away stops the resend after the request in flight; what was done is saved.
func (a *AdminAPI) serveResend(w http.ResponseWriter, r *http.Request) error {
	if err := methodIs(r, http.MethodPost); err != nil {
		return err
	}
	var req resendRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("decoding the request: %w", err)}
	}
	s, err := holdSpool(req.Spool)
	if err != nil {
		return err
	}
	defer dropHeld(s)
	opts, err := req.options()
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	if opts.To == nil {
		opts.Forwarder = s.Forwarder() // the spool's own upstream, timeout and TLS
	}
	opts.Edit = s.EditDeadLetter
	end, ok := s.TryResend()
	if !ok {
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: upstream.ErrResendRunning}
	}
	defer end()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	opts.OnResult = func(res upstream.ResendResult) {
		_ = enc.Encode(resendEvent{Result: resultLine(res)})
		_ = rc.Flush()
	}
	rep, err := upstream.ResendDeadLetters(r.Context(), s.DeadLetterPath(), opts)
	last := resendEvent{Report: rep}
	if err != nil {
		last.Error = err.Error()
		s.logger.Error("resending dead letters through the admin API failed", zap.String("path", s.DeadLetterPath()), zap.Error(err))
	}
	if rep != nil {
		s.logger.Info("dead letters resent through the admin API", zap.String("path", s.DeadLetterPath()),
			zap.Int("selected", rep.Selected), zap.Int("accepted", rep.Accepted), zap.Int("refused", rep.Refused),
			zap.Int("unavailable", rep.Unavailable), zap.Int("not_tried", rep.NotTried), zap.String("stopped", rep.Stopped))
	}
	return enc.Encode(last)
}

// dropHeld gives back holdSpool's reference.
func dropHeld(s *sharedSpool) {
	if err := s.drop(); err != nil {
		s.logger.Error("closing the spool failed", zap.String("dir", s.dir), zap.Error(err))
	}
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// resendRequest is the body of POST /ucs/dead-letter/resend; the CLI's flags make the same one.
type resendRequest struct {
	// Spool is the spool's directory or dead-letter file; "" when only one spool is open.
	Spool string `json:"spool,omitempty"`
	// Where selects events; every condition must hold (see parseWhere).
	Where []string `json:"where,omitempty"`
	// Header replaces these headers of every event, e.g. an expired Authorization.
	Header map[string]string `json:"header,omitempty"`
	// To is the UCS base URL; "" sends to the spool's own forward upstream (its TLS included).
	To     string `json:"to,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
	// Timeout per event (with To); default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// SaveEvery and SaveInterval: the file is rewritten at least this often (defaults 100, 5s).
	SaveEvery    int            `json:"save_every,omitempty"`
	SaveInterval caddy.Duration `json:"save_interval,omitempty"`
	// MaxUnavailable unavailable answers in a row stop the resend (default 10).
	MaxUnavailable int `json:"max_unavailable,omitempty"`
}

// options are the upstream options of the request, without a TLS config (the CLI adds its flags'
// for the files path).
func (q resendRequest) options() (upstream.ResendOptions, error) {
	opts := upstream.ResendOptions{
		DryRun: q.DryRun, Timeout: time.Duration(q.Timeout), Header: http.Header{},
		SaveEvery: q.SaveEvery, SaveInterval: time.Duration(q.SaveInterval), MaxUnavailable: q.MaxUnavailable,
	}
	if q.To != "" {
		u, err := parseBaseURL(q.To)
		if err != nil {
			return opts, fmt.Errorf("to: %w", err)
		}
		opts.To = u
	}
	where, err := parseWhere(q.Where)
	if err != nil {
		return opts, fmt.Errorf("where: %w", err)
	}
	opts.Where = where
	for name, value := range q.Header {
		if strings.TrimSpace(name) == "" {
			return opts, errors.New("header: an empty name")
		}
		opts.Header[http.CanonicalHeaderKey(strings.TrimSpace(name))] = []string{value}
	}
	return opts, nil
}

// resendEvent is one line of the resend stream: a Result, or the closing Report (with Error when
// the resend failed).
type resendEvent struct {
	Result *resendResultLine      `json:"result,omitempty"`
	Report *upstream.ResendReport `json:"report,omitempty"`
	Error  string                 `json:"error,omitempty"`
}

// resendResultLine is what became of one event, as the CLI prints it.
type resendResultLine struct {
	Line    int                    `json:"line"`
	Method  string                 `json:"method"`
	Path    string                 `json:"path"`
	Outcome upstream.ResendOutcome `json:"outcome"`
	Status  int                    `json:"status,omitempty"`
	Message string                 `json:"message,omitempty"`
	// Exception is the UCS's exception name of a refusal.
	Exception string `json:"exception,omitempty"`
	Error     string `json:"error,omitempty"`
}

func resultLine(r upstream.ResendResult) *resendResultLine {
	method, p, _, _, _, _ := r.Letter.Request()
	l := &resendResultLine{Line: r.Letter.Line, Method: method, Path: p, Outcome: r.Outcome, Status: r.Status, Message: r.Message}
	if r.Outcome == upstream.ResendRefused {
		l.Exception = r.Exception
	}
	if r.Err != nil {
		l.Error = withTLSCause(r.Err).Error()
	}
	return l
}
