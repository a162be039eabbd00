package upstream

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"time"

	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// Parking a stuck lane. The durable position is a low-water mark plus the records finished after
// it, so a lane that cannot deliver (one service answered 503 while the others are accepted) holds
// the mark at its head record: every record finished behind it has to be listed in each position
// line, and no record file after the mark can be removed. Parking moves such a lane out of the way:
//
//  1. the lane's new events wait (Submit blocks them for the lane only) until those being stored
//     are on disk; E, the end of the log then, is after every record of the lane;
//  2. the lane's waiting records, those in the window and those after it up to E, are appended
//     again at the tail, in their order, each with a "parked" mark naming E and its place in the
//     group ({"before":E,"n":i,"of":k}), and are synced;
//  3. the lane's new events go on, after the copies; the originals are finished by a rule,
//     "records of lane L before E are finished", which the next position line carries until the
//     mark passes E. The mark moves on, and the files behind it are removed.
//
// Order holds: the copies are the lane's records in their order, and every later event of the
// lane is appended after them. Nothing is lost: the originals count as finished only through a
// position line written after the copies are on disk. A crash between the two leaves originals and
// copies both waiting; opening the spool finds the copies whose rule no position line holds, and
// applies it (the group is complete: its last copy is there) or drops the copies (it is not: the
// originals stay), so a crash during a park resends nothing twice.

const (
	// parkBehind is how many finished records must wait behind the mark before the lane holding
	// it is parked: below it, waiting costs less than moving the lane.
	parkBehind = 1024
	// parkFailures is how many failed attempts in a row make a lane holding the mark stuck.
	parkFailures = 3
	// parkForce parks the lane holding the mark whatever its state (once its delivery in flight
	// ends): a lane slow for any reason, or paused by a long Retry-After after one failure.
	parkForce = 4096
	// maxBehind stops reading while this many finished records wait behind the mark, which
	// bounds a position line to about maxBehind entries (~60 bytes each) whatever a lane does.
	maxBehind = 2 * parkForce
	// maxParkRules bounds the rules a position line carries; past it no lane is parked until
	// the mark passes some.
	maxParkRules = 256
	// parkChunk bounds the copied record bytes held in memory at once during a park.
	parkChunk = 4 << 20
)

// parkRule says that the records of lane in [from, before) are finished: moved to the tail by a
// park (from is nil: from the start), or copies left by a park that failed half-way.
type parkRule struct {
	lane       string
	fromSeg    *wal.Segment // nil: from the start of the log
	fromOff    int64
	beforeSeg  *wal.Segment
	beforeOff  int64
	durable    parkRange // the rule as position lines hold it
	incomplete bool      // copies of a failed park, not originals
}

// parkRange is a parkRule in a position line.
type parkRange struct {
	Lane   string      `json:"lane"`
	From   *wal.Cursor `json:"from,omitempty"`
	Before wal.Cursor  `json:"before"`
}

// parkMark is what a copy carries, after its record's last member, as "parked".
type parkMark struct {
	Before wal.Cursor `json:"before"`
	N      int        `json:"n"`
	Of     int        `json:"of"`
	Tries  *parkTries `json:"tries,omitempty"`
}

// parkTries is a parked record's retry state, so a park does not reset MaxAttempts and
// MaxRetryAge.
type parkTries struct {
	Count    int       `json:"count"`
	First    time.Time `json:"first"`
	Statuses []int     `json:"statuses,omitempty"`
}

// parkKey starts a copy's mark: it is the record's last member.
var parkKey = []byte(`,"parked":{"before":`)

// covers reports whether the rule finishes the record of lane at (seg, off).
func (r *parkRule) covers(lane string, seg *wal.Segment, off int64) bool {
	return lane == r.lane && wal.Before(seg, off, r.beforeSeg, r.beforeOff) &&
		(r.fromSeg == nil || !wal.Before(seg, off, r.fromSeg, r.fromOff))
}

