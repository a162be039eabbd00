package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Framing: one record per line; a record is any byte string without '\n', and the log adds the '\n'.
// A file therefore holds complete records up to its last '\n'; anything after it is a torn write.
//
// Group commit: Append puts its record into the batch being filled and waits. One writer goroutine
// takes the whole batch, writes it with one write call and covers it with one fsync, so every
// Append that arrived while the previous fsync was running shares the next one.
//
// Failure rule: the writer keeps size, the offset up to which the active file holds complete records
// that are synced (or merely written, with NoSync). A failed write or fsync fails every record of
// the batch from the failed chunk on, and the file is truncated back to size and synced again. A failed
// fsync is never retried: Linux may have dropped the dirty pages and cleared the error, so a later
// fsync could report success for data that is gone. If the truncation itself fails, the log is
// broken: each later batch first reopens the file and cuts it back to size, and fails while it
// cannot, so nothing is appended after bytes of unknown state.
//
// Rotation happens between records: before a chunk that would take the active file past MaxSize, the
// file (already synced) is closed and renamed to <stem>-<UTC time>.<ext>, a new active file is
// created and the directory is fsynced. The time in the name only moves forward (a clock step back
// or a second rotation in the same millisecond adds 1 ms to the newest name), so `ls` order is time
// order. Only names of exactly that shape are pruned beyond Keep, oldest first.
//
// Readers (logreader.go) see the files as a list of segments, oldest first and the
// active file last: rotated files are complete and immutable, and the active file is complete up to
// the size the writer publishes after each synced chunk. A rotation renames the active segment in
// place in that list, so a reader positioned in it keeps its place under the new name.

// ErrClosed is wrapped in the StorageError of an Append made after Close.
var ErrClosed = errors.New("log is closed")

// ErrNewlineInRecord is returned by Append for a record containing '\n', which the framing cannot
// hold. Compact JSON never contains one, so this is a programming error, not a storage failure.
var ErrNewlineInRecord = errors.New("record contains a newline")

// StorageError is a failed write, sync, rotation or open of the log: the record is not stored,
// and the caller may say so and be retried. Err is the underlying error (e.g. a *os.PathError
// wrapping syscall.ENOSPC).
type StorageError struct {
	Op   string // "open", "write", "sync", "truncate", "rotate", "append", "close"
	Path string // the active file
	Err  error
}

// Error describes the failed operation, like os.PathError.
func (e *StorageError) Error() string { return fmt.Sprintf("%s %s: %v", e.Op, e.Path, e.Err) }

// Unwrap returns the underlying error, so errors.Is(err, syscall.ENOSPC) works.
func (e *StorageError) Unwrap() error { return e.Err }

// Defaults of Options, and the Keep that never prunes.
const (
	DefaultMaxSize = 100 << 20
	DefaultKeep    = 10
	KeepAll        = math.MaxInt // for logs whose files a reader removes (RemoveBefore) or an operator does
)

// Permissions of the files and directories the log creates: records (events, spooled
// Authorization headers) are for the process's user only.
const (
	FilePerm = 0o600
	DirPerm  = 0o700
)

const (
	// rotatedLayout is fixed width, so names sort lexically in time order.
	rotatedLayout = "20060102T150405.000Z"
	// maxSpareBuf bounds the batch buffer kept for reuse after a burst.
	maxSpareBuf = 4 << 20
)

// Options configures a Log. The zero value means: fsync always, rotate at 100 MiB, keep 10.
type Options struct {
	NoSync  bool                // write without fsync (faster; the tail is lost on power loss)
	MaxSize int64               // rotate when the active file would pass this size; <= 0 means 100 MiB
	Keep    int                 // rotated files kept, older ones deleted; <= 0 means 10
	Logger  *zap.Logger         // nil means zap.NewNop()
	FS      FileSystem          // nil means the operating system
	OnSync  func(time.Duration) // called after each fsync with its duration; may be nil
	OnWrite func(bytes int)     // called after each successful write with its size; may be nil

	// SyncEachRecord gives every record its own write and fsync: the baseline the group commit
	// benchmarks compare against, through the same code path. Not for production.
	SyncEachRecord bool
}

