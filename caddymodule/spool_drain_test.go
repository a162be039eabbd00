package caddymodule

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
)

const (
	drainingMsg = "spool directory is no longer configured; replaying its events until it is empty, then closing it"
	drainedMsg  = "spool directory that is no longer configured is drained; closing it"
	retakenMsg  = "spool directory is configured again; it is no longer draining"
	othersMsg   = "another spool directory beside the configured one holds record files that may hold undelivered events, " +
		"and no config replays it (judged conservatively from the files' sizes and its cursor); name it as a spool again to deliver them"
)

func TestAReloadThatMovesTheSpoolDrainsTheOldDirectory(t *testing.T) {
	fastReplay(t)
	ucs := newUCSServer(t)
	ucs.stop()
	parent := t.TempDir()
	oldDir, newDir := filepath.Join(parent, "old"), filepath.Join(parent, "new")
	old, oldLogs := forwardHandler(t, ucs.url(), oldDir)
	for n := range 100 {
		require.Equal(t, http.StatusNoContent, serveEvent(t, old, fmt.Sprintf(`{"n":%d}`, n)), "event %d", n)
	}

	// A reload pointing spool elsewhere: the new config is provisioned,
	// then the old one cleaned up.
	forwardHandler(t, ucs.url(), newDir)
	require.NoError(t, old.Cleanup())

	draining := oldLogs.FilterMessage(drainingMsg).All()
	require.Len(t, draining, 1, "the old directory is not left holding events in silence")
	assert.Equal(t, zapcore.WarnLevel, draining[0].Level)
	assert.Equal(t, int64(100), draining[0].ContextMap()["records"])
	oldAbs, _ := filepath.Abs(oldDir)
	assert.True(t, spools.isOpen(oldAbs), "the old spool stays open while it holds records")

	ucs.restart()
	require.Eventually(t, func() bool { return oldLogs.FilterMessage(drainedMsg).Len() == 1 }, 20*time.Second, 5*time.Millisecond)
	assert.Equal(t, seq(0, 100), ucs.numbers(), "every acknowledged event delivered, in order")
	assert.Equal(t, zapcore.InfoLevel, oldLogs.FilterMessage(drainedMsg).All()[0].Level)
	require.Eventually(t, func() bool { return !spools.isOpen(oldAbs) }, 5*time.Second, 5*time.Millisecond, "closed once drained")
}

func TestAConfigNamingADrainingSpoolTakesItBack(t *testing.T) {
	fastReplay(t)
	ucs := newUCSServer(t)
	ucs.stop()
	parent := t.TempDir()
	dirA, dirB := filepath.Join(parent, "a"), filepath.Join(parent, "b")
	first, logs := forwardHandler(t, ucs.url(), dirA)
	for n := range 3 {
		require.Equal(t, http.StatusNoContent, serveEvent(t, first, fmt.Sprintf(`{"n":%d}`, n)))
	}
	forwardHandler(t, ucs.url(), dirB)
	require.NoError(t, first.Cleanup())
	require.Equal(t, 1, logs.FilterMessage(drainingMsg).Len())
	draining := openSinkOf(spools, dirA)

	third, thirdLogs := forwardHandler(t, ucs.url(), dirA) // a later reload names it again
	require.Eventually(t, func() bool { return thirdLogs.FilterMessage(retakenMsg).Len() == 1 }, 5*time.Second, 5*time.Millisecond,
		"logged through the config that took it back")
	assert.Same(t, draining, openSinkOf(spools, dirA), "the draining spool is taken back, not opened a second time")
	require.Equal(t, http.StatusNoContent, serveEvent(t, third, `{"n":3}`))

	ucs.restart()
	require.Eventually(t, func() bool { return len(ucs.received()) >= 4 }, 20*time.Second, 5*time.Millisecond)
	assert.Equal(t, seq(0, 4), ucs.numbers())
	assert.Zero(t, logs.FilterMessage(drainedMsg).Len()+thirdLogs.FilterMessage(drainedMsg).Len())
}

func TestOpeningASpoolWarnsAboutASiblingDirectoryHoldingRecords(t *testing.T) {
	fastReplay(t)
	ucs := newUCSServer(t)
	parent := t.TempDir()
	stranded, delivered := filepath.Join(parent, "stranded"), filepath.Join(parent, "delivered")

	// "delivered" held an outage's events, all replayed since; "stranded"
	// holds one the UCS never received.
	ucs.stop()
	h, logs := forwardHandler(t, ucs.url(), delivered)
	require.Equal(t, http.StatusNoContent, serveEvent(t, h, `{"n":0}`))
	ucs.restart()
	require.Eventually(t, func() bool { return logs.FilterMessage("spool drained; delivering directly again").Len() == 1 },
		10*time.Second, 5*time.Millisecond)
	require.NoError(t, h.Cleanup())
	require.NoError(t, os.MkdirAll(stranded, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(stranded, "spool.jsonl"), []byte(`{"accepted_at":"x"}`+"\n"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(parent, "empty"), 0o700))

	_, logs = forwardHandler(t, ucs.url(), filepath.Join(parent, "current"))

	warns := logs.FilterMessage(othersMsg).All()
	require.Len(t, warns, 1, "only the directory that may hold events")
	assert.Equal(t, zapcore.WarnLevel, warns[0].Level)
	strandedAbs, _ := filepath.Abs(stranded)
	assert.Equal(t, strandedAbs, warns[0].ContextMap()["dir"])
	assert.Equal(t, []any{"spool.jsonl"}, warns[0].ContextMap()["files"])
}

func TestARequestReachingAForwardSinkAfterItsConfigIsGoneIsStillSpooledAndDelivered(t *testing.T) {
	fastReplay(t)
	ucs := newUCSServer(t)
	ucs.stop()
	dir := filepath.Join(t.TempDir(), "spool")
	old, logs := forwardHandler(t, ucs.url(), dir)
	forwardHandler(t, ucs.url(), filepath.Join(t.TempDir(), "elsewhere")) // the reload
	require.NoError(t, old.Cleanup())
	abs, _ := filepath.Abs(dir)
	require.False(t, spools.isOpen(abs), "nothing held the old spool open")

	// A request of the old config reaching the handler only now.
	assert.Equal(t, http.StatusNoContent, serveEvent(t, old, `{"n":0}`))

	assert.Equal(t, 1, logs.FilterMessage(drainingMsg).Len(), "its spooled event keeps the old directory draining")
	ucs.restart()
	require.Eventually(t, func() bool { return logs.FilterMessage(drainedMsg).Len() == 1 }, 20*time.Second, 5*time.Millisecond)
	assert.Equal(t, seq(0, 1), ucs.numbers())
}
