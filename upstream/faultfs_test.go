package upstream

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/wal"
)

// faultFS is the real file system with switchable faults and call counters, for the tests of the spool and the journal (a copy of internal/wal's, which tests cannot export).
// A failing Write first writes half of its bytes, as a disk filling up mid-write does.
type faultFS struct {
	wal.FileSystem

	mu        sync.Mutex
	writeErr  error
	syncErr   error
	truncErr  error
	openErr   error
	renameErr error
	syncDelay time.Duration
	writes    int
	syncs     int
}

func newFaultFS() *faultFS { return &faultFS{FileSystem: wal.OSFileSystem()} }

// set changes the faults under the lock, so tests can flip them while the writer runs.
func (fs *faultFS) set(change func(*faultFS)) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	change(fs)
}

func (fs *faultFS) counts() (writes, syncs int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.writes, fs.syncs
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	fs.mu.Lock()
	err := fs.openErr
	fs.mu.Unlock()
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	f, err := fs.FileSystem.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fs: fs, name: name}, nil
}

func (fs *faultFS) Rename(oldpath, newpath string) error {
	fs.mu.Lock()
	err := fs.renameErr
	fs.mu.Unlock()
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return fs.FileSystem.Rename(oldpath, newpath)
}

type faultFile struct {
	wal.File
	fs   *faultFS
	name string
}

func (f *faultFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	err := f.fs.writeErr
	f.fs.writes++
	f.fs.mu.Unlock()
	if err != nil {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, &os.PathError{Op: "write", Path: f.name, Err: err}
	}
	return f.File.Write(p)
}

// Sync fails without syncing: the data stays in the file, as dirty pages Linux may or may not have
// written, which is exactly what the log must not acknowledge later.
func (f *faultFile) Sync() error {
	f.fs.mu.Lock()
	err, delay := f.fs.syncErr, f.fs.syncDelay
	f.fs.syncs++
	f.fs.mu.Unlock()
	time.Sleep(delay)
	if err != nil {
		return &os.PathError{Op: "sync", Path: f.name, Err: err}
	}
	return f.File.Sync()
}

func (f *faultFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	err := f.fs.truncErr
	f.fs.mu.Unlock()
	if err != nil {
		return &os.PathError{Op: "truncate", Path: f.name, Err: err}
	}
	return f.File.Truncate(size)
}

// readFile returns the file's content, failing the test if it cannot be read.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
