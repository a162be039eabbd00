package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// DeadLetter is one line of a dead-letter file, as the replay wrote it.
type DeadLetter struct {
	Line     int             `json:"-"` // 1-based line number in the file
	FailedAt string          `json:"failed_at"`
	Status   int             `json:"status"`
	Attempts int             `json:"attempts"`
	Statuses []int           `json:"statuses"`
	Response json.RawMessage `json:"response"`
	Record   json.RawMessage `json:"record"`
}

// Message is the UCS's reason: the "message" of a Context Services error body, else the answer
// as text.
func (d DeadLetter) Message() string {
	var body struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(d.Response, &body) == nil && body.Message != "" {
		return body.Message
	}
	var s string
	if json.Unmarshal(d.Response, &s) == nil {
		return s
	}
	return string(d.Response)
}

// Request is the spooled request the line holds: method, path, query, headers and body.
func (d DeadLetter) Request() (method, path, query string, header http.Header, body []byte, err error) {
	o, err := decodeSpoolRecord(d.Record)
	return o.method, o.path, o.rawQuery, o.header, o.body, err
}

// deadLetterFile is a dead-letter file read whole: its lines (with their '\n') and what they hold.
type deadLetterFile struct {
	lines   [][]byte
	letters []*DeadLetter // nil where a line is not a dead letter (kept as it is)
}

func readDeadLetterFile(path string) (*deadLetterFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := &deadLetterFile{}
	for n := 1; len(data) > 0; n++ {
		i := bytes.IndexByte(data, '\n')
		line := data
		if i >= 0 {
			line = data[:i+1]
		}
		data = data[len(line):]
		f.lines = append(f.lines, line)
		var d DeadLetter
		if json.Unmarshal(bytes.TrimSuffix(line, []byte("\n")), &d) == nil && len(d.Record) > 0 {
			d.Line = n
			f.letters = append(f.letters, &d)
		} else {
			f.letters = append(f.letters, nil)
		}
	}
	return f, nil
}

// ReadDeadLetters returns the records of a dead-letter file in order, and the number of lines
// that are not dead letters (garbage, a blank or torn line), which are skipped.
func ReadDeadLetters(path string) (letters []DeadLetter, unreadable int, err error) {
	f, err := readDeadLetterFile(path)
	if err != nil {
		return nil, 0, err
	}
	for _, d := range f.letters {
		if d != nil {
			letters = append(letters, *d)
		} else {
			unreadable++
		}
	}
	return letters, unreadable, nil
}

// DeadLetterFile is one file of a dead letter and what it holds.
type DeadLetterFile struct {
	Path       string
	Letters    []DeadLetter
	Unreadable int // lines that are not dead letters
}

// ReadDeadLetterLog reads every file of the dead letter whose active file is path: the rotated
// ones (past the log's max size), oldest first, then path itself. A missing active file reads as
// empty. What `spool status` counts and what `dead-letter list` prints both come from here, so
// they agree.
func ReadDeadLetterLog(path string) ([]DeadLetterFile, error) {
	paths, err := wal.Files(path)
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetterFile, 0, len(paths))
	for _, p := range paths {
		letters, unreadable, err := ReadDeadLetters(p)
		if errors.Is(err, fs.ErrNotExist) && p == path {
			err = nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, DeadLetterFile{Path: p, Letters: letters, Unreadable: unreadable})
	}
	return out, nil
}

// Lane is the service id the record was spooled under ("" for a record written before lanes).
func (d DeadLetter) Lane() string { return recordLane(d.Record) }

// Exception is the "exception" of the UCS's Context Services error body, "" when it has none.
func (d DeadLetter) Exception() string { return exceptionOf(d.Response) }

// exceptionOf is the "exception" of a Context Services error body, "" for any other.
func exceptionOf(body []byte) string {
	var answer struct {
		Exception string `json:"exception"`
	}
	_ = json.Unmarshal(body, &answer)
	return answer.Exception
}

