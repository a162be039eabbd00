package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// Journal replay: a local journal delivered to a UCS by the spool's replay worker. The journal's
// files are the record log, read without being opened for writing (Caddy may be appending); each
// line is turned into the call it stands for when it is sent; the durable position, the spool's
// low-water mark plus the finished records after it, goes to a state file, rewritten atomically.
// The lanes, the replay rule, the backoff, the breaker and the dead letter are the spool's
// (scheduler.go, replay.go, breaker.go): journalSource is the only part of its own.

// DefaultJournalBasePath is the path the calls of a journal replay are sent under, after the
// UCS URL's own path.
const DefaultJournalBasePath = "/genesys/1/cs"

// JournalReplayOptions configures a JournalReplay.
type JournalReplayOptions struct {
	// Journal is the journal's active file; its rotated files are read before it.
	Journal string
	// State is the state file; "" means <Journal>.replay-state.json.
	State string
	// DeadLetter is where rejected events go, in the spool's dead-letter format; "" means
	// <Journal>.dead-letter.jsonl.
	DeadLetter string
	// Forwarder sends the calls; required unless DryRun.
	Forwarder *Forwarder
	// BasePath prefixes each call's path; "" means DefaultJournalBasePath.
	BasePath string
	// Header is sent with every call (journal lines hold no caller headers).
	Header http.Header
	// Filter leaves events out; the zero value replays all.
	Filter JournalFilter
	// Replay is the replay rule's policy, as for a spool.
	Replay ReplayPolicy
	// DryRun counts what would be sent, without lock, state or dead letter.
	DryRun bool
	// Sample is how many of the calls to send a dry run keeps (JournalPlan.First).
	Sample int
	// Logger gets the replay worker's warnings and errors; nil means zap.NewNop().
	Logger *zap.Logger
}

// JournalFilter selects the events a replay sends; an empty field selects all.
type JournalFilter struct {
	Operations []string  // operation names, e.g. task.end
	Since      time.Time // received_at at or after
	Until      time.Time // received_at before
	Services   []string  // service ids
}

// String is the filter in the words of the command's flags; "" for none. The state file keeps
// it: a position reached under one filter counts the events it left out as finished.
func (f JournalFilter) String() string {
	var parts []string
	if len(f.Operations) > 0 {
		parts = append(parts, "operation="+strings.Join(slices.Sorted(slices.Values(f.Operations)), ","))
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since="+f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		parts = append(parts, "until="+f.Until.UTC().Format(time.RFC3339Nano))
	}
	if len(f.Services) > 0 {
		parts = append(parts, "service="+strings.Join(slices.Sorted(slices.Values(f.Services)), ","))
	}
	return strings.Join(parts, " ")
}

// JournalPlan is what a replay will do, counted from the durable position before sending.
type JournalPlan struct {
	Waiting    int            // events to send (Unreadable included)
	Skipped    int            // left out by the filter
	Unreadable int            // lines that are not journal events: they go to the dead letter
	TornBytes  int64          // an incomplete last line of the active file, not sent
	Operations map[string]int // waiting events per operation
	Services   map[string]int // waiting events per service
	First      []SampleCall   // the first calls to send (JournalReplayOptions.Sample)
	// PossibleDuplicates is how many events earlier runs that did not finish may have sent
	// twice, at most: the concurrency of each.
	PossibleDuplicates int
}

// SampleCall is one call a replay sends.
type SampleCall struct {
	Method, Path string
	Body         json.RawMessage
}

// JournalSummary is what a replay did.
type JournalSummary struct {
	Delivered    int `json:"delivered"`
	DeadLettered int `json:"dead_lettered"`
	// DeadLetteredInReplay adds the events earlier interrupted runs of this replay sent to the
	// dead letter: the exit status looks at it.
	DeadLetteredInReplay int `json:"dead_lettered_in_replay"`
	Skipped              int `json:"skipped_by_filters"`
	Unreadable           int `json:"unreadable"`
	// TornBytes is the incomplete last line left unsent (Caddy killed mid-append, or appending).
	TornBytes int64 `json:"torn_bytes"`
	// Remaining is what is left to send when the replay was interrupted; 0 when Complete.
	Remaining          int    `json:"remaining"`
	PossibleDuplicates int    `json:"possible_duplicates"`
	Complete           bool   `json:"complete"`
	DeadLetter         string `json:"dead_letter"`
	State              string `json:"state"`
}

