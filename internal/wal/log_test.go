package wal

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// readFile returns the file's content, failing the test if it cannot be read.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func TestOpenCutsOffTornLastRecord(t *testing.T) {
	tests := []struct {
		name    string
		content string
		kept    string
		cut     int64 // bytes reported in the warn line; 0 means no warn line
	}{
		{"torn record after complete ones", "{\"a\":1}\n{\"b\":2}\n{\"c\":", "{\"a\":1}\n{\"b\":2}\n", 5},
		{"only a torn record", `{"a":1`, "", 6},
		{"complete records only", "{\"a\":1}\n{\"b\":2}\n", "{\"a\":1}\n{\"b\":2}\n", 0},
		{"empty file", "", "", 0},
		{"zeros left by a crash after the last record", "{\"a\":1}\n\x00\x00\x00\x00", "{\"a\":1}\n", 4},
		{"torn record longer than one read block", "{\"a\":1}\n" + strings.Repeat("x", 70_000), "{\"a\":1}\n", 70_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			require.NoError(t, os.WriteFile(path, []byte(tt.content), 0o640))
			core, logs := observer.New(zapcore.DebugLevel)

			l, err := Open(path, Options{Logger: zap.New(core)})
			require.NoError(t, err)
			require.NoError(t, l.Append([]byte(`{"d":4}`)))
			require.NoError(t, l.Close())

			assert.Equal(t, tt.kept+"{\"d\":4}\n", readFile(t, path))
			warns := logs.FilterMessage("torn last record cut off").All()
			if tt.cut == 0 {
				assert.Empty(t, warns)
				return
			}
			require.Len(t, warns, 1)
			assert.Equal(t, zapcore.WarnLevel, warns[0].Level)
			assert.Equal(t, tt.cut, warns[0].ContextMap()["bytes"])
			assert.Equal(t, path, warns[0].ContextMap()["path"])
		})
	}
}

func TestOpenCreatesMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "events.jsonl")
	l, err := Open(path, Options{})
	require.NoError(t, err)
	require.NoError(t, l.Append([]byte(`{}`)))
	require.NoError(t, l.Close())
	assert.Equal(t, "{}\n", readFile(t, path))
	assert.Equal(t, path, l.Path())
}

func TestOpenFailureIsStorageError(t *testing.T) {
	fs := newFaultFS()
	fs.openErr = syscall.EACCES
	_, err := Open(filepath.Join(t.TempDir(), "events.jsonl"), Options{FS: fs})
	var se *StorageError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "open", se.Op)
	assert.ErrorIs(t, err, syscall.EACCES)
}

// TestFaultFailsAppendAndLeavesNoPartialRecord: a disk error fails the Append, the file never holds
// a partial or unacknowledged record, and the log works again once the fault is gone.
func TestFaultFailsAppendAndLeavesNoPartialRecord(t *testing.T) {
	tests := []struct {
		name   string
		noSync bool
		fault  func(*faultFS, error)
		op     string
		errno  syscall.Errno
	}{
		{"disk full on write", false, func(fs *faultFS, e error) { fs.writeErr = e }, "write", syscall.ENOSPC},
		{"I/O error on write", false, func(fs *faultFS, e error) { fs.writeErr = e }, "write", syscall.EIO},
		{"disk full on write without fsync", true, func(fs *faultFS, e error) { fs.writeErr = e }, "write", syscall.ENOSPC},
		{"disk full on fsync", false, func(fs *faultFS, e error) { fs.syncErr = e }, "sync", syscall.ENOSPC},
		{"I/O error on fsync", false, func(fs *faultFS, e error) { fs.syncErr = e }, "sync", syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFaultFS()
			path := filepath.Join(t.TempDir(), "events.jsonl")
			l, err := Open(path, Options{FS: fs, NoSync: tt.noSync})
			require.NoError(t, err)
			defer l.Close()
			require.NoError(t, l.Append([]byte(`{"n":1}`)))

			fs.set(func(fs *faultFS) { tt.fault(fs, tt.errno) })
			err = l.Append([]byte(`{"n":2,"pad":"` + strings.Repeat("x", 100) + `"}`))
			var se *StorageError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tt.op, se.Op)
			assert.Equal(t, path, se.Path)
			assert.ErrorIs(t, err, tt.errno)
			// Neither half of the failed record nor, after a failed fsync, the whole of it is left.
			assert.Equal(t, "{\"n\":1}\n", readFile(t, path))

			fs.set(func(fs *faultFS) { fs.writeErr, fs.syncErr = nil, nil })
			require.NoError(t, l.Append([]byte(`{"n":3}`)))
			assert.Equal(t, "{\"n\":1}\n{\"n\":3}\n", readFile(t, path))
		})
	}
}

