package upstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// Store and forward. The spool directory holds (names spelled by SpoolPath only):
//
//	.lock                        exclusive lock: one owner per directory
//	spool.jsonl, spool-<T>.jsonl the records (a wal.Log), in acceptance order
//	cursor.jsonl[, cursor-<T>]   a wal.Log of replay positions; its last line is the durable position
//	dead-letter.jsonl            records the upstream rejected (unless configured elsewhere)
//
// The record log is the only copy of an event; the replay's lanes (scheduler.go) are a scheduling view
// of it. Records of one lane (the service id) are sent one at a time in acceptance order; records
// of different lanes go concurrently, so deliveries finish out of order. The durable position is
// therefore a low-water mark, the position before which every record is delivered or
// dead-lettered, plus the list of records after it that are finished too. After a crash the replay
// starts at the mark and skips the listed records, so it resends only what was in flight or
// finished after the last position line: a record holds its place in the in-flight window until a
// position line covering it is on disk, which bounds those resends by the window
// (SpoolOptions.Replay: the fixed Concurrency, or the adaptive limit's MaxConcurrency). Record
// files are deleted only behind the mark. A lane that holds the mark while the others deliver is
// parked (park.go): its records move to the tail, so neither the position lines nor the files it
// keeps grow with the other lanes' traffic.

// ErrSpoolFull is what a *SpoolFullError is: storing the event would take the spool past its
// bound. The caller answers 503 with the error's Retry-After, so the client retries instead of
// the event being dropped.
var ErrSpoolFull = errors.New("spool is full")

// SpoolFullError is returned by Submit when the spool is full; errors.Is(err, ErrSpoolFull) holds.
type SpoolFullError struct {
	// RetryAfter is when the spool will probably have room again, from its recent drain rate (at
	// least one second; when nothing drains, the longest replay backoff).
	RetryAfter time.Duration
}

// Error says the spool is full.
func (e *SpoolFullError) Error() string { return ErrSpoolFull.Error() }

// Is makes errors.Is(err, ErrSpoolFull) true.
func (e *SpoolFullError) Is(target error) bool { return target == ErrSpoolFull }

// Defaults of the spool's options, filled in by OpenSpool and SetReplayPolicy.
const (
	DefaultMaxSpool    = 1 << 30
	DefaultMinBackoff  = 250 * time.Millisecond
	DefaultMaxBackoff  = 30 * time.Second
	DefaultMaxAttempts = 10
	DefaultMaxRetryAge = time.Hour
)

const (
	defaultSegmentSize  = 16 << 20
	cursorLogMaxSize    = 1 << 20
	spoolRecordOverhead = 512 // a guess at the record framing, to size the encode buffer once
)

// ReplayPolicy says how the replay delivers the spooled records. The zero value of each field
// means its default.
type ReplayPolicy struct {
	// Concurrency, when > 0, is a fixed bound of the records in flight: sent and not yet recorded
	// as finished on disk. 0 means adaptive (concurrency.go): the limit follows what the upstream
	// answers, direct deliveries included, from 1 up to MaxConcurrency.
	Concurrency int
	// MaxConcurrency bounds the adaptive limit, and the records in flight with it. Default 256;
	// ignored with a fixed Concurrency.
	MaxConcurrency int
	// MinBackoff and MaxBackoff bound the exponential backoff of a lane (and, in an outage, of the
	// probe) after a failed delivery. Defaults 250ms and 30s. An upstream's Retry-After (at most
	// one hour) is honoured when longer.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts and MaxRetryAge bound the retries of a record the upstream answered with an
	// answer that is not final (408, 429, or a 4xx/5xx without the Context Services error body):
	// past either, it goes to the dead letter. Unavailability (no answer, 502, 503, 504, timeout)
	// never counts: an outage only delays. Defaults 10 and 1h.
	MaxAttempts int
	MaxRetryAge time.Duration
}

