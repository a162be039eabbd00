package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// The replay rule, for one record and one attempt:
//   - 2xx: delivered.
//   - Unavailable (no answer, timeout, 502, 503, 504): the lane pauses with backoff and Retry-After;
//     an outage never sends a record to the dead letter.
//   - A definite rejection of this event, a 4xx or 5xx whose body is the Context Services error
//     shape {"message":…,"exception":…} (408 and 429 excepted): to the dead letter at once.
//   - Anything else (408, 429, an HTML 404 from a servlet container still deploying, a bare 500,
//     a redirect): retried like unavailability, but counted; after MaxAttempts such answers, or
//     MaxRetryAge after the first, the record goes to the dead letter with every status it got.

// outcome is how one attempt at a record ended.
type outcome int

const (
	closing      outcome = iota // the spool is closing; the record stays where it is
	delivered                   // the upstream answered 2xx
	deadLettered                // the record is in the dead letter
	retry                       // try again after the lane's backoff
	moved                       // copied to the tail by a park (park.go); the copy is sent
	skipped                     // left out by the replay's filters (a journal replay's --operation, …)
)

// retryState is what a record's earlier non-final answers were.
type retryState struct {
	count    int       // answers counted against MaxAttempts
	first    time.Time // the first of them, for MaxRetryAge
	statuses []int     // every status got, in order, for the dead-letter line
}

func (r retryState) clone() retryState {
	r.statuses = slices.Clip(r.statuses)
	return r
}

// attemptResult is one attempt's outcome, sent back to the worker.
type attemptResult struct {
	p           *pending
	how         outcome
	tries       retryState
	retryAfter  time.Duration
	unavailable bool // no answer, or 502/503/504: counts towards the breaker
	answered    bool // the upstream answered with something other than unavailability (any status)
	probe       bool
	panicked    *workerPanic // the attempt panicked; the worker restarts

	// What the exchange with the upstream was, for the concurrency limit: its round trip and
	// what Forwarder.send returned (status 0 and no error: nothing was sent).
	rtt    time.Duration
	status int
	err    error
}

// maxStatuses bounds the statuses a dead-letter line lists; the count says how many there were.
const maxStatuses = 32

// attempt sends one record once and decides what comes next. rec is nil when the record is not
// kept in memory: it is read again from its file.
func (s *Spool) attempt(p *pending, rec []byte, tries retryState, probe bool) attemptResult {
	r := attemptResult{p: p, tries: tries, probe: probe}
	if p.long {
		err := fmt.Errorf("%w: a line of %d bytes, longer than %d: only its first %d bytes are kept",
			errUnreadableRecord, p.end-p.off-1, MaxSpoolLine, len(rec))
		r.how = s.deadLetter(rec, 0, nil, err, r.tries)
		return r
	}
	if rec == nil {
		var err error
		if rec, err = s.records.ReadRecord(p.seg, p.off, p.end); err != nil {
			s.logger.Error("reading a spooled record failed; retrying", zap.String("dir", s.dir), zap.Error(err))
			r.how = retry
			return r
		}
	}
	o, err := s.src.request(rec)
	if err != nil {
		r.how = s.deadLetter(rec, 0, nil, err, r.tries)
		return r
	}
	start := time.Now()
	resp, err := s.fwd.Load().send(s.ctx, o)
	r.rtt, r.err = time.Since(start), err
	if resp != nil {
		r.status = resp.Status
	}
	if s.ctx.Err() != nil {
		r.err = s.ctx.Err()
		r.how = closing
		return r
	}
	var unavailable *UnavailableError
	var tooLarge *ResponseTooLargeError
	status, final := 0, false
	switch {
	case err == nil && resp.Status >= 200 && resp.Status < 300:
		r.how, r.answered = delivered, true
		return r
	case errors.As(err, &unavailable):
		s.logger.Debug("replay delivery failed; retrying", zap.String("dir", s.dir), zap.Error(err), TLSField(err))
		r.how, r.unavailable, r.retryAfter = retry, true, unavailable.RetryAfter
		return r
	case err == nil:
		status, final = resp.Status, finalRejection(resp)
		r.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	case errors.As(err, &tooLarge):
		status = tooLarge.Status // an answer, but not one that can be judged final
	default:
		s.logger.Debug("replay delivery failed; retrying", zap.String("dir", s.dir), zap.Error(err), TLSField(err))
		r.how = retry
		return r
	}
	r.answered = true
	now := s.now()
	t := &r.tries
	t.count++
	if t.first.IsZero() {
		t.first = now
	}
	if len(t.statuses) < maxStatuses {
		t.statuses = append(t.statuses, status)
	}
	pol := s.policy.Load()
	if final || t.count >= pol.MaxAttempts || now.Sub(t.first) >= pol.MaxRetryAge {
		r.how = s.deadLetter(rec, status, resp, err, *t)
		return r
	}
	s.logger.Debug("upstream answered a replayed event with a retryable failure; retrying",
		zap.String("dir", s.dir), zap.Int("status", status), zap.Int("attempt", t.count))
	r.how = retry
	return r
}

// finalRejection reports whether an answer rejects this event for good: a 4xx or 5xx (but 408 and
// 429, which ask to come back) whose body is the Context Services error shape, an object with a
// string "message" and a string "exception" (e.g. InvalidBusinessAttributeException). A servlet
// container's HTML 404 or a bare 500 is not the application speaking about this event.
func finalRejection(resp *Response) bool {
	if resp.Status < 400 || resp.Status == http.StatusRequestTimeout || resp.Status == http.StatusTooManyRequests {
		return false
	}
	var body struct {
		Message   *string `json:"message"`
		Exception *string `json:"exception"`
	}
	b := bytes.TrimSpace(resp.Body)
	return len(b) > 0 && b[0] == '{' && json.Unmarshal(b, &body) == nil && body.Message != nil && body.Exception != nil
}

