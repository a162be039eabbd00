package wal

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

// ErrSymlink is wrapped in the error of opening a file that is a symbolic link through
// OSFileSystem: the log truncates its files (a torn tail, a failed write), which through a link
// would cut whatever file the link points to.
var ErrSymlink = errors.New("it is a symbolic link, which is refused")

// ErrDirLocked is wrapped in the error of taking a spool directory's lock that another owner (this
// process or another) holds. Any other failure (permission denied, a read-only file system) is
// returned as it is, so that it is not mistaken for a second owner.
var ErrDirLocked = errors.New("the directory is locked by another owner")

// OSFileSystem returns the FileSystem of the operating system. It refuses to open a file that is a
// symbolic link (O_NOFOLLOW; the error wraps ErrSymlink).
func OSFileSystem() FileSystem { return osFS{} }

// OSFileSystemFollowingSymlinks is OSFileSystem opening files through symbolic links, for an
// operator who placed the files behind links on purpose.
func OSFileSystemFollowingSymlinks() FileSystem { return osFS{followSymlinks: true} }

type osFS struct{ followSymlinks bool }

func (o osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if !o.followSymlinks {
		flag |= oNoFollow
	}
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		if !o.followSymlinks {
			if fi, lerr := os.Lstat(name); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
				return nil, &os.PathError{Op: "open", Path: name, Err: ErrSymlink}
			}
		}
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