// window is the most records in flight the policy allows: the fixed limit, or the adaptive
// limit's maximum.
func (p ReplayPolicy) window() int {
	if p.Concurrency > 0 {
		return p.Concurrency
	}
	return p.MaxConcurrency
}

func (p ReplayPolicy) withDefaults() ReplayPolicy {
	p.Concurrency = max(p.Concurrency, 0)
	if p.Concurrency == 0 && p.MaxConcurrency <= 0 {
		p.MaxConcurrency = DefaultReplayConcurrencyMax
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = DefaultMinBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = DefaultMaxBackoff
	}
	p.MaxBackoff = max(p.MaxBackoff, p.MinBackoff)
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.MaxRetryAge <= 0 {
		p.MaxRetryAge = DefaultMaxRetryAge
	}
	return p
}

// SpoolOptions configures a Spool.
type SpoolOptions struct {
	// Dir is the spool directory, created if missing. Only one Spool may own it at a time.
	Dir string
	// MaxBytes bounds the bytes of records waiting for delivery; a Submit that would pass it fails
	// with a *SpoolFullError. <= 0 means 1 GiB.
	MaxBytes int64
	// DeadLetter is the file records rejected by the upstream go to; "" means <Dir>/dead-letter.jsonl.
	DeadLetter string
	// Forwarder delivers the events; required.
	Forwarder *Forwarder
	// Logger receives outage start and end (warn, info) with the depth; nil means zap.NewNop().
	Logger *zap.Logger
	// FS is the file system of the record, cursor and dead-letter logs; nil means the operating
	// system. Tests inject faults through it.
	FS wal.FileSystem
	// Replay is how the replay delivers; see ReplayPolicy.
	Replay ReplayPolicy

	// Metrics hooks, each may be nil. OnDepth, OnReplayed, OnDeadLetter and OnUpstreamDown are
	// called with the spool's lock held, in order; OnLag from the replay worker. All must be quick
	// and must not call the Spool.
	OnDepth      func(records int, bytes int64) // after every change of the depth
	OnReplayed   func()                         // a spooled record was delivered
	OnDeadLetter func()                         // a spooled record went to the dead letter
	// OnUpstreamDown reports true when the spool takes the upstream to be down (deliveries in a
	// row failed for unavailability: events are stored without a direct attempt and the replay
	// probes), false when it answers again.
	OnUpstreamDown func(down bool)
	// OnLag reports the records in flight and the age of the oldest record waiting (0 when none),
	// after changes and every second while records wait.
	OnLag func(inFlight int, oldest time.Duration)
	// OnRestart is called from the replay worker after it recovered from a panic, before it
	// restarts from the durable position.
	OnRestart func()
	// OnConcurrency reports the replay's concurrency limit whenever it changes (adaptive), and
	// once when it is set. It is called with the limit's lock held, from any goroutine that
	// delivers: it must be quick.
	OnConcurrency func(limit int)
}

// spoolTuning is what only tests and benchmarks change.
type spoolTuning struct {
	segmentSize    int64 // record file rotation size; tests make it small
	deadLetterSize int64 // dead letter rotation size, when > 0; tests make it small
	syncEachRecord bool  // the group-commit benchmark's baseline (see wal.Options.SyncEachRecord)
	// skipWaits makes the replay's clock jump over each wait of its worker instead of sleeping
	// through it (after 100µs of real time): a day of backoffs passes in seconds.
	skipWaits bool
	onFinish  func() // called by the worker before it applies each delivery's result
	onPark    func() // called by a park once its copies are on disk, before it reports
}

