package upstream

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// The replay's lanes: a scheduling view of the record log. The worker (run) reads the records in
// log order into a window, queues each on the lane of its ordering key, and sends the head of every
// ready lane, as many at once as the concurrency limit (concurrency.go) allows. A lane sends one
// record at a time, so a service's records reach the upstream in acceptance order; a failed lane
// pauses with its own backoff while the others go on. Finished records stay in the window until a position line covering them is on
// disk (the checkpointer), and hold their place in the in-flight count until then.

const (
	// maxWindow bounds the records read ahead of the low-water mark. A lane paused for a long time
	// keeps the mark where it is; past this many records behind it, reading stops until it moves.
	maxWindow = 100_000
	// maxCached bounds the record bytes kept in memory; records read beyond it are read again from
	// their file when sent.
	maxCached = 32 << 20
	// fillBatch is how many records one pass reads before sending, so sending starts early.
	fillBatch = 1024
	// cacheDepth is how deep in its lane a record may be and still be kept in memory when read:
	// the next few of a lane are sent soon; the rest are read again from their file when their
	// turn comes, so a long lane costs no memory and its reading costs no copying.
	cacheDepth = 4
	// pendingSlab is how many window entries are allocated at once.
	pendingSlab = 128
	// quietRead is how long reading waits after a pass that found nothing to send (every record
	// read joined a lane that is paused or busy, as in an outage): events stored meanwhile are
	// read in one batch, and a spool filling up during an outage costs one read per quietRead,
	// not one per event.
	quietRead = 20 * time.Millisecond
	// lagEvery is how often OnLag is refreshed while records wait.
	lagEvery = time.Second
)

// pending is one record of the window. Its fields are the worker's.
type pending struct {
	seq      uint64 // read order
	seg      *wal.Segment
	off, end int64     // the record's bytes in seg, end is past its '\n'
	lane     *lane     // nil for a record already finished before a restart
	rec      []byte    // the record, or nil: read again when sent; the start of a long line
	long     bool      // a line longer than MaxSpoolLine: dead-lettered with its start, never read whole
	at       time.Time // accepted_at, read when first needed (the oldest waiting record's age)
	done     bool      // delivered or dead-lettered
	how      outcome
	tries    retryState
}

// lane is one ordering key's queue.
type lane struct {
	key      string
	queue    []*pending // waiting records, head first; the head may be in flight
	busy     bool       // the head is being sent
	readyAt  int        // index in the ready heap, or -1
	failures int        // failed attempts in a row, for the backoff
	retryAt  time.Time  // paused until then; zero when not paused
	outage   bool       // paused by unavailability: resumes when the breaker closes
	pausedAt int        // index in the paused heap, or -1
	// parking: its records are being moved to the tail (park.go); parkWanted: they will be once
	// its delivery in flight ends. Either keeps it from sending.
	parking, parkWanted bool
}

// headSeq is the read order of the lane's head record.
func (l *lane) headSeq() uint64 { return l.queue[0].seq }

// checkpoint is one position line for the checkpointer and the records it covers.
type checkpoint struct {
	line   []byte
	covers []*pending
	mark   *wal.Segment // files before it are finished
	err    error
}

// scheduler is the replay worker's state; only the worker goroutine touches it.
type scheduler struct {
	s       *Spool
	reader  *wal.Reader
	window  []*pending // records read and not yet behind the mark, in log order, from head
	head    int
	lanes   map[string]*lane
	ready   laneQueue // lanes that can send, oldest head record first
	paused  laneQueue // lanes waiting out a backoff, soonest first
	seq     uint64
	cached  int64
	resumed map[recordPos]bool // finished before the restart; consumed as they are read

	inFlight int // sent and not yet on disk as finished
	sending  int // deliveries in progress
	results  chan attemptResult
	dead     chan struct{} // closed when the scheduler is abandoned: its deliveries' results are dropped
	progress bool          // a position line was written

	markSeg  *wal.Segment // the low-water mark: every record before it is finished
	markOff  int64
	unsynced []*pending // finished, in no position line yet

	doneBehind   int        // finished records in the window after the mark
	rules        []parkRule // parks the mark has not passed yet (park.go)
	rulesChanged bool       // a rule came since the last position line
	parkBusy     bool       // a park is running; nothing is read meanwhile
	parkOut      chan parkResult
	ckptBusy     bool
	ckptIn       chan *checkpoint
	ckptOut      chan *checkpoint

	slab []pending // entries for the next records read

	atEnd        bool // the reader found no more records
	flush        bool // write a position line even though no record finished since the last
	readFailures int
	readAt       time.Time // no reading before then (after a read error)
	quietUntil   time.Time // no reading before then (the last pass found nothing to send)
	lastLag      time.Time
	lagFlight    int
}

