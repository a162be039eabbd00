package upstream

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// SpoolStatus is what a spool directory holds, read without taking the directory: it is safe while
// a Caddy owns the spool and appends to it (nothing is locked or written).
type SpoolStatus struct {
	Dir       string     `json:"dir"`
	Records   int        `json:"records"`             // events waiting for delivery
	Bytes     int64      `json:"bytes"`               // their bytes, with framing
	Corrupt   int        `json:"corrupt"`             // lines waiting that are not records (garbage, blank): the replay dead-letters them
	TooLong   int        `json:"too_long"`            // lines longer than MaxSpoolLine, skipped unread (counted in Corrupt too)
	Oldest    *time.Time `json:"oldest_accepted_at"`  // nil when empty
	Newest    *time.Time `json:"newest_accepted_at"`  // nil when empty
	OldestAge float64    `json:"oldest_age_seconds"`  // how far behind the upstream is; 0 when empty
	LaneCount int        `json:"lanes"`               // services with events waiting
	TopLanes  []LaneLoad `json:"top_lanes"`           // the lanes with the most events, most first
	DeadPath  string     `json:"dead_letter"`         // the dead-letter file counted
	Dead      int        `json:"dead_letter_records"` // its records, rotated files included
	// DeadUnreadable counts the dead letter's lines that are not records (garbage, a torn line).
	DeadUnreadable int `json:"dead_letter_unreadable"`
}

// LaneLoad is one service's share of a spool.
type LaneLoad struct {
	Lane    string    `json:"lane"`
	Records int       `json:"records"`
	Oldest  time.Time `json:"oldest_accepted_at"` // zero when none of its records says
}

// isRecord reports whether a line is a spool record: as the spool writes them, or one an older
// version wrote that still decodes.
func isRecord(line []byte) bool {
	if _, ok := fastLane(line); ok {
		return true
	}
	_, err := decodeSpoolRecord(line)
	return err == nil
}

// InspectSpool reads the spool in dir as the replay would resume it: the records after the
// durable position that are not finished. deadLetter is the dead-letter file to count ("" means
// <dir>/dead-letter.jsonl); top bounds TopLanes. Files renamed by a concurrent rotation make it read
// again, a few times.
func InspectSpool(dir, deadLetter string, top int, now time.Time) (*SpoolStatus, error) {
	if deadLetter == "" {
		deadLetter = SpoolPath(dir, SpoolDeadLetter)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, &fs.PathError{Op: "inspect", Path: dir, Err: errors.New("not a directory")}
	}
	var st *SpoolStatus
	var err error
	for range 10 {
		st, err = inspectOnce(dir, deadLetter, top, now)
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errRotatedMeanwhile) {
			break
		}
	}
	return st, err
}

// errRotatedMeanwhile is a reading that a rotation overtook: the file read as the active one was
// renamed while it was read, and records written to it after the listing may have been missed.
var errRotatedMeanwhile = errors.New("the spool rotated while it was read; try again")