// Log is a durable append-only file of newline-framed records with group commit, torn tail repair
// and size-based rotation. It is safe for concurrent use.
type Log struct {
	path, dir, stem, ext string

	fs       FileSystem
	logger   *zap.Logger
	noSync   bool
	syncEach bool
	maxSize  int64
	keep     int
	onSync   func(time.Duration)
	onWrite  func(int)

	mu     sync.Mutex
	fill   *batch // the batch Appends add to; guarded by mu
	closed bool   // guarded by mu

	wake   chan struct{} // capacity 1: the writer has a batch or Close to look at
	exited chan struct{} // closed when the writer goroutine returns

	closeOnce sync.Once
	closeErr  error

	// Owned by the writer goroutine once Open returns.
	f           File
	size        int64     // complete (and, unless noSync, synced) bytes of the active file
	broken      error     // non-nil: the file may hold bytes past size; recover before writing
	lastRotated time.Time // time in the newest rotated name

	segMu  sync.Mutex
	segs   []*Segment // rotated files still present, oldest first, then the active file; guarded by segMu
	newest string     // the newest rotated name ever seen, even if since removed; guarded by segMu

}

// Segment is one file of the log as readers see it; a position in the log is a *Segment and an
// offset in it. Its fields are the log's, guarded by its segMu.
type Segment struct {
	name   string // base name in the log's directory
	size   int64  // complete bytes; -1 for a rotated file found at open (complete up to its end)
	active bool
	ord    uint64 // grows with each file: positions compare by (ord, offset); never changes
	held   File   // OpenReadOnlyHeld's open file: read through it, wherever a rotation moved it
}

// batch is one group commit: the records framed back to back and the outcome for their waiters.
type batch struct {
	buf  []byte
	ends []int // end offset in buf of each record, in Append order
	done chan struct{}
	ok   int   // records [0, ok) are on disk; set before done is closed
	err  error // why records [ok:] failed
}

// Open opens or creates the log whose active file is path, creating its directory if needed. A
// torn last record left by a crash is cut off (and logged at warn with the number of bytes).
func Open(path string, opts Options) (*Log, error) {
	l := &Log{
		fs:       opts.FS,
		logger:   opts.Logger,
		noSync:   opts.NoSync,
		syncEach: opts.SyncEachRecord,
		maxSize:  opts.MaxSize,
		keep:     opts.Keep,
		onSync:   opts.OnSync,
		onWrite:  opts.OnWrite,
		fill:     &batch{done: make(chan struct{})},
		wake:     make(chan struct{}, 1),
		exited:   make(chan struct{}),
	}
	base := l.setPath(path)
	if l.fs == nil {
		l.fs = OSFileSystem()
	}
	if l.logger == nil {
		l.logger = zap.NewNop()
	}
	if l.maxSize <= 0 {
		l.maxSize = DefaultMaxSize
	}
	if l.keep <= 0 {
		l.keep = DefaultKeep
	}
	if err := l.fs.MkdirAll(l.dir, DirPerm); err != nil {
		return nil, &StorageError{Op: "open", Path: path, Err: err}
	}
	rotated, err := l.rotatedFiles()
	if err != nil {
		return nil, &StorageError{Op: "open", Path: path, Err: err}
	}
	if n := len(rotated); n > 0 {
		l.lastRotated, _ = l.rotatedTime(rotated[n-1])
		l.newest = rotated[n-1]
	}
	for _, name := range rotated {
		l.segs = append(l.segs, &Segment{name: name, size: -1, ord: uint64(len(l.segs))})
	}
	l.segs = append(l.segs, &Segment{name: base, active: true, ord: uint64(len(l.segs))})
	if err := l.openActive(-1, "torn last record cut off"); err != nil {
		return nil, err
	}
	l.prune(rotated)
	go l.run()
	return l, nil
}

// setPath sets the active file's path and the parts of it rotated names are made of; it returns
// the active file's base name.
func (l *Log) setPath(path string) (base string) {
	base = filepath.Base(path)
	l.path, l.dir = path, filepath.Dir(path)
	l.ext = filepath.Ext(base)
	l.stem = strings.TrimSuffix(base, l.ext)
	return base
}

// Path returns the path of the active file.
func (l *Log) Path() string { return l.path }

