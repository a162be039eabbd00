package caddymodule

import (
	"cmp"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// spools holds one open spool (and its replay worker) per absolute
// directory across config reloads (see sinkStore): Caddy provisions the new
// config before cleaning up the old one, so both handlers share the spool.
// When no config names the directory any more, the spool stays open until
// its records are delivered (see drain). A second process is kept out by
// the spool's flock.
var spools = newSinkStore()

// Test hooks: spoolFS is the file system spools are opened on (nil is the
// operating system's), spoolBackoff the replay's min and max backoff when
// the config sets no replay_backoff (zero is the upstream default),
// drainPoll how often a draining spool looks at its depth besides its own
// signal.
var (
	spoolFS      upstream.FileSystem
	spoolBackoff [2]time.Duration
	drainPoll    = 5 * time.Second
)

// sharedSpool is a sinkStore value: the spool and the handlers using it,
// in provisioning order. The newest user's forwarder and max_spool apply,
// so a reload that changes the URLs replays to the new ones, and a reload
// that fails (its handler is cleaned up) falls back to the old ones.
type sharedSpool struct {
	*upstream.Spool
	refs       refCount
	dir        string // absolute; the key in spools
	deadLetter string // as opened; "" is the default
	logs       *liveCore
	logger     *zap.Logger   // through logs, named ….spool
	changed    chan struct{} // capacity 1: the depth changed, or a config took the spool
	nusers     atomic.Int32  // the number of users, read without mu on each request

	mu       sync.Mutex
	users    claims[spoolUse] // guarded by mu
	draining bool             // a drain goroutine holds a reference; guarded by mu
}

// spoolUse is one handler's claim on a shared spool.
type spoolUse struct {
	handler  *Handler
	config   <-chan struct{} // Done of the config that provisioned the handler
	fwd      *upstream.Forwarder
	maxBytes int64
	policy   upstream.ReplayPolicy
	logger   *zap.Logger // the handler's, from ctx.Logger()
	// followSymlinks: the operator allows the directory and files to be links.
	followSymlinks bool
}

func (s *sharedSpool) refCounter() *refCount { return &s.refs }

// shut closes the spool once nothing uses it and nothing is left to
// drain (or the process is shutting down): the replay worker stops and the
// directory lock is released; undelivered records stay on disk for the
// next open.
func (s *sharedSpool) shut() error { return s.Close() }

// openSpool returns the spool of absDir with one more reference, opening it
// (and resuming what is on disk) on first use; it adds no user.
func openSpool(absDir, deadLetter string, use spoolUse) (*sharedSpool, bool, error) {
	v, loaded, err := spools.acquire(absDir, func() (storedSink, error) {
		if !use.followSymlinks {
			if err := checkNotSymlink(absDir); err != nil {
				return nil, err
			}
		}
		labels := []string{absDir}
		// The counters and the down gauge exist from the start: an alert
		// on increase() sees the first dead letter (or worker restart) only
		// if 0 came before it.
		metricSpoolReplayed.WithLabelValues(labels...)
		metricSpoolDeadLettered.WithLabelValues(labels...)
		metricSpoolWorkerRestarts.WithLabelValues(labels...)
		metricSpoolUpstreamDown.WithLabelValues(labels...)
		logs := newLiveCore(use.logger.Core())
		logger := zap.New(logs).Named(cmp.Or(use.logger.Name(), "http.handlers.ucs") + ".spool")
		changed := make(chan struct{}, 1)
		sp, err := upstream.OpenSpool(upstream.SpoolOptions{
			Dir:        absDir,
			MaxBytes:   use.maxBytes,
			DeadLetter: deadLetter,
			Forwarder:  use.fwd,
			Logger:     logger,
			FS:         sinkFS(spoolFS, use.followSymlinks),
			Replay:     use.policy,
			OnDepth: func(records int, bytes int64) {
				metricSpoolRecords.WithLabelValues(labels...).Set(float64(records))
				metricSpoolBytes.WithLabelValues(labels...).Set(float64(bytes))
				poke(changed)
			},
			OnReplayed:    func() { metricSpoolReplayed.WithLabelValues(labels...).Inc() },
			OnDeadLetter:  func() { metricSpoolDeadLettered.WithLabelValues(labels...).Inc() },
			OnRestart:     func() { metricSpoolWorkerRestarts.WithLabelValues(labels...).Inc() },
			OnConcurrency: func(limit int) { metricSpoolConcurrency.WithLabelValues(labels...).Set(float64(limit)) },
			OnLag: func(inFlight int, oldest time.Duration) {
				metricSpoolInFlight.WithLabelValues(labels...).Set(float64(inFlight))
				metricSpoolOldestAge.WithLabelValues(labels...).Set(oldest.Seconds())
			},
			OnUpstreamDown: func(down bool) {
				v := 0.0
				if down {
					v = 1
				}
				metricSpoolUpstreamDown.WithLabelValues(labels...).Set(v)
			},
		})
		if err != nil {
			return nil, err
		}
		return &sharedSpool{Spool: sp, dir: absDir, deadLetter: deadLetter, logs: logs, logger: logger, changed: changed}, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*sharedSpool), loaded, nil
}

// acquireSpool returns the shared spool of absDir for use's handler,
// opening it on first use or taking it back from a drain.
func acquireSpool(absDir, deadLetter string, use spoolUse) (*sharedSpool, error) {
	s, loaded, err := openSpool(absDir, deadLetter, use)
	if err != nil {
		return nil, err
	}
	if !loaded {
		warnOtherSpools(absDir, use.logger)
	}
	s.mu.Lock()
	for _, u := range s.users.all() {
		if u.config == use.config {
			// Two handlers of one config on one directory would interleave
			// two streams of events with different upstreams in one replay.
			s.mu.Unlock()
			_ = spools.release(absDir, s)
			return nil, errors.New("the directory is already the spool of another forward sink in this config; each needs its own")
		}
	}
	s.users.add(use)
	s.nusers.Store(int32(len(s.users.all())))
	s.takeOver(use)
	s.mu.Unlock()
	poke(s.changed) // a drain in progress ends: the spool is configured again
	if loaded && s.deadLetter != deadLetter {
		use.logger.Warn("the spool is already open with another dead_letter; keeping it until every config using the spool is unloaded",
			zap.String("dir", absDir), zap.String("open_dead_letter", s.deadLetter), zap.String("wanted_dead_letter", deadLetter))
	}
	return s, nil
}

// releaseSpool ends h's use of the spool: the newest remaining user's
// forwarder and max_spool take over. The spool closes once no handler and
// no request uses it, and it is empty (see drain).
func releaseSpool(absDir string, s *sharedSpool, h *Handler) error {
	s.mu.Lock()
	if newest, ok := s.users.remove(func(u spoolUse) bool { return u.handler == h }); ok {
		s.takeOver(newest)
	}
	s.nusers.Store(int32(len(s.users.all())))
	s.mu.Unlock()
	return s.drop()
}

// holdSpool takes a reference to the handler's spool for one request. A
// request that reaches the handler after its config was cleaned up and the
// spool closed opens the spool again: a request never finds its sink gone.
func (h *Handler) holdSpool() (*sharedSpool, error) {
	if h.spool.refs.tryAcquire() {
		return h.spool, nil
	}
	s, _, err := openSpool(h.spoolKey, h.spoolDeadLetter, h.spoolUse)
	return s, err
}

// dropSpool ends one request's use of the spool.
func (h *Handler) dropSpool(s *sharedSpool) {
	if err := s.drop(); err != nil {
		h.logger.Error("closing the spool failed", zap.String("dir", h.spoolKey), zap.Error(err))
	}
}

// drop drops one reference. When no config names the spool any more but
// it holds records, a drain keeps it open (and replaying) until they are
// delivered, rather than leaving acknowledged events in a directory that
// nothing replays.
func (s *sharedSpool) drop() error {
	if s.nusers.Load() == 0 {
		s.startDrain()
	}
	return spools.release(s.dir, s)
}

// startDrain starts a drain if the spool has no user and holds records.
// The caller holds a reference, so the drain's own reference can be taken.
func (s *sharedSpool) startDrain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.users.all()) > 0 || s.draining {
		return
	}
	records, bytes := s.Depth()
	if records == 0 || !s.refs.tryAcquire() {
		return
	}
	s.draining = true
	s.logger.Warn("spool directory is no longer configured; replaying its events until it is empty, then closing it",
		zap.String("dir", s.dir), zap.Int("records", records), zap.Int64("bytes", bytes))
	go s.drain()
}

