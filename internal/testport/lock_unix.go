//go:build unix

package testport

import (
	"os"
	"syscall"
)

// lock takes f's advisory lock without waiting; the kernel drops it when
// the process exits.
func lock(f *os.File) bool {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}