// Spool is the store-and-forward sink: events go straight to the upstream while it answers, and to
// a durable spool while it does not, replayed concurrently with per-lane order. It is safe for
// concurrent use.
type Spool struct {
	dir        string
	fwd        atomic.Pointer[Forwarder]    // swapped by SetForwarder on a config reload
	policy     atomic.Pointer[ReplayPolicy] // swapped by SetReplayPolicy
	logger     *zap.Logger
	onDepth    func(int, int64)
	onReplayed func()
	onDead     func()
	onDown     func(bool)
	onLag      func(int, time.Duration)
	onRestart  func()
	onConc     func(int)
	limit      atomic.Pointer[concurrencyLimit] // the requests in flight at the upstream; swapped by SetReplayPolicy
	tune       spoolTuning
	skew       atomic.Int64 // nanoseconds the replay's clock is ahead of the wall clock (tune.skipWaits)

	records *wal.Log
	cursors *wal.Log
	src     replaySource // how the replay reads records and keeps its position: spoolSource here
	dead    *wal.Log     // guarded by deadMu: EditDeadLetter closes and reopens it
	lock    *os.File

	deadMu    sync.Mutex  // serialises dead-letter appends with EditDeadLetter's rewrites
	deadOpts  wal.Options // what dead was opened with, to reopen it
	deadPath  string
	resending sync.Mutex  // held by a resend of the dead letter (TryResend)
	deadHeld  bool        // a resend runs: the dead letter does not rotate; guarded by deadMu
	start     resumePoint // where the replay worker starts

	mu         sync.Mutex
	maxBytes   int64           // guarded by mu
	depth      int             // records stored or being stored, not yet finished; guarded by mu
	depthBytes int64           // their bytes, with framing; guarded by mu
	lanes      map[string]int  // depth per lane; guarded by mu
	appending  map[string]int  // Appends in progress per lane; guarded by mu
	parking    map[string]bool // lanes being parked (park.go): their stores wait; guarded by mu
	parkCond   *sync.Cond      // on mu: a lane's Appends ended, or its park did
	closed     bool            // guarded by mu
	outage     outageStats     // guarded by mu
	breaker    breaker         // guarded by mu
	drain      rateMeter       // bytes finished per second; guarded by mu
	refusing   bool            // the last event needing room was refused as full, and nothing drained since; guarded by mu
	oldestAge  atomic.Int64    // nanoseconds; the age of the oldest waiting record, set by the replay worker
	quiet      atomic.Bool     // the worker reads new records on its own timer: a store need not wake it
	submits    sync.WaitGroup  // Submits in progress; Add only under mu while !closed

	wake      chan struct{} // capacity 1: a record was stored, or the breaker changed
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{} // closed when the replay worker returns
	closeOnce sync.Once
	closeErr  error
}

// outageStats describe the current spell of a non-empty spool, for its end-of-outage log line.
type outageStats struct {
	start        time.Time
	replayed     int
	deadLettered int
}

// resumePoint is where the replay starts: the durable low-water mark and the records after it that
// were already finished.
type resumePoint struct {
	seg   *wal.Segment
	off   int64
	done  map[recordPos]bool
	rules []parkRule
}

// recordPos names a record by its segment and start offset.
type recordPos struct {
	seg *wal.Segment
	off int64
}

// OpenSpool takes the spool directory (failing if another Spool, in this process or another, owns
// it), resumes the records left on disk and starts the replay worker.
func OpenSpool(opts SpoolOptions) (*Spool, error) { return openSpool(opts, spoolTuning{}) }