// run is the replay worker. A panic in it (or in a delivery it started) is a bug, but it must not
// take the process down with it: the worker is recovered, logged with its stack, counted, and
// started again from the durable position after a backoff. Records finished since the last
// position line are sent again, as after a crash.
func (s *Spool) run() {
	defer close(s.done)
	start := s.start
	for restarts := 0; ; {
		sc := s.newScheduler(start)
		crash := sc.loop()
		if crash == nil {
			return
		}
		if sc.progress {
			restarts = 0
		}
		restarts++
		s.logger.Error("spool replay worker panicked; restarting it from the durable position",
			zap.String("dir", s.dir), zap.Int("restarts_in_a_row", restarts),
			zap.Any("panic", crash.value), zap.ByteString("stack", crash.stack))
		if s.onRestart != nil {
			s.onRestart()
		}
		sc.abandon()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(s.backoff(restarts, 0)):
			}
			var err error
			if start, err = s.durablePosition(); err == nil && s.src.parks() {
				// Only to find the parks that no position line records (see park.go).
				err = countWaiting(s.records, &start, nil, func(*waiting) {})
			}
			if err == nil {
				break
			}
			restarts++
			s.logger.Error("reading the spool cursor to restart the replay failed; retrying",
				zap.String("dir", s.dir), zap.Error(err))
		}
	}
}

// workerPanic is a recovered panic of the replay worker and where it happened.
type workerPanic struct {
	value any
	stack []byte
}

// newScheduler sets up the worker's state to replay from start.
func (s *Spool) newScheduler(start resumePoint) *scheduler {
	return &scheduler{
		s:      s,
		reader: s.records.NewReader(start.seg, start.off),
		lanes:  map[string]*lane{},
		ready: laneQueue{
			less: func(a, b *lane) bool { return a.headSeq() < b.headSeq() },
			at:   func(l *lane) *int { return &l.readyAt },
		},
		paused: laneQueue{
			less: func(a, b *lane) bool { return a.retryAt.Before(b.retryAt) },
			at:   func(l *lane) *int { return &l.pausedAt },
		},
		resumed: start.done,
		rules:   start.rules,
		parkOut: make(chan parkResult, 1),
		markSeg: start.seg,
		markOff: start.off,
		results: make(chan attemptResult, 64),
		dead:    make(chan struct{}),
		ckptIn:  make(chan *checkpoint, 1),
		ckptOut: make(chan *checkpoint, 1),
	}
}

// loop runs the scheduler until the spool closes (nil) or it panics (the panic).
func (sc *scheduler) loop() (crash *workerPanic) {
	defer func() {
		if v := recover(); v != nil {
			crash, _ = v.(*workerPanic) // a delivery's panic, re-raised by finish with its own stack
			if crash == nil {
				crash = &workerPanic{value: v, stack: debug.Stack()}
			}
		}
	}()
	s := sc.s
	go sc.checkpointer()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := s.now()
		s.mu.Lock()
		br := s.breaker // one look per pass: reading and sending decide on the same state
		s.mu.Unlock()
		sc.fill(now, br.open)
		sc.dispatch(now, br)
		sc.checkpoint()
		sc.maybePark(br)
		sc.reportLag(now)
		if s.src.finite() && sc.drained() {
			sc.shutdown()
			return nil
		}
		wait := sc.nextWake(now)
		skipped := time.Duration(0)
		if s.tune.skipWaits {
			skipped, wait = wait, min(wait, 100*time.Microsecond)
		}
		timer.Reset(wait)
		select {
		case r := <-sc.results:
			sc.finish(r)
		case c := <-sc.ckptOut:
			sc.synced(c)
		case r := <-sc.parkOut:
			sc.parked(r)
		case <-s.wake:
		case <-timer.C:
			s.skew.Add(int64(skipped))
		case <-s.ctx.Done():
			sc.shutdown()
			return nil
		}
	}
}