// TestFailedFsyncFailsEveryRecordOfItsBatch: records that shared a failed fsync are all refused,
// and none of them reappears behind a later successful one.
func TestFailedFsyncFailsEveryRecordOfItsBatch(t *testing.T) {
	fs := newFaultFS()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l, err := Open(path, Options{FS: fs})
	require.NoError(t, err)
	defer l.Close()

	fs.set(func(fs *faultFS) { fs.syncErr = syscall.EIO; fs.syncDelay = time.Millisecond })
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range errs {
		wg.Go(func() { errs[i] = l.Append([]byte(`{"failed":` + strconv.Itoa(i) + `}`)) })
	}
	wg.Wait()
	for i, err := range errs {
		assert.ErrorIs(t, err, syscall.EIO, "record %d", i)
	}

	fs.set(func(fs *faultFS) { fs.syncErr = nil })
	require.NoError(t, l.Append([]byte(`{"ok":1}`)))
	assert.Equal(t, "{\"ok\":1}\n", readFile(t, path))
}

// TestFailedCutBackKeepsFailingUntilRecovered: when the failed write cannot be truncated away, the
// log refuses appends (rather than writing after a partial record) until a reopen can cut it.
func TestFailedCutBackKeepsFailingUntilRecovered(t *testing.T) {
	fs := newFaultFS()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	core, logs := observer.New(zapcore.InfoLevel)
	l, err := Open(path, Options{FS: fs, Logger: zap.New(core)})
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, l.Append([]byte(`{"n":1}`)))

	fs.set(func(fs *faultFS) { fs.writeErr, fs.truncErr = syscall.EIO, syscall.EIO })
	err = l.Append([]byte(`{"n":2,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxx"}`))
	assert.ErrorIs(t, err, syscall.EIO)
	assert.Len(t, logs.FilterMessage("log cannot cut off a failed append; failing appends until it can").All(), 1)

	fs.set(func(fs *faultFS) { fs.writeErr = nil }) // writes would work, the cut still does not
	err = l.Append([]byte(`{"n":3}`))
	var se *StorageError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "truncate", se.Op)
	assert.ErrorIs(t, err, syscall.EIO)

	fs.set(func(fs *faultFS) { fs.truncErr = nil })
	require.NoError(t, l.Append([]byte(`{"n":4}`)))
	assert.Equal(t, "{\"n\":1}\n{\"n\":4}\n", readFile(t, path))
	assert.Len(t, logs.FilterMessage("failed append cut off").All(), 1)
	assert.Len(t, logs.FilterMessage("log recovered").All(), 1)
}

func TestAppendRejectsRecordWithNewline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l, err := Open(path, Options{})
	require.NoError(t, err)
	defer l.Close()
	assert.ErrorIs(t, l.Append([]byte("{\"a\":\n1}")), ErrNewlineInRecord)
	assert.Equal(t, "", readFile(t, path))
}

// logFiles returns the rotated files' names, oldest first, then the active file's.
func logFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		if e.Name() != "events.jsonl" {
			names = append(names, e.Name())
		}
	}
	return append(names, "events.jsonl")
}

func TestRotationKeepsWholeRecordsUnderMaxSizeInTimeOrder(t *testing.T) {
	tests := []struct {
		name      string
		maxSize   int64
		keep      int
		records   int
		wantFiles int // rotated files left plus the active one
	}{
		{"two records per file, keep 3", 24, 3, 20, 4},
		{"one record per file, keep 1", 12, 1, 5, 2},
		{"all records in one file", 1 << 20, 3, 20, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "events.jsonl")
			l, err := Open(path, Options{MaxSize: tt.maxSize, Keep: tt.keep})
			require.NoError(t, err)
			var all []string
			for i := range tt.records {
				rec := `{"n":` + strconv.Itoa(100+i) + `}` // 9 bytes + '\n'
				require.NoError(t, l.Append([]byte(rec)))
				all = append(all, rec)
			}
			require.NoError(t, l.Close())

			files := logFiles(t, dir)
			require.Len(t, files, tt.wantFiles)
			var got []string
			for _, name := range files {
				content := readFile(t, filepath.Join(dir, name))
				assert.LessOrEqual(t, int64(len(content)), tt.maxSize, name)
				if name != "events.jsonl" {
					assert.Regexp(t, `^events-\d{8}T\d{6}\.\d{3}Z\.jsonl$`, name)
					assert.True(t, strings.HasSuffix(content, "\n"), "%s ends inside a record", name)
				}
				got = append(got, strings.Split(strings.TrimSuffix(content, "\n"), "\n")...)
			}
			// Name order is record order, and the newest records survive pruning.
			assert.Equal(t, all[len(all)-len(got):], got)
		})
	}
}