// Append writes rec followed by '\n' and returns once the record is on disk: after the fsync that
// covers it or, with NoSync, once written. rec is copied before Append returns. Errors are
// *StorageError, except ErrNewlineInRecord.
func (l *Log) Append(rec []byte) error {
	if bytes.IndexByte(rec, '\n') >= 0 {
		return ErrNewlineInRecord
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return &StorageError{Op: "append", Path: l.path, Err: ErrClosed}
	}
	b := l.fill
	b.buf = append(append(b.buf, rec...), '\n')
	b.ends = append(b.ends, len(b.buf))
	i := len(b.ends) - 1
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // a wake-up is already pending; the writer will take this record with it
	}
	<-b.done
	if i < b.ok {
		return nil
	}
	return b.err
}

// AppendAll appends the records as Append does, in their order, sharing one batch (and fsync,
// unless rotation splits it). written is how many of them are on disk, a prefix; err says why the
// rest are not.
func (l *Log) AppendAll(recs [][]byte) (written int, err error) {
	for _, rec := range recs {
		if bytes.IndexByte(rec, '\n') >= 0 {
			return 0, ErrNewlineInRecord
		}
	}
	if len(recs) == 0 {
		return 0, nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, &StorageError{Op: "append", Path: l.path, Err: ErrClosed}
	}
	b := l.fill
	first := len(b.ends)
	for _, rec := range recs {
		b.buf = append(append(b.buf, rec...), '\n')
		b.ends = append(b.ends, len(b.buf))
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	<-b.done
	written = min(max(b.ok-first, 0), len(recs))
	if written == len(recs) {
		return written, nil
	}
	return written, b.err
}

// End returns the position just past the last complete record: every Append that returned
// before the call is before it.
func (l *Log) End() (*Segment, int64) {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	seg := l.segs[len(l.segs)-1]
	return seg, seg.size
}

// Close waits for the records already appended to be written (or failed), then closes the file.
// Appends after Close fail with ErrClosed. Close is idempotent and safe to call concurrently with
// Append; with NoSync it syncs the file once, so a clean shutdown loses nothing.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
		<-l.exited
		if l.f == nil {
			return
		}
		var err error
		op := "close"
		if l.noSync && l.broken == nil {
			op, err = "sync", l.f.Sync()
		}
		if cerr := l.f.Close(); err == nil {
			op, err = "close", cerr
		}
		l.f = nil
		if err != nil {
			l.closeErr = &StorageError{Op: op, Path: l.path, Err: err}
		}
	})
	return l.closeErr
}

// run is the writer goroutine: it swaps out the filled batch, commits it and wakes its waiters.
func (l *Log) run() {
	defer close(l.exited)
	var spareBuf []byte
	var spareEnds []int
	for range l.wake {
		l.mu.Lock()
		var b *batch // nil when there is nothing to write (a Close wake-up, or a stale one)
		if len(l.fill.ends) > 0 {
			b = l.fill
			l.fill = &batch{buf: spareBuf[:0], ends: spareEnds[:0], done: make(chan struct{})}
		}
		closed := l.closed
		l.mu.Unlock()
		if b != nil {
			l.commit(b)
			close(b.done)
			// Waiters read only ok and err, so the buffers are free for the next batch.
			spareBuf, spareEnds = nil, nil
			if cap(b.buf) <= maxSpareBuf {
				spareBuf, spareEnds = b.buf, b.ends
			}
		}
		if closed {
			// Append checks closed under mu, so no record can follow the batch just taken.
			return
		}
	}
}

// commit writes the batch in as few chunks as rotation allows, each covered by its own fsync.
func (l *Log) commit(b *batch) {
	if l.broken != nil || l.f == nil {
		if err := l.recover(); err != nil {
			b.err = err
			return
		}
	}
	for b.ok < len(b.ends) {
		from := 0
		if b.ok > 0 {
			from = b.ends[b.ok-1]
		}
		to := b.ok
		for to < len(b.ends) && int64(b.ends[to]-from) <= l.maxSize-l.size {
			to++
			if l.syncEach {
				break
			}
		}
		if to == b.ok {
			if l.size > 0 {
				if err := l.rotate(); err != nil {
					b.err = err
					return
				}
				continue
			}
			to++ // a record larger than MaxSize gets a file of its own rather than being split
		}
		if err := l.writeChunk(b.buf[from:b.ends[to-1]]); err != nil {
			b.err = err
			return
		}
		b.ok = to
	}
}

