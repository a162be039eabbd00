package upstream

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestJournalRotationIsWhatLogShippersExpect pins what Vector's file source and Fluent Bit's tail
// input rely on to follow a rotating file: a rotation renames the active file (the same inode, so a
// shipper holding it open reads it to its end) and creates a new one under the watched name; no
// line is split across two files, and a rotated file is never written again.
func TestJournalRotationIsWhatLogShippersExpect(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	j, err := OpenJournal(path, JournalOptions{MaxSize: 4 << 10, Keep: 1000, NoSync: true})
	require.NoError(t, err)
	at := time.Date(2026, 11, 26, 20, 15, 0, 0, time.UTC)

	// A shipper's view: the file it has open under the watched name.
	require.NoError(t, j.AppendEvent(at, TaskEndIDs("42", 0), []byte(`{"i":0}`)))
	watched, err := os.Open(path)
	require.NoError(t, err)
	defer watched.Close()
	watchedInfo, err := watched.Stat()
	require.NoError(t, err)

	rotated := map[string][]byte{} // rotated file → its content when first seen
	const n = 2000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w + 1; i < n; i += 8 {
				event := `{"i":` + strconv.Itoa(i) + `,"pad":"` + strings.Repeat("p", i%97) + `"}`
				assert.NoError(t, j.AppendEvent(at, TaskEndIDs("42", int64(i)), []byte(event)))
			}
		})
	}
	// Meanwhile, record every rotated file as it appears.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for polling := true; polling; {
		select {
		case <-done:
			polling = false
		default:
		}
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			if e.Name() == "events.jsonl" {
				continue
			}
			if _, ok := rotated[e.Name()]; !ok {
				b, err := os.ReadFile(filepath.Join(dir, e.Name()))
				require.NoError(t, err)
				rotated[e.Name()] = b
			}
		}
	}
	require.NoError(t, j.Close())
	require.Greater(t, len(rotated), 3, "the test needs several rotations")

	seen := map[int]int{}
	for name, first := range rotated {
		now, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, first, now, "rotated file %s was written again after it appeared", name)
		assert.True(t, bytes.HasSuffix(now, []byte("\n")), "%s ends with a whole line", name)
		countEventLines(t, now, seen)
	}
	active, err := os.ReadFile(path)
	require.NoError(t, err)
	countEventLines(t, active, seen)
	for i := range n {
		assert.Equal(t, 1, seen[i], "event %d is on exactly one whole line", i)
	}

	// The file the shipper held open is now a rotated one, complete; the watched name is new.
	var holder string
	for name := range rotated {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		if os.SameFile(fi, watchedInfo) {
			holder = name
		}
	}
	assert.NotEmpty(t, holder, "rotation renames the active file: the open handle follows it")
	activeInfo, err := os.Stat(path)
	require.NoError(t, err)
	assert.False(t, os.SameFile(activeInfo, watchedInfo), "the watched name is a new file after rotation")
}

func countEventLines(t *testing.T, content []byte, seen map[int]int) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSuffix(string(content), "\n"), "\n") {
		if line == "" {
			continue
		}
		var rec struct {
			TaskID int `json:"task_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "a whole JSON line: %q", line)
		seen[rec.TaskID]++
	}
}