// JournalProgress is a replay's progress so far.
type JournalProgress struct {
	Total, Delivered, DeadLettered int
	Oldest                         time.Time // received_at of the oldest event waiting; zero when none
}

// ErrReplayLocked is wrapped by OpenJournalReplay's error when another replay holds the state.
var ErrReplayLocked = errors.New("another replay holds this state file")

// JournalReplay replays one journal.
type JournalReplay struct {
	opts  JournalReplayOptions
	src   *journalSource
	log   *wal.Log
	lock  *os.File
	start resumePoint
	plan  JournalPlan

	delivered, dead atomic.Int64
	s               atomic.Pointer[Spool] // the running replay's, for Progress
}

// OpenJournalReplay takes the state file's lock (unless DryRun), reads the durable position and
// counts what is left to send.
func OpenJournalReplay(opts JournalReplayOptions) (*JournalReplay, error) {
	if opts.State == "" {
		opts.State = opts.Journal + ".replay-state.json"
	}
	if opts.DeadLetter == "" {
		opts.DeadLetter = opts.Journal + ".dead-letter.jsonl"
	}
	if opts.BasePath == "" {
		opts.BasePath = DefaultJournalBasePath
	}
	opts.BasePath = "/" + strings.Trim(opts.BasePath, "/")
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	opts.Replay = opts.Replay.withDefaults()
	if !opts.DryRun && opts.Forwarder == nil {
		return nil, errors.New("journal replay: a Forwarder is needed")
	}
	abs, err := filepath.Abs(opts.Journal)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a journal file", opts.Journal)
	}
	r := &JournalReplay{opts: opts}
	if !opts.DryRun {
		// The lock is beside the state file, not on it: the state is replaced by a rename,
		// and a lock on the old file would not keep a second replay from the new one.
		if r.lock, err = wal.LockDir(opts.State + ".lock"); err != nil {
			if errors.Is(err, ErrDirLocked) {
				return nil, fmt.Errorf("%s: %w (its lock %s.lock is held)", opts.State, ErrReplayLocked, opts.State)
			}
			return nil, err
		}
	}
	fail := func(err error) (*JournalReplay, error) {
		r.Close()
		return nil, err
	}
	if r.log, err = wal.OpenReadOnlyHeld(abs); err != nil {
		return fail(err)
	}
	r.src = &journalSource{
		journal:  abs,
		state:    opts.State,
		basePath: opts.BasePath,
		header:   opts.Header,
		filter:   opts.Filter,
		services: setOf(opts.Filter.Services),
		ops:      setOf(opts.Filter.Operations),
		conc:     opts.Replay.window(), // opts.Replay has its defaults
	}
	if err := r.src.readState(); err != nil {
		return fail(err)
	}
	if r.start, err = r.resumePoint(); err != nil {
		return fail(err)
	}
	if err := r.count(); err != nil {
		return fail(err)
	}
	return r, nil
}