// abandon ends a scheduler that panicked: its deliveries in flight are let go (their results are
// dropped, the records stay in the log), and the position lines being written are waited for and
// applied, so the depth counts only what the durable position still holds.
func (sc *scheduler) abandon() {
	close(sc.dead)
	if sc.parkBusy {
		<-sc.parkOut // its copies are on disk or not; the restart finds which from the log
	}
	sc.reader.Close()
	close(sc.ckptIn)
	for c := range sc.ckptOut {
		sc.synced(c)
	}
}

// now is the replay's clock: the wall clock, moved on by the waits a test skipped.
func (s *Spool) now() time.Time { return time.Now().Add(time.Duration(s.skew.Load())) }

// fill reads the records stored since the last pass into the window and their lanes.
func (sc *scheduler) fill(now time.Time, outage bool) {
	if now.Before(sc.readAt) || now.Before(sc.quietUntil) || sc.parkBusy {
		return
	}
	read, ready := 0, sc.ready.Len()
	defer func() {
		if read > 0 && sc.ready.Len() == ready && sc.ready.Len() == 0 {
			sc.quietUntil = now.Add(quietRead)
			sc.s.quiet.Store(true) // stores need not wake the worker until then
		} else {
			sc.s.quiet.Store(false)
		}
	}()
	for range fillBatch {
		if len(sc.window)-sc.head >= maxWindow || sc.doneBehind >= maxBehind {
			return
		}
		if outage && sc.freshReady() {
			// Only probes go out while the upstream is down, and a lane that has not failed is
			// ready to send one: the records stored meanwhile are read once it answers again.
			// Lanes that keep failing (services still down when the UCS is back) do not stop
			// the reading, or the others' records would never be read nor probed.
			return
		}
		rec, seg, end, ok, err := sc.reader.Next()
		if err != nil {
			sc.readFailures++
			sc.readAt = now.Add(sc.s.backoff(sc.readFailures, 0))
			sc.s.logger.Error("reading the spool failed; retrying", zap.String("dir", sc.s.dir), zap.Error(err))
			return
		}
		sc.readFailures = 0
		if !ok {
			sc.atEnd = true
			return
		}
		sc.atEnd = false
		read++
		sc.seq++
		p := sc.newPending()
		*p = pending{seq: sc.seq, seg: seg, off: end - sc.reader.RecordLen(rec) - 1, end: end, long: sc.reader.Long()}
		sc.window = append(sc.window, p)
		if sc.resumed[recordPos{seg, p.off}] {
			delete(sc.resumed, recordPos{seg, p.off})
			p.done = true // finished before the restart; only the mark has to pass it
			sc.doneBehind++
			continue
		}
		if sc.s.src.skip(rec) {
			p.done, p.how = true, skipped // left out of this replay (a filter)
			sc.doneBehind++
			continue
		}
		key := sc.s.src.lane(rec)
		if len(sc.rules) > 0 && movedBy(sc.rules, key, seg, p.off) {
			p.done, p.how = true, moved // its copy is further on
			sc.doneBehind++
			continue
		}
		if sc.s.src.parks() && bytes.Contains(rec, parkKey) {
			if _, mark, ok := splitParked(rec); ok && mark.Tries != nil {
				p.tries = retryState{count: mark.Tries.Count, first: mark.Tries.First, statuses: mark.Tries.Statuses}
			}
		}
		l := sc.lanes[key]
		if l == nil {
			l = &lane{key: key, pausedAt: -1, readyAt: -1}
			sc.lanes[key] = l
		}
		if p.long || len(l.queue) < cacheDepth && sc.cached+int64(len(rec)) <= maxCached {
			// A line too long to read is never read again: its start is all it is sent with.
			p.rec = append([]byte(nil), rec...)
			sc.cached += int64(len(rec))
		}
		p.lane = l
		l.queue = append(l.queue, p)
		sc.markReady(l)
	}
}

