package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// JournalOptions configures a Journal. The zero value means: fsync always, rotate at 100 MiB, keep 10.
// Defaults of the journal's rotation (and of every appendLog's).
const (
	DefaultJournalMaxSize = 100 << 20
	DefaultJournalKeep    = 10
)

type JournalOptions struct {
	NoSync  bool                // fsync off: write without syncing (faster, loses the tail on power loss)
	MaxSize int64               // rotate when the active file would pass this size; <= 0 means 100 MiB
	Keep    int                 // rotated files kept, older ones deleted; <= 0 means 10
	Logger  *zap.Logger         // nil means zap.NewNop()
	FS      FileSystem          // nil means the operating system; tests inject faults through it
	OnSync  func(time.Duration) // called after each fsync with its duration (metrics); may be nil
	OnWrite func(bytes int)     // called after each successful write with its size (metrics); may be nil
}

// Journal is the local sink: one JSON line per accepted event (see AppendEventRecord) in a durable,
// rotated log file. It is safe for concurrent use.
type Journal struct {
	log     *appendLog
	lastErr atomic.Pointer[error] // the last append's error; nil after a success
}

// OpenJournal opens or creates the journal file at path. A torn last line left by a crash is cut off.
func OpenJournal(path string, opts JournalOptions) (*Journal, error) {
	return openJournal(path, opts, false)
}

// openJournal is OpenJournal; syncEachRecord is the group-commit benchmark's baseline (see
// appendLogOptions).
func openJournal(path string, opts JournalOptions, syncEachRecord bool) (*Journal, error) {
	l, err := openAppendLog(path, appendLogOptions{
		NoSync: opts.NoSync, MaxSize: opts.MaxSize, Keep: opts.Keep, Logger: opts.Logger, FS: opts.FS,
		OnSync: opts.OnSync, OnWrite: opts.OnWrite, syncEachRecord: syncEachRecord,
	})
	if err != nil {
		return nil, err
	}
	return &Journal{log: l}, nil
}

// Append writes rec (one JSON document without a newline; Append adds it) and returns only once the
// record is on disk: after the fsync that covers it or, with NoSync, once written. Errors are
// *StorageError, except ErrNewlineInRecord for a record that is not one line.
func (j *Journal) Append(rec []byte) error { return j.noteAppend(j.log.Append(rec)) }

// noteAppend remembers whether the last append failed, for Err.
func (j *Journal) noteAppend(err error) error {
	if err == nil {
		if j.lastErr.Load() != nil {
			j.lastErr.Store(nil)
		}
		return nil
	}
	j.lastErr.Store(&err)
	return err
}

// Err returns the error of the last append when it failed, nil when it succeeded: a journal
// whose disk is full or failing answers health checks with it.
func (j *Journal) Err() error {
	if p := j.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

var recordPool = sync.Pool{New: func() any { return new([]byte) }}

// AppendEvent builds the journal line for one event with AppendEventRecord in a pooled buffer and
// appends it, so the hot path allocates nothing per event.
func (j *Journal) AppendEvent(receivedAt time.Time, ids RecordIDs, event []byte) error {
	p := recordPool.Get().(*[]byte)
	*p = AppendEventRecord((*p)[:0], receivedAt, ids, event)
	err := j.log.Append(*p)
	recordPool.Put(p)
	return j.noteAppend(err)
}

// Path returns the path of the active journal file.
func (j *Journal) Path() string { return j.log.Path() }

// Close waits for in-flight appends to finish or fail and closes the file. It is idempotent.
func (j *Journal) Close() error { return j.log.Close() }
