//go:build unix

package caddymodule

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// asUnprivilegedUser runs the calling (top-level) test again in a child
// process as the user nobody when the tests run as root, whom file
// permissions do not stop, and reports whether the caller should run its
// body here: true when not root (or in the child), false once the child
// passed in the parent's place. (upstream's tests hold the same helper.)
func asUnprivilegedUser(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return true
	}
	dir, err := os.MkdirTemp("", "ucs-nobody-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "test.bin")
	self, err := os.Executable() // os.Args[0] may have been changed by a command test
	require.NoError(t, err)
	src, err := os.Open(self)
	require.NoError(t, err)
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, src.Close())
	require.NoError(t, dst.Close())

	cmd := exec.Command(bin, "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("the test as user nobody:\n%s", out)
	require.NoError(t, err)
	require.Contains(t, string(out), "--- PASS: "+t.Name(), "the child ran the test")
	return false
}

func TestAnUnwritableSpoolDirectoryIsReportedAsPermissionDenied(t *testing.T) {
	if !asUnprivilegedUser(t) {
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