// newPending hands out the next entry of a slab: one allocation per pendingSlab records.
func (sc *scheduler) newPending() *pending {
	if len(sc.slab) == 0 {
		sc.slab = make([]pending, pendingSlab)
	}
	p := &sc.slab[0]
	sc.slab = sc.slab[1:]
	return p
}

// markReady puts l on the ready heap when it has a record to send and nothing stops it. The heap
// sends the oldest head record first, so deliveries follow the log's order as closely as the
// lanes allow: the low-water mark then keeps up, the list of finished records after it stays
// short, and the oldest waiting event is the next to go.
func (sc *scheduler) markReady(l *lane) {
	if l.readyAt >= 0 || l.busy || len(l.queue) == 0 || !l.retryAt.IsZero() || l.parking || l.parkWanted {
		return
	}
	heap.Push(&sc.ready, l)
}

// dispatch sends the heads of ready lanes while the in-flight window and the concurrency limit
// have room. While the breaker is open only one probe goes out at a time, at the breaker's time,
// so a down upstream is not sent a window of retries.
func (sc *scheduler) dispatch(now time.Time, br breaker) {
	for sc.paused.Len() > 0 && !sc.paused.first().retryAt.After(now) {
		l := heap.Pop(&sc.paused).(*lane)
		l.retryAt, l.outage = time.Time{}, false
		sc.markReady(l)
	}
	s := sc.s
	window := s.policy.Load().window()
	lim := s.limit.Load()
	open, probeAt := br.open, br.probeAt
	if open {
		if sc.sending > 0 || now.Before(probeAt) || sc.inFlight >= window {
			return
		}
		if l := sc.popProbe(); l != nil {
			sc.send(l, lim, lim.begin(now), true)
			return
		}
		// Every lane waits out its backoff: the probe goes to the one that waited longest. A
		// lane just parked waits with nothing to send until its copies are read: it keeps its
		// backoff.
		var empty []*lane
		for sc.paused.Len() > 0 {
			l := heap.Pop(&sc.paused).(*lane)
			if len(l.queue) == 0 {
				empty = append(empty, l)
				continue
			}
			l.retryAt, l.outage = time.Time{}, false
			sc.send(l, lim, lim.begin(now), true)
			break
		}
		for _, l := range empty {
			heap.Push(&sc.paused, l)
		}
		return
	}
	// The window bounds the records not yet on disk as finished (what a crash resends); the limit
	// the requests at the upstream, direct deliveries included.
	for sc.inFlight < window && sc.ready.Len() > 0 {
		started, ok := lim.acquire(now)
		if !ok {
			return
		}
		sc.send(sc.popReady(), lim, started, false)
	}
}

// popReady takes the ready lane with the oldest head record.
func (sc *scheduler) popReady() *lane {
	if sc.ready.Len() == 0 {
		return nil
	}
	return heap.Pop(&sc.ready).(*lane)
}

// freshReady reports whether a ready lane has not failed since it last delivered.
func (sc *scheduler) freshReady() bool {
	for _, l := range sc.ready.lanes {
		if l.failures == 0 {
			return true
		}
	}
	return false
}

// popProbe takes the ready lane the outage probe goes to: the one that failed the fewest times
// in a row, the oldest head record first among equals. The lanes that hold the oldest records are
// often those of services still failing when the UCS is back: probed first every time (each is
// due again by the next probe), they kept the breaker open for every other service.
func (sc *scheduler) popProbe() *lane {
	if sc.ready.Len() == 0 {
		return nil
	}
	best := 0
	for i, l := range sc.ready.lanes {
		b := sc.ready.lanes[best]
		if l.failures < b.failures || l.failures == b.failures && l.headSeq() < b.headSeq() {
			best = i
		}
	}
	return heap.Remove(&sc.ready, best).(*lane)
}

