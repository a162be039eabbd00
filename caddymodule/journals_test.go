package caddymodule

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// A reload provisions the new config before cleaning up the old one, and a
// failed reload cleans up the new one: either way the shared journal must log
// through a config that is still loaded, whose log writers are open.
func TestJournalLogsFollowTheNewestConfigUsingIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	// Every second record rotates the file, which the journal logs at info.
	opts := upstream.JournalOptions{NoSync: true, MaxSize: 300, Keep: 100}
	record := []byte(strings.Repeat("x", 200))
	rotations := func(logs *observer.ObservedLogs) int { return logs.FilterMessage("log rotated").Len() }

	oldCore, oldLogs := observer.New(zapcore.InfoLevel)
	newCore, newLogs := observer.New(zapcore.InfoLevel)
	oldH, newH := new(Handler), new(Handler)
	oldJ, err := acquireJournal(path, opts, journalUse{handler: oldH, logger: zap.New(oldCore).Named("http.handlers.ucs")})
	require.NoError(t, err)
	newJ, err := acquireJournal(path, opts, journalUse{handler: newH, logger: zap.New(newCore).Named("http.handlers.ucs")})
	require.NoError(t, err)
	require.Same(t, oldJ, newJ, "one writer per path")

	for range 4 {
		require.NoError(t, newJ.j.Append(record))
	}
	assert.Positive(t, rotations(newLogs), "the newest config's logger")
	assert.Zero(t, rotations(oldLogs))
	for _, e := range newLogs.All() {
		assert.Equal(t, "http.handlers.ucs.journal", e.LoggerName)
	}

	// The newest config goes (a failed reload): the remaining one takes over.
	require.NoError(t, releaseJournal(path, newJ, newH))
	before := rotations(newLogs)
	for range 4 {
		require.NoError(t, oldJ.j.Append(record))
	}
	assert.Positive(t, rotations(oldLogs))
	assert.Equal(t, before, rotations(newLogs), "nothing more through a config that is gone")

	// The last user closes the journal.
	require.NoError(t, releaseJournal(path, oldJ, oldH))
	assert.Error(t, oldJ.j.Append(record))
}
