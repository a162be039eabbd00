package wal

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readAll returns the records the reader has now, with the position after the last one.
func readAll(t *testing.T, r *Reader) (recs []string, seg *Segment, end int64) {
	t.Helper()
	for {
		rec, s, e, ok, err := r.Next()
		require.NoError(t, err)
		if !ok {
			return recs, seg, end
		}
		recs = append(recs, string(rec))
		seg, end = s, e
	}
}

func rec(n int) string { return `{"n":` + strconv.Itoa(100+n) + `}` } // 9 bytes + '\n'

func recs(from, to int) []string {
	var out []string
	for n := from; n < to; n++ {
		out = append(out, rec(n))
	}
	return out
}

func appendRecs(t *testing.T, l *Log, from, to int) {
	t.Helper()
	for n := from; n < to; n++ {
		require.NoError(t, l.Append([]byte(rec(n))))
	}
}

func TestReaderFollowsRotationsAndSeesOnlyCommittedRecords(t *testing.T) {
	tests := []struct {
		name    string
		maxSize int64
	}{
		{"no rotation", 1 << 20},
		{"two records per file", 20},
		{"one record per file", 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Open(filepath.Join(t.TempDir(), "spool.jsonl"), Options{MaxSize: tt.maxSize, Keep: KeepAll})
			require.NoError(t, err)
			defer l.Close()
			r := l.NewReader(l.First(), 0)
			got, _, _ := readAll(t, r)
			assert.Empty(t, got)

			appendRecs(t, l, 0, 5)
			got, _, _ = readAll(t, r)
			assert.Equal(t, recs(0, 5), got)
			appendRecs(t, l, 5, 9)
			got, _, _ = readAll(t, r)
			assert.Equal(t, recs(5, 9), got)
		})
	}
}

func TestCursorResolvesToSameRecordAfterRotationAndReopen(t *testing.T) {
	tests := []struct {
		name      string
		read      int // records read (and acknowledged) before the cursor is taken
		appended  int // records appended before the cursor is taken
		afterward int // records appended after it, rotating the active file
	}{
		{"cursor in active file, then rotated away", 2, 2, 6},
		{"cursor in active file, no rotation", 1, 1, 0},
		{"cursor in a rotated file", 3, 8, 2},
		{"cursor at the start", 0, 0, 7},
		{"cursor at the end of everything", 5, 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "spool.jsonl")
			opts := Options{MaxSize: 30, Keep: KeepAll} // three records per file
			l, err := Open(path, opts)
			require.NoError(t, err)
			appendRecs(t, l, 0, tt.appended)
			r := l.NewReader(l.First(), 0)
			seg, off := l.First(), int64(0)
			for range tt.read {
				_, s, e, ok, err := r.Next()
				require.NoError(t, err)
				require.True(t, ok)
				seg, off = s, e
			}
			raw, err := json.Marshal(l.Cursor(seg, off))
			require.NoError(t, err)
			appendRecs(t, l, tt.appended, tt.appended+tt.afterward)
			require.NoError(t, l.Close())

			l, err = Open(path, opts)
			require.NoError(t, err)
			defer l.Close()
			var c Cursor
			require.NoError(t, json.Unmarshal(raw, &c))
			seg, off, ok := l.Resolve(c)
			require.True(t, ok)
			got, _, _ := readAll(t, l.NewReader(seg, off))
			assert.Equal(t, recs(tt.read, tt.appended+tt.afterward), got, "cursor %s", raw)
		})
	}
}

func TestRemoveBeforeDeletesOnlyOlderFiles(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(filepath.Join(dir, "spool.jsonl"), Options{MaxSize: 10, Keep: KeepAll})
	require.NoError(t, err)
	defer l.Close()
	appendRecs(t, l, 0, 4) // three rotated files and the active one
	r := l.NewReader(l.First(), 0)
	var seg *Segment
	for range 3 {
		_, seg, _, _, err = r.Next()
		require.NoError(t, err)
	}
	l.RemoveBefore(seg)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "the third rotated file and the active one")
	got, _, _ := readAll(t, r)
	assert.Equal(t, recs(3, 4), got)

	// A cursor naming a removed file resumes at the next one.
	seg, off, ok := l.Resolve(Cursor{File: "spool-19990101T000000.000Z.jsonl", Offset: 5})
	assert.False(t, ok)
	assert.Zero(t, off)
	got, _, _ = readAll(t, l.NewReader(seg, off))
	assert.Equal(t, recs(2, 4), got)
}
