package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// run is the replay worker: it delivers the spooled records one at a time, in order.
func (s *Spool) run() {
	defer close(s.done)
	failures := 0 // consecutive failures of storage reads, for backoff
	for {
		rec, seg, end, ok, err := s.reader.next()
		if err != nil {
			failures++
			s.logger.Error("reading the spool failed; retrying", zap.String("dir", s.dir), zap.Error(err))
			if !s.sleep(s.backoff(failures, 0)) {
				return
			}
			continue
		}
		failures = 0
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-s.ctx.Done():
				return
			}
		}
		outcome := s.deliver(rec)
		if outcome == closing {
			return
		}
		s.ack(seg, end, len(rec)+1, outcome)
	}
}

// outcome is how the replay of one record ended.
type outcome int

const (
	closing      outcome = iota // the spool is closing; the record stays at the head of the spool
	delivered                   // the upstream answered 2xx
	deadLettered                // the upstream rejected it; it is in the dead letter
)

// deliver sends one record until the upstream takes it or rejects it (then it goes to the dead
// letter), or the spool closes.
func (s *Spool) deliver(rec []byte) outcome {
	o, decodeErr := decodeSpoolRecord(rec)
	for attempt := 1; ; attempt++ {
		var resp *Response
		var retryAfter time.Duration
		var err error
		if decodeErr != nil {
			err = decodeErr
		} else {
			resp, err = s.fwd.Load().send(s.ctx, o)
		}
		if s.ctx.Err() != nil {
			return closing
		}
		var unavailable *UnavailableError
		var tooLarge *ResponseTooLargeError
		status := 0
		switch {
		case err == nil && resp.Status >= 200 && resp.Status < 300:
			return delivered
		case errors.As(err, &unavailable):
			retryAfter = unavailable.RetryAfter
			s.logger.Debug("replay delivery failed; retrying", zap.String("dir", s.dir),
				zap.Int("attempt", attempt), zap.Error(err))
			if !s.sleep(s.backoff(attempt, retryAfter)) {
				return closing
			}
			continue
		case err == nil:
			status = resp.Status
		case errors.As(err, &tooLarge):
			status = tooLarge.Status
		}
		if s.deadLetter(rec, status, resp, err) {
			return deadLettered
		}
		if !s.sleep(s.backoff(attempt, 0)) {
			return closing
		}
	}
}

// deadLetter appends {"failed_at","status","response","record"} for a rejected record, fsynced.
// response is the upstream's answer body (embedded when it is JSON, else a string), or the reason
// the record could not be sent. It reports whether the line is on disk; if not, the record stays
// at the head of the spool and is tried again.
func (s *Spool) deadLetter(rec []byte, status int, resp *Response, cause error) bool {
	line := make([]byte, 0, len(rec)+256)
	line = append(line, `{"failed_at":"`...)
	line = time.Now().UTC().AppendFormat(line, receivedAtLayout)
	line = append(line, `","status":`...)
	line = strconv.AppendInt(line, int64(status), 10)
	line = append(line, `,"response":`...)
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
	if json.Valid(rec) {
		line = append(line, rec...)
	} else {
		line = appendJSONString(line, string(rec))
	}
	line = append(line, '}')
	if err := s.dead.Append(line); err != nil {
		s.logger.Error("writing the dead letter failed; the record stays in the spool",
			zap.String("path", s.dead.Path()), zap.Error(err))
		return false
	}
	s.logger.Warn("upstream rejected a spooled event; moved to the dead letter",
		zap.String("path", s.dead.Path()), zap.Int("status", status))
	s.logger.Debug("dead-lettered event", zap.ByteString("record", rec))
	return true
}

// ack makes the position after a finished record durable, removes the record files left behind and
// updates the depth. A failed cursor write is logged: the record is delivered, and only a crash
// before the next successful cursor write would send it (and those after it) again.
func (s *Spool) ack(seg *segment, end int64, size int, how outcome) {
	c, _ := json.Marshal(s.records.cursor(seg, end))
	if err := s.cursors.Append(c); err != nil {
		s.logger.Error("writing the spool cursor failed; a restart may resend delivered events",
			zap.String("path", s.cursors.Path()), zap.Error(err))
	} else {
		s.records.removeBefore(seg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.depth--
	s.depthBytes -= int64(size)
	if how == delivered {
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
	if s.onDepth != nil {
		s.onDepth(s.depth, s.depthBytes)
	}
	if s.depth == 0 {
		s.logger.Info("spool drained; delivering directly again", zap.String("dir", s.dir),
			zap.Int("replayed", s.outage.replayed),
			zap.Int("dead_lettered", s.outage.deadLettered),
			zap.Duration("outage", time.Since(s.outage.start)))
	}
}

// backoff is the wait before retry number attempt: exponential from MinBackoff, capped at
// MaxBackoff, with the upper half jittered so that several gateways do not retry in step; an
// upstream's Retry-After wins when it is longer.
func (s *Spool) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := s.maxBackoff
	if shift := attempt - 1; shift < 40 && s.minBackoff<<shift < s.maxBackoff {
		d = s.minBackoff << shift
	}
	d = d/2 + rand.N(d/2+1)
	return max(d, retryAfter)
}

// sleep waits d or until the spool closes; it reports whether the spool is still open.
func (s *Spool) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// lastCursor returns the last position written to the cursor log: the last complete line of its
// active file or, when that is empty (just rotated), of the newest rotated one. found is false
// when no position was ever written.
func lastCursor(l *Log) (c logCursor, found bool, err error) {
	rotated, err := l.rotatedFiles()
	if err != nil {
		return c, false, err
	}
	files := []string{l.Path()}
	for i := len(rotated) - 1; i >= 0; i-- {
		files = append(files, filepath.Join(l.dir, rotated[i]))
	}
	for _, path := range files {
		f, err := l.fs.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			return c, false, err
		}
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return c, false, err
		}
		// The cursor log is small (it rotates at 1 MiB): read it whole.
		buf := make([]byte, fi.Size())
		_, err = f.ReadAt(buf, 0)
		_ = f.Close()
		if err != nil {
			return c, false, err
		}
		lines := bytes.Split(bytes.TrimSuffix(buf, []byte("\n")), []byte("\n"))
		for i := len(lines) - 1; i >= 0; i-- {
			if json.Unmarshal(lines[i], &c) == nil {
				return c, true, nil
			}
		}
	}
	return logCursor{}, false, nil
}