func setOf(xs []string) map[string]bool {
	if len(xs) == 0 {
		return nil
	}
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// resumePoint resolves the state's position in the journal's files as the spool resolves its
// cursor (Spool.durablePosition).
func (r *JournalReplay) resumePoint() (resumePoint, error) {
	pos, found := r.src.pos, r.src.found
	seg, off := r.log.First(), int64(0)
	if found {
		var ok bool
		if seg, off, ok = r.log.Resolve(pos.Cursor); !ok {
			// Its unsent events are lost to the replay (Caddy's keep removed the file): an
			// error, so that the command shows it.
			r.opts.Logger.Error("replay state names a journal file that is gone (removed by rotation); resuming at the next one",
				zap.String("state", r.opts.State), zap.String("file", pos.File))
		}
	}
	if end, past := r.log.ClampToEnd(seg, off); past {
		r.opts.Logger.Warn("replay state is past the end of the journal; resuming at its end",
			zap.String("state", r.opts.State), zap.Int64("offset", off), zap.Int64("size", end))
		off = end
	}
	return resumePoint{seg: seg, off: off, done: finished(r.log, pos.Done)}, nil
}

// count reads the journal from the position once: the plan, and the torn tail.
func (r *JournalReplay) count() error {
	p := &r.plan
	p.Operations, p.Services = map[string]int{}, map[string]int{}
	p.PossibleDuplicates = r.src.dupes
	rd := r.log.NewReader(r.start.seg, r.start.off)
	defer rd.Close()
	for {
		rec, seg, end, ok, err := rd.Next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if r.start.done[recordPos{seg, end - rd.RecordLen(rec) - 1}] {
			continue
		}
		m, ok := parseJournalMeta(rec)
		if r.src.skipMeta(m, ok) {
			p.Skipped++
			continue
		}
		p.Waiting++
		if !ok || rd.Long() {
			p.Unreadable++
			continue
		}
		p.Operations[m.op]++
		p.Services[m.sid]++
		if len(p.First) < r.opts.Sample {
			if o, err := r.src.request(rec); err == nil {
				p.First = append(p.First, SampleCall{Method: o.method, Path: o.path, Body: slices.Clone(o.body)})
			}
		}
	}
	seg, off := rd.Pos()
	if endSeg, endOff := r.log.End(); seg == endSeg && off < endOff {
		p.TornBytes = endOff - off
	}
	return nil
}

// Plan returns what the replay will send, as counted by OpenJournalReplay.
func (r *JournalReplay) Plan() JournalPlan { return r.plan }

// StatePath returns the state file the replay writes.
func (r *JournalReplay) StatePath() string { return r.opts.State }

// Progress returns the replay's progress; safe to call while Run runs.
func (r *JournalReplay) Progress() JournalProgress {
	pr := JournalProgress{Total: r.plan.Waiting, Delivered: int(r.delivered.Load()), DeadLettered: int(r.dead.Load())}
	s := r.s.Load()
	if s != nil {
		if age := s.OldestAge(); age > 0 {
			pr.Oldest = s.now().Add(-age)
		}
	}
	return pr
}

// Run delivers what is left, until everything is finished or ctx ends (an interruption: the next
// run resumes). It returns an error only when the state or the dead letter cannot be written.
func (r *JournalReplay) Run(ctx context.Context) (JournalSummary, error) {
	sum := JournalSummary{Skipped: r.plan.Skipped, Unreadable: r.plan.Unreadable, TornBytes: r.plan.TornBytes,
		PossibleDuplicates: r.plan.PossibleDuplicates, DeadLetter: r.opts.DeadLetter, State: r.opts.State}
	if r.opts.DryRun {
		return sum, errors.New("journal replay: a dry run sends nothing")
	}
	// The state says a run is in progress before anything is sent: if this one is killed, the
	// next knows that up to its concurrency may be sent twice.
	r.src.complete = false
	if err := r.src.writePosition(r.src.startLine(r.log, r.start), nil, nil); err != nil {
		return sum, err
	}
	unlock, err := LockDeadLetter(r.opts.DeadLetter)
	if err != nil {
		return sum, err
	}
	defer func() { _ = unlock() }()
	deadOpts := wal.Options{Logger: r.opts.Logger, Keep: wal.KeepAll}
	dead, err := wal.Open(r.opts.DeadLetter, deadOpts)
	if err != nil {
		return sum, err
	}
	s := newSpool(r.src.journal, r.opts.Logger, r.opts.Forwarder)
	s.onReplayed = func() { r.delivered.Add(1) }
	s.onDead = func() { r.dead.Add(1) }
	s.maxBytes = DefaultMaxSpool
	s.records, s.src, s.start, s.depth = r.log, r.src, r.start, r.plan.Waiting
	s.dead, s.deadPath, s.deadOpts = dead, r.opts.DeadLetter, deadOpts
	s.SetReplayPolicy(r.opts.Replay)
	s.ctx, s.cancel = context.WithCancel(ctx)
	r.s.Store(s)
	go s.run()
	<-s.done
	drained := s.ctx.Err() == nil
	s.cancel()
	sum.Delivered, sum.DeadLettered = int(r.delivered.Load()), int(r.dead.Load())
	sum.Complete = drained
	if !drained {
		sum.Remaining = r.plan.Waiting - sum.Delivered - sum.DeadLettered
	}
	// The last position line is on disk; this rewrite only says whether the run finished, and
	// that duplicates are no longer possible when it did.
	r.src.complete = drained
	err = errors.Join(r.src.rewrite(), r.src.writeErr(), dead.Close())
	sum.DeadLetteredInReplay = r.src.deadBefore + sum.DeadLettered
	return sum, err
}

// Close releases the journal's files and the state's lock.
func (r *JournalReplay) Close() {
	if r.log != nil {
		r.log.Release()
	}
	if r.lock != nil {
		_ = r.lock.Close()
		r.lock = nil
	}
}

// journalState is the state file: the durable position of the spool's cursor, and what a later
// run must know about this one.
type journalState struct {
	Journal string `json:"journal"`
	// Filter is the filter the position was reached under (JournalFilter.String): the events it
	// left out count as finished, so a run with another filter needs another state file.
	Filter string `json:"filter"`
	// Concurrency is the run's: at most that many events are sent twice if it is killed.
	Concurrency int `json:"concurrency"`
	// Complete is false while a run is in progress, and stays so when it is killed.
	Complete bool `json:"complete"`
	// PossibleDuplicates adds up the concurrency of the earlier runs that did not complete.
	PossibleDuplicates int `json:"possible_duplicates"`
	// DeadLettered counts the events sent to the dead letter since the replay began: over the
	// runs that resumed it, until one completes.
	DeadLettered int             `json:"dead_lettered"`
	UpdatedAt    string          `json:"updated_at"`
	Position     json.RawMessage `json:"position"`
}

// journalSource is a journal replay's replaySource.
type journalSource struct {
	journal, state, basePath string
	header                   http.Header
	filter                   JournalFilter
	services, ops            map[string]bool
	conc                     int

	pos   spoolPosition // read from the state at open
	found bool
	dupes int // possible duplicates of earlier runs

	deadBefore int // dead-lettered by the earlier runs of a replay not complete yet
	deadNow    int // dead-lettered by this run, as far as its positions on disk say; guarded by mu

	mu       sync.Mutex
	complete bool
	last     []byte // the last position line written
	lastErr  error
}

// readState reads the state file, if any, and checks that it is this journal's and this filter's.
func (j *journalSource) readState() error {
	b, err := os.ReadFile(j.state)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st journalState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("state file %s: %w", j.state, err)
	}
	if st.Journal != "" && st.Journal != j.journal {
		return fmt.Errorf("state file %s belongs to the journal %s: name another with --state", j.state, st.Journal)
	}
	if st.Filter != j.filter.String() {
		return fmt.Errorf("state file %s was written by a replay with the filter %q, not %q: the events it left out count as finished there; name another state file with --state",
			j.state, st.Filter, j.filter.String())
	}
	if err := json.Unmarshal(st.Position, &j.pos); err != nil {
		return fmt.Errorf("state file %s: position: %w", j.state, err)
	}
	j.found = true
	j.dupes = st.PossibleDuplicates
	if !st.Complete {
		j.dupes += st.Concurrency
		j.deadBefore = st.DeadLettered
	}
	return nil
}

