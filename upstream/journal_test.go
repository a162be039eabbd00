package upstream

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConcurrentAppendsWriteOneCompleteLineEach(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	j, err := OpenJournal(path, JournalOptions{})
	require.NoError(t, err)
	at := time.Date(2026, 11, 26, 20, 15, 0, 0, time.UTC)
	const n = 1000
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// A long attached value makes an interleaved write visible as a broken line.
			event := `{"i":` + strconv.Itoa(i) + `,"pad":"` + strings.Repeat("p", i%200) + `"}`
			assert.NoError(t, j.AppendEvent(at, TaskEndIDs("383-f9a62aec", int64(i)), []byte(event)))
		})
	}
	wg.Wait()
	require.NoError(t, j.Close())

	content, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(string(content), "\n"))
	lines := strings.Split(strings.TrimSuffix(string(content), "\n"), "\n")
	require.Len(t, lines, n)
	seen := make(map[int64]bool, n)
	for _, line := range lines {
		var rec struct {
			ReceivedAt string `json:"received_at"`
			ServiceID  string `json:"service_id"`
			TaskID     int64  `json:"task_id"`
			Event      struct {
				I   int64  `json:"i"`
				Pad string `json:"pad"`
			} `json:"event"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "line %q", line)
		assert.Equal(t, "2026-11-26T20:15:00.000Z", rec.ReceivedAt)
		assert.Equal(t, "383-f9a62aec", rec.ServiceID)
		assert.Equal(t, rec.TaskID, rec.Event.I)
		assert.Len(t, rec.Event.Pad, int(rec.TaskID%200))
		assert.False(t, seen[rec.TaskID], "task %d twice", rec.TaskID)
		seen[rec.TaskID] = true
	}
	assert.Len(t, seen, n)
}

func TestJournalAppendWritesRecordAsOneLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	j, err := OpenJournal(path, JournalOptions{NoSync: true})
	require.NoError(t, err)
	assert.Equal(t, path, j.Path())
	rec := AppendEventRecord(nil, time.Date(2026, 11, 26, 20, 15, 0, 0, time.UTC), TaskEndIDs("7", 8), []byte(`{"a":1}`))
	require.NoError(t, j.Append(rec))
	require.NoError(t, j.Close())
	require.NoError(t, j.Close(), "Close is idempotent")
	assert.Equal(t, string(rec)+"\n", readFile(t, path))
}

func TestJournalStorageFailureIsStorageError(t *testing.T) {
	fs := newFaultFS()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	j, err := OpenJournal(path, JournalOptions{FS: fs})
	require.NoError(t, err)
	defer j.Close()
	fs.set(func(fs *faultFS) { fs.writeErr = syscall.ENOSPC })
	err = j.AppendEvent(time.Now(), TaskEndIDs("1", 2), []byte(`{}`))
	var se *StorageError
	require.ErrorAs(t, err, &se)
	assert.ErrorIs(t, err, syscall.ENOSPC)
	assert.Equal(t, "", readFile(t, path))
}
