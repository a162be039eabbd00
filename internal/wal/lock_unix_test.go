//go:build unix

package wal

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/unprivileged"
)

func TestLockDirTellsAHeldLockFromOtherFailures(t *testing.T) {
	dir := t.TempDir()
	held, err := LockDir(filepath.Join(dir, ".lock"))
	require.NoError(t, err)
	defer held.Close()
	require.NoError(t, os.Symlink(filepath.Join(dir, ".lock"), filepath.Join(dir, "link")))

	tests := []struct {
		name     string
		path     string
		locked   bool
		errMatch func(error) bool
	}{
		{"a lock another owner holds", filepath.Join(dir, ".lock"), true, nil},
		{"a lock file that is a symbolic link", filepath.Join(dir, "link"), false,
			func(err error) bool { return strings.Contains(err.Error(), "too many levels of symbolic links") }},
		{"a directory that does not exist", filepath.Join(dir, "missing", ".lock"), false,
			func(err error) bool { return os.IsNotExist(err) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := LockDir(tt.path)
			require.Error(t, err)
			require.Nil(t, f)
			assert.Equal(t, tt.locked, errors.Is(err, ErrDirLocked), "%v", err)
			if tt.errMatch != nil {
				assert.True(t, tt.errMatch(err), "%v", err)
			}
		})
	}
}

func TestLockDirReportsPermissionDeniedAsSuch(t *testing.T) {
	if !unprivileged.Run(t) {
		return
	}
	dir := filepath.Join(t.TempDir(), "spool")
	require.NoError(t, os.Mkdir(dir, 0o500)) // readable, not writable

	f, err := LockDir(filepath.Join(dir, ".lock"))

	require.Error(t, err)
	require.Nil(t, f)
	assert.ErrorIs(t, err, fs.ErrPermission)
	assert.NotErrorIs(t, err, ErrDirLocked)
}
