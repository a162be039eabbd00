package upstream

import (
	"time"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// replaySource is what a replay worker (scheduler.go) reads and where it keeps its durable
// position. The spool's is its record log and its cursor log (spoolSource); a journal replay's is
// the journal's files and a state file (journalSource, journalreplay.go). Everything else, the
// lanes, the replay rule, the backoff, the breaker and the dead letter, is the same code for both.
type replaySource interface {
	// lane returns a record's ordering key.
	lane(rec []byte) string
	// acceptedAt returns when the record was accepted; zero when it does not say.
	acceptedAt(rec []byte) time.Time
	// request decodes a record into the request to send; an error that wraps errUnreadableRecord
	// sends the record to the dead letter.
	request(rec []byte) (outbound, error)
	// deadRecord returns what a dead-letter line holds of rec: a spool record, which
	// `caddy ucs dead-letter resend` can send again.
	deadRecord(rec []byte) []byte
	// skip reports whether rec is left out of the replay: finished without being sent.
	skip(rec []byte) bool
	// lastPosition returns the last durable position; found is false when none was written.
	lastPosition() (pos spoolPosition, found bool, err error)
	// writePosition makes line (a spoolPosition) the durable position; mark is the file of its
	// low-water mark, before which every file is finished; covers are the records whose finish
	// it is the first to hold.
	writePosition(line []byte, mark *wal.Segment, covers []*pending) error
	// positionPath names where positions go, for log lines.
	positionPath() string
	// parks reports whether a lane holding the mark may be parked (its records copied to the
	// tail, park.go): only a log the replay owns can be appended to.
	parks() bool
	// finite reports whether the replay ends once every record there is now is finished, instead
	// of waiting for more.
	finite() bool
}

// spoolSource is the spool's: records written by appendSpoolRecord, positions appended to the
// cursor log, record files removed behind the mark.
type spoolSource struct{ s *Spool }

func (spoolSource) lane(rec []byte) string { return recordLane(rec) }

func (spoolSource) acceptedAt(rec []byte) time.Time {
	_, at := recordMeta(rec)
	return at
}

func (spoolSource) request(rec []byte) (outbound, error) { return decodeSpoolRecord(rec) }
func (spoolSource) deadRecord(rec []byte) []byte         { return rec }
func (spoolSource) skip([]byte) bool                     { return false }
func (src spoolSource) lastPosition() (spoolPosition, bool, error) {
	return lastPosition(src.s.cursors)
}

func (src spoolSource) writePosition(line []byte, mark *wal.Segment, _ []*pending) error {
	if err := src.s.cursors.Append(line); err != nil {
		return err
	}
	src.s.records.RemoveBefore(mark)
	return nil
}

func (src spoolSource) positionPath() string { return src.s.cursors.Path() }
func (spoolSource) parks() bool              { return true }
func (spoolSource) finite() bool             { return false }
