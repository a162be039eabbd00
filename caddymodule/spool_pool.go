package caddymodule

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// spools holds one open spool (and its replay worker) per absolute
// directory across config reloads: Caddy provisions the new config before
// cleaning up the old one, so both handlers share the spool, and the last
// Cleanup closes it. A second process is kept out by the spool's flock.
var spools = caddy.NewUsagePool()

// Test hooks: spoolFS is the file system spools are opened on (nil is the
// operating system's), spoolBackoff the replay's min and max backoff when
// the config sets no replay_backoff (zero is the upstream default),
// spoolOpens counts OpenSpool calls.
var (
	spoolFS      upstream.FileSystem
	spoolBackoff [2]time.Duration
	spoolOpens   atomic.Int64
)

// sharedSpool is a UsagePool value: the spool and the handlers using it,
// in provisioning order. The newest user's forwarder and max_spool apply,
// so a reload that changes the URLs replays to the new ones, and a reload
// that fails (its handler is cleaned up) falls back to the old ones.
type sharedSpool struct {
	*upstream.Spool
	deadLetter string // as opened; "" is the default
	logs       *liveCore

	mu    sync.Mutex
	users []spoolUse
}

// spoolUse is one handler's claim on a shared spool.
type spoolUse struct {
	handler  *Handler
	config   <-chan struct{} // Done of the config that provisioned the handler
	fwd      *upstream.Forwarder
	maxBytes int64
	policy   upstream.ReplayPolicy
	logger   *zap.Logger // the handler's, from ctx.Logger()
}

// Destruct closes the spool when its last user is cleaned up: the replay
// worker stops and the directory lock is released; undelivered records
// stay on disk for the next open.
func (s *sharedSpool) Destruct() error { return s.Close() }

// acquireSpool returns the shared spool of absDir, opening it (and
// resuming what is on disk) on first use.
func acquireSpool(absDir, deadLetter string, use spoolUse) (*sharedSpool, error) {
	v, loaded, err := spools.LoadOrNew(absDir, func() (caddy.Destructor, error) {
		spoolOpens.Add(1)
		labels := []string{absDir}
		logs := newLiveCore(use.logger.Core())
		sp, err := upstream.OpenSpool(upstream.SpoolOptions{
			Dir:        absDir,
			MaxBytes:   use.maxBytes,
			DeadLetter: deadLetter,
			Forwarder:  use.fwd,
			Logger:     zap.New(logs).Named(cmp.Or(use.logger.Name(), "http.handlers.ucs") + ".spool"),
			FS:         spoolFS,
			Replay:     use.policy,
			OnDepth: func(records int, bytes int64) {
				metricSpoolRecords.WithLabelValues(labels...).Set(float64(records))
				metricSpoolBytes.WithLabelValues(labels...).Set(float64(bytes))
			},
			OnReplayed:   func() { metricSpoolReplayed.WithLabelValues(labels...).Inc() },
			OnDeadLetter: func() { metricSpoolDeadLettered.WithLabelValues(labels...).Inc() },
			OnLag: func(inFlight int, oldest time.Duration) {
				metricSpoolInFlight.WithLabelValues(labels...).Set(float64(inFlight))
				metricSpoolOldestAge.WithLabelValues(labels...).Set(oldest.Seconds())
			},
		})
		if err != nil {
			return nil, err
		}
		return &sharedSpool{Spool: sp, deadLetter: deadLetter, logs: logs, users: []spoolUse{use}}, nil
	})
	if err != nil {
		return nil, err
	}
	s := v.(*sharedSpool)
	if !loaded {
		return s, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if u.config == use.config {
			// Two handlers of one config on one directory would interleave
			// two streams of events with different upstreams in one replay.
			_, _ = spools.Delete(absDir)
			return nil, errors.New("the directory is already the spool of another forward sink in this config; each needs its own")
		}
	}
	s.users = append(s.users, use)
	s.takeOver(use)
	if s.deadLetter != deadLetter {
		use.logger.Warn("the spool is already open with another dead_letter; keeping it until every config using the spool is unloaded",
			zap.String("dir", absDir), zap.String("open_dead_letter", s.deadLetter), zap.String("wanted_dead_letter", deadLetter))
	}
	return s, nil
}

// releaseSpool ends h's use of the spool: the newest remaining user's
// forwarder and max_spool take over, and the last release closes it.
func releaseSpool(absDir string, s *sharedSpool, h *Handler) error {
	s.mu.Lock()
	for i, u := range s.users {
		if u.handler == h {
			s.users = append(s.users[:i], s.users[i+1:]...)
			break
		}
	}
	if n := len(s.users); n > 0 {
		s.takeOver(s.users[n-1])
	}
	s.mu.Unlock()
	_, err := spools.Delete(absDir)
	return err
}

// takeOver makes use's forwarder, max_spool and logs the spool's.
func (s *sharedSpool) takeOver(use spoolUse) {
	s.SetForwarder(use.fwd)
	s.SetMaxBytes(use.maxBytes)
	s.SetReplayPolicy(use.policy)
	s.logs.swap(use.logger.Core())
}

// liveCore writes through the log core of the newest config using the
// spool (its ctx.Logger()), so outage lines follow the live logging config;
// a config's log writers close when it is unloaded, which a core kept from
// the config that opened the spool would keep writing to.
type liveCore struct {
	cur  *atomic.Pointer[zapcore.Core]
	with []zapcore.Field
}

func newLiveCore(c zapcore.Core) *liveCore {
	l := &liveCore{cur: new(atomic.Pointer[zapcore.Core])}
	l.swap(c)
	return l
}

func (l *liveCore) swap(c zapcore.Core) { l.cur.Store(&c) }

// core is the current core with this one's fields. The spool logs rarely
// (outages, storage errors), so applying them per line costs nothing.
func (l *liveCore) core() zapcore.Core {
	c := *l.cur.Load()
	if len(l.with) > 0 {
		c = c.With(l.with)
	}
	return c
}

func (l *liveCore) Enabled(lvl zapcore.Level) bool { return (*l.cur.Load()).Enabled(lvl) }

func (l *liveCore) With(fields []zapcore.Field) zapcore.Core {
	return &liveCore{cur: l.cur, with: append(slices.Clip(l.with), fields...)}
}

// Check hands the entry to the current core's own Check, which may filter
// on more than the level (Caddy's include/exclude by logger name).
func (l *liveCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return l.core().Check(ent, ce)
}

func (l *liveCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	return l.core().Write(ent, fields)
}

func (l *liveCore) Sync() error { return (*l.cur.Load()).Sync() }
