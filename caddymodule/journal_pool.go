package caddymodule

import (
	"cmp"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// journals holds one open journal per absolute path across config reloads:
// Caddy provisions the new config before cleaning up the old one, so both
// handlers share the writer and the last Cleanup closes it.
var journals = caddy.NewUsagePool()

// journalFS is the file system journals are opened on; nil is the
// operating system's. Tests swap it to inject disk faults.
var journalFS upstream.FileSystem

// journalOpens counts OpenJournal calls (tests assert that a reload
// reuses the open journal instead of opening a second writer).
var journalOpens atomic.Int64

// sharedJournal is a UsagePool value: the journal, the options it was
// opened with (to detect a second config asking for different ones), and
// the handlers using it, whose newest logger the journal writes through.
type sharedJournal struct {
	*upstream.Journal
	opts upstream.JournalOptions
	logs *liveCore

	mu    sync.Mutex
	users []journalUse
}

// journalUse is one handler's claim on a shared journal.
type journalUse struct {
	handler *Handler
	logger  *zap.Logger // the handler's, from ctx.Logger()
}

// Destruct closes the journal when its last user is cleaned up.
func (s *sharedJournal) Destruct() error { return s.Close() }

// acquireJournal returns the shared journal for absPath, opening it on
// first use. If the journal is already open with other options, the first
// options win and a warning says so: reopening would put two writers on one
// file, which the journal cannot allow.
func acquireJournal(absPath string, opts upstream.JournalOptions, use journalUse) (*sharedJournal, error) {
	logger := use.logger
	v, loaded, err := journals.LoadOrNew(absPath, func() (caddy.Destructor, error) {
		journalOpens.Add(1)
		o := opts
		o.FS = journalFS
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
		return &sharedJournal{Journal: j, opts: opts, logs: logs, users: []journalUse{use}}, nil
	})
	if err != nil {
		return nil, err
	}
	sj := v.(*sharedJournal)
	if loaded {
		sj.mu.Lock()
		sj.users = append(sj.users, use)
		sj.logs.swap(logger.Core())
		sj.mu.Unlock()
	}
	if loaded && (sj.opts.NoSync != opts.NoSync || sj.opts.MaxSize != opts.MaxSize || sj.opts.Keep != opts.Keep) {
		logger.Warn("the local journal is already open with other options; keeping them until every config using it is unloaded",
			zap.String("path", absPath),
			zap.Bool("open_fsync", !sj.opts.NoSync), zap.Int64("open_max_size", sj.opts.MaxSize), zap.Int("open_keep", sj.opts.Keep),
			zap.Bool("wanted_fsync", !opts.NoSync), zap.Int64("wanted_max_size", opts.MaxSize), zap.Int("wanted_keep", opts.Keep))
	}
	return sj, nil
}

// releaseJournal ends h's use of the journal: the newest remaining user's
// logger takes over, and the last release closes the journal.
func releaseJournal(absPath string, sj *sharedJournal, h *Handler) error {
	sj.mu.Lock()
	for i, u := range sj.users {
		if u.handler == h {
			sj.users = append(sj.users[:i], sj.users[i+1:]...)
			break
		}
	}
	if n := len(sj.users); n > 0 {
		sj.logs.swap(sj.users[n-1].logger.Core())
	}
	sj.mu.Unlock()
	_, err := journals.Delete(absPath)
	return err
}