// newSpool is the in-memory state of a Spool that every replay needs, a spool's or a journal's:
// the lane maps, the worker's channels and the forwarder. The caller sets the hooks, the logs and
// the source, then the replay policy.
func newSpool(dir string, logger *zap.Logger, fwd *Forwarder) *Spool {
	if logger == nil {
		logger = zap.NewNop()
	}
	s := &Spool{
		dir:       dir,
		logger:    logger,
		lanes:     map[string]int{},
		appending: map[string]int{},
		parking:   map[string]bool{},
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	s.parkCond = sync.NewCond(&s.mu)
	s.fwd.Store(fwd)
	return s
}

func openSpool(opts SpoolOptions, tune spoolTuning) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: a directory is needed")
	}
	if opts.Forwarder == nil {
		return nil, errors.New("spool: a Forwarder is needed")
	}
	s := newSpool(opts.Dir, opts.Logger, opts.Forwarder)
	s.maxBytes = opts.MaxBytes
	s.onDepth, s.onReplayed, s.onDead = opts.OnDepth, opts.OnReplayed, opts.OnDeadLetter
	s.onDown, s.onLag, s.onRestart, s.onConc = opts.OnUpstreamDown, opts.OnLag, opts.OnRestart, opts.OnConcurrency
	s.tune = tune
	s.src = spoolSource{s}
	s.SetReplayPolicy(opts.Replay) // after onConc: the limit reports through it
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxSpool
	}
	segmentSize := tune.segmentSize
	if segmentSize <= 0 {
		segmentSize = defaultSegmentSize
	}
	deadLetter := opts.DeadLetter
	if deadLetter == "" {
		deadLetter = SpoolPath(opts.Dir, SpoolDeadLetter)
	}

	if err := os.MkdirAll(opts.Dir, dirPerm); err != nil {
		return nil, &StorageError{Op: "open", Path: opts.Dir, Err: err}
	}
	lock, err := wal.LockDir(SpoolPath(opts.Dir, SpoolLock))
	if err != nil {
		return nil, lockError(opts.Dir, err)
	}
	s.lock = lock
	fail := func(err error) (*Spool, error) {
		for _, l := range []*wal.Log{s.records, s.cursors, s.dead} {
			if l != nil {
				_ = l.Close()
			}
		}
		_ = s.lock.Close()
		return nil, err
	}
	logOpts := wal.Options{Logger: s.logger, FS: opts.FS}
	recOpts := logOpts
	recOpts.MaxSize, recOpts.Keep, recOpts.SyncEachRecord = segmentSize, wal.KeepAll, tune.syncEachRecord
	if s.records, err = wal.Open(SpoolPath(opts.Dir, SpoolRecords), recOpts); err != nil {
		return fail(err)
	}
	curOpts := logOpts
	curOpts.MaxSize, curOpts.Keep = cursorLogMaxSize, 1
	if s.cursors, err = wal.Open(SpoolPath(opts.Dir, SpoolCursor), curOpts); err != nil {
		return fail(err)
	}
	deadOpts := logOpts
	deadOpts.Keep = wal.KeepAll // rejected events are the operator's to remove
	if tune.deadLetterSize > 0 {
		deadOpts.MaxSize = tune.deadLetterSize
	}
	s.deadOpts, s.deadPath = deadOpts, deadLetter
	if s.dead, err = wal.Open(deadLetter, deadOpts); err != nil {
		return fail(err)
	}
	if err := s.resume(); err != nil {
		return fail(err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// lockError tells a directory another spool holds from one this process may not use (permission
// denied, a read-only file system), which is reported as the storage error it is.
func lockError(dir string, err error) error {
	if !errors.Is(err, ErrDirLocked) {
		return &StorageError{Op: "lock", Path: SpoolPath(dir, SpoolLock), Err: err}
	}
	return fmt.Errorf("spool directory %s is in use by another spool (another process, or "+
		"another forward sink of this one): one owner per directory: %w", dir, err)
}

// resume positions the replay at the durable low-water mark, removes the files finished before it
// and counts what is left, per lane.
func (s *Spool) resume() error {
	start, err := s.durablePosition()
	if err != nil {
		return err
	}
	s.records.RemoveBefore(start.seg)
	reset := func() { s.depth, s.depthBytes, s.lanes = 0, 0, map[string]int{} }
	err = countWaiting(s.records, &start, reset, func(w *waiting) {
		s.depth++
		s.depthBytes += w.end - w.off
		s.lanes[w.lane]++
	})
	if err != nil {
		return &StorageError{Op: "read", Path: s.records.Path(), Err: err}
	}
	s.start = start
	if s.depth > 0 {
		s.outage.start = time.Now()
		s.logger.Warn("spool holds undelivered events; replaying them",
			zap.String("dir", s.dir), zap.Int("records", s.depth), zap.Int64("bytes", s.depthBytes),
			zap.Int("lanes", len(s.lanes)))
	}
	if s.onDepth != nil {
		s.onDepth(s.depth, s.depthBytes)
	}
	return nil
}

// durablePosition reads where the last position line on disk says the replay stands.
func (s *Spool) durablePosition() (resumePoint, error) {
	pos, found, err := s.src.lastPosition()
	if err != nil {
		return resumePoint{}, &StorageError{Op: "read", Path: s.src.positionPath(), Err: err}
	}
	seg, off := s.records.First(), int64(0)
	if found {
		var ok bool
		if seg, off, ok = s.records.Resolve(pos.Cursor); !ok {
			s.logger.Warn("replay position names a file that is gone; resuming at the next one",
				zap.String("dir", s.dir), zap.String("file", pos.File))
		}
	}
	if end, past := s.records.ClampToEnd(seg, off); past {
		s.logger.Warn("replay position is past the end of the records; resuming at their end",
			zap.String("dir", s.dir), zap.Int64("cursor", off), zap.Int64("size", end))
		off = end
	}
	return resumePoint{seg: seg, off: off, done: finished(s.records, pos.Done), rules: resolveRules(s.records, pos.Moved)}, nil
}

// Submit delivers one event. When nothing of its lane is waiting in the spool and the upstream is
// not known to be down, it forwards directly and returns the upstream's answer, whatever its status
// (2xx, 4xx, other 5xx), for relaying. When that fails for unavailability (see UnavailableError),
// while records of the same lane wait (so that the lane's order holds), or while the upstream is
// known to be down (so the caller is not held for the timeout), it stores the event durably instead
// and returns a Response with Spooled set: the caller answers 204.
// Errors: *SpoolFullError, *StorageError (the event is not stored; 503), *ResponseTooLargeError,
// or ctx's error when the caller went away during a direct forward.
func (s *Spool) Submit(ctx context.Context, req ForwardRequest) (*Response, error) {
	fwd := s.fwd.Load()
	o := fwd.prepare(req)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, &StorageError{Op: "append", Path: s.records.Path(), Err: ErrClosed}
	}
	s.submits.Add(1)
	defer s.submits.Done()
	direct := s.lanes[o.lane] == 0 && !s.breaker.open
	s.mu.Unlock()

	var cause *UnavailableError
	if direct {
		// Live traffic is never held back by the limit, but it is load on the UCS: the controller
		// counts it and learns from its answers, and the replay leaves it room.
		lim := s.limit.Load()
		started := lim.begin(s.now())
		start := time.Now()
		resp, err := fwd.send(ctx, o)
		status := 0
		if resp != nil {
			status = resp.Status
		}
		if lim.end(started, s.now(), time.Since(start), status, err) {
			s.poke()
		}
		if !errors.As(err, &cause) {
			if err == nil {
				s.answered()
			}
			return resp, err
		}
		s.unavailable(cause.RetryAfter, false)
	}
	return s.store(o, cause)
}

var spoolBufPool = sync.Pool{New: func() any { return new([]byte) }}

// store appends the event to the spool; cause is why it was not delivered directly, nil when it
// queues behind earlier records or an open breaker.
func (s *Spool) store(o outbound, cause *UnavailableError) (*Response, error) {
	p := spoolBufPool.Get().(*[]byte)
	defer spoolBufPool.Put(p)
	if cap(*p) < len(o.body)+spoolRecordOverhead {
		*p = make([]byte, 0, len(o.body)+spoolRecordOverhead)
	}
	*p = appendSpoolRecord((*p)[:0], time.Now(), o)
	size := int64(len(*p) + 1)

	s.mu.Lock()
	for len(s.parking) > 0 && s.parking[o.lane] {
		s.parkCond.Wait() // its waiting records are being moved to the tail: this one goes after them
	}
	if s.depthBytes+size > s.maxBytes {
		records, bytes, maxBytes := s.depth, s.depthBytes, s.maxBytes
		retryAfter := s.refillTime(s.depthBytes + size - s.maxBytes)
		s.refusing = true
		s.mu.Unlock()
		s.logger.Warn("spool is full; refusing the event",
			zap.String("dir", s.dir), zap.Int("records", records), zap.Int64("bytes", bytes),
			zap.Int64("max_bytes", maxBytes), zap.Duration("retry_after", retryAfter))
		return nil, &SpoolFullError{RetryAfter: retryAfter}
	}
	if s.depth == 0 {
		s.outage = outageStats{start: time.Now()}
		fields := []zap.Field{zap.String("dir", s.dir), zap.Int("records", 1), zap.Int64("bytes", size)}
		if cause != nil {
			fields = append(fields, zap.NamedError("cause", cause), TLSField(cause))
		}
		s.logger.Warn("upstream unavailable; spooling events", fields...)
	}
	// Counted before the append, so that Submits of this lane arriving meanwhile queue behind it.
	s.depth++
	s.depthBytes += size
	s.lanes[o.lane]++
	s.appending[o.lane]++
	s.mu.Unlock()

	err := s.records.Append(*p)

	s.mu.Lock()
	if s.appending[o.lane]--; s.appending[o.lane] == 0 {
		delete(s.appending, o.lane)
		if len(s.parking) > 0 {
			s.parkCond.Broadcast()
		}
	}
	if err != nil {
		s.depth--
		s.depthBytes -= size
		s.dropLane(o.lane, 1)
	}
	if s.onDepth != nil {
		s.onDepth(s.depth, s.depthBytes)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if !s.quiet.Load() {
		s.poke()
	}
	return &Response{Status: http.StatusNoContent, Header: http.Header{}, Spooled: true}, nil
}

// dropLane takes n records off a lane's depth; s.mu is held.
func (s *Spool) dropLane(lane string, n int) {
	if s.lanes[lane] -= n; s.lanes[lane] <= 0 {
		delete(s.lanes, lane)
	}
}

// poke wakes the replay worker.
func (s *Spool) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// refillTime estimates when bytes more will have drained, from the last seconds' drain rate: at
// least one second, and the longest backoff when nothing drains (an outage: the next probe comes
// within it). s.mu is held.
func (s *Spool) refillTime(bytes int64) time.Duration {
	d := s.policy.Load().MaxBackoff
	if rate := s.drain.rate(time.Now()); rate > 0 {
		d = time.Duration(float64(bytes) / rate * float64(time.Second))
	}
	return min(max(d, time.Second), maxRetryAfter)
}

// SetForwarder makes f deliver the events from now on, direct and replayed: a config reload that
// changed the upstream URLs or the timeout keeps the spool and its records. A delivery in flight
// finishes with the Forwarder it started with.
func (s *Spool) SetForwarder(f *Forwarder) {
	if f != nil {
		s.fwd.Store(f)
	}
}

// SetReplayPolicy changes how the replay delivers from its next decision on; zero fields mean their
// defaults.
func (s *Spool) SetReplayPolicy(p ReplayPolicy) {
	p = p.withDefaults()
	s.policy.Store(&p)
	if old := s.limit.Load(); old == nil || !old.sameAs(p.Concurrency, p.MaxConcurrency) {
		logger := s.logger
		if logger != nil {
			logger = logger.With(zap.String("dir", s.dir))
		}
		s.limit.Store(newConcurrencyLimit(p.Concurrency, p.MaxConcurrency, logger, s.onConc))
	}
	if s.ctx != nil {
		s.poke()
	}
}

// SetMaxBytes changes the bound of SpoolOptions.MaxBytes (<= 0 means 1 GiB). Records already
// stored stay, even when they are now over it; only new events are refused.
func (s *Spool) SetMaxBytes(n int64) {
	if n <= 0 {
		n = DefaultMaxSpool
	}
	s.mu.Lock()
	s.maxBytes = n
	s.mu.Unlock()
}

// MaxBytes returns the bound of the bytes waiting (see SetMaxBytes).
func (s *Spool) MaxBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxBytes
}

// Full reports whether the spool is refusing events for lack of room: the last event that needed
// storing was refused (ErrSpoolFull), and nothing has been delivered since.
func (s *Spool) Full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refusing
}

