//go:build unix

package upstream

import (
	"os"
	"syscall"
)

// lockDir takes an exclusive lock on path without waiting. flock locks belong to the open file
// description, so a second open in the same process is refused too (a config reload that would
// share the directory), and the kernel drops the lock when the process dies.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, filePerm)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return f, nil
}
