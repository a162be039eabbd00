//go:build windows

package wal

import (
	"fmt"
	"os"
	"syscall"
)

// LockDir opens path with no sharing allowed, which Windows keeps exclusive until the handle is
// closed or the process dies: the same guarantee flock gives on Unix.
func LockDir(path string) (*os.File, error) {
	p, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return nil, err
	}
	h, err := syscall.CreateFile(p, syscall.GENERIC_READ|syscall.GENERIC_WRITE, 0, nil,
		syscall.OPEN_ALWAYS, syscall.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		if err == errorSharingViolation {
			err = fmt.Errorf("%w (%w)", ErrDirLocked, err)
		}
		return nil, &os.PathError{Op: "lock", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}

// errorSharingViolation is ERROR_SHARING_VIOLATION: another handle holds the file.
const errorSharingViolation = syscall.Errno(32)
