package upstream

import (
	"time"

	"go.uber.org/zap"
)

// breakerThreshold is how many deliveries in a row, direct or replayed, must fail for
// unavailability before the spool treats the upstream as down: then new events are stored
// without a direct attempt, and the replay sends one probe at a time.
const breakerThreshold = 3

// breaker tells "the upstream is down" from "one delivery failed": after breakerThreshold
// deliveries in a row failed for unavailability it opens; while open, Submit stores without a
// direct attempt and the replay sends one probe at a time, at probeAt. Any answer closes it.
type breaker struct {
	open    bool
	streak  int       // deliveries in a row that failed for unavailability
	probes  int       // failed probes since it opened
	probeAt time.Time // when the replay may send the next probe
}

// answered records that the upstream answered a delivery: it is up. closed reports that this
// closed an open breaker.
func (s *Spool) answered() (closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.breaker.streak = 0
	if !s.breaker.open {
		return false
	}
	s.breaker.open = false
	// A UCS that answered one probe may not take the old limit's burst (it may fall over again
	// under it, and the breaker flap): an adaptive limit starts again from its slow start.
	s.limit.Load().restart(s.now())
	s.logger.Info("upstream answers again; replaying", zap.String("dir", s.dir),
		zap.Int("failed_probes", s.breaker.probes), zap.Int("concurrency", s.limit.Load().current()))
	if s.onDown != nil {
		s.onDown(false)
	}
	return true
}

// unavailable records a delivery that failed for unavailability; probe says it was the replay's
// probe while the breaker was open. It reports whether the breaker is open.
func (s *Spool) unavailable(retryAfter time.Duration, probe bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &s.breaker
	b.streak++
	switch {
	case b.open && probe:
		b.probes++
		b.probeAt = s.now().Add(s.backoff(b.probes+1, retryAfter))
	case !b.open && b.streak >= breakerThreshold:
		b.open, b.probes = true, 0
		b.probeAt = s.now().Add(s.backoff(1, retryAfter))
		s.logger.Warn("upstream is down; storing events without a direct attempt and probing it",
			zap.String("dir", s.dir), zap.Int("failed_in_a_row", b.streak))
		if s.onDown != nil {
			s.onDown(true)
		}
	}
	return b.open
}