// ResendOptions says where and what ResendDeadLetters sends.
type ResendOptions struct {
	To        *url.URL              // the UCS base URL; the record's path and query are appended
	Forwarder *Forwarder            // sends instead of To when set (a running spool's own)
	Where     func(DeadLetter) bool // selects records; nil selects all
	Header    http.Header           // replaces these headers of each record (an expired Authorization)
	DryRun    bool                  // select and report, send and change nothing
	Timeout   time.Duration         // per record; <= 0 means 10s
	Transport http.RoundTripper     // nil means a pooled keep-alive transport
	TLS       *tls.Config           // for an https To with the default transport; nil: Go's defaults
	OnResult  func(ResendResult)    // called after each selected record; may be nil

	// SaveEvery and SaveInterval bound the work a crash loses: the file is rewritten after this
	// many handled lines (<= 0 means DefaultSaveEvery), and at the first line handled once
	// SaveInterval has passed since the last rewrite (<= 0 means DefaultSaveInterval).
	SaveEvery    int
	SaveInterval time.Duration
	// MaxUnavailable stops the resend after this many unavailable answers in a row (no answer,
	// a timeout, 502, 503, 504): the UCS is away, and trying every other line would only take
	// time. <= 0 means DefaultMaxUnavailable.
	MaxUnavailable int
	// Edit changes the file: it calls edit with the file's current content and stores what edit
	// returns atomically. nil reads path and rewrites it with WriteFileAtomic; a running spool
	// passes its own (Spool.EditDeadLetter), which serialises the rewrite with its appends.
	Edit func(edit func(old []byte) ([]byte, error)) error
}

// Defaults of ResendOptions.
const (
	DefaultSaveEvery      = 100
	DefaultSaveInterval   = 5 * time.Second
	DefaultMaxUnavailable = 10
)

// ResendOutcome is what became of one resent record.
type ResendOutcome string

// The outcomes of a resent record. Only an accepted record leaves the file; a refused one stays
// with its record updated (failed_at, status, attempts, statuses, response).
const (
	ResendAccepted    ResendOutcome = "accepted"    // 2xx: removed
	ResendRefused     ResendOutcome = "refused"     // another answer: kept, updated
	ResendUnavailable ResendOutcome = "unavailable" // no answer, a timeout, 502/503/504: kept as it was
	ResendFailed      ResendOutcome = "failed"      // the line cannot be sent (its record does not decode): kept
	ResendDryRun      ResendOutcome = "dry_run"     // selected, not sent
)

// ResendResult is what became of one selected record.
type ResendResult struct {
	Letter  DeadLetter
	Outcome ResendOutcome
	Status  int    // the UCS's answer, 0 when none (or in a dry run)
	Message string // the UCS's reason for a refusal (see DeadLetter.Message)
	// Exception is the "exception" of the UCS's Context Services error body of a refusal.
	Exception string
	Err       error // why there was no answer

	body []byte // the answer's body, for the updated line
}

// ResendReport counts a resend.
type ResendReport struct {
	Selected    int    `json:"selected"`    // records chosen by Where
	Accepted    int    `json:"accepted"`    // answered 2xx and removed from the file
	Refused     int    `json:"refused"`     // answered otherwise: kept, their records updated
	Unavailable int    `json:"unavailable"` // no answer (or 502/503/504): kept
	Failed      int    `json:"failed"`      // could not be sent: kept
	NotTried    int    `json:"not_tried"`   // selected but not sent, the resend having stopped
	Kept        int    `json:"kept"`        // lines left in the file
	Saves       int    `json:"saves"`       // rewrites of the file
	Stopped     string `json:"stopped,omitempty"`
	// Stopped says why the resend ended before the last selected line: StopInterrupted or
	// StopUnreachable; "" when it went through.
}

// Why a resend stopped early (ResendReport.Stopped).
const (
	StopInterrupted = "interrupted"
	StopUnreachable = "unreachable"
)

// ErrResendRunning is returned while another resend of the same dead letter is in progress.
var ErrResendRunning = errors.New("a resend of this dead letter is already running")

