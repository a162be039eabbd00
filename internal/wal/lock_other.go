//go:build !unix && !windows

package wal

import (
	"errors"
	"os"
)

// LockDir has no exclusive lock to take on this platform, so the spool refuses to run rather than
// risk two owners replaying the same records.
func LockDir(path string) (*os.File, error) {
	return nil, &os.PathError{Op: "lock", Path: path, Err: errors.ErrUnsupported}
}
