package caddymodule

import (
	"cmp"
	"sync"

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

// sharedJournal is a sinkStore value: the journal, the options it was
// opened with (to detect a second config asking for different ones), and
// the handlers using it, whose newest logger the journal writes through.
type sharedJournal struct {
	*upstream.Journal
	refs refCount
	opts upstream.JournalOptions
	logs *liveCore

	mu    sync.Mutex
	users claims[journalUse] // guarded by mu
}

// journalUse is one handler's claim on a shared journal.
type journalUse struct {
	handler *Handler
	logger  *zap.Logger // the handler's, from ctx.Logger()
}

func (s *sharedJournal) refCounter() *refCount { return &s.refs }

// shut closes the journal once no handler and no request uses it.
func (s *sharedJournal) shut() error { return s.Close() }

// openJournal returns the journal of absPath with one more reference,
// opening it on first use; it adds no user (see acquireJournal).
func openJournal(absPath string, opts upstream.JournalOptions, logger *zap.Logger) (*sharedJournal, bool, error) {
	v, loaded, err := journals.acquire(absPath, func() (storedSink, error) {
		o := opts
		// The journal outlives the config that opened it, and a config's
		// log writers close with it: it writes through the newest user's
		// core (see releaseJournal), as the spool does.
		logs := newLiveCore(logger.Core())
		o.Logger = zap.New(logs).Named(cmp.Or(logger.Name(), "http.handlers.ucs") + ".journal")
		o.OnSync = journalOnSync
		o.OnWrite = journalOnWrite
		j, err := upstream.OpenJournal(absPath, o)
		if err != nil {
			return nil, err
		}
		return &sharedJournal{Journal: j, opts: opts, logs: logs}, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*sharedJournal), loaded, nil
}

// acquireJournal returns the shared journal for absPath, opening it on
// first use, and makes use's logger the one it writes through. If the
// journal is already open with other options, the first options win and a
// warning says so: reopening would put two writers on one file, which the
// journal cannot allow.
func acquireJournal(absPath string, opts upstream.JournalOptions, use journalUse) (*sharedJournal, error) {
	logger := use.logger
	sj, loaded, err := openJournal(absPath, opts, logger)
	if err != nil {
		return nil, err
	}
	sj.mu.Lock()
	sj.users.add(use)
	sj.logs.swap(logger.Core())
	sj.mu.Unlock()
	if loaded && (sj.opts.NoSync != opts.NoSync || sj.opts.MaxSize != opts.MaxSize || sj.opts.Keep != opts.Keep) {
		logger.Warn("the local journal is already open with other options; keeping them until every config using it is unloaded",
			zap.String("path", absPath),
			zap.Bool("open_fsync", !sj.opts.NoSync), zap.Int64("open_max_size", sj.opts.MaxSize), zap.Int("open_keep", sj.opts.Keep),
			zap.Bool("wanted_fsync", !opts.NoSync), zap.Int64("wanted_max_size", opts.MaxSize), zap.Int("wanted_keep", opts.Keep))
	}
	return sj, nil
}

// releaseJournal ends h's use of the journal: the newest remaining user's
// logger takes over, and the journal closes once no handler and no request
// in flight uses it.
func releaseJournal(absPath string, sj *sharedJournal, h *Handler) error {
	sj.mu.Lock()
	if newest, ok := sj.users.remove(func(u journalUse) bool { return u.handler == h }); ok {
		sj.logs.swap(newest.logger.Core())
	}
	sj.mu.Unlock()
	return journals.release(absPath, sj)
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
