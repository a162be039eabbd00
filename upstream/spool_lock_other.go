//go:build !unix && !windows

package upstream

import (
	"errors"
	"os"
)

// lockDir has no exclusive lock to take on this platform, so the spool refuses to run rather than
// risk two owners replaying the same records.
func lockDir(path string) (*os.File, error) {
	return nil, &os.PathError{Op: "lock", Path: path, Err: errors.ErrUnsupported}
}