// drain waits until the spool is empty or a config takes it again, then
// drops its reference. On process shutdown it simply ends with the
// process: the records stay on disk.
func (s *sharedSpool) drain() {
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		s.mu.Lock()
		if len(s.users.all()) > 0 {
			s.draining = false
			s.mu.Unlock()
			s.logger.Info("spool directory is configured again; it is no longer draining", zap.String("dir", s.dir))
			break
		}
		if records, _ := s.Depth(); records == 0 {
			s.draining = false
			s.mu.Unlock()
			s.logger.Info("spool directory that is no longer configured is drained; closing it", zap.String("dir", s.dir))
			break
		}
		s.mu.Unlock()
		select {
		case <-s.changed:
		case <-tick.C:
		}
	}
	if err := spools.release(s.dir, s); err != nil {
		s.logger.Error("closing the drained spool failed", zap.String("dir", s.dir), zap.Error(err))
	}
}

// replayedSpools sums the depth of every spool this process replays, the
// configured ones and those draining after a reload moved them, and gives
// the age of the oldest event among them; open is false when there is none.
func replayedSpools() (records int, bytes int64, oldest time.Duration, open bool) {
	list := openSpools()
	for _, s := range list {
		r, b := s.Depth()
		records, bytes = records+r, bytes+b
		oldest = max(oldest, s.OldestAge())
	}
	return records, bytes, oldest, len(list) > 0
}

// openSpools lists every spool open in this process: those the running
// configs name (opened by their ucs app's Start) and those draining after
// a reload moved them. A spool in the list may close right after; to use
// one, take a reference (s.refs.tryAcquire, then spools.release).
func openSpools() []*sharedSpool {
	spools.mu.Lock()
	defer spools.mu.Unlock()
	list := make([]*sharedSpool, 0, len(spools.open))
	for _, v := range spools.open {
		list = append(list, v.(*sharedSpool))
	}
	return list
}

// poke signals c without waiting; one pending signal is enough.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// takeOver makes use's forwarder, max_spool and logs the spool's.
func (s *sharedSpool) takeOver(use spoolUse) {
	s.SetForwarder(use.fwd)
	s.SetMaxBytes(use.maxBytes)
	s.SetReplayPolicy(use.policy)
	s.logs.swap(use.logger.Core())
}