// startLine is the position line of a resume point, as the scheduler writes them.
func (j *journalSource) startLine(l *wal.Log, start resumePoint) []byte {
	pos := spoolPosition{Cursor: l.Cursor(start.seg, start.off)}
	for rp := range start.done {
		pos.Done = append(pos.Done, l.Cursor(rp.seg, rp.off))
	}
	line, _ := json.Marshal(pos)
	return line
}

func (j *journalSource) writePosition(line []byte, _ *wal.Segment, covers []*pending) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.last = line
	for _, p := range covers {
		if p.how == deadLettered {
			j.deadNow++
		}
	}
	err := j.write()
	j.lastErr = err
	return err
}

// rewrite writes the last position again, with the run's end.
func (j *journalSource) rewrite() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.write()
}

func (j *journalSource) writeErr() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.lastErr
}

// write replaces the state file; j.mu is held.
func (j *journalSource) write() error {
	st := journalState{Journal: j.journal, Filter: j.filter.String(), Concurrency: j.conc, Complete: j.complete,
		PossibleDuplicates: j.dupes, DeadLettered: j.deadBefore + j.deadNow, UpdatedAt: time.Now().UTC().Format(receivedAtLayout), Position: j.last}
	b, _ := json.Marshal(st) // strings, numbers and a position line: cannot fail
	return WriteFileAtomic(j.state, append(b, '\n'))
}

