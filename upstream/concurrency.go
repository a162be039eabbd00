package upstream

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Adaptive concurrency (replay_concurrency auto): how many requests the gateway keeps in flight
// at the UCS is found from what the UCS answers, AIMD as in TCP and Vector's adaptive request
// concurrency. Every exchange with the UCS, replayed or direct, is one observation: its round
// trip time, or back-pressure (429, 502, 503, 504, a timeout, a connection that failed).
//   - Observations are grouped in windows of one smoothed round trip; the smoothed RTT (a moving
//     average of the windows' means) is judged at the end of each. Near the baseline, with the
//     limit in full use, the limit grows: by half in slow start (from autoStart when it opens,
//     from afterOutage when the breaker closes; it ends where the RTT starts to rise), then by
//     its square root while the RTT stays at its baseline (a limit cut from 200 is back within
//     a few dozen round trips, not 100), and by one once it starts to rise.
//   - A smoothed RTT clearly above the baseline cuts the limit by rttCut, and any
//     back-pressure by pressureCut at once; at most one cut per round trip, since the answers to
//     one round of requests tell of one state of the UCS. The first cut ends slow start.
//   - After a cut for back-pressure the limit holds before it grows again, twice as long after
//     each such cut up to maxHold, half as long after each hold that passed without one: a UCS
//     that refuses any more than its present load (it answered one probe but 503s to two) is
//     tried again now and then, not every other round trip.
//   - The baseline is the lowest window mean of the last 10 seconds: a UCS whose own latency
//     drifts moves it. Held near its best, the limit keeps the UCS a little above its baseline,
//     and those windows alone would carry the baseline up with them, and the limit after it:
//     every probeEvery the limit halves for two windows (the first lets the requests of the
//     old limit end, the second measures) and is then put back, so the baseline is measured
//     at a load that does not raise it. A rise that lasts while the limit is at its floor is not
//     the gateway's doing: the baseline takes it at once, and slow start begins again.
//   - A request in flight for far longer than the round trip is waiting for its timeout: past
//     hangAfter it no longer holds a place.
// A fixed limit (replay_concurrency N) counts the same requests and never moves.
//
// It is written here rather than taken from a Go port of Netflix's concurrency-limits: those
// bring a limiter framework of their own (strategies, registries, their own clock), while this
// controller must run on the replay's clock (tests skip its waits), restart on the spool's
// breaker, and hand a place to requests it never blocks (direct deliveries).

const (
	// DefaultReplayConcurrencyMax bounds the adaptive limit when no maximum is configured.
	DefaultReplayConcurrencyMax = 256
	// autoStart is where the adaptive limit starts: low, but not so low that one slow request
	// holds the whole replay.
	autoStart = 4
	// afterOutage is where it starts again when the breaker closes: a UCS just back must not get
	// a burst. One in flight is what its single probe has just shown it takes.
	afterOutage = 1
	// rttKnee, rttNear and rttRise are the RTT over the baseline below which the limit grows
	// fast (slow start, or by its square root), below which it grows by one, and above which it
	// is cut. Between the last two it holds.
	rttKnee, rttNear, rttRise = 1.1, 1.2, 1.5
	// rttSlack is added to each: below a millisecond or so the gateway's own scheduling is the
	// noise, and a ratio of microseconds would cut the limit for nothing.
	rttSlack = time.Millisecond
	// rttCut and pressureCut multiply the limit on a cut.
	rttCut, pressureCut = 0.9, 0.7
	// minWindow bounds a window from below, so a very fast UCS is not judged on a handful of
	// answers; maxRTTWindow from above, so a slow one still changes the limit a few times a second.
	minWindow, maxRTTWindow = time.Millisecond, time.Second
	// baselineSlot and baselineSlots make the baseline a minimum over the last 10 seconds.
	baselineSlot  = time.Second
	baselineSlots = 10
	// maxHold bounds the hold after a cut for back-pressure.
	maxHold = 5 * time.Second
	// staleFactor and minStale: a request in flight counts as hanging after staleFactor smoothed
	// round trips, and at least minStale.
	staleFactor, minStale = 4, time.Second
	// probeEvery is how often the baseline is measured at half the limit.
	probeEvery = 4 * time.Second
)