// OldestAge returns the age of the oldest record waiting, 0 when none: how far behind the upstream
// is. It is refreshed by the replay worker at least every second while records wait.
func (s *Spool) OldestAge() time.Duration { return time.Duration(s.oldestAge.Load()) }

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Depth returns the records waiting for delivery and their bytes.
func (s *Spool) Depth() (records int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.depth, s.depthBytes
}

// Close stops taking events, waits for Submits in progress, stops the replay worker (deliveries in
// flight are abandoned and replayed after the next open; finished ones are recorded first), closes
// the files and releases the directory. Records not yet delivered stay on disk. Close is
// idempotent.
func (s *Spool) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.submits.Wait()
		s.cancel()
		<-s.done
		s.deadMu.Lock()
		deadErr := s.dead.Close()
		s.deadMu.Unlock()
		s.closeErr = errors.Join(s.records.Close(), s.cursors.Close(), deadErr, s.lock.Close())
	})
	return s.closeErr
}

// DeadLetterPath returns the path of the dead letter's active file.
func (s *Spool) DeadLetterPath() string { return s.deadPath }

// Forwarder returns the Forwarder delivering the spool's events (see SetForwarder).
func (s *Spool) Forwarder() *Forwarder { return s.fwd.Load() }

// EditDeadLetter rewrites the dead letter's active file while the spool runs: edit gets its
// content and returns the new one, which replaces it atomically (WriteFileAtomic). The replay
// worker's appends wait meanwhile; the file is closed for the rewrite and opened again after it,
// so no append goes to the replaced file. It is ResendOptions.Edit for the spool's own dead letter.
func (s *Spool) EditDeadLetter(edit func(old []byte) ([]byte, error)) error {
	s.deadMu.Lock()
	defer s.deadMu.Unlock()
	return s.reopenDead(edit)
}

