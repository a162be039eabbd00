package upstream

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// The storage names of this package's API are the log's (internal/wal): a Spool or Journal fails
// with the log's errors and takes its file system, so callers outside the module's internals see
// them here.

// FileSystem is what the durable log needs from the operating system (see wal.FileSystem).
type FileSystem = wal.FileSystem

// File is an open file of a FileSystem (see wal.File).
type File = wal.File

// StorageError is a failed write, sync, rotation or open of a spool's or journal's log; the HTTP
// layer answers 503 StorageException (see wal.StorageError).
type StorageError = wal.StorageError

// Errors of the log, for errors.Is.
var (
	// ErrClosed is wrapped in the StorageError of an append made after Close.
	ErrClosed = wal.ErrClosed
	// ErrNewlineInRecord is returned for a record containing '\n'.
	ErrNewlineInRecord = wal.ErrNewlineInRecord
	// ErrSymlink is wrapped in the error of opening a file that is a symbolic link.
	ErrSymlink = wal.ErrSymlink
	// ErrDirLocked is wrapped in the error of taking a spool directory that another owner holds.
	ErrDirLocked = wal.ErrDirLocked
)

// MaxSpoolLine bounds a line of a spool's record files: a record the spool writes is far shorter
// (the event, at most max_body, base64 at worst, and its headers), so a longer line is damage or
// something written by hand. Readers do not load it: they report it, skip it, and the replay puts
// its first bytes in the dead letter.
const MaxSpoolLine = wal.MaxLine

// OSFileSystem returns the FileSystem of the operating system, refusing symbolic links (see
// wal.OSFileSystem).
func OSFileSystem() FileSystem { return wal.OSFileSystem() }

// OSFileSystemFollowingSymlinks is OSFileSystem opening files through symbolic links, for an
// operator who placed the files behind links on purpose.
func OSFileSystemFollowingSymlinks() FileSystem { return wal.OSFileSystemFollowingSymlinks() }

// The permissions of the files and directories the package creates: the log's.
const (
	filePerm = wal.FilePerm
	dirPerm  = wal.DirPerm
)

// rewriteRename puts WriteFileAtomic's copy in place; tests make it fail to
// check that the old file survives a crash mid-rewrite.
var rewriteRename = os.Rename

// WriteFileAtomic replaces path's content with data so that a crash leaves either the old file or
// the new one: a temporary file in the same directory, fsynced, renamed over path, then the
// directory fsynced. An existing file keeps its permissions; a new one is created 0600.
func WriteFileAtomic(path string, data []byte) (err error) {
	perm := os.FileMode(filePerm)
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err == nil {
		if err = tmp.Chmod(perm); err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	if err = rewriteRename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	return wal.OSFileSystem().SyncDir(dir)
}