// send starts the delivery of l's head record, which holds the place in lim it took at started
// until it ends.
func (sc *scheduler) send(l *lane, lim *concurrencyLimit, started time.Time, probe bool) {
	p := l.queue[0]
	l.busy = true
	sc.inFlight++
	sc.sending++
	go func(p *pending, rec []byte, tries retryState) {
		var r attemptResult
		defer func() {
			if v := recover(); v != nil {
				r = attemptResult{p: p, panicked: &workerPanic{value: v, stack: debug.Stack()}}
			}
			lim.end(started, sc.s.now(), r.rtt, r.status, r.err)
			select {
			case sc.results <- r:
			case <-sc.dead:
			}
		}()
		r = sc.s.attempt(p, rec, tries, probe)
	}(p, p.rec, p.tries.clone())
}

// finish applies one delivery's result.
func (sc *scheduler) finish(r attemptResult) {
	if r.panicked != nil {
		panic(r.panicked) // the worker restarts as after its own panic
	}
	if sc.s.tune.onFinish != nil {
		sc.s.tune.onFinish()
	}
	sc.sending--
	p, l := r.p, r.p.lane
	l.busy = false
	p.tries = r.tries
	now := sc.s.now()
	switch r.how {
	case delivered, deadLettered:
		p.done, p.how = true, r.how
		sc.cached -= int64(len(p.rec))
		p.rec = nil
		l.queue[0] = nil
		l.queue = l.queue[1:]
		if len(l.queue) == 0 {
			l.queue = nil
		}
		l.failures = 0
		l.parkWanted = false // it moved: whether it holds the mark is judged again
		sc.doneBehind++
		sc.unsynced = append(sc.unsynced, p) // keeps its in-flight place until on disk
		sc.markReady(l)
	case retry:
		sc.inFlight--
		fresh := l.failures == 0
		l.failures++
		l.retryAt = now.Add(sc.s.backoff(l.failures, r.retryAfter))
		l.outage = r.unavailable
		heap.Push(&sc.paused, l)
		if r.unavailable && (fresh || r.probe || !sc.freshReady()) {
			// A service failing again while others that have not failed wait to be tried tells
			// nothing of the UCS: at a low limit such services, the oldest, went out one after
			// another and opened the breaker for all the others (64 in flight used to mix
			// their failures with the others' answers). Alone, it counts: it is all there is.
			sc.s.unavailable(r.retryAfter, r.probe)
		}
	case closing:
		sc.inFlight--
		sc.markReady(l)
	}
	if r.answered {
		// The UCS answered (any status but 502/503/504): it is up, even if this answer asks
		// to come back later.
		sc.breakerClosed(r.probe)
	}
	if r.how == retry && l.parkWanted {
		// Its attempt ended without moving it: it is parked now if parking is still allowed.
		// If not (the breaker opened, a park of another lane runs), it is a paused lane like
		// any other: marked, it would be in no queue and never sent, nor probed, again.
		l.parkWanted = false
		sc.s.mu.Lock()
		br := sc.s.breaker
		sc.s.mu.Unlock()
		sc.maybePark(br)
	}
}

// breakerClosed records an answer from the upstream; when it closes an open breaker, the lanes
// paused by the outage resume at once.
func (sc *scheduler) breakerClosed(probe bool) {
	if !sc.s.answered() && !probe {
		return
	}
	var keep []*lane
	for sc.paused.Len() > 0 {
		l := heap.Pop(&sc.paused).(*lane)
		if !l.outage {
			keep = append(keep, l)
			continue
		}
		// It keeps its failures: a service that failed before the outage and fails again must
		// not count as news of the UCS (see finish), and backs off as it did.
		l.retryAt, l.outage = time.Time{}, false
		sc.markReady(l)
	}
	for _, l := range keep {
		heap.Push(&sc.paused, l)
	}
}

