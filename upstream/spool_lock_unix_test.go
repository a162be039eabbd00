//go:build unix

package upstream

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// asUnprivilegedUser runs the calling (top-level) test again in a child
// process as the user nobody when the tests run as root, whom file
// permissions do not stop, and reports whether the caller should run its
// body here: true when not root (or in the child), false once the child
// passed in the parent's place.
func asUnprivilegedUser(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return true
	}
	// The child needs a copy of the test binary it may execute.
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

func TestLockDirTellsAHeldLockFromOtherFailures(t *testing.T) {
	dir := t.TempDir()
	held, err := lockDir(filepath.Join(dir, ".lock"))
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
			f, err := lockDir(tt.path)
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
	if !asUnprivilegedUser(t) {
		return
	}
	dir := filepath.Join(t.TempDir(), "spool")
	require.NoError(t, os.Mkdir(dir, 0o500)) // readable, not writable

	f, err := lockDir(filepath.Join(dir, ".lock"))

	require.Error(t, err)
	require.Nil(t, f)
	assert.ErrorIs(t, err, fs.ErrPermission)
	assert.NotErrorIs(t, err, ErrDirLocked)
}
