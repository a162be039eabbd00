package wal

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"go.uber.org/zap"
)

// A Reader reads a Log back in order. A position is a segment and an offset in it; it is made
// durable as a Cursor, which names the file in a way that survives the rotation of the active file
// (see Log.Cursor).

// readChunk is how much a reader asks for at once; a longer record grows the buffer to fit, up to
// MaxLine.
const readChunk = 256 << 10

// MaxLine bounds a line a Reader loads: a longer line is damage or something written by hand.
// Readers do not load it: they return its first bytes and its length (RecordLen, Long) and skip it.
const MaxLine = 64 << 20

// longPrefix is how much of a line over MaxLine is kept: enough to recognise it.
const longPrefix = 4 << 10

// Cursor is a durable reader position, stored as JSON by whoever keeps positions. File names a
// rotated file; when the position is in the active file, File is empty and After holds the newest rotated name at the time, so the position
// still resolves after the active file is rotated: it is then the oldest rotated file named after
// After (rotated names only grow), or the active file if there is none.
type Cursor struct {
	File   string `json:"file,omitempty"`
	After  string `json:"after,omitempty"`
	Offset int64  `json:"offset"`
}

// Reader returns the complete records of a Log in order, across rotations. It is not safe
// for concurrent use; the log may be appended to concurrently.
type Reader struct {
	l      *Log
	seg    *Segment
	off    int64  // file offset of buf[0]
	buf    []byte // bytes read from seg at off, not yet returned
	oneOff bool   // a record was returned from buf; buf[0] is the start of the next one
	long   int64  // the length of the line last returned when only its prefix was (see MaxLine); else 0
	prefix []byte // that prefix
	f      File   // seg's file, kept open while the reader is in seg (a rotation renames it, the
	// descriptor stays valid); nil until first needed
	shared bool // f is the log's held file (OpenReadOnlyHeld): not the reader's to close
}

// Close releases the reader's open file.
func (r *Reader) Close() {
	if r.f != nil && !r.shared {
		_ = r.f.Close()
	}
	r.f, r.shared = nil, false
}

// Cursor returns the durable form of position (seg, off).
func (l *Log) Cursor(seg *Segment, off int64) Cursor {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	if seg.active {
		return Cursor{After: l.newest, Offset: off}
	}
	return Cursor{File: seg.name, Offset: off}
}

// Resolve finds the segment a durable cursor points into. ok is false when the cursor names a
// rotated file that is gone; the position is then the start of the next file.
func (l *Log) Resolve(c Cursor) (seg *Segment, off int64, ok bool) {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	for _, s := range l.segs {
		switch {
		case c.File != "" && !s.active && s.name == c.File:
			return s, c.Offset, true
		case c.File != "" && (s.active || s.name > c.File):
			return s, 0, false
		case c.File == "" && (s.active || s.name > c.After):
			return s, c.Offset, true
		}
	}
	panic("unreachable: the active segment is always listed")
}

// First returns the oldest segment.
func (l *Log) First() *Segment {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	return l.segs[0]
}

// RemoveBefore deletes the rotated files older than seg, which a reader has finished with. A
// failed removal is logged and retried at the next call: only disk space is at stake.
func (l *Log) RemoveBefore(seg *Segment) {
	l.segMu.Lock()
	i := slices.Index(l.segs, seg)
	var names []string
	for _, s := range l.segs[:max(0, i)] {
		names = append(names, s.name)
	}
	l.segMu.Unlock()
	for _, name := range names {
		if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.logger.Warn("removing a finished log file failed", zap.String("path", name), zap.Error(err))
			continue
		}
		l.segMu.Lock()
		l.segs = slices.DeleteFunc(l.segs, func(s *Segment) bool { return !s.active && s.name == name })
		l.segMu.Unlock()
	}
}

// NewReader returns a reader at position (seg, off).
func (l *Log) NewReader(seg *Segment, off int64) *Reader {
	return &Reader{l: l, seg: seg, off: off}
}

// Next returns the next complete record without its '\n' and the position just past it. ok is false
// when no complete record is available yet. rec is valid until the next call.
func (r *Reader) Next() (rec []byte, seg *Segment, end int64, ok bool, err error) {
	if r.oneOff {
		// Drop the record returned last time.
		i := bytes.IndexByte(r.buf, '\n')
		r.off += int64(i + 1)
		r.buf = r.buf[i+1:]
		r.oneOff = false
	}
	r.long = 0
	for {
		if i := bytes.IndexByte(r.buf, '\n'); i >= 0 {
			r.oneOff = true
			return r.buf[:i], r.seg, r.off + int64(i+1), true, nil
		}
		if len(r.buf) > MaxLine {
			return r.skipLong()
		}
		n, more, err := r.fill()
		if err != nil {
			return nil, nil, 0, false, err
		}
		if n > 0 {
			continue
		}
		if !more {
			return nil, nil, 0, false, nil
		}
	}
}

// Long reports whether the record Next returned last was a line longer than MaxLine, of which
// only the first bytes were returned.
func (r *Reader) Long() bool { return r.long > 0 }

// RecordLen is the length of the record Next returned last, rec: its full length when only its
// prefix was returned.
func (r *Reader) RecordLen(rec []byte) int64 {
	if r.long > 0 {
		return r.long
	}
	return int64(len(rec))
}

