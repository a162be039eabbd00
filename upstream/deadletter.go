package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
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

// ReadDeadLetters returns the records of a dead-letter file in order; lines that are not dead
// letters (a torn last line) are skipped.
func ReadDeadLetters(path string) ([]DeadLetter, error) {
	f, err := readDeadLetterFile(path)
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	for _, d := range f.letters {
		if d != nil {
			out = append(out, *d)
		}
	}
	return out, nil
}

// ResendOptions says where and what ResendDeadLetters sends.
type ResendOptions struct {
	To        *url.URL              // the UCS base URL; the record's path and query are appended
	Where     func(DeadLetter) bool // selects records; nil selects all
	Header    http.Header           // replaces these headers of each record (an expired Authorization)
	DryRun    bool                  // select and report, send and change nothing
	Timeout   time.Duration         // per record; <= 0 means 10s
	Transport http.RoundTripper     // nil means a pooled keep-alive transport
	TLS       *tls.Config           // for an https To with the default transport; nil: Go's defaults
	OnResult  func(ResendResult)    // called after each selected record; may be nil
}

// ResendResult is what became of one selected record.
type ResendResult struct {
	Letter DeadLetter
	Status int   // the UCS's answer, 0 when none (or in a dry run)
	Err    error // why there was no answer
}

// Accepted reports whether the UCS took the record (2xx): its line is removed.
func (r ResendResult) Accepted() bool { return r.Err == nil && r.Status >= 200 && r.Status < 300 }

// ResendReport counts a resend.
type ResendReport struct {
	Selected int // records chosen by Where
	Accepted int // answered 2xx and removed from the file
	Kept     int // lines left in the file
}

// ResendDeadLetters re-sends the selected records of a dead-letter file, each with its own
// method, path, query and headers, and removes the lines the UCS accepted (2xx) by an atomic
// rewrite: a temporary file in the same directory, fsynced, renamed over the file, then the
// directory fsynced. A crash at any point leaves either the old file or the new one, never a mix.
// The caller must make sure nothing appends to the file meanwhile (see LockSpoolDir).
func ResendDeadLetters(ctx context.Context, path string, opts ResendOptions) (*ResendReport, error) {
	if opts.To == nil && !opts.DryRun {
		return nil, errors.New("resend: a base URL to send to is needed")
	}
	f, err := readDeadLetterFile(path)
	if err != nil {
		return nil, err
	}
	var fwd *Forwarder
	if !opts.DryRun {
		if fwd, err = NewForwarder(ForwardOptions{URLs: []*url.URL{opts.To}, Timeout: opts.Timeout, Transport: opts.Transport, TLS: opts.TLS}); err != nil {
			return nil, err
		}
		defer fwd.CloseIdleConnections()
	}
	rep := &ResendReport{}
	var kept []byte
	for i, line := range f.lines {
		d := f.letters[i]
		if d == nil || (opts.Where != nil && !opts.Where(*d)) {
			kept = append(kept, line...)
			continue
		}
		rep.Selected++
		res := ResendResult{Letter: *d}
		if !opts.DryRun {
			res.Status, res.Err = resendOne(ctx, fwd, *d, opts.Header)
		}
		if opts.OnResult != nil {
			opts.OnResult(res)
		}
		if res.Accepted() {
			rep.Accepted++
			continue
		}
		kept = append(kept, line...)
	}
	rep.Kept = len(f.lines) - rep.Accepted
	if rep.Accepted == 0 {
		return rep, nil
	}
	return rep, WriteFileAtomic(path, kept)
}

func resendOne(ctx context.Context, fwd *Forwarder, d DeadLetter, override http.Header) (int, error) {
	o, err := decodeSpoolRecord(d.Record)
	if err != nil {
		return 0, err
	}
	for k, v := range override {
		o.header[http.CanonicalHeaderKey(k)] = v
	}
	resp, err := fwd.send(ctx, o)
	var tooLarge *ResponseTooLargeError
	var unavailable *UnavailableError
	switch {
	case err == nil:
		return resp.Status, nil
	case errors.As(err, &tooLarge):
		return tooLarge.Status, nil
	case errors.As(err, &unavailable) && unavailable.Status != 0:
		return unavailable.Status, nil
	default:
		return 0, err
	}
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
