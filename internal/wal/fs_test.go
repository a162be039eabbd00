package wal

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// faultFS is the real file system with switchable faults and call counters, for the log's tests.
// A failing Write first writes half of its bytes, as a disk filling up mid-write does.
type faultFS struct {
	FileSystem

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

func newFaultFS() *faultFS { return &faultFS{FileSystem: OSFileSystem()} }

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

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
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
	File
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

func TestOSFileSystemSyncsDirectoryAndLists(t *testing.T) {
	dir := t.TempDir()
	fs := OSFileSystem()
	require.NoError(t, fs.MkdirAll(filepath.Join(dir, "a", "b"), 0o750))
	f, err := fs.OpenFile(filepath.Join(dir, "a", "b", "x.jsonl"), os.O_RDWR|os.O_CREATE, 0o640)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assert.NoError(t, fs.SyncDir(filepath.Join(dir, "a", "b")))
	assert.Error(t, fs.SyncDir(filepath.Join(dir, "missing")))

	_, err = fs.OpenFile(filepath.Join(dir, "missing", "x"), os.O_RDONLY, 0)
	assert.ErrorIs(t, err, os.ErrNotExist)

	entries, err := fs.ReadDir(filepath.Join(dir, "a", "b"))
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "x.jsonl", entries[0].Name())
}

func TestLogFilesAreForCaddysUserOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	l, err := Open(filepath.Join(dir, "events.jsonl"), Options{})
	require.NoError(t, err)
	require.NoError(t, l.Append([]byte(`{"a":1}`)))
	require.NoError(t, l.Close())

	di, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), di.Mode().Perm(), "directory")
	fi, err := os.Stat(filepath.Join(dir, "events.jsonl"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "file")
}

func TestALogFileThatIsASymlinkIsRefusedUnlessFollowed(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere.txt")
	const content = "line one\nnot a record, and no newline"
	link := filepath.Join(dir, "events.jsonl")
	require.NoError(t, os.Symlink(target, link))
	tests := []struct {
		name   string
		fs     FileSystem
		opened bool
		after  string // the target's content after the open
	}{
		{"refused by default, the target untouched", nil, false, content},
		{"followed when opted in, the torn tail cut from the target", OSFileSystemFollowingSymlinks(), true, "line one\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(target, []byte(content), 0o600))

			l, err := Open(link, Options{FS: tt.fs})

			if tt.opened {
				require.NoError(t, err)
				require.NoError(t, l.Close())
			} else {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrSymlink)
			}
			got, err := os.ReadFile(target)
			require.NoError(t, err)
			assert.Equal(t, tt.after, string(got))
		})
	}
}
