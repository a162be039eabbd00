package wal

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadOnlyHeldReadsTheActiveFileOfItsOpenAfterARotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w, err := Open(path, Options{NoSync: true, MaxSize: 64, Keep: KeepAll})
	require.NoError(t, err)
	defer w.Close()
	require.NoError(t, w.Append([]byte(`{"n":"first"}`)))

	r, err := OpenReadOnlyHeld(path)
	require.NoError(t, err)
	defer r.Release()
	seg, end := r.End()
	// The writer rotates: the file r listed as active is renamed, a new one takes its name.
	for range 8 {
		require.NoError(t, w.Append([]byte(`{"n":"later, in the next files"}`)))
	}

	rec, err := r.ReadRecord(seg, 0, end)
	require.NoError(t, err)
	assert.Equal(t, `{"n":"first"}`, string(rec), "read again from the file that was active, not the new one")
	rd := r.NewReader(r.First(), 0)
	defer rd.Close()
	got, _, _, ok, err := rd.Next()
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, `{"n":"first"}`, string(got))
	_, _, _, ok, err = rd.Next()
	require.NoError(t, err)
	assert.False(t, ok, "what was complete at the open, nothing after")
}