// concurrencyLimit is the bound of the requests a spool keeps in flight at the upstream. It is
// safe for concurrent use: the replay worker acquires, and the deliveries (replayed and direct)
// report their end from their own goroutines.
type concurrencyLimit struct {
	fixed    int // > 0: a fixed limit, which never moves
	max      int // the adaptive limit's ceiling
	logger   *zap.Logger
	onChange func(limit int) // called with the whole limit when it changes, with mu held

	mu        sync.Mutex
	limit     float64 // the adaptive limit; its integer part is what acquire allows
	inFlight  int     // requests under way, replayed and direct
	slowStart bool
	grewAt    time.Time     // when slow start last grew the limit: only later requests measure it
	reached   bool          // in-flight reached the limit in this window: growth is earned
	starved   bool          // acquire found no room since the last end that made some
	starts    map[int64]int // requests in flight by their start (Unix ns): hanging ones are let go
	winStart  time.Time
	winSum    time.Duration
	winN      int
	srtt      time.Duration // smoothed RTT: the window's length
	base      movingMin
	lastCut   time.Time
	holdFor   time.Duration // the hold after the last cut for back-pressure
	holdUntil time.Time     // no growth before then
	pressured bool          // back-pressure in this window: no growth from it
	probeAt   time.Time     // when the next baseline probe starts
	probing   int           // windows left in the probe
	restoreTo float64       // the limit before the probe
}

// newConcurrencyLimit makes a fixed limit when fixed > 0, else an adaptive one up to max.
func newConcurrencyLimit(fixed, max int, logger *zap.Logger, onChange func(int)) *concurrencyLimit {
	if logger == nil {
		logger = zap.NewNop()
	}
	c := &concurrencyLimit{fixed: fixed, max: max, logger: logger, onChange: onChange, starts: map[int64]int{}}
	if fixed > 0 {
		c.max = fixed
		c.limit = float64(fixed)
	} else {
		c.limit, c.slowStart = math.Min(autoStart, float64(max)), true
	}
	if onChange != nil {
		onChange(int(c.limit))
	}
	return c
}

// sameAs reports whether c is what newConcurrencyLimit(fixed, max) would make: a reload that kept
// the option keeps the limit the controller has learnt.
func (c *concurrencyLimit) sameAs(fixed, max int) bool {
	if fixed > 0 {
		return c.fixed == fixed
	}
	return c.fixed == 0 && c.max == max
}

// current is the limit now.
func (c *concurrencyLimit) current() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.limit)
}

// acquire takes a place for a replayed request if the limit has room, and returns when it
// started, for end. A fixed limit bounds the replay's own window (scheduler.dispatch), so it
// always has room here. A request in flight for longer than hangAfter is waiting for its timeout,
// not load the UCS is working through: it no longer holds a place, or a single request left
// hanging at a low limit would hold the whole replay until then.
func (c *concurrencyLimit) acquire(now time.Time) (started time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fixed == 0 && c.inFlight-c.hanging(now) >= int(c.limit) {
		c.reached, c.starved = true, true
		return time.Time{}, false
	}
	c.take(now)
	return now, true
}

// hangAfter is how long a request may be in flight before it counts as hanging.
func (c *concurrencyLimit) hangAfter() time.Duration { return max(staleFactor*c.srtt, minStale) }

// hanging counts the requests in flight for longer than hangAfter.
func (c *concurrencyLimit) hanging(now time.Time) int {
	n, before := 0, now.Add(-c.hangAfter()).UnixNano()
	for at, k := range c.starts {
		if at <= before {
			n += k
		}
	}
	return n
}

// wakeAt is when the replay, refused a place, may have one because a request in flight will
// count as hanging; zero when it was not refused.
func (c *concurrencyLimit) wakeAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fixed > 0 || !c.starved || len(c.starts) == 0 {
		return time.Time{}
	}
	first := int64(math.MaxInt64)
	for at := range c.starts {
		first = min(first, at)
	}
	return time.Unix(0, first).Add(c.hangAfter())
}

// begin counts a request that goes whatever the limit, and returns when it started, for end: a
// direct delivery (live traffic is never held back, but the replay leaves it room) or the
// breaker's probe.
func (c *concurrencyLimit) begin(now time.Time) (started time.Time) {
	c.mu.Lock()
	c.take(now)
	c.mu.Unlock()
	return now
}