// checkpoint moves the mark over the finished records at the head of the window and hands a
// position line to the checkpointer, unless it is still writing the last one.
func (sc *scheduler) checkpoint() {
	if sc.ckptBusy || len(sc.unsynced) == 0 && !sc.rulesChanged && !sc.flush {
		return
	}
	sc.flush = false
	for sc.head < len(sc.window) && sc.window[sc.head].done {
		p := sc.window[sc.head]
		sc.markSeg, sc.markOff = p.seg, p.end
		sc.window[sc.head] = nil
		sc.head++
		sc.doneBehind--
	}
	// A rule the mark has passed finishes nothing after it.
	sc.rules = slices.DeleteFunc(sc.rules, func(r parkRule) bool {
		return !wal.Before(sc.markSeg, sc.markOff, r.beforeSeg, r.beforeOff)
	})
	sc.rulesChanged = false
	if sc.head > 1024 && sc.head*2 > len(sc.window) {
		sc.window = append([]*pending(nil), sc.window[sc.head:]...)
		sc.head = 0
	}
	log := sc.s.records
	pos := spoolPosition{Cursor: log.Cursor(sc.markSeg, sc.markOff)}
	for _, p := range sc.window[sc.head:] {
		if p.done && p.how != moved && p.how != skipped {
			pos.Done = append(pos.Done, log.Cursor(p.seg, p.off))
		}
	}
	// Finished before a restart and not read again yet: still finished.
	for rp := range sc.resumed {
		pos.Done = append(pos.Done, log.Cursor(rp.seg, rp.off))
	}
	for _, r := range sc.rules {
		pos.Moved = append(pos.Moved, r.durable)
	}
	line, _ := json.Marshal(pos) // plain strings and numbers: cannot fail
	sc.ckptBusy = true
	sc.ckptIn <- &checkpoint{line: line, covers: sc.unsynced, mark: sc.markSeg}
	sc.unsynced = nil
}

// checkpointer writes position lines, one fsync each; the worker goes on meanwhile, and the
// records finished during one write share the next.
func (sc *scheduler) checkpointer() {
	s := sc.s
	for c := range sc.ckptIn {
		c.err = s.writePosition(c)
		sc.ckptOut <- c
	}
	close(sc.ckptOut)
}

// writePosition appends a position line and removes the files behind its mark. A panic there is
// the line's failure, not the process's end.
func (s *Spool) writePosition(c *checkpoint) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.logger.Error("writing the spool cursor panicked", zap.String("dir", s.dir),
				zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return s.src.writePosition(c.line, c.mark, c.covers)
}

// synced releases the records a written position line covers.
func (sc *scheduler) synced(c *checkpoint) {
	sc.ckptBusy = false
	if c.err == nil {
		sc.progress = true
	}
	if c.err != nil {
		sc.s.logger.Error("writing the replay position failed; a restart may resend delivered events",
			zap.String("path", sc.s.src.positionPath()), zap.Error(c.err))
	}
	sc.inFlight -= len(c.covers)
	sc.s.finished(c.covers)
}

// nextWake is how long the worker may sleep when nothing arrives: until the first paused lane, the
// next probe or read retry, or the next lag report.
func (sc *scheduler) nextWake(now time.Time) time.Duration {
	next := now.Add(time.Hour)
	if sc.paused.Len() > 0 && sc.paused.first().retryAt.Before(next) {
		next = sc.paused.first().retryAt
	}
	if !sc.readAt.IsZero() && sc.readAt.After(now) && sc.readAt.Before(next) {
		next = sc.readAt
	}
	if sc.quietUntil.After(now) && sc.quietUntil.Before(next) {
		next = sc.quietUntil
	}
	if at := sc.s.limit.Load().wakeAt(); !at.IsZero() && at.Before(next) {
		next = at // refused by the limit: the requests in flight may be hanging by then
	}
	sc.s.mu.Lock()
	if sc.s.breaker.open && sc.s.breaker.probeAt.Before(next) {
		next = sc.s.breaker.probeAt
	}
	sc.s.mu.Unlock()
	// A test skipping waits jumps from event to event, not from one lag report to the next.
	if sc.head < len(sc.window) && !sc.s.tune.skipWaits && now.Add(lagEvery).Before(next) {
		next = now.Add(lagEvery)
	}
	return max(next.Sub(now), 0)
}

// reportLag tells OnLag the records in flight and the age of the oldest waiting one.
func (sc *scheduler) reportLag(now time.Time) {
	if sc.inFlight == sc.lagFlight && now.Sub(sc.lastLag) < lagEvery {
		return
	}
	sc.lastLag, sc.lagFlight = now, sc.inFlight
	var oldest time.Duration
	for _, p := range sc.window[sc.head:] {
		if !p.done {
			if p.at.IsZero() {
				p.at = sc.acceptedAt(p)
			}
			if !p.at.IsZero() {
				oldest = max(now.Sub(p.at), 0)
			}
			break
		}
	}
	sc.s.oldestAge.Store(int64(oldest))
	if sc.s.onLag != nil {
		sc.s.onLag(sc.inFlight, oldest)
	}
}