// ResendDeadLetters re-sends the selected records of a dead-letter file, one at a time, each with
// its own method, path, query and headers. The lines the UCS accepts (2xx) are removed, and the
// lines it refuses again get their record updated with the new answer, by atomic rewrites
// (opts.Edit) done as it goes: at least every SaveEvery lines or SaveInterval, so a crash loses
// the outcome of at most that batch, whose events are then sent again by the next resend.
//
// It stops early, saving what it did, when ctx is done (the request in flight still finishes: it
// is sent with ctx's values but not its cancellation) or after MaxUnavailable unavailable answers
// in a row. Lines appended to the file meanwhile (by a running spool) are left alone.
func ResendDeadLetters(ctx context.Context, path string, opts ResendOptions) (*ResendReport, error) {
	if opts.To == nil && opts.Forwarder == nil && !opts.DryRun {
		return nil, errors.New("resend: a base URL to send to is needed")
	}
	if opts.SaveEvery <= 0 {
		opts.SaveEvery = DefaultSaveEvery
	}
	if opts.SaveInterval <= 0 {
		opts.SaveInterval = DefaultSaveInterval
	}
	if opts.MaxUnavailable <= 0 {
		opts.MaxUnavailable = DefaultMaxUnavailable
	}
	if opts.Edit == nil {
		opts.Edit = func(edit func([]byte) ([]byte, error)) error { return editFile(path, edit) }
	}
	f, err := readDeadLetterFile(path)
	if err != nil {
		return nil, err
	}
	fwd := opts.Forwarder
	if fwd == nil && !opts.DryRun {
		if fwd, err = NewForwarder(ForwardOptions{URLs: []*url.URL{opts.To}, Timeout: opts.Timeout, Transport: opts.Transport, TLS: opts.TLS}); err != nil {
			return nil, err
		}
		defer fwd.CloseIdleConnections()
	}
	rep := &ResendReport{}
	var pending lineEdits
	lastSave := time.Now()
	save := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := opts.Edit(pending.apply); err != nil {
			return err
		}
		pending, lastSave = nil, time.Now()
		rep.Saves++
		return nil
	}
	inARow := 0
	// Requests finish when the resend is stopped: an interrupted send leaves the operator not
	// knowing whether the UCS has the event.
	sendCtx := context.WithoutCancel(ctx)
	for i, line := range f.lines {
		d := f.letters[i]
		if d == nil || (opts.Where != nil && !opts.Where(*d)) {
			continue
		}
		rep.Selected++
		if rep.Stopped != "" {
			rep.NotTried++
			continue
		}
		if ctx.Err() != nil {
			rep.Stopped = StopInterrupted
			rep.NotTried++
			continue
		}
		res := ResendResult{Letter: *d, Outcome: ResendDryRun}
		if !opts.DryRun {
			res = resendOne(sendCtx, fwd, *d, opts.Header)
		}
		switch res.Outcome {
		case ResendAccepted:
			rep.Accepted++
			pending = append(pending, lineEdit{old: line})
		case ResendRefused:
			rep.Refused++
			pending = append(pending, lineEdit{old: line, new: d.updated(res, time.Now())})
		case ResendUnavailable:
			rep.Unavailable++
		case ResendFailed:
			rep.Failed++
		}
		if res.Outcome == ResendUnavailable {
			inARow++
		} else {
			inARow = 0
		}
		if opts.OnResult != nil {
			opts.OnResult(res)
		}
		if inARow >= opts.MaxUnavailable {
			rep.Stopped = StopUnreachable
		}
		if len(pending) >= opts.SaveEvery || time.Since(lastSave) >= opts.SaveInterval {
			if err := save(); err != nil {
				return rep, err
			}
		}
	}
	if err := save(); err != nil {
		return rep, err
	}
	rep.Kept = len(f.lines) - rep.Accepted
	return rep, nil
}

// lineEdit replaces one line of a dead-letter file (its bytes with '\n' as read) with new; a nil
// new removes it.
type lineEdit struct {
	old, new []byte
}

// lineEdits are the changes a resend has not yet written.
type lineEdits []lineEdit