// deadLetter appends {"failed_at","status","attempts","statuses","response","record"} for a
// rejected record, fsynced. response is the upstream's answer body (embedded when it is JSON, else
// a string), or the reason the record could not be sent. It returns deadLettered once the line is
// on disk, and retry if it is not: the record then stays in its lane and is tried again.
func (s *Spool) deadLetter(rec []byte, status int, resp *Response, cause error, tries retryState) outcome {
	line := make([]byte, 0, len(rec)+256)
	line = append(line, `{"failed_at":"`...)
	line = time.Now().UTC().AppendFormat(line, receivedAtLayout)
	line = append(line, `","status":`...)
	line = strconv.AppendInt(line, int64(status), 10)
	line = append(line, `,"attempts":`...)
	line = strconv.AppendInt(line, int64(max(tries.count, 1)), 10)
	line = append(line, `,"statuses":[`...)
	for i, st := range tries.statuses {
		if i > 0 {
			line = append(line, ',')
		}
		line = strconv.AppendInt(line, int64(st), 10)
	}
	line = append(line, `],"response":`...)
	switch {
	case resp != nil && len(resp.Body) > 0 && json.Valid(resp.Body):
		var compact bytes.Buffer
		_ = json.Compact(&compact, resp.Body) // valid, so it cannot fail; compact keeps it one line
		line = append(line, compact.Bytes()...)
	case resp != nil:
		line = appendJSONString(line, string(resp.Body))
	default:
		line = appendJSONString(line, cause.Error())
	}
	line = append(line, `,"record":`...)
	dr := s.src.deadRecord(rec) // the spool record form, which dead-letter resend sends
	if json.Valid(dr) {
		line = append(line, dr...)
	} else {
		line = appendJSONString(line, string(dr))
	}
	line = append(line, '}')
	s.deadMu.Lock()
	err := s.dead.Append(line)
	s.deadMu.Unlock()
	if err != nil {
		s.logger.Error("writing the dead letter failed; the record stays in the spool",
			zap.String("path", s.deadPath), zap.Error(err))
		return retry
	}
	ev := summarizeRecord(dr)
	s.logger.Warn("upstream rejected a spooled event; moved to the dead letter",
		zap.String("method", ev.Method), zap.String("path", ev.path()), zap.String("service_id", ev.Lane),
		zap.Int("status", status), zap.String("exception", answerException(resp)),
		zap.Int("attempts", max(tries.count, 1)), zap.String("dead_letter", s.deadPath))
	s.logger.Debug("dead-lettered event", zap.ByteString("record", rec))
	return deadLettered
}

// recordSummary is what the dead-letter warning names of a record: never its body.
type recordSummary struct {
	Method     string `json:"method"`
	Path       string `json:"path"`
	PathBase64 []byte `json:"path_base64"`
	Lane       string `json:"lane"` // the service id
}

// path is the record's path, its bytes as a Go-quoted string when they are not valid UTF-8.
func (r recordSummary) path() string {
	if r.PathBase64 != nil {
		return strconv.Quote(string(r.PathBase64))
	}
	return r.Path
}

// summarizeRecord reads the method, path and service of a spool line; what it cannot read stays
// empty (an unreadable record is dead-lettered too).
func summarizeRecord(rec []byte) recordSummary {
	var r recordSummary
	_ = json.Unmarshal(rec, &r)
	return r
}

// answerException is the "exception" of a Context Services error answer, "" for any other.
func answerException(resp *Response) string {
	if resp == nil {
		return ""
	}
	return exceptionOf(resp.Body)
}

// backoff is the wait before retry number attempt: exponential from MinBackoff, capped at
// MaxBackoff, with the upper half jittered so that lanes and gateways do not retry in step; an
// upstream's Retry-After wins when it is longer. Any attempt count gives a wait within
// [MaxBackoff/2, MaxBackoff] once the doubling reaches the cap: the doubling stops there, so no
// count of failures, however long the outage, can overflow it.
func (s *Spool) backoff(attempt int, retryAfter time.Duration) time.Duration {
	p := s.policy.Load()
	d := p.MaxBackoff
	if attempt >= 1 {
		d = p.MinBackoff
		for n := 1; n < attempt && d < p.MaxBackoff; n++ {
			if d > p.MaxBackoff/2 {
				d = p.MaxBackoff // doubling would pass the cap (or overflow)
				break
			}
			d *= 2
		}
		d = min(d, p.MaxBackoff)
	}
	d = d/2 + rand.N(d/2+1)
	return max(d, retryAfter)
}

// spoolPosition is one line of the cursor log: the low-water mark, and the records after it that
// are finished too (delivered or dead-lettered out of order), each named by its start.
type spoolPosition struct {
	wal.Cursor
	Done  []wal.Cursor `json:"done,omitempty"`
	Moved []parkRange  `json:"moved,omitempty"` // records finished by parks (park.go)
}

// lastPosition returns the last position written to the cursor log: the last complete line of its
// active file or, when that is empty (just rotated), of the newest rotated one. found is false
// when no position was ever written.
func lastPosition(l *wal.Log) (pos spoolPosition, found bool, err error) {
	// The cursor log is small (it rotates at 1 MiB): LastRecord reads it whole.
	found, err = l.LastRecord(func(line []byte) bool {
		var p spoolPosition
		if json.Unmarshal(line, &p) != nil {
			return false
		}
		pos = p
		return true
	})
	if err != nil || !found {
		return spoolPosition{}, false, err
	}
	return pos, true, nil
}