// lastPosition is the position read at open, or the last one written since: a replay worker
// restarting after a panic resumes there.
func (j *journalSource) lastPosition() (spoolPosition, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.last == nil {
		return j.pos, j.found, nil
	}
	var pos spoolPosition
	err := json.Unmarshal(j.last, &pos)
	return pos, err == nil, err
}

func (j *journalSource) positionPath() string { return j.state }
func (j *journalSource) parks() bool          { return false }
func (j *journalSource) finite() bool         { return true }

// journalMeta is what the replay reads of every journal line.
type journalMeta struct {
	at       time.Time
	op, sid  string
	idName   string
	id       int64
	hasEvent bool
}

// journalLine is the decoded form of a journal line (AppendEventRecord).
type journalLine struct {
	ReceivedAt string          `json:"received_at"`
	Operation  string          `json:"operation"`
	ServiceID  *string         `json:"service_id"`
	TaskID     *int64          `json:"task_id"`
	StateID    *int64          `json:"state_id"`
	Event      json.RawMessage `json:"event"`
}

// parseJournalMeta reads a journal line's fields but the event; ok is false for a line that is
// not one. Lines as AppendEventRecord writes them are read from their head without decoding the
// event (counting a 1 GB journal took 21 s decoding each line whole); others are decoded. The
// event's JSON is checked when the call is built (request).
func parseJournalMeta(rec []byte) (m journalMeta, ok bool) {
	if m, ok = fastJournalMeta(rec); ok {
		return m, true
	}
	m, _, ok = parseJournalLine(rec)
	return m, ok
}

