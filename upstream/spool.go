package upstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Store and forward. The spool directory holds:
//
//	.lock                        exclusive lock: one owner per directory
//	spool.jsonl, spool-<T>.jsonl the records (a Log), in acceptance order
//	cursor.jsonl[, cursor-<T>]   a Log of replay positions; its last line is the durable cursor
//	dead-letter.jsonl            records the upstream rejected (unless configured elsewhere)
//
// The replay worker delivers the record at the cursor, then appends the position after it to the
// cursor log (one fsync), then deletes the record files it has left. A crash between a delivery and
// its cursor line resends that one record; nothing is ever removed before it was delivered.

// ErrSpoolFull is returned by Submit when storing the event would take the spool past MaxBytes; the
// caller answers 503, so the client retries instead of the event being dropped.
var ErrSpoolFull = errors.New("spool is full")

const (
	defaultMaxSpool     = 1 << 30
	defaultSegmentSize  = 16 << 20
	defaultMinBackoff   = 250 * time.Millisecond
	defaultMaxBackoff   = 30 * time.Second
	cursorLogMaxSize    = 1 << 20
	spoolFileName       = "spool.jsonl"
	cursorFileName      = "cursor.jsonl"
	lockFileName        = ".lock"
	deadLetterFileName  = "dead-letter.jsonl"
	neverPrune          = math.MaxInt
	spoolRecordOverhead = 512 // a guess at the record framing, to size the encode buffer once
)

// SpoolOptions configures a Spool.
type SpoolOptions struct {
	// Dir is the spool directory, created if missing. Only one Spool may own it at a time.
	Dir string
	// MaxBytes bounds the bytes of records waiting for delivery; a Submit that would pass it fails
	// with ErrSpoolFull. <= 0 means 1 GiB.
	MaxBytes int64
	// DeadLetter is the file records rejected by the upstream go to; "" means <Dir>/dead-letter.jsonl.
	DeadLetter string
	// Forwarder delivers the events; required.
	Forwarder *Forwarder
	// Logger receives outage start and end (warn, info) with the depth; nil means zap.NewNop().
	Logger *zap.Logger
	// FS is the file system of the record, cursor and dead-letter logs; nil means the operating
	// system. Tests inject faults through it.
	FS FileSystem
	// MinBackoff and MaxBackoff bound the replay's exponential backoff after a failed delivery;
	// <= 0 means 250ms and 30s. An upstream's Retry-After (at most one hour) is honoured when longer.
	MinBackoff, MaxBackoff time.Duration

	// Metrics hooks, each may be nil. They are called with the spool's lock held, in order, so they
	// must be quick and must not call the Spool.
	OnDepth      func(records int, bytes int64) // after every change of the depth
	OnReplayed   func()                         // a spooled record was delivered
	OnDeadLetter func()                         // a spooled record went to the dead letter

	segmentSize    int64 // record file rotation size; tests make it small
	syncEachRecord bool  // benchmark baseline: see LogOptions
}