// skipLong passes over the line starting at buf[0], longer than MaxLine, reading it a chunk
// at a time into the same buffer: it returns the line's first longPrefix bytes, and r.long is
// its length. A line the active file does not complete yet is not returned (ok is false).
func (r *Reader) skipLong() (rec []byte, seg *Segment, end int64, ok bool, err error) {
	start := r.off
	r.prefix = append(r.prefix[:0], r.buf[:longPrefix]...)
	pos := r.off + int64(len(r.buf))
	chunk := r.buf[:readChunk]
	for {
		r.l.segMu.Lock()
		limit, active := r.seg.size, r.seg.active
		r.l.segMu.Unlock()
		want := int64(len(chunk))
		if limit >= 0 {
			want = min(want, limit-pos)
		}
		n := 0
		if want > 0 {
			n, err = r.f.ReadAt(chunk[:want], pos)
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, nil, 0, false, err
			}
		}
		if i := bytes.IndexByte(chunk[:n], '\n'); i >= 0 {
			end = pos + int64(i) + 1
			rest := append(make([]byte, 0, readChunk), chunk[i+1:n]...) // drop the large buffer
			r.buf, r.off, r.oneOff = rest, end, false
			r.long = end - start - 1
			r.l.logger.Warn("log line is longer than the bound; skipped without reading it",
				zap.String("path", r.seg.name), zap.Int64("offset", start), zap.Int64("bytes", r.long),
				zap.Int("bound", MaxLine))
			return r.prefix, r.seg, end, true, nil
		}
		if n == 0 {
			// The end of what there is: the active file has not completed the line yet, or a
			// rotated one ends inside it; fill goes on from the line's start.
			r.buf = r.buf[:0]
			if active {
				return nil, nil, 0, false, nil
			}
			r.l.logger.Warn("log file ends inside a line longer than the bound; skipping it",
				zap.String("path", r.seg.name), zap.Int64("offset", start))
			r.buf = make([]byte, 0, readChunk)
			r.off = pos
			return r.Next()
		}
		pos += int64(n)
	}
}

// Pos is the position of the next record Next will return.
func (r *Reader) Pos() (*Segment, int64) {
	if r.oneOff {
		return r.seg, r.off + int64(bytes.IndexByte(r.buf, '\n')+1)
	}
	return r.seg, r.off
}

// fill reads more of the current segment after buf, or moves to the next segment when the current
// one is finished. n is the number of bytes read; more reports whether calling again may progress.
func (r *Reader) fill() (n int, more bool, err error) {
	l := r.l
	l.segMu.Lock()
	name, limit, active, held := r.seg.name, r.seg.size, r.seg.active, r.seg.held
	var next *Segment
	if i := slices.Index(l.segs, r.seg); i >= 0 && i+1 < len(l.segs) {
		next = l.segs[i+1]
	}
	from := r.off + int64(len(r.buf))
	if r.f == nil && held != nil {
		r.f, r.shared = held, true
	}
	if r.f == nil && (!active || from < limit) {
		// Opened under segMu: a rotation renames under it too, so the name is this segment's file.
		// It stays open while the reader is in this segment: one open per file, not per read.
		r.f, err = l.fs.OpenFile(filepath.Join(l.dir, name), os.O_RDONLY, 0)
	}
	l.segMu.Unlock()
	if r.f == nil && err == nil {
		return 0, false, nil // the active file has nothing new
	}
	if err != nil {
		r.f = nil
		if active && errors.Is(err, fs.ErrNotExist) {
			return 0, false, nil // mid-rotation: the new active file is not created yet
		}
		return 0, false, err
	}
	if active && from >= limit {
		return 0, false, nil
	}
	f := r.f
	want := readChunk
	if len(r.buf) >= readChunk {
		want = len(r.buf) // a long record: double the window each time
	}
	want = min(want, MaxLine+1-len(r.buf)) // past the bound, next skips the line
	if limit >= 0 {
		want = int(min(int64(want), limit-from))
	}
	if cap(r.buf)-len(r.buf) < want {
		r.buf = slices.Grow(r.buf, want)
	}
	got, err := f.ReadAt(r.buf[len(r.buf):len(r.buf)+want], from)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, false, err
	}
	r.buf = r.buf[:len(r.buf)+got]
	if got > 0 {
		return got, true, nil
	}
	if active || next == nil {
		return 0, false, nil
	}
	if len(r.buf) > 0 {
		// A rotated file ends inside a record only if something outside the log changed it.
		l.logger.Warn("log file ends inside a record; skipping its last bytes",
			zap.String("path", name), zap.Int("bytes", len(r.buf)))
	}
	r.Close()
	r.seg, r.off, r.buf = next, 0, r.buf[:0]
	return 0, true, nil
}

// ReadRecord reads the record at [off, end) of seg again, without its '\n', for a reader that keeps
// only part of a large backlog in memory.
func (l *Log) ReadRecord(seg *Segment, off, end int64) ([]byte, error) {
	var f File
	if seg.held != nil {
		f = seg.held
	} else {
		l.segMu.Lock()
		// Opened under segMu: a rotation renames under it too, so the name is this segment's file.
		var err error
		f, err = l.fs.OpenFile(filepath.Join(l.dir, seg.name), os.O_RDONLY, 0)
		l.segMu.Unlock()
		if err != nil {
			return nil, err
		}
		defer f.Close()
	}
	buf := make([]byte, end-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, err
	}
	if len(buf) == 0 || buf[len(buf)-1] != '\n' {
		return nil, errors.New("log record changed on disk")
	}
	return buf[:len(buf)-1], nil
}