func TestRecordLargerThanMaxSizeGetsFileOfItsOwn(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	l, err := Open(path, Options{MaxSize: 16})
	require.NoError(t, err)
	big := `{"big":"` + strings.Repeat("x", 40) + `"}`
	for _, rec := range []string{`{"a":1}`, big, `{"b":2}`} {
		require.NoError(t, l.Append([]byte(rec)))
	}
	require.NoError(t, l.Close())

	files := logFiles(t, dir)
	require.Len(t, files, 3)
	assert.Equal(t, "{\"a\":1}\n", readFile(t, filepath.Join(dir, files[0])))
	assert.Equal(t, big+"\n", readFile(t, filepath.Join(dir, files[1])))
	assert.Equal(t, "{\"b\":2}\n", readFile(t, filepath.Join(dir, files[2])))
}

// TestRotatedNamesStayInOrderAfterClockStepBack: a rotated file named in the future (clock skew,
// or the same millisecond) does not put the next rotation before it in `ls` order.
func TestRotatedNamesStayInOrderAfterClockStepBack(t *testing.T) {
	dir := t.TempDir()
	future := "events-29991231T235959.998Z.jsonl"
	require.NoError(t, os.WriteFile(filepath.Join(dir, future), []byte("{\"old\":1}\n"), 0o640))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "unrelated-1.jsonl"), nil, 0o640))
	l, err := Open(filepath.Join(dir, "events.jsonl"), Options{MaxSize: 10, Keep: 5})
	require.NoError(t, err)
	for _, rec := range []string{`{"n":101}`, `{"n":102}`, `{"n":103}`} {
		require.NoError(t, l.Append([]byte(rec)))
	}
	require.NoError(t, l.Close())

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{
		future,
		"events-29991231T235959.999Z.jsonl",
		"events-30000101T000000.000Z.jsonl",
		"events.jsonl",
		"unrelated-1.jsonl", // not this log's: never pruned
	}, names)
	assert.Equal(t, "{\"n\":103}\n", readFile(t, filepath.Join(dir, "events.jsonl")))
}

func TestRotationFailureFailsAppendUntilRenameWorks(t *testing.T) {
	fs := newFaultFS()
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	l, err := Open(path, Options{FS: fs, MaxSize: 10})
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, l.Append([]byte(`{"n":101}`)))

	fs.set(func(fs *faultFS) { fs.renameErr = syscall.EIO })
	err = l.Append([]byte(`{"n":102}`))
	var se *StorageError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "rotate", se.Op)
	assert.ErrorIs(t, err, syscall.EIO)

	fs.set(func(fs *faultFS) { fs.renameErr = nil })
	require.NoError(t, l.Append([]byte(`{"n":103}`)))
	files := logFiles(t, dir)
	require.Len(t, files, 2)
	assert.Equal(t, "{\"n\":101}\n", readFile(t, filepath.Join(dir, files[0])))
	assert.Equal(t, "{\"n\":103}\n", readFile(t, path))
}

// TestNewActiveFileFailureRecoversOnNextAppend: if the new active file cannot be created after a
// rotation, appends fail until it can, and then go to the new file.
func TestNewActiveFileFailureRecoversOnNextAppend(t *testing.T) {
	fs := newFaultFS()
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	l, err := Open(path, Options{FS: fs, MaxSize: 10})
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, l.Append([]byte(`{"n":101}`)))

	fs.set(func(fs *faultFS) { fs.openErr = syscall.ENOSPC })
	assert.ErrorIs(t, l.Append([]byte(`{"n":102}`)), syscall.ENOSPC)
	assert.ErrorIs(t, l.Append([]byte(`{"n":103}`)), syscall.ENOSPC)

	fs.set(func(fs *faultFS) { fs.openErr = nil })
	require.NoError(t, l.Append([]byte(`{"n":104}`)))
	assert.Equal(t, "{\"n\":104}\n", readFile(t, path))
}

