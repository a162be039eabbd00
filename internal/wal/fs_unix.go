//go:build unix

package wal

import "syscall"

// oNoFollow makes open fail on a symbolic link in the last component of the path.
const oNoFollow = syscall.O_NOFOLLOW
