//go:build unix

package caddymodule

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/unprivileged"
)

func TestAnUnwritableSpoolDirectoryIsReportedAsPermissionDenied(t *testing.T) {
	if !unprivileged.Run(t) {
		return
	}
	dir := filepath.Join(t.TempDir(), "spool")
	require.NoError(t, os.Mkdir(dir, 0o500)) // readable, not writable
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: dir}}

	err := h.Provision(ctx)

	require.Error(t, err)
	assert.Contains(t, err.Error(), "permission denied")
	assert.NotContains(t, err.Error(), "in use by another spool")
	_ = h.Cleanup()
}

func TestSinkPathsThatAreSymlinksAreRefusedUnlessFollowed(t *testing.T) {
	dir := t.TempDir()
	realFile, realDir := filepath.Join(dir, "real.jsonl"), filepath.Join(dir, "real-spool")
	require.NoError(t, os.WriteFile(realFile, nil, 0o600))
	require.NoError(t, os.Mkdir(realDir, 0o700))
	linkFile, linkDir := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "spool")
	require.NoError(t, os.Symlink(realFile, linkFile))
	require.NoError(t, os.Symlink(realDir, linkDir))
	tests := []struct {
		name string
		h    *Handler
		err  string // "" when it opens
	}{
		{"a journal file that is a link", &Handler{Local: &LocalSink{Path: linkFile}},
			"it is a symbolic link, which is refused (follow_symlinks in the local block allows it)"},
		{"a journal file that is a link, followed", &Handler{Local: &LocalSink{Path: linkFile, FollowSymlinks: true}}, ""},
		{"a spool directory that is a link", &Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: linkDir}},
			"it is a symbolic link, which is refused (follow_symlinks in the forward block allows it)"},
		{"a dead letter that is a link", &Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: realDir, DeadLetter: linkFile}},
			"it is a symbolic link, which is refused (follow_symlinks in the forward block allows it)"},
		{"a spool directory that is a link, followed",
			&Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: linkDir, FollowSymlinks: true}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()

			err := tt.h.Provision(ctx)
			defer tt.h.Cleanup()

			if tt.err == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}
