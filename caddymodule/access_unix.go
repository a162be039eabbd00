//go:build unix

package caddymodule

import "syscall"

// canWrite asks the kernel whether this process may write to path (and
// enter it, for a directory), with its real ids, without opening it.
func canWrite(path string, dir bool) error {
	mode := uint32(0x2) // W_OK
	if dir {
		mode |= 0x1 // X_OK
	}
	return syscall.Access(path, mode)
}