// TestGroupCommitSharesFsyncs: 64 concurrent appenders share fsyncs, and the benchmark's baseline
// mode really syncs each record alone.
func TestGroupCommitSharesFsyncs(t *testing.T) {
	tests := []struct {
		name       string
		syncEach   bool
		fewerSyncs bool // fewer fsyncs than records, or exactly one per record
	}{
		{"group commit", false, true},
		{"fsync per record", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFaultFS()
			fs.syncDelay = 200 * time.Microsecond // a disk-like fsync, so appenders pile up behind it
			var onSyncs, written int
			var mu sync.Mutex
			l, err := Open(filepath.Join(t.TempDir(), "events.jsonl"), Options{
				FS:             fs,
				SyncEachRecord: tt.syncEach,
				OnSync:         func(time.Duration) { mu.Lock(); onSyncs++; mu.Unlock() },
				OnWrite:        func(n int) { mu.Lock(); written += n; mu.Unlock() },
			})
			require.NoError(t, err)
			_, syncsAtOpen := fs.counts()

			const appenders, each = 64, 5
			start := make(chan struct{})
			var wg sync.WaitGroup
			for a := range appenders {
				wg.Go(func() {
					<-start
					for i := range each {
						assert.NoError(t, l.Append([]byte(`{"a":`+strconv.Itoa(a)+`,"i":`+strconv.Itoa(i)+`}`)))
					}
				})
			}
			close(start)
			wg.Wait()
			writes, syncs := fs.counts()
			syncs -= syncsAtOpen
			require.NoError(t, l.Close())

			records := appenders * each
			if tt.fewerSyncs {
				assert.Less(t, syncs, records)
				assert.Less(t, writes, records)
			} else {
				assert.Equal(t, records, syncs)
				assert.Equal(t, records, writes)
			}
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, syncs, onSyncs)
			assert.Equal(t, len(readFile(t, l.Path())), written)
		})
	}
}

func TestNoSyncWritesWithoutFsync(t *testing.T) {
	fs := newFaultFS()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l, err := Open(path, Options{FS: fs, NoSync: true})
	require.NoError(t, err)
	for i := range 10 {
		require.NoError(t, l.Append([]byte(`{"n":`+strconv.Itoa(i)+`}`)))
	}
	_, syncs := fs.counts()
	assert.Zero(t, syncs)
	assert.Equal(t, 10, strings.Count(readFile(t, path), "\n"))

	require.NoError(t, l.Close())
	_, syncs = fs.counts()
	assert.Equal(t, 1, syncs, "a clean shutdown syncs once")
}

// TestCloseWhileAppending: appends racing Close either succeed (and are in the file) or fail with
// ErrClosed; Close is idempotent and the file holds only complete records.
func TestCloseWhileAppending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l, err := Open(path, Options{})
	require.NoError(t, err)

	const appenders = 16
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted []string
	)
	for a := range appenders {
		wg.Go(func() {
			for i := 0; ; i++ {
				rec := `{"a":` + strconv.Itoa(a) + `,"i":` + strconv.Itoa(i) + `}`
				err := l.Append([]byte(rec))
				if err != nil {
					assert.ErrorIs(t, err, ErrClosed)
					var se *StorageError
					assert.ErrorAs(t, err, &se)
					return
				}
				mu.Lock()
				accepted = append(accepted, rec)
				mu.Unlock()
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // let the appenders get going; correctness does not depend on it
	var closers sync.WaitGroup
	for range 3 {
		closers.Go(func() { assert.NoError(t, l.Close()) })
	}
	closers.Wait()
	wg.Wait()
	assert.NoError(t, l.Close())
	assert.ErrorIs(t, l.Append([]byte(`{}`)), ErrClosed)

	content := readFile(t, path)
	require.True(t, strings.HasSuffix(content, "\n"))
	lines := strings.Split(strings.TrimSuffix(content, "\n"), "\n")
	slices.Sort(lines)
	slices.Sort(accepted)
	assert.Equal(t, accepted, lines)
}

func TestStorageErrorNamesOperationAndPath(t *testing.T) {
	err := error(&StorageError{Op: "write", Path: "/var/log/ucs/events.jsonl", Err: syscall.ENOSPC})
	assert.Equal(t, "write /var/log/ucs/events.jsonl: no space left on device", err.Error())
	assert.True(t, errors.Is(err, syscall.ENOSPC))
}

// FuzzTornTailRepair checks that opening a log over any content keeps exactly the complete records
// (everything up to the last '\n') and appends after them.
func FuzzTornTailRepair(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n{\"b\":"))
	f.Add([]byte("{\"a\":1}\n"))
	f.Add([]byte("\x00\x00\n\x00"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(t.TempDir(), "events.jsonl")
		require.NoError(t, os.WriteFile(path, content, 0o640))
		l, err := Open(path, Options{NoSync: true})
		require.NoError(t, err)
		require.NoError(t, l.Append([]byte(`{"new":1}`)))
		require.NoError(t, l.Close())
		kept := content[:strings.LastIndexByte(string(content), '\n')+1]
		assert.Equal(t, string(kept)+"{\"new\":1}\n", readFile(t, path))
	})
}