// acceptedAt reads when p was accepted, from memory or from its file.
func (sc *scheduler) acceptedAt(p *pending) time.Time {
	rec := p.rec
	if rec == nil {
		var err error
		if rec, err = sc.s.records.ReadRecord(p.seg, p.off, p.end); err != nil {
			return time.Time{}
		}
	}
	return sc.s.src.acceptedAt(rec)
}

// shutdown lets the deliveries in flight end (the closed context abandons them), records what
// finished, and stops the checkpointer.
func (sc *scheduler) shutdown() {
	defer sc.reader.Close()
	for sc.sending > 0 || sc.ckptBusy || sc.parkBusy {
		select {
		case r := <-sc.results:
			sc.finish(r)
		case c := <-sc.ckptOut:
			sc.synced(c)
		case r := <-sc.parkOut:
			sc.parked(r)
		}
	}
	sc.checkpoint()
	if sc.ckptBusy {
		sc.synced(<-sc.ckptOut)
	}
	close(sc.ckptIn)
	for range sc.ckptOut {
	}
	sc.s.oldestAge.Store(0)
	if sc.s.onLag != nil {
		sc.s.onLag(0, 0)
	}
}

// drained reports whether a finite replay is over: every record there is was read, and each one
// read is finished with its finish on disk. The last position line then moves the mark past them
// (flush), so that the position stays short.
func (sc *scheduler) drained() bool {
	if !sc.atEnd || sc.sending > 0 || sc.ckptBusy || sc.parkBusy || len(sc.unsynced) > 0 ||
		sc.doneBehind != len(sc.window)-sc.head {
		return false
	}
	sc.flush = sc.head < len(sc.window)
	return true
}

// finished takes records whose finish is on disk off the depth and counts them.
func (s *Spool) finished(ps []*pending) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(ps) > 0 {
		s.refusing = false // room was made
	}
	for _, p := range ps {
		size := p.end - p.off
		s.depth--
		s.depthBytes -= size
		s.dropLane(p.lane.key, 1)
		s.drain.add(now, size)
		if p.how == delivered {
			s.outage.replayed++
			if s.onReplayed != nil {
				s.onReplayed()
			}
		} else {
			s.outage.deadLettered++
			if s.onDead != nil {
				s.onDead()
			}
		}
	}
	if s.onDepth != nil {
		s.onDepth(s.depth, s.depthBytes)
	}
	if s.depth == 0 && len(ps) > 0 {
		s.logger.Info("spool drained; delivering directly again", zap.String("dir", s.dir),
			zap.Int("replayed", s.outage.replayed),
			zap.Int("dead_lettered", s.outage.deadLettered),
			zap.Duration("outage", time.Since(s.outage.start)))
	}
}

// laneQueue is a heap of lanes in the order of less; at says where a lane keeps its index in it
// (-1 when it is not in the heap), so a lane can sit in the ready and the paused heap by turns.
type laneQueue struct {
	lanes []*lane
	less  func(a, b *lane) bool
	at    func(l *lane) *int
}

func (q *laneQueue) Len() int           { return len(q.lanes) }
func (q *laneQueue) Less(i, j int) bool { return q.less(q.lanes[i], q.lanes[j]) }
func (q *laneQueue) Swap(i, j int) {
	q.lanes[i], q.lanes[j] = q.lanes[j], q.lanes[i]
	*q.at(q.lanes[i]), *q.at(q.lanes[j]) = i, j
}
func (q *laneQueue) Push(x any) {
	l := x.(*lane)
	*q.at(l) = len(q.lanes)
	q.lanes = append(q.lanes, l)
}
func (q *laneQueue) Pop() any {
	n := len(q.lanes) - 1
	l := q.lanes[n]
	q.lanes[n] = nil
	*q.at(l) = -1
	q.lanes = q.lanes[:n]
	return l
}

// first is the lane at the top of the heap; the heap must not be empty.
func (q *laneQueue) first() *lane { return q.lanes[0] }