// movedBy reports whether one of rules finishes the record of lane at (seg, off).
func movedBy(rules []parkRule, lane string, seg *wal.Segment, off int64) bool {
	for i := range rules {
		if rules[i].covers(lane, seg, off) {
			return true
		}
	}
	return false
}

// resolveRules turns the rules of a position line into positions in l.
func resolveRules(l *wal.Log, rs []parkRange) []parkRule {
	out := make([]parkRule, 0, len(rs))
	for _, r := range rs {
		pr := parkRule{lane: r.Lane, durable: r}
		pr.beforeSeg, pr.beforeOff, _ = l.Resolve(r.Before)
		if r.From != nil {
			pr.fromSeg, pr.fromOff, _ = l.Resolve(*r.From)
			pr.incomplete = true
		}
		out = append(out, pr)
	}
	return out
}

// splitParked returns a record without its "parked" mark and the mark; ok is false when it has
// none. Only the last member can be a mark, so an event body holding the same text is not taken
// for one.
func splitParked(rec []byte) (orig []byte, mark parkMark, ok bool) {
	i := bytes.LastIndex(rec, parkKey)
	if i < 0 || len(rec) < 2 || rec[len(rec)-1] != '}' {
		return rec, mark, false
	}
	if json.Unmarshal(rec[i+len(`,"parked":`):len(rec)-1], &mark) != nil {
		return rec, mark, false
	}
	return append(rec[:i:i], '}'), mark, true
}

// appendParked appends the copy of rec (a record of lane, with or without a mark) carrying mark.
// A line that is not a record, or the start of one too long to read (long), is wrapped in one
// that carries it as a string: every copy has its mark, and such a line goes to the dead letter
// in its turn all the same.
func appendParked(dst, rec []byte, lane string, long bool, mark parkMark) []byte {
	orig, _, _ := splitParked(rec)
	m, _ := json.Marshal(mark) // plain values: cannot fail
	if long || len(orig) < 2 || orig[0] != '{' || orig[len(orig)-1] != '}' {
		dst = append(dst, `{"lane":`...)
		dst = appendJSONString(dst, lane)
		dst = append(dst, `,"unreadable":`...)
		dst = appendJSONString(dst, string(orig))
	} else {
		dst = append(dst, orig[:len(orig)-1]...)
	}
	dst = append(dst, `,"parked":`...)
	dst = append(dst, m...)
	return append(dst, '}')
}

// parkJob is what the parker needs of the worker's state: the lane, its records in the window
// (in order, none in flight), where the worker's reading stands and the rules in force.
type parkJob struct {
	lane    *lane
	queue   []*pending
	fromSeg *wal.Segment
	fromOff int64
	rules   []parkRule
}

// parkResult is a park's outcome: the rule finishing the originals, or, when the copies could
// not all be stored, the rule dropping those that were.
type parkResult struct {
	job   *parkJob
	rule  parkRule
	moved int   // records copied
	ok    bool  // every copy is on disk: the rule finishes the originals
	err   error // why not
}

// maybePark parks the lane holding the mark when it is stuck and enough waits behind it.
func (sc *scheduler) maybePark(br breaker) {
	if sc.parkBusy || br.open || sc.doneBehind < parkBehind || len(sc.rules) >= maxParkRules {
		return
	}
	var l *lane
	for _, p := range sc.window[sc.head:] {
		if !p.done {
			l = p.lane
			break
		}
	}
	if l == nil || l.parking {
		return
	}
	if l.failures < parkFailures && sc.doneBehind < parkForce {
		return
	}
	if l.busy {
		l.parkWanted = true // not sent again; parked when its attempt ends
		return
	}
	if l.readyAt >= 0 {
		heap.Remove(&sc.ready, l.readyAt)
	}
	if l.pausedAt >= 0 {
		heap.Remove(&sc.paused, l.pausedAt)
	}
	l.parking = true
	sc.parkBusy = true
	seg, off := sc.reader.Pos()
	job := &parkJob{lane: l, queue: append([]*pending(nil), l.queue...), fromSeg: seg, fromOff: off,
		rules: append([]parkRule(nil), sc.rules...)}
	go func() {
		r := sc.s.park(job)
		sc.parkOut <- r
	}()
}