func (c *concurrencyLimit) take(now time.Time) {
	c.inFlight++
	c.starts[now.UnixNano()]++
	if c.inFlight >= int(c.limit) {
		c.reached = true
	}
}

// end gives back the place of a request that started (as acquire or begin returned it), took
// rtt and ended with status and err, as Forwarder.send returns them, and learns from it. room reports that the replay was refused a
// place since the last such report and there is one now: the caller wakes the replay.
func (c *concurrencyLimit) end(started, now time.Time, rtt time.Duration, status int, err error) (room bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	if k := started.UnixNano(); c.starts[k] > 1 {
		c.starts[k]--
	} else {
		delete(c.starts, k)
	}
	defer func() {
		if room = c.starved && c.inFlight-c.hanging(now) < int(c.limit); room {
			c.starved = false
		}
	}()
	if c.fixed > 0 {
		return
	}
	pressure, ok := classify(status, err)
	switch {
	case pressure != "":
		c.pressured = true
		if c.cut(now, pressureCut, pressure) {
			c.holdFor = min(max(2*c.holdFor, c.window()), maxHold)
			c.holdUntil = now.Add(c.holdFor)
		}
	case ok && c.slowStart && started.Before(c.grewAt):
		// Sent under the smaller limit before the last growth, it says nothing of the new one:
		// judged on it, slow start would grow again before the new limit's latency shows, and
		// overshoot the UCS's capacity by half.
	case ok:
		c.winSum += rtt
		c.winN++
	default:
		return // no evidence: the caller or the spool went away
	}
	if c.winStart.IsZero() {
		c.winStart = now
	}
	// In slow start a window is judged on a whole round of the limit sent since it last grew:
	// the first answers of a larger limit come from the requests that met the shortest queue.
	if now.Sub(c.winStart) >= c.window() && (!c.slowStart || c.winN >= int(c.limit)) {
		c.closeWindow(now)
	}
	return
}

// classify tells back-pressure (its cause, for the log) from an answer whose RTT counts (ok) and
// from an end that says nothing of the upstream (neither).
func classify(status int, err error) (pressure string, ok bool) {
	var unavailable *UnavailableError
	var tooLarge *ResponseTooLargeError
	switch {
	case errors.As(err, &unavailable) && unavailable.Timeout:
		return "timeout", false
	case errors.As(err, &unavailable) && unavailable.Status != 0:
		return strconv.Itoa(unavailable.Status), false
	case errors.As(err, &unavailable):
		return "connection failed", false
	case errors.As(err, &tooLarge):
		return "", true
	case err != nil || status == 0:
		return "", false // the caller or the spool went away, or nothing was sent
	case status == http.StatusTooManyRequests || gatewayFailure(status):
		return strconv.Itoa(status), false
	}
	return "", true
}

// window is the length of an observation window: one smoothed round trip.
func (c *concurrencyLimit) window() time.Duration { return min(max(c.srtt, minWindow), maxRTTWindow) }

// closeWindow judges the window that ends now and starts the next.
func (c *concurrencyLimit) closeWindow(now time.Time) {
	n, sum, reached, pressured := c.winN, c.winSum, c.reached, c.pressured
	c.winStart, c.winSum, c.winN, c.reached, c.pressured = now, 0, 0, c.inFlight >= int(c.limit), false
	if n == 0 {
		return // back-pressure only: already acted on
	}
	mean := sum / time.Duration(n)
	if c.srtt == 0 {
		c.srtt = mean
	} else {
		c.srtt = (c.srtt + mean) / 2
	}
	c.base.add(now, mean)
	base := c.base.min(now)
	if c.probe(now) {
		return
	}
	// The smoothed RTT decides, not one window's mean: a pause of the gateway's own (a GC, a
	// busy core) must not cut the limit. In slow start the window's mean does: the limit grows
	// by half a round trip, faster than the average follows, and would overshoot.
	rtt := c.srtt
	if c.slowStart {
		rtt = mean
	}
	rising := float64(rtt) > rttRise*float64(base)+float64(rttSlack)
	switch {
	case rising && int(c.limit) <= 1:
		// Nothing to give back: the UCS is this slow on its own. It is the new normal.
		c.base.reset(now, mean)
		c.slowStart = true
	case rising:
		c.cut(now, rttCut, "rtt rise")
	case pressured || now.Before(c.holdUntil):
	case c.slowStart && float64(rtt) > rttKnee*float64(base)+float64(rttSlack):
		// The UCS starts to queue: growing by half now would overshoot its capacity.
		c.slowStart = false
	case reached && float64(rtt) <= rttNear*float64(base)+float64(rttSlack):
		if c.holdFor > 0 && now.After(c.holdUntil.Add(c.holdFor)) {
			c.holdFor /= 2 // a whole hold passed without back-pressure
			c.holdUntil = now
		}
		grow := 1.0
		switch {
		case c.slowStart:
			grow = max(1, c.limit/2)
			c.grewAt = now
		case float64(rtt) <= rttKnee*float64(base)+float64(rttSlack):
			grow = max(1, math.Sqrt(c.limit)) // far from where the UCS queues
		}
		c.set(c.limit + grow)
	}
}

