package caddymodule

import (
	"cmp"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// LocalSink is the local journal: one line
// `{"received_at":…,"operation":…,"service_id":…,"task_id":…,"event":{…}}`
// per end event (`state_id` instead of `task_id` for state.end, neither for
// service.end).
type LocalSink struct {
	// Path of the journal file, relative to Caddy's working directory or
	// absolute. Required. Its directory is created if missing.
	Path string `json:"path,omitempty"`

	// Fsync is `always` (204 only after the fsync that covers the record;
	// concurrent calls share one fsync) or `off` (204 once written: faster,
	// loses the tail on power loss). Default: `always`.
	Fsync string `json:"fsync,omitempty"`

	// MaxSize rotates the file before it passes this many bytes.
	// Default: 100 MiB (104857600).
	MaxSize int64 `json:"max_size,omitempty"`

	// Keep is how many rotated files are kept; older ones are deleted.
	// Default: 10.
	Keep int `json:"keep,omitempty"`

	// FollowSymlinks lets the journal file be a symbolic link. Default:
	// off, a link is refused at open (the torn-tail repair truncates the
	// file, which through a link would be the file it points to).
	FollowSymlinks bool `json:"follow_symlinks,omitempty"`
}

// journals holds one open journal per absolute path across config reloads
// (see sinkStore): Caddy provisions the new config before cleaning up the
// old one, so both handlers share the writer, and the journal is closed when
// the last handler using it is cleaned up and its last request has finished.
var journals = newSinkStore()

// journalFS is the file system journals are opened on; nil is the
// operating system's. Tests swap it to inject disk faults.
var journalFS upstream.FileSystem

// sharedJournal is a sinkStore value: the journal, the options it is open
// with, and the handlers using it, whose newest logger the journal writes
// through and whose newest options apply (see takeOver).
type sharedJournal struct {
	refs refCount
	logs *liveCore

	// swap is held for reading by each append, and for writing while the
	// journal is reopened under other options: no append is in flight
	// when the file is closed, so the file never has two writers.
	swap sync.RWMutex
	j    *upstream.Journal       // guarded by swap; nil after a failed reopen (see takeOver)
	jerr error                   // why j is nil; guarded by swap
	opts upstream.JournalOptions // the options j is open with; guarded by swap

	mu    sync.Mutex
	users claims[journalUse] // guarded by mu
}

// journalUse is one handler's claim on a shared journal.
type journalUse struct {
	handler *Handler
	logger  *zap.Logger // the handler's, from ctx.Logger()
	opts    upstream.JournalOptions
}

func (s *sharedJournal) refCounter() *refCount { return &s.refs }

// shut closes the journal once no handler and no request uses it.
func (s *sharedJournal) shut() error {
	s.swap.Lock()
	defer s.swap.Unlock()
	if s.j == nil {
		return nil
	}
	return s.j.Close()
}

// AppendEvent appends one event record (see upstream.Journal.AppendEvent).
func (s *sharedJournal) AppendEvent(receivedAt time.Time, ids upstream.RecordIDs, event []byte) error {
	s.swap.RLock()
	defer s.swap.RUnlock()
	if s.j == nil {
		return s.jerr
	}
	return s.j.AppendEvent(receivedAt, ids, event)
}

// Err is the journal's error state (see upstream.Journal.Err).
func (s *sharedJournal) Err() error {
	s.swap.RLock()
	defer s.swap.RUnlock()
	if s.j == nil {
		return s.jerr
	}
	return s.j.Err()
}

// openLogged opens the journal of absPath with opts, writing its logs
// through s.logs.
func (s *sharedJournal) openLogged(absPath string, opts upstream.JournalOptions, name string) (*upstream.Journal, error) {
	o := opts
	o.Logger = zap.New(s.logs).Named(name + ".journal")
	o.OnSync = journalOnSync
	o.OnWrite = journalOnWrite
	return upstream.OpenJournal(absPath, o)
}

// openJournal returns the journal of absPath with one more reference,
// opening it on first use; it adds no user (see acquireJournal).
func openJournal(absPath string, opts upstream.JournalOptions, logger *zap.Logger) (*sharedJournal, bool, error) {
	v, loaded, err := journals.acquire(absPath, func() (storedSink, error) {
		// The journal outlives the config that opened it, and a config's
		// log writers close with it: it writes through the newest user's
		// core (see releaseJournal), as the spool does.
		sj := &sharedJournal{logs: newLiveCore(logger.Core()), opts: opts}
		j, err := sj.openLogged(absPath, opts, cmp.Or(logger.Name(), "http.handlers.ucs"))
		if err != nil {
			return nil, err
		}
		sj.j = j
		return sj, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*sharedJournal), loaded, nil
}

// sameJournalOptions reports whether a and b are the same user options.
func sameJournalOptions(a, b upstream.JournalOptions) bool {
	return a.NoSync == b.NoSync && a.MaxSize == b.MaxSize && a.Keep == b.Keep
}

// takeOver makes use's logger the journal's and, when use asks for other
// options (fsync, max_size, keep), reopens the journal under them once
// the appends in flight are done. If the reopen fails, the journal is
// opened again under the options it had, and the error is returned.
// The caller holds s.mu.
func (s *sharedJournal) takeOver(absPath string, use journalUse) error {
	s.logs.swap(use.logger.Core())
	s.swap.Lock()
	defer s.swap.Unlock()
	if s.j != nil && sameJournalOptions(s.opts, use.opts) {
		return nil
	}
	old := s.opts
	name := cmp.Or(use.logger.Name(), "http.handlers.ucs")
	if s.j != nil { // nil: a failed reopen left it closed
		if err := s.j.Close(); err != nil {
			use.logger.Warn("closing the local journal to apply new options failed", zap.String("path", absPath), zap.Error(err))
		}
	}
	j, err := s.openLogged(absPath, use.opts, name)
	if err != nil {
		// Back to the options that worked: the config in use keeps running.
		if j2, err2 := s.openLogged(absPath, old, name); err2 == nil {
			s.j = j2
		} else {
			s.j, s.jerr = nil, fmt.Errorf("the local journal could not be reopened: %w", err2)
		}
		return err
	}
	s.j, s.opts = j, use.opts
	use.logger.Info("local journal reopened with the options of the newest config",
		zap.String("path", absPath),
		zap.Bool("fsync", !use.opts.NoSync), zap.Int64("max_size", use.opts.MaxSize), zap.Int("keep", use.opts.Keep),
		zap.Bool("old_fsync", !old.NoSync), zap.Int64("old_max_size", old.MaxSize), zap.Int("old_keep", old.Keep))
	return nil
}

// acquireJournal returns the shared journal for absPath, opening it on
// first use, and makes use's logger and options the ones it uses (see
// takeOver): a reload that changes fsync, max_size or keep applies them.
func acquireJournal(absPath string, opts upstream.JournalOptions, use journalUse) (*sharedJournal, error) {
	use.opts = opts
	sj, loaded, err := openJournal(absPath, opts, use.logger)
	if err != nil {
		return nil, err
	}
	sj.mu.Lock()
	defer sj.mu.Unlock()
	if loaded {
		if err := sj.takeOver(absPath, use); err != nil {
			_ = journals.release(absPath, sj)
			return nil, fmt.Errorf("reopening the journal with the new options: %w", err)
		}
	}
	sj.users.add(use)
	return sj, nil
}

// releaseJournal ends h's use of the journal: the newest remaining user's
// logger takes over, and the journal closes once no handler and no request
// in flight uses it.
func releaseJournal(absPath string, sj *sharedJournal, h *Handler) error {
	sj.mu.Lock()
	var err error
	if newest, ok := sj.users.remove(func(u journalUse) bool { return u.handler == h }); ok {
		// A reload that failed falls back to the options of the config
		// still running.
		err = sj.takeOver(absPath, newest)
	}
	sj.mu.Unlock()
	return errors.Join(err, journals.release(absPath, sj))
}

// holdJournal takes a reference to the handler's journal for one request.
// A request that reaches the handler after its config was cleaned up and
// its last request finished (the journal closed) opens the journal again:
// a request never finds its sink gone.
func (h *Handler) holdJournal() (*sharedJournal, error) {
	if h.journal.refs.tryAcquire() {
		return h.journal, nil
	}
	sj, _, err := openJournal(h.journalKey, h.journalOpts, h.logger)
	return sj, err
}

// dropJournal ends one request's use of the journal.
func (h *Handler) dropJournal(sj *sharedJournal) {
	if err := journals.release(h.journalKey, sj); err != nil {
		h.logger.Error("closing the local journal failed", zap.String("path", h.journalKey), zap.Error(err))
	}
}
