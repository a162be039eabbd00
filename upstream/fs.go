package upstream

import (
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
)

// FileSystem is what the durable log needs from the operating system. OSFileSystem is the real one;
// tests substitute a FileSystem that injects faults (ENOSPC, EIO) or counts calls.
type FileSystem interface {
	// OpenFile opens a file like os.OpenFile.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Rename renames a file like os.Rename (atomic within one directory).
	Rename(oldpath, newpath string) error
	// Remove removes a file like os.Remove.
	Remove(name string) error
	// ReadDir lists a directory like os.ReadDir, sorted by name.
	ReadDir(name string) ([]os.DirEntry, error)
	// MkdirAll creates a directory and its parents like os.MkdirAll.
	MkdirAll(path string, perm os.FileMode) error
	// SyncDir makes the directory's entries durable (creations, renames), so a new or rotated file
	// survives a power loss under its name.
	SyncDir(dir string) error
}

// File is an open file of a FileSystem. *os.File satisfies it.
type File interface {
	io.Writer
	io.ReaderAt
	io.Closer
	// Sync flushes the file's data and metadata to stable storage (fsync).
	Sync() error
	// Truncate changes the file's size; the log uses it to cut off torn or failed writes.
	Truncate(size int64) error
	// Stat returns the file's FileInfo; the log reads the size from it.
	Stat() (os.FileInfo, error)
}

// OSFileSystem returns the FileSystem of the operating system.
func OSFileSystem() FileSystem { return osFS{} }

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		// A nil *os.File in a non-nil File interface would defeat callers' nil checks.
		return nil, err
	}
	return f, nil
}

func (osFS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) ReadDir(name string) ([]os.DirEntry, error)   { return os.ReadDir(name) }
func (osFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }

func (osFS) SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // NTFS journals directory entries itself; a directory handle cannot be flushed
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, errors.ErrUnsupported) {
		// Some file systems (FUSE, some network mounts) cannot sync a directory: there is nothing
		// more to do, and refusing to open the log there would help no one.
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
