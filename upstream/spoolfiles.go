package upstream

import (
	"path/filepath"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// SpoolFile is one of the files of a spool directory (see the list in spool.go).
type SpoolFile int

// The files of a spool directory.
const (
	SpoolRecords    SpoolFile = iota // the records' log: its active file (rotated ones are wal.IsFileOf it)
	SpoolCursor                      // the log of replay positions: its active file
	SpoolLock                        // the lock that makes one owner per directory
	SpoolDeadLetter                  // the default dead letter (SpoolOptions.DeadLetter "")
)

// The names of a spool directory's files; SpoolPath is their one user.
const (
	spoolFileName      = "spool.jsonl"
	cursorFileName     = "cursor.jsonl"
	lockFileName       = ".lock"
	deadLetterFileName = "dead-letter.jsonl"
)

// SpoolPath returns the path of f in the spool directory dir. It is the one place that spells the
// names, so that the spool, its inspection and the commands that look at a directory agree.
func SpoolPath(dir string, f SpoolFile) string {
	var name string
	switch f {
	case SpoolRecords:
		name = spoolFileName
	case SpoolCursor:
		name = cursorFileName
	case SpoolLock:
		name = lockFileName
	case SpoolDeadLetter:
		name = deadLetterFileName
	default:
		panic("upstream: unknown spool file")
	}
	return filepath.Join(dir, name)
}

// IsSpoolRecordFile reports whether name, a base name in a spool directory, is one of its record
// files: the active one or a rotated one.
func IsSpoolRecordFile(name string) bool {
	return wal.IsFileOf(SpoolPath("", SpoolRecords), name)
}

// SpoolActiveOffset returns where the last position on disk of the spool in dir stands, when it
// is in the active record file: the offset there before which every record is finished. ok is
// false when there is no position, it cannot be read, or it names a rotated file. It reads the
// cursor log as InspectSpool does, without taking the directory.
func SpoolActiveOffset(dir string) (off int64, ok bool) {
	l, err := wal.OpenReadOnly(SpoolPath(dir, SpoolCursor))
	if err != nil {
		return 0, false
	}
	pos, found, err := lastPosition(l)
	if err != nil || !found || pos.File != "" {
		return 0, false
	}
	return pos.Offset, true
}
