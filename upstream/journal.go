package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// Defaults of the journal's rotation: the log's own.
const (
	DefaultJournalMaxSize = wal.DefaultMaxSize
	DefaultJournalKeep    = wal.DefaultKeep
)

// JournalOptions configures a Journal: the journal is a log with these options, so they are the
// log's (an alias, so that callers keep writing JournalOptions{NoSync: true}). The zero value
// means: fsync always, rotate at 100 MiB, keep 10. FS is where tests inject faults; OnSync and
// OnWrite feed metrics.
type JournalOptions = wal.Options

// Journal is the local sink: one JSON line per accepted event (see AppendEventRecord) in a durable,
// rotated log file. It is safe for concurrent use.
type Journal struct {
	log     *wal.Log
	lastErr atomic.Pointer[error] // the last append's error; nil after a success
}

// OpenJournal opens or creates the journal file at path. A torn last line left by a crash is cut off.
func OpenJournal(path string, opts JournalOptions) (*Journal, error) {
	return openJournal(path, opts, false)
}

// openJournal is OpenJournal; syncEachRecord is the group-commit benchmark's baseline (see
// wal.Options.SyncEachRecord).
func openJournal(path string, opts JournalOptions, syncEachRecord bool) (*Journal, error) {
	opts.SyncEachRecord = opts.SyncEachRecord || syncEachRecord
	l, err := wal.Open(path, opts)
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
