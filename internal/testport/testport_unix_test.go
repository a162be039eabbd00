//go:build unix

package testport

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAPortClaimedElsewhereOrListenedOnIsSkipped(t *testing.T) {
	port := Free(t)
	// Another open of the claim file is another claimant: flock locks
	// belong to the open file, so this stands for a second test process.
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "caddy-ucs-test-ports", strconv.Itoa(port)), os.O_RDONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	assert.False(t, lock(f), "the claim of port %d is held", port)

	// A port something already listens on is never handed out.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	assert.False(t, claim(busy.Addr().(*net.TCPAddr).Port))
}
