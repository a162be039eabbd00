package wal

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"go.uber.org/zap"
)

// OpenReadOnly describes the files of the log whose active file is path as a reader sees them,
// without opening it for writing: nothing is created, repaired or locked, so it is safe while
// another process owns the log. The active file counts as complete up to its size at the call.
// Only the reading methods apply (First, Resolve, NewReader, LastRecord, Stale, Cursor); the
// result has nothing to close.
func OpenReadOnly(path string) (*Log, error) {
	l := &Log{fs: OSFileSystem(), logger: zap.NewNop()}
	base := l.setPath(path)
	rotated, err := l.rotatedFiles()
	if err != nil {
		return nil, err
	}
	for _, name := range rotated {
		l.segs = append(l.segs, &Segment{name: name, size: -1, ord: uint64(len(l.segs))})
	}
	if n := len(rotated); n > 0 {
		l.newest = rotated[n-1]
	}
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	l.segs = append(l.segs, &Segment{name: base, active: true, size: size, ord: uint64(len(l.segs))})
	return l, nil
}

// OpenReadOnlyHeld is OpenReadOnly keeping every file it lists open until Release, for a long
// reader of a log another process appends to and rotates: records read again (ReadRecord) and the
// reading itself come from the files as they were at the call. The active file stays readable
// after the writer renamed it in a rotation (read by name, the new active file would give other
// records at the same offsets), and a rotated file stays readable after the writer's Keep deleted
// it (read by name, it would be gone). It costs one descriptor per file.
func OpenReadOnlyHeld(path string) (*Log, error) {
	for range 3 {
		l, err := OpenReadOnly(path)
		if err != nil {
			return nil, err
		}
		switch err := l.hold(path); {
		case err == nil:
			return l, nil
		case !errors.Is(err, errRotated):
			return nil, err
		}
	}
	return nil, errors.New("the log rotated three times while being opened")
}

// errRotated says a rotation or a deletion by Keep came between the listing and the opens.
var errRotated = errors.New("the log rotated while being opened")

// hold opens every listed file, checking that each is still the one listed.
func (l *Log) hold(path string) error {
	for _, seg := range l.segs {
		f, err := os.Open(filepath.Join(l.dir, seg.name))
		if errors.Is(err, fs.ErrNotExist) {
			if seg.active && len(l.segs) == 1 {
				continue // nothing written yet: nothing to hold
			}
			l.Release()
			return errRotated
		}
		if err != nil {
			l.Release()
			return err
		}
		seg.held = f
	}
	// A rotation between the listing and the opens would pair the old active file with the new
	// one's size, or the next rotated name with a file listed as active.
	again, err := OpenReadOnly(path)
	if err != nil {
		l.Release()
		return err
	}
	if !slices.EqualFunc(again.segs, l.segs, func(a, b *Segment) bool { return a.name == b.name }) {
		l.Release()
		return errRotated
	}
	if active := l.segs[len(l.segs)-1]; active.held != nil {
		held, err1 := active.held.Stat()
		named, err2 := os.Stat(path)
		if err1 != nil || err2 != nil || !os.SameFile(held, named) {
			l.Release()
			return errRotated
		}
	}
	return nil
}

// Release closes the files OpenReadOnlyHeld holds; the log must not be read after.
func (l *Log) Release() {
	for _, seg := range l.segs {
		if seg.held != nil {
			_ = seg.held.Close()
			seg.held = nil
		}
	}
}

// Stale reports whether the log of OpenReadOnly rotated since it was opened: its active file was
// renamed, and records written to it after the listing may have been missed.
func (l *Log) Stale() (bool, error) {
	after, err := l.rotatedFiles()
	if err != nil {
		return false, err
	}
	n := len(l.segs) - 1
	return len(after) > 0 && (n == 0 || after[len(after)-1] != l.segs[n-1].name), nil
}

// LastRecord offers accept the lines of the log from the newest back: those of the active file
// (its unterminated tail included) or, when it is empty or holds no accepted line, those of the
// rotated files, newest first; it stops at the first line accept takes. found is false when accept
// took none. Each file is read whole: it is for small logs, such as one of positions.
func (l *Log) LastRecord(accept func(line []byte) bool) (found bool, err error) {
	rotated, err := l.rotatedFiles()
	if err != nil {
		return false, err
	}
	files := []string{l.Path()}
	for i := len(rotated) - 1; i >= 0; i-- {
		files = append(files, filepath.Join(l.dir, rotated[i]))
	}
	for _, path := range files {
		f, err := l.fs.OpenFile(path, os.O_RDONLY, 0)
		if errors.Is(err, fs.ErrNotExist) && path == l.Path() {
			continue // never written (a log read without being opened): no record yet
		}
		if err != nil {
			return false, err
		}
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return false, err
		}
		buf := make([]byte, fi.Size())
		_, err = f.ReadAt(buf, 0)
		_ = f.Close()
		if err != nil {
			return false, err
		}
		lines := bytes.Split(bytes.TrimSuffix(buf, []byte("\n")), []byte("\n"))
		for i := len(lines) - 1; i >= 0; i-- {
			if accept(lines[i]) {
				return true, nil
			}
		}
	}
	return false, nil
}

// ClampToEnd returns off, or the end of seg's complete records when seg is the active file and off
// is past them (the file was cut back after the position was stored); clamped says which.
func (l *Log) ClampToEnd(seg *Segment, off int64) (_ int64, clamped bool) {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	if seg.active && off > seg.size {
		return seg.size, true
	}
	return off, false
}

// Before reports whether position (a, aOff) comes before (b, bOff) in the log.
func Before(a *Segment, aOff int64, b *Segment, bOff int64) bool {
	return a.ord < b.ord || a.ord == b.ord && aOff < bOff
}

// Files returns the paths of the log whose active file is path, as OpenReadOnly sees them: the
// rotated files, oldest first, then the active one (listed even when it does not exist).
func Files(path string) ([]string, error) {
	l, err := OpenReadOnly(path)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(l.segs))
	for _, s := range l.segs {
		out = append(out, filepath.Join(l.dir, s.name))
	}
	return out, nil
}