// parked applies a park's outcome.
func (sc *scheduler) parked(r parkResult) {
	sc.parkBusy = false
	l := r.job.lane
	l.parking, l.parkWanted = false, false
	if r.rule.beforeSeg != nil {
		sc.rules = append(sc.rules, r.rule)
		sc.rulesChanged = true
	}
	if r.ok {
		for _, p := range r.job.queue {
			p.done, p.how, p.lane = true, moved, nil
			sc.cached -= int64(len(p.rec))
			p.rec = nil
			sc.doneBehind++
		}
		l.queue = nil
		sc.s.logger.Warn("a service's events hold up the spool; moved them to its end, in order",
			zap.String("dir", sc.s.dir), zap.String("lane", l.key), zap.Int("records", r.moved),
			zap.Int("failures", l.failures))
	} else {
		sc.s.logger.Error("moving a stuck service's events to the end of the spool failed; they stay where they are",
			zap.String("dir", sc.s.dir), zap.String("lane", l.key), zap.Error(r.err))
	}
	if !l.retryAt.IsZero() {
		heap.Push(&sc.paused, l)
	} else {
		sc.markReady(l)
	}
}

// park copies a lane's waiting records to the tail (see the top of this file). It runs beside the
// worker, which reads nothing meanwhile, and holds back the lane's Submits only.
func (s *Spool) park(job *parkJob) parkResult {
	lane := job.lane.key
	s.mu.Lock()
	s.parking[lane] = true
	for s.appending[lane] > 0 {
		s.parkCond.Wait()
	}
	s.mu.Unlock()
	endSeg, endOff := s.records.End()
	res := parkResult{job: job}
	var grown int64
	defer func() {
		s.mu.Lock()
		delete(s.parking, lane)
		if res.ok {
			s.depthBytes += grown
		}
		s.parkCond.Broadcast()
		s.mu.Unlock()
	}()

	// Where the lane's records are: those the worker read, then those after its reading up to E.
	type place struct {
		seg      *wal.Segment
		off, end int64
		rec      []byte // nil: read from the file
		long     bool   // rec is the start of a line too long to read
		tries    retryState
	}
	var places []place
	for _, p := range job.queue {
		places = append(places, place{seg: p.seg, off: p.off, end: p.end, rec: p.rec, long: p.long, tries: p.tries})
	}
	r := s.records.NewReader(job.fromSeg, job.fromOff)
	for {
		rec, seg, end, ok, err := r.Next()
		if err != nil {
			r.Close()
			res.err = err
			return res
		}
		if !ok {
			break
		}
		off := end - r.RecordLen(rec) - 1
		if !wal.Before(seg, off, endSeg, endOff) {
			break
		}
		if recordLane(rec) == lane && !movedBy(job.rules, lane, seg, off) {
			pl := place{seg: seg, off: off, end: end}
			if r.Long() {
				pl.rec, pl.long = append([]byte(nil), rec...), true
			}
			places = append(places, pl)
		}
	}
	r.Close()

	before := s.records.Cursor(endSeg, endOff)
	var firstSeg *wal.Segment
	var firstOff int64
	var batch [][]byte
	var batchBytes int
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if firstSeg == nil {
			firstSeg, firstOff = s.records.End()
		}
		n, err := s.records.AppendAll(batch)
		res.moved += n
		batch, batchBytes = batch[:0], 0
		return err
	}
	for i, pl := range places {
		rec := pl.rec
		if rec == nil {
			var err error
			if rec, err = s.records.ReadRecord(pl.seg, pl.off, pl.end); err != nil {
				res.err = err
				break
			}
		}
		mark := parkMark{Before: before, N: i, Of: len(places)}
		if pl.tries.count > 0 {
			mark.Tries = &parkTries{Count: pl.tries.count, First: pl.tries.first, Statuses: pl.tries.statuses}
		}
		cp := appendParked(nil, rec, lane, pl.long, mark)
		grown += int64(len(cp)+1) - (pl.end - pl.off)
		batch = append(batch, cp)
		if batchBytes += len(cp); batchBytes >= parkChunk {
			if res.err = flush(); res.err != nil {
				break
			}
		}
	}
	if res.err == nil {
		res.err = flush()
	}
	if res.err == nil {
		res.ok = true
		res.rule = parkRule{lane: lane, beforeSeg: endSeg, beforeOff: endOff,
			durable: parkRange{Lane: lane, Before: before}}
		return res
	}
	if res.moved > 0 {
		// Some copies are on disk and the originals stay: a rule drops the copies. Nothing of
		// the lane is appended until it is in force, so the copies are all of the lane there is
		// between their start and the end now.
		stopSeg, stopOff := s.records.End()
		from := s.records.Cursor(firstSeg, firstOff)
		res.rule = parkRule{lane: lane, fromSeg: firstSeg, fromOff: firstOff, beforeSeg: stopSeg,
			beforeOff: stopOff, incomplete: true,
			durable: parkRange{Lane: lane, From: &from, Before: s.records.Cursor(stopSeg, stopOff)}}
	}
	return res
}

