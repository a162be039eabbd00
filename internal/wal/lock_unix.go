//go:build unix

package wal

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// LockDir takes an exclusive lock on path without waiting. flock locks belong to the open file
// description, so a second open in the same process is refused too (a config reload that would
// share the directory), and the kernel drops the lock when the process dies. A lock held by
// another owner is an error wrapping ErrDirLocked; any other failure (EACCES, EROFS, a symbolic
// link, which is refused) is returned as the *os.PathError it is.
func LockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, FilePerm)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			err = fmt.Errorf("%w (%w)", ErrDirLocked, err)
		}
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return f, nil
}