// reopenDead closes the dead letter, applies edit to its file when given, and opens it again,
// unrotating while a resend runs (deadHeld); s.deadMu is held.
func (s *Spool) reopenDead(edit func(old []byte) ([]byte, error)) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return &StorageError{Op: "rewrite", Path: s.deadPath, Err: ErrClosed}
	}
	if err := s.dead.Close(); err != nil {
		return err
	}
	var editErr error
	if edit != nil {
		editErr = editFile(s.deadPath, edit)
	}
	opts := s.deadOpts
	if s.deadHeld {
		opts.MaxSize = math.MaxInt64
	}
	dead, err := wal.Open(s.deadPath, opts)
	if err != nil {
		// Appends fail until the next rewrite or open: the replay keeps the records it would
		// dead-letter in their lanes (retry), so nothing is lost.
		s.logger.Error("reopening the dead letter after a rewrite failed", zap.String("path", s.deadPath), zap.Error(err))
		return errors.Join(editErr, err)
	}
	s.dead = dead
	return editErr
}

// TryResend marks a resend of the dead letter as running and returns its end; ok is false while
// another one runs.
func (s *Spool) TryResend() (end func(), ok bool) {
	if !s.resending.TryLock() {
		return nil, false
	}
	// The dead letter does not rotate while the resend runs: the lines it removes are found in
	// the active file, not moved meanwhile to a rotated one the rewrite never looks at.
	s.holdDead(true)
	return func() {
		s.holdDead(false)
		s.resending.Unlock()
	}, true
}

// holdDead reopens the dead letter without rotation (hold) or with it again.
func (s *Spool) holdDead(hold bool) {
	s.deadMu.Lock()
	defer s.deadMu.Unlock()
	s.deadHeld = hold
	if err := s.reopenDead(nil); err != nil && !errors.Is(err, ErrClosed) {
		s.logger.Error("reopening the dead letter for a resend failed", zap.String("path", s.deadPath), zap.Error(err))
	}
}