func inspectOnce(dir, deadLetter string, top int, now time.Time) (*SpoolStatus, error) {
	st := &SpoolStatus{Dir: dir, DeadPath: deadLetter, TopLanes: []LaneLoad{}}
	recs, err := wal.OpenReadOnly(SpoolPath(dir, SpoolRecords))
	if err != nil {
		return nil, err
	}
	curs, err := wal.OpenReadOnly(SpoolPath(dir, SpoolCursor))
	if err != nil {
		return nil, err
	}
	pos, found, err := lastPosition(curs)
	if err != nil {
		return nil, err
	}
	seg, off := recs.First(), int64(0)
	if found {
		seg, off, _ = recs.Resolve(pos.Cursor)
	}
	start := resumePoint{seg: seg, off: off, done: finished(recs, pos.Done), rules: resolveRules(recs, pos.Moved)}
	var lanes map[string]*LaneLoad
	reset := func() {
		*st = SpoolStatus{Dir: dir, DeadPath: deadLetter, TopLanes: []LaneLoad{}}
		lanes = map[string]*LaneLoad{}
	}
	err = countWaiting(recs, &start, reset, func(w *waiting) {
		switch {
		case w.long:
			st.TooLong++
			st.Corrupt++
			return
		case !isRecord(w.rec):
			st.Corrupt++
			return
		}
		st.Records++
		st.Bytes += w.end - w.off
		l := lanes[w.lane]
		if l == nil {
			l = &LaneLoad{Lane: w.lane}
			lanes[w.lane] = l
		}
		l.Records++
		at := w.at
		if at.IsZero() {
			return // a record that does not say when it was accepted has no age
		}
		if st.Oldest == nil || at.Before(*st.Oldest) {
			st.Oldest = &at
		}
		if st.Newest == nil || at.After(*st.Newest) {
			st.Newest = &at
		}
		if l.Oldest.IsZero() || at.Before(l.Oldest) {
			l.Oldest = at
		}
	})
	if err != nil {
		return nil, err
	}
	if st.Oldest != nil {
		st.OldestAge = max(now.Sub(*st.Oldest), 0).Seconds()
	}
	st.LaneCount = len(lanes)
	for _, l := range lanes {
		st.TopLanes = append(st.TopLanes, *l)
	}
	slices.SortFunc(st.TopLanes, func(a, b LaneLoad) int {
		if a.Records != b.Records {
			return b.Records - a.Records
		}
		return strings.Compare(a.Lane, b.Lane)
	})
	st.TopLanes = st.TopLanes[:min(len(st.TopLanes), max(top, 0))]
	dead, err := ReadDeadLetterLog(deadLetter)
	if err != nil {
		return nil, err
	}
	for _, f := range dead {
		st.Dead += len(f.Letters)
		st.DeadUnreadable += f.Unreadable
	}
	if stale, err := recs.Stale(); err != nil {
		return nil, err
	} else if stale {
		return nil, errRotatedMeanwhile
	}
	return st, nil
}

// finished resolves the records a position line lists as finished after its mark; those whose
// file is gone are finished anyway.
func finished(l *wal.Log, cs []wal.Cursor) map[recordPos]bool {
	done := make(map[recordPos]bool, len(cs))
	for _, c := range cs {
		if seg, off, ok := l.Resolve(c); ok {
			done[recordPos{seg, off}] = true
		}
	}
	return done
}

// waiting is a record that a replay would send, as eachWaiting reads it.
type waiting struct {
	rec      []byte // valid until the next record is read; only the first bytes of a long line
	lane     string
	at       time.Time // when it was accepted; zero when the line does not say
	seg      *wal.Segment
	off, end int64 // its bytes in seg, end past its '\n'
	long     bool  // longer than MaxSpoolLine: not read, rec is its start
}

// eachWaiting calls fn with each record from r on that start does not count as finished: what a
// replay resuming there would send.
func eachWaiting(r *wal.Reader, start *resumePoint, fn func(w *waiting)) error {
	var w waiting
	for {
		rec, seg, end, ok, err := r.Next()
		if err != nil || !ok {
			return err
		}
		off := end - r.RecordLen(rec) - 1
		if start.done[recordPos{seg, off}] {
			continue
		}
		lane, at := recordMeta(rec)
		if len(start.rules) > 0 && movedBy(start.rules, lane, seg, off) {
			continue
		}
		w = waiting{rec: rec, lane: lane, at: at, seg: seg, off: off, end: end, long: r.Long()}
		fn(&w)
	}
}

// countWaiting calls reset, then fn with each record the replay would send from start. When it
// finds the copies of a park that no position line records, it adds the park's rule to start and
// reads again (see park.go).
func countWaiting(l *wal.Log, start *resumePoint, reset func(), fn func(w *waiting)) error {
	for {
		if reset != nil {
			reset()
		}
		groups := map[parkRange]*parkGroup{}
		r := l.NewReader(start.seg, start.off)
		err := eachWaiting(r, start, func(w *waiting) {
			noteParked(groups, w)
			fn(w)
		})
		r.Close()
		if err != nil {
			return err
		}
		extra := unfinishedParks(l, groups, start.rules)
		if len(extra) == 0 {
			return nil
		}
		start.rules = append(start.rules, extra...)
	}
}