// probe runs the baseline probe: it starts one when due, counts its windows down and puts the limit
// back at its end. It reports whether the window belongs to a probe, whose latency is not judged.
func (c *concurrencyLimit) probe(now time.Time) bool {
	switch {
	case c.probing > 0:
		if c.probing--; c.probing == 0 {
			c.set(c.restoreTo)
			c.probeAt = now.Add(probeEvery)
		}
		return true
	case c.probeAt.IsZero() || c.slowStart:
		c.probeAt = now.Add(probeEvery)
	case !now.Before(c.probeAt) && c.limit >= 2:
		c.probing, c.restoreTo = 2, c.limit
		c.set(c.limit / 2)
		return true
	}
	return false
}

// cut multiplies the limit by factor, at most once per round trip, and ends slow start and any
// baseline probe (the limit it would restore is too high). It reports whether it cut.
func (c *concurrencyLimit) cut(now time.Time, factor float64, cause string) bool {
	if !c.lastCut.IsZero() && now.Sub(c.lastCut) < c.window() {
		return false
	}
	if c.probing > 0 {
		c.probing = 0
		c.set(c.restoreTo)
		c.probeAt = now.Add(probeEvery)
	}
	c.lastCut, c.slowStart = now, false
	from := int(c.limit)
	c.set(c.limit * factor)
	c.logger.Debug("replay concurrency decreased", zap.String("cause", cause),
		zap.Int("from", from), zap.Int("to", int(c.limit)),
		zap.Duration("rtt", c.srtt), zap.Duration("baseline", c.base.min(now)))
	return true
}

// restart goes back to slow start from afterOutage: the breaker closed, the upstream answers
// again after an outage and must not get the old limit at once.
func (c *concurrencyLimit) restart(now time.Time) {
	if c.fixed > 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slowStart, c.lastCut, c.probing = true, now, 0
	c.winStart, c.winSum, c.winN, c.reached = now, 0, 0, false
	c.set(afterOutage)
}

// set bounds the limit to [1, max] and reports a change of its whole part.
func (c *concurrencyLimit) set(limit float64) {
	old := int(c.limit)
	c.limit = min(max(limit, 1), float64(c.max))
	if int(c.limit) != old && c.onChange != nil {
		c.onChange(int(c.limit))
	}
}

// movingMin is the least of the durations added over the last baselineSlots slots of
// baselineSlot.
type movingMin struct {
	slots [baselineSlots]struct {
		at  int64 // the slot's number, from the Unix epoch
		min time.Duration
	}
}

func (m *movingMin) add(now time.Time, d time.Duration) {
	n := now.UnixNano() / int64(baselineSlot)
	s := &m.slots[n%baselineSlots]
	if s.at != n || d < s.min {
		s.at, s.min = n, d
	}
}

func (m *movingMin) min(now time.Time) time.Duration {
	n := now.UnixNano() / int64(baselineSlot)
	var least time.Duration
	for _, s := range m.slots {
		if n-s.at < baselineSlots && s.min > 0 && (least == 0 || s.min < least) {
			least = s.min
		}
	}
	return least
}

// reset forgets every slot but the one of now, which holds d.
func (m *movingMin) reset(now time.Time, d time.Duration) {
	m.slots = [baselineSlots]struct {
		at  int64
		min time.Duration
	}{}
	m.add(now, d)
}