// writeChunk appends whole records to the active file and syncs them, or undoes the attempt.
func (l *Log) writeChunk(p []byte) error {
	n, err := l.f.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return l.fail("write", err)
	}
	if l.onWrite != nil {
		l.onWrite(n)
	}
	if !l.noSync {
		start := time.Now()
		err := l.f.Sync()
		if l.onSync != nil {
			l.onSync(time.Since(start))
		}
		if err != nil {
			return l.fail("sync", err)
		}
	}
	l.size += int64(n)
	l.publishSize()
	return nil
}

// publishSize tells readers how far the active file holds complete records.
func (l *Log) publishSize() {
	l.segMu.Lock()
	l.segs[len(l.segs)-1].size = l.size
	l.segMu.Unlock()
}

// fail cuts the active file back to the last good offset after a failed write or fsync, so no
// partial or unacknowledged record stays behind, and marks the log broken if that is impossible.
func (l *Log) fail(op string, cause error) error {
	l.logger.Error("log append failed; records of this batch are not stored",
		zap.String("path", l.path), zap.String("op", op), zap.Error(cause))
	err := l.f.Truncate(l.size)
	if err == nil && !l.noSync {
		err = l.f.Sync()
	}
	if err != nil {
		l.broken = err
		l.logger.Error("log cannot cut off a failed append; failing appends until it can",
			zap.String("path", l.path), zap.Int64("good_size", l.size), zap.Error(err))
	}
	return &StorageError{Op: op, Path: l.path, Err: cause}
}

// recover reopens the active file after a failure left it in an unknown state, cutting it back to
// the last good offset.
func (l *Log) recover() error {
	limit := int64(-1) // no file (a rotation failed half-way): look for the last complete record
	if l.f != nil {
		// The descriptor that reported the error may stay unusable; a fresh one is the retry.
		_ = l.f.Close()
		l.f = nil
		limit = l.size
	}
	if err := l.openActive(limit, "failed append cut off"); err != nil {
		return err
	}
	if l.broken != nil {
		l.logger.Info("log recovered", zap.String("path", l.path), zap.Int64("size", l.size))
		l.broken = nil
	}
	return nil
}

// openActive opens (creating if needed) the active file, fsyncs the directory so the file's name
// is durable, and cuts the file back to limit or, with limit < 0 or a file shorter than limit, to
// its last '\n'.
func (l *Log) openActive(limit int64, why string) error {
	f, err := l.fs.OpenFile(l.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, FilePerm)
	if err != nil {
		return &StorageError{Op: "open", Path: l.path, Err: err}
	}
	op, size, keep, err := l.repairTail(f, limit, why)
	if err != nil {
		_ = f.Close()
		return &StorageError{Op: op, Path: l.path, Err: err}
	}
	if cut := size - keep; cut > 0 {
		l.logger.Warn(why, zap.String("path", l.path), zap.Int64("bytes", cut), zap.Int64("size", keep))
	}
	l.f, l.size = f, keep
	l.publishSize()
	return nil
}

// repairTail syncs the directory and truncates f as openActive describes; it returns the failed
// operation's name with an error.
func (l *Log) repairTail(f File, limit int64, why string) (op string, size, keep int64, err error) {
	if err := l.fs.SyncDir(l.dir); err != nil {
		return "sync directory", 0, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return "stat", 0, 0, err
	}
	size = fi.Size()
	keep = limit
	if limit < 0 || size < limit {
		if limit >= 0 {
			l.logger.Warn("log file is shorter than expected; keeping its complete records",
				zap.String("path", l.path), zap.Int64("size", size), zap.Int64("expected", limit))
		}
		if keep, err = lastRecordEnd(f, size); err != nil {
			return "read", 0, 0, err
		}
	}
	if keep == size {
		return "", size, keep, nil
	}
	if err := f.Truncate(keep); err != nil {
		return "truncate", 0, 0, err
	}
	if !l.noSync {
		if err := f.Sync(); err != nil {
			return "sync", 0, 0, err
		}
	}
	return "", size, keep, nil
}