// fastJournalMeta reads the head of a line written by AppendEventRecord:
// {"received_at":"…","operation":"…","service_id":"…"[,"task_id":N|,"state_id":N],"event":…}.
// ok is false for any other shape, or a string needing unescaping.
func fastJournalMeta(rec []byte) (m journalMeta, ok bool) {
	rest, ok := bytes.CutPrefix(rec, []byte(`{"received_at":"`))
	if !ok || len(rest) < recordAtLen || rec[len(rec)-1] != '}' {
		return m, false
	}
	var err error
	if m.at, err = time.Parse(receivedAtLayout, string(rest[:recordAtLen])); err != nil {
		return m, false
	}
	str := func(key string) (string, bool) {
		r, ok := bytes.CutPrefix(rest, []byte(key))
		if !ok {
			return "", false
		}
		end := bytes.IndexAny(r, `"\`)
		if end < 0 || r[end] != '"' {
			return "", false
		}
		rest = r[end+1:]
		return string(r[:end]), true
	}
	rest = rest[recordAtLen:]
	if m.op, ok = str(`","operation":"`); !ok {
		return m, false
	}
	if m.sid, ok = str(`,"service_id":"`); !ok {
		return m, false
	}
	for _, name := range []string{"task_id", "state_id"} {
		r, ok := bytes.CutPrefix(rest, []byte(`,"`+name+`":`))
		if !ok {
			continue
		}
		end := bytes.IndexByte(r, ',')
		if end < 0 {
			return m, false
		}
		if m.id, err = strconv.ParseInt(string(r[:end]), 10, 64); err != nil {
			return m, false
		}
		m.idName, rest = name, r[end:]
		break
	}
	ev, ok := bytes.CutPrefix(rest, []byte(`,"event":`))
	m.hasEvent = ok && len(ev) > 1
	return m, ok
}

func parseJournalLine(rec []byte) (journalMeta, json.RawMessage, bool) {
	var l journalLine
	if json.Unmarshal(rec, &l) != nil || l.ServiceID == nil {
		return journalMeta{}, nil, false
	}
	at, err := time.Parse(receivedAtLayout, l.ReceivedAt)
	if err != nil {
		return journalMeta{}, nil, false
	}
	m := journalMeta{at: at, op: l.Operation, sid: *l.ServiceID, hasEvent: len(l.Event) > 0}
	if m.op == "" {
		m.op = "task.end" // lines written before the operation was named were all Complete Task
	}
	switch {
	case l.TaskID != nil:
		m.idName, m.id = "task_id", *l.TaskID
	case l.StateID != nil:
		m.idName, m.id = "state_id", *l.StateID
	}
	return m, l.Event, true
}

func (j *journalSource) lane(rec []byte) string {
	if sid, ok := fastServiceID(rec); ok {
		return sid
	}
	m, _ := parseJournalMeta(rec)
	return m.sid
}

// fastServiceID reads the service id of a line as AppendEventRecord writes it, without decoding
// the event: the lane of every record read.
func fastServiceID(rec []byte) (string, bool) {
	const key = `,"service_id":"`
	i := bytes.Index(rec, []byte(key))
	if i < 0 || bytes.Index(rec, []byte(`"event":`)) < i {
		return "", false
	}
	rest := rec[i+len(key):]
	if end := bytes.IndexAny(rest, `"\`); end >= 0 && rest[end] == '"' {
		return string(rest[:end]), true
	}
	return "", false
}

func (j *journalSource) acceptedAt(rec []byte) time.Time {
	m, _ := parseJournalMeta(rec)
	return m.at
}

// skip applies the filter. A line that is not an event is never filtered out: it goes to the
// dead letter with its reason.
func (j *journalSource) skip(rec []byte) bool {
	if j.ops == nil && j.services == nil && j.filter.Since.IsZero() && j.filter.Until.IsZero() {
		return false
	}
	m, ok := parseJournalMeta(rec)
	return j.skipMeta(m, ok)
}

// skipMeta is skip for a line already parsed: one the filter leaves out. A line that is no event
// is never skipped (it goes to the dead letter).
func (j *journalSource) skipMeta(m journalMeta, ok bool) bool {
	if !ok {
		return false
	}
	return j.ops != nil && !j.ops[m.op] || j.services != nil && !j.services[m.sid] ||
		!j.filter.Since.IsZero() && m.at.Before(j.filter.Since) ||
		!j.filter.Until.IsZero() && !m.at.Before(j.filter.Until)
}

// request rebuilds the call a journal line stands for: its method and path under the base path
// from the operation and the ids, its body the event as journaled (its timestamp with it), and
// the replay's headers.
func (j *journalSource) request(rec []byte) (outbound, error) {
	m, event, ok := parseJournalLine(rec)
	if !ok {
		return outbound{}, fmt.Errorf("%w: not a journal line (received_at, service_id and event)", errUnreadableRecord)
	}
	if !m.hasEvent {
		return outbound{}, fmt.Errorf("%w: the line has no event", errUnreadableRecord)
	}
	sid := "/services/" + url.PathEscape(m.sid)
	var path string
	switch {
	case m.op == "task.end" && m.idName == "task_id":
		path = sid + "/tasks/" + strconv.FormatInt(m.id, 10) + "/end"
	case m.op == "state.end" && m.idName == "state_id":
		path = sid + "/states/" + strconv.FormatInt(m.id, 10) + "/end"
	case m.op == "service.end":
		path = sid + "/end"
	default:
		return outbound{}, fmt.Errorf("%w: operation %q with %q cannot be replayed", errUnreadableRecord, m.op, m.idName)
	}
	h := j.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", forwardContentType)
	return outbound{method: http.MethodPost, path: j.basePath + path, header: h, body: event, lane: m.sid}, nil
}

// deadRecord is the spool record of the call, so that `dead-letter list` and `resend` read it;
// the replay's headers are left out (credentials stay out of the file: resend takes --header).
// A line that is no call is kept as it is.
func (j *journalSource) deadRecord(rec []byte) []byte {
	o, err := j.request(rec)
	if err != nil {
		return rec
	}
	m, _ := parseJournalMeta(rec)
	o.header = http.Header{"Content-Type": {forwardContentType}}
	return appendSpoolRecord(nil, m.at, o)
}

// JournalFiles returns the journals in dir: the active file of each journal log there (its rotated
// files are read with it), leaving out replay state and dead-letter files.
func JournalFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		// A replay's dead letter sits beside its journal, rotated files included.
		if e.Type().IsRegular() && strings.HasSuffix(n, ".jsonl") && !strings.Contains(n, ".dead-letter") {
			names = append(names, n)
		}
	}
	var out []string
	for _, n := range names {
		rotated := slices.ContainsFunc(names, func(active string) bool { return active != n && wal.IsFileOf(active, n) })
		if !rotated {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out, nil
}