// apply makes the edits on the current content of the file, finding each line by its bytes: the
// file may have grown since it was read (a running spool appends), and earlier saves removed
// lines before it, so positions move but a line's bytes do not. Identical lines are matched one
// edit each.
func (es lineEdits) apply(old []byte) ([]byte, error) {
	todo := make(map[string][]lineEdit, len(es))
	for _, e := range es {
		todo[string(e.old)] = append(todo[string(e.old)], e)
	}
	out := make([]byte, 0, len(old))
	for len(old) > 0 {
		i := bytes.IndexByte(old, '\n')
		line := old
		if i >= 0 {
			line = old[:i+1]
		}
		old = old[len(line):]
		if q := todo[string(line)]; len(q) > 0 {
			todo[string(line)] = q[1:]
			out = append(out, q[0].new...)
			continue
		}
		out = append(out, line...)
	}
	return out, nil
}

// editFile applies edit to the file at path and stores the result atomically.
func editFile(path string, edit func([]byte) ([]byte, error)) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b, err := edit(old)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b)
}

// updated is d's line after the UCS refused its record again: the new time, status and answer,
// one more attempt. The record itself is unchanged.
func (d DeadLetter) updated(r ResendResult, now time.Time) []byte {
	body := r.body
	if !json.Valid(body) {
		body, _ = json.Marshal(string(body))
	} else {
		var compact bytes.Buffer
		_ = json.Compact(&compact, body) // valid, so it cannot fail; compact keeps it one line
		body = compact.Bytes()
	}
	u := d
	u.FailedAt = now.UTC().Format(receivedAtLayout)
	u.Status = r.Status
	u.Attempts++
	u.Statuses = append(append([]int(nil), d.Statuses...), r.Status)
	u.Response = body
	// The record goes back as it was: no HTML escaping added to its strings.
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(u) // every field is valid JSON already; Encode ends the line with '\n'
	return line.Bytes()
}

// resendOne sends d's record once and says what became of it.
func resendOne(ctx context.Context, fwd *Forwarder, d DeadLetter, override http.Header) ResendResult {
	res := ResendResult{Letter: d}
	o, err := decodeSpoolRecord(d.Record)
	if err != nil {
		res.Outcome, res.Err = ResendFailed, err
		return res
	}
	for k, v := range override {
		o.header[http.CanonicalHeaderKey(k)] = v
	}
	resp, err := fwd.send(ctx, o)
	var tooLarge *ResponseTooLargeError
	var unavailable *UnavailableError
	switch {
	case err == nil:
		res.Status, res.body = resp.Status, resp.Body
	case errors.As(err, &tooLarge):
		res.Status, res.body = tooLarge.Status, []byte(strconv.Quote(tooLarge.Error()))
	case errors.As(err, &unavailable):
		res.Outcome, res.Status, res.Err = ResendUnavailable, unavailable.Status, err
		return res
	default:
		res.Outcome, res.Err = ResendUnavailable, err
		return res
	}
	if res.Status >= 200 && res.Status < 300 {
		res.Outcome = ResendAccepted
		return res
	}
	res.Outcome = ResendRefused
	answer := DeadLetter{Response: res.body}
	res.Message, res.Exception = answer.Message(), answer.Exception()
	return res
}

// LockDeadLetter takes the lock of a dead-letter file that is not a spool's own (a journal replay's:
// <path>.lock), and returns its release. A journal replay holds it while it appends, and a resend
// from the files takes it before it rewrites: the rewrite replaces the file, and the replay's later
// appends would go to the replaced one, lost.
func LockDeadLetter(path string) (release func() error, err error) {
	lock, err := wal.LockDir(path + ".lock")
	if errors.Is(err, ErrDirLocked) {
		return nil, fmt.Errorf("%s is being written: a journal replay appends to it (its lock %s.lock is held); "+
			"wait for it to end, or resend a copy with --file-only: %w", path, path, err)
	}
	if err != nil {
		return nil, &StorageError{Op: "lock", Path: path + ".lock", Err: err}
	}
	return lock.Close, nil
}

// LockSpoolDir takes the spool directory's lock, as the Caddy that owns the spool does, and
// returns its release. It fails while a Caddy (or another tool) holds it, so the dead letter is not
// rewritten under a writer, and no Caddy can start on the spool while the lock is held.
func LockSpoolDir(dir string) (release func() error, err error) {
	lock, err := wal.LockDir(SpoolPath(dir, SpoolLock))
	if err != nil {
		return nil, lockError(dir, err)
	}
	return lock.Close, nil
}