// Spool is the store-and-forward sink: events go straight to the upstream while it answers, and to
// a durable spool, replayed in order, while it does not. It is safe for concurrent use.
type Spool struct {
	dir        string
	fwd        atomic.Pointer[Forwarder] // swapped by SetForwarder on a config reload
	logger     *zap.Logger
	maxBytes   int64 // guarded by mu
	minBackoff time.Duration
	maxBackoff time.Duration
	onDepth    func(int, int64)
	onReplayed func()
	onDead     func()

	records *Log
	cursors *Log
	dead    *Log
	lock    *os.File
	reader  *logReader // owned by the replay worker

	mu         sync.Mutex
	depth      int   // records stored or being stored, not yet delivered; guarded by mu
	depthBytes int64 // their bytes, with framing; guarded by mu
	closed     bool  // guarded by mu
	outage     outageStats
	submits    sync.WaitGroup // Submits in progress; Add only under mu while !closed

	wake      chan struct{} // capacity 1: a record was stored
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

// OpenSpool takes the spool directory (failing if another Spool, in this process or another, owns
// it), resumes the records left on disk and starts the replay worker.
func OpenSpool(opts SpoolOptions) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: a directory is needed")
	}
	if opts.Forwarder == nil {
		return nil, errors.New("spool: a Forwarder is needed")
	}
	s := &Spool{
		dir:        opts.Dir,
		logger:     opts.Logger,
		maxBytes:   opts.MaxBytes,
		minBackoff: opts.MinBackoff,
		maxBackoff: opts.MaxBackoff,
		onDepth:    opts.OnDepth,
		onReplayed: opts.OnReplayed,
		onDead:     opts.OnDeadLetter,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	s.fwd.Store(opts.Forwarder)
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	if s.maxBytes <= 0 {
		s.maxBytes = defaultMaxSpool
	}
	if s.minBackoff <= 0 {
		s.minBackoff = defaultMinBackoff
	}
	if s.maxBackoff <= 0 {
		s.maxBackoff = defaultMaxBackoff
	}
	s.maxBackoff = max(s.maxBackoff, s.minBackoff)
	segmentSize := opts.segmentSize
	if segmentSize <= 0 {
		segmentSize = defaultSegmentSize
	}
	deadLetter := opts.DeadLetter
	if deadLetter == "" {
		deadLetter = filepath.Join(opts.Dir, deadLetterFileName)
	}

	if err := os.MkdirAll(opts.Dir, dirPerm); err != nil {
		return nil, &StorageError{Op: "open", Path: opts.Dir, Err: err}
	}
	lockPath := filepath.Join(opts.Dir, lockFileName)
	lock, err := lockDir(lockPath)
	if err != nil {
		return nil, fmt.Errorf("spool directory %s is in use by another spool (another process, or "+
			"another forward sink of this one): one owner per directory: %w", opts.Dir, err)
	}
	s.lock = lock
	fail := func(err error) (*Spool, error) {
		for _, l := range []*Log{s.records, s.cursors, s.dead} {
			if l != nil {
				_ = l.Close()
			}
		}
		_ = s.lock.Close()
		return nil, err
	}
	logOpts := LogOptions{Logger: s.logger, FS: opts.FS}
	recOpts := logOpts
	recOpts.MaxSize, recOpts.Keep, recOpts.syncEachRecord = segmentSize, neverPrune, opts.syncEachRecord
	if s.records, err = OpenLog(filepath.Join(opts.Dir, spoolFileName), recOpts); err != nil {
		return fail(err)
	}
	curOpts := logOpts
	curOpts.MaxSize, curOpts.Keep = cursorLogMaxSize, 1
	if s.cursors, err = OpenLog(filepath.Join(opts.Dir, cursorFileName), curOpts); err != nil {
		return fail(err)
	}
	deadOpts := logOpts
	deadOpts.Keep = neverPrune // rejected events are the operator's to remove
	if s.dead, err = OpenLog(deadLetter, deadOpts); err != nil {
		return fail(err)
	}
	if err := s.resume(); err != nil {
		return fail(err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// resume positions the reader at the durable cursor, removes the files delivered before it and
// counts what is left.
func (s *Spool) resume() error {
	c, found, err := lastCursor(s.cursors)
	if err != nil {
		return &StorageError{Op: "read", Path: s.cursors.Path(), Err: err}
	}
	seg, off := s.records.first(), int64(0)
	if found {
		var ok bool
		if seg, off, ok = s.records.resolve(c); !ok {
			s.logger.Warn("spool cursor names a file that is gone; resuming at the next one",
				zap.String("dir", s.dir), zap.String("file", c.File))
		}
	}
	s.records.segMu.Lock()
	if seg.active && off > seg.size {
		s.logger.Warn("spool cursor is past the end of the spool; resuming at its end",
			zap.String("dir", s.dir), zap.Int64("cursor", off), zap.Int64("size", seg.size))
		off = seg.size
	}
	s.records.segMu.Unlock()
	s.records.removeBefore(seg)

	counter := s.records.newReader(seg, off)
	for {
		rec, _, _, ok, err := counter.next()
		if err != nil {
			return &StorageError{Op: "read", Path: s.records.Path(), Err: err}
		}
		if !ok {
			break
		}
		s.depth++
		s.depthBytes += int64(len(rec) + 1)
	}
	s.reader = s.records.newReader(seg, off)
	if s.depth > 0 {
		s.outage.start = time.Now()
		s.logger.Warn("spool holds undelivered events; replaying them",
			zap.String("dir", s.dir), zap.Int("records", s.depth), zap.Int64("bytes", s.depthBytes))
	}
	if s.onDepth != nil {
		s.onDepth(s.depth, s.depthBytes)
	}
	return nil
}

// Submit delivers one event. While the spool is empty it forwards directly and returns the
// upstream's answer, whatever its status (2xx, 4xx, other 5xx), for relaying. When the upstream is
// unavailable (see UnavailableError), or while the spool holds records (so that order holds), it
// stores the event durably instead and returns a Response with Spooled set: the caller answers 204.
// Errors: ErrSpoolFull, *StorageError (the event is not stored; 503), *ResponseTooLargeError, or
// ctx's error when the caller went away during a direct forward.
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
	direct := s.depth == 0
	s.mu.Unlock()

	var cause *UnavailableError
	if direct {
		resp, err := fwd.send(ctx, o)
		if !errors.As(err, &cause) {
			return resp, err
		}
	}
	return s.store(o, cause)
}

var spoolBufPool = sync.Pool{New: func() any { return new([]byte) }}

// store appends the event to the spool; cause is why it was not delivered directly, nil when it
// queues behind earlier records.
func (s *Spool) store(o outbound, cause *UnavailableError) (*Response, error) {
	p := spoolBufPool.Get().(*[]byte)
	defer spoolBufPool.Put(p)
	if cap(*p) < len(o.body)+spoolRecordOverhead {
		*p = make([]byte, 0, len(o.body)+spoolRecordOverhead)
	}
	*p = appendSpoolRecord((*p)[:0], time.Now(), o)
	size := int64(len(*p) + 1)

	s.mu.Lock()
	if s.depthBytes+size > s.maxBytes {
		records, bytes, maxBytes := s.depth, s.depthBytes, s.maxBytes
		s.mu.Unlock()
		s.logger.Warn("spool is full; refusing the event",
			zap.String("dir", s.dir), zap.Int("records", records), zap.Int64("bytes", bytes),
			zap.Int64("max_bytes", maxBytes))
		return nil, ErrSpoolFull
	}
	if s.depth == 0 {
		s.outage = outageStats{start: time.Now()}
		fields := []zap.Field{zap.String("dir", s.dir), zap.Int("records", 1), zap.Int64("bytes", size)}
		if cause != nil {
			fields = append(fields, zap.NamedError("cause", cause))
		}
		s.logger.Warn("upstream unavailable; spooling events", fields...)
	}
	// Counted before the append, so that Submits arriving meanwhile queue behind this record.
	s.depth++
	s.depthBytes += size
	s.mu.Unlock()

	err := s.records.Append(*p)

	s.mu.Lock()
	if err != nil {
		s.depth--
		s.depthBytes -= size
	}
	if s.onDepth != nil {
		s.onDepth(s.depth, s.depthBytes)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return &Response{Status: http.StatusNoContent, Header: http.Header{}, Spooled: true}, nil
}

// SetForwarder makes f deliver the events from now on, direct and replayed: a config reload that
// changed the upstream URLs or the timeout keeps the spool and its records. A delivery in flight
// finishes with the Forwarder it started with.
func (s *Spool) SetForwarder(f *Forwarder) {
	if f != nil {
		s.fwd.Store(f)
	}
}

// SetMaxBytes changes the bound of SpoolOptions.MaxBytes (<= 0 means 1 GiB). Records already
// stored stay, even when they are now over it; only new events are refused.
func (s *Spool) SetMaxBytes(n int64) {
	if n <= 0 {
		n = defaultMaxSpool
	}
	s.mu.Lock()
	s.maxBytes = n
	s.mu.Unlock()
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Depth returns the records waiting for delivery and their bytes.
func (s *Spool) Depth() (records int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.depth, s.depthBytes
}

// Close stops taking events, waits for Submits in progress, stops the replay worker (a delivery in
// flight is abandoned and replayed after the next open), closes the files and releases the
// directory. Records not yet delivered stay on disk. Close is idempotent.
func (s *Spool) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.submits.Wait()
		s.cancel()
		<-s.done
		s.closeErr = errors.Join(s.records.Close(), s.cursors.Close(), s.dead.Close(), s.lock.Close())
	})
	return s.closeErr
}
