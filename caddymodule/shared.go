package caddymodule

import (
	"math"
	"sync"
	"sync/atomic"
)

// sinkStore keeps the sinks that outlive a config (journals, spools): one
// open sink per absolute path, shared by every handler that names it and by
// every request in flight through one of those handlers.
//
// Caddy provisions a new config before it cleans up the old one, and on a
// reload it cleans up the old one while the old servers still finish their
// requests (the grace period runs on after Cleanup). So a handler's Cleanup
// only drops the handler's own reference: each request holds one more for
// as long as it uses the sink, and the sink is closed when the last
// reference, of a handler or of a request, is dropped. A sink in the store
// is never closed while anything can still write to it, and a path has at
// most one open sink, so a reload never puts two writers on one file.
//
// caddy.UsagePool counts the handlers only, and a count per request would
// cost its lock on every request: the store takes its lock when a handler
// comes or goes, and a request takes and drops its reference with one
// atomic operation each.
type sinkStore struct {
	mu   sync.Mutex
	open map[string]storedSink // guarded by mu; every entry has references
}

// storedSink is a sink the store keeps: it counts its references and is
// shut once, when none is left.
type storedSink interface {
	refCounter() *refCount
	// shut closes the sink; the store calls it once, with its lock held,
	// after the last reference was dropped.
	shut() error
}

func newSinkStore() *sinkStore { return &sinkStore{open: map[string]storedSink{}} }

// acquire returns the open sink of key with one more reference, or opens
// it (with one reference) when none is open. loaded says it was open.
func (s *sinkStore) acquire(key string, open func() (storedSink, error)) (v storedSink, loaded bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.open[key]; ok && v.refCounter().tryAcquire() {
		// A sink whose last reference has just been dropped is only closed
		// under mu, after checking that its count is still 0: taking it
		// back here keeps it open.
		return v, true, nil
	}
	if v, err = open(); err != nil {
		return nil, false, err
	}
	v.refCounter().n.Store(1)
	s.open[key] = v
	return v, false, nil
}

// release drops one reference to v (the sink of key) and closes v when it
// was the last one.
func (s *sinkStore) release(key string, v storedSink) error {
	if v.refCounter().n.Add(-1) != 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[key] != v || !v.refCounter().n.CompareAndSwap(0, closedRefs) {
		return nil // taken again meanwhile (or already closed by another releaser)
	}
	delete(s.open, key)
	return v.shut()
}

// isOpen reports whether the store holds an open sink for key.
func (s *sinkStore) isOpen(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.open[key]
	return ok
}

// closedRefs marks a closed sink: far below 0, so no tryAcquire succeeds.
const closedRefs = math.MinInt64 / 2

// refCount is a sink's reference count. Requests take and drop references
// without the store's lock; once the count is closedRefs it stays there.
type refCount struct{ n atomic.Int64 }

// tryAcquire takes a reference unless the sink is closed.
func (r *refCount) tryAcquire() bool {
	for {
		n := r.n.Load()
		if n < 0 {
			return false
		}
		if r.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// claims are the handlers using one shared sink, oldest first. The newest
// one's settings (its logger, forwarder, limits) apply; when it is cleaned
// up, the next newest takes over, so a reload that fails falls back to the
// config that was running. The owner serialises calls with its own lock.
type claims[U any] struct {
	list []U
}

// add records u as the newest claim.
func (c *claims[U]) add(u U) { c.list = append(c.list, u) }

// remove drops the first claim that mine reports, and returns the newest
// claim left; ok is false when none is left.
func (c *claims[U]) remove(mine func(U) bool) (newest U, ok bool) {
	for i, u := range c.list {
		if mine(u) {
			c.list = append(c.list[:i], c.list[i+1:]...)
			break
		}
	}
	if len(c.list) == 0 {
		return newest, false
	}
	return c.list[len(c.list)-1], true
}

// all returns the claims, oldest first.
func (c *claims[U]) all() []U { return c.list }
