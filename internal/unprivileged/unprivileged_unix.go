//go:build unix

// Package unprivileged lets a test that needs file permissions to apply run
// as an ordinary user when the tests run as root (as CI does). Test code only.
package unprivileged

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// Run runs the calling (top-level) test again in a child
// process as the user nobody when the tests run as root, whom file
// permissions do not stop, and reports whether the caller should run its
// body here: true when not root (or in the child), false once the child
// passed in the parent's place.
func Run(t *testing.T) bool {
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
