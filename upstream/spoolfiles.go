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