// lastRecordEnd returns the offset just past the last '\n' in the first size bytes of f, reading
// backwards so that a large file with a short torn tail costs one read.
func lastRecordEnd(f File, size int64) (int64, error) {
	buf := make([]byte, 32<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// rotate renames the active file to its time-stamped name and starts a new one. The old file is
// complete and, unless noSync, synced: rotation only happens between chunks.
func (l *Log) rotate() error {
	t := time.Now().UTC().Truncate(time.Millisecond)
	if !t.After(l.lastRotated) {
		// Same millisecond or a clock step back: keep names unique and in order.
		t = l.lastRotated.Add(time.Millisecond)
	}
	name := filepath.Join(l.dir, l.rotatedName(t))
	// Closed before the rename: Windows cannot rename an open file.
	if err := l.f.Close(); err != nil {
		l.logger.Warn("closing log file for rotation failed", zap.String("path", l.path), zap.Error(err))
	}
	l.f = nil
	if err := l.fs.Rename(l.path, name); err != nil {
		// The active file is unchanged; the next batch reopens it and tries again.
		l.broken = err
		return &StorageError{Op: "rotate", Path: l.path, Err: err}
	}
	l.lastRotated = t
	l.size = 0
	// The renamed file stays where it is in the readers' list, under its new name; a new active
	// segment follows it. Until openActive creates it, a reader opening the active name finds no file.
	l.segMu.Lock()
	old := l.segs[len(l.segs)-1]
	old.name, old.active = filepath.Base(name), false
	l.segs = append(l.segs, &Segment{name: filepath.Base(l.path), active: true, ord: old.ord + 1})
	l.newest = old.name
	l.segMu.Unlock()
	// openActive fsyncs the directory, which makes both the rename and the new file durable.
	if err := l.openActive(-1, "torn last record cut off"); err != nil {
		l.broken = err
		return err
	}
	l.logger.Info("log rotated", zap.String("path", l.path), zap.String("rotated", name))
	rotated, err := l.rotatedFiles()
	if err != nil {
		l.logger.Warn("listing rotated log files failed", zap.String("dir", l.dir), zap.Error(err))
		return nil
	}
	l.prune(rotated)
	return nil
}

// rotatedFiles lists the rotated files of this log, oldest first.
func (l *Log) rotatedFiles() ([]string, error) {
	entries, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if _, ok := l.rotatedTime(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil // ReadDir sorts by name, which is time order
}

// rotatedName is the name of the file rotated at t, <stem>-<UTC time>.<ext>: the one place that
// spells it (rotatedTime reads it back).
func (l *Log) rotatedName(t time.Time) string { return l.stem + "-" + t.Format(rotatedLayout) + l.ext }

// RotatedPath is the path the active file at active is renamed to when rotated at t. Tests and
// tools that lay out a log by hand use it, so that only rotatedName spells the shape.
func RotatedPath(active string, t time.Time) string {
	l := &Log{}
	l.setPath(active)
	return filepath.Join(l.dir, l.rotatedName(t.UTC()))
}

// IsFileOf reports whether name is the base name of a file of the log whose active file is
// active: the active file itself or one of its rotated files.
func IsFileOf(active, name string) bool {
	l := &Log{}
	l.setPath(active)
	_, rotated := l.rotatedTime(name)
	return name == filepath.Base(active) || rotated
}

// rotatedTime parses the time out of a rotated file's name; ok is false for any other name, so
// pruning never touches files that are not this log's.
func (l *Log) rotatedTime(name string) (time.Time, bool) {
	mid, ok := strings.CutPrefix(name, l.stem+"-")
	if !ok {
		return time.Time{}, false
	}
	if mid, ok = strings.CutSuffix(mid, l.ext); !ok || len(mid) != len(rotatedLayout) {
		return time.Time{}, false
	}
	t, err := time.Parse(rotatedLayout, mid)
	return t, err == nil
}

// prune deletes the oldest rotated files beyond keep. A failure is logged, not returned: the
// records are safe, only disk space is at stake.
func (l *Log) prune(rotated []string) {
	for _, name := range rotated[:max(0, len(rotated)-l.keep)] {
		if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil {
			l.logger.Warn("removing old log file failed", zap.String("path", name), zap.Error(err))
			continue
		}
		l.segMu.Lock()
		l.segs = slices.DeleteFunc(l.segs, func(s *Segment) bool { return !s.active && s.name == name })
		l.segMu.Unlock()
	}
}