// parkGroup is what a reading of the log saw of one park's copies.
type parkGroup struct {
	lane              string
	before            wal.Cursor
	first, last       bool
	firstSeg, lastSeg *wal.Segment
	firstOff, lastEnd int64
}

// noteParked records a copy's mark seen while counting, for unfinishedParks.
func noteParked(groups map[parkRange]*parkGroup, w *waiting) {
	if w.long || !bytes.Contains(w.rec, parkKey) {
		return
	}
	_, mark, ok := splitParked(w.rec)
	if !ok {
		return
	}
	lane, seg, off, end := w.lane, w.seg, w.off, w.end
	key := parkRange{Lane: lane, Before: mark.Before}
	g := groups[key]
	if g == nil {
		g = &parkGroup{lane: lane, before: mark.Before}
		groups[key] = g
	}
	if mark.N == 0 {
		g.first, g.firstSeg, g.firstOff = true, seg, off
	}
	if mark.N == mark.Of-1 {
		g.last = true
	}
	g.lastSeg, g.lastEnd = seg, end
}

// unfinishedParks turns the copies of parks that no position line records into rules: a complete
// group finishes its originals; a group whose first copy is there but not its last (the park
// failed or the process died during it) is dropped, and its originals stay.
func unfinishedParks(l *wal.Log, groups map[parkRange]*parkGroup, known []parkRule) []parkRule {
	var out []parkRule
	for key, g := range groups {
		var r parkRule
		switch {
		case g.last:
			r = parkRule{lane: g.lane, durable: key}
			r.beforeSeg, r.beforeOff, _ = l.Resolve(g.before)
		case g.first:
			from, before := l.Cursor(g.firstSeg, g.firstOff), l.Cursor(g.lastSeg, g.lastEnd)
			r = parkRule{lane: g.lane, fromSeg: g.firstSeg, fromOff: g.firstOff, beforeSeg: g.lastSeg,
				beforeOff: g.lastEnd, incomplete: true, durable: parkRange{Lane: g.lane, From: &from, Before: before}}
		default:
			continue // its start is behind the mark: a park some position line recorded
		}
		if !hasRule(known, r) && !hasRule(out, r) {
			out = append(out, r)
		}
	}
	return out
}

func hasRule(rules []parkRule, r parkRule) bool {
	for _, k := range rules {
		if k.lane == r.lane && k.beforeSeg == r.beforeSeg && k.beforeOff == r.beforeOff && k.fromSeg == r.fromSeg && k.fromOff == r.fromOff {
			return true
		}
	}
	return false
}
