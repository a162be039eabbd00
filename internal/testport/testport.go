// Package testport hands tests TCP ports that stay theirs between the probe
// that finds them free and the server that binds them later.
//
// A port found with Listen("127.0.0.1:0") and closed again lies in the
// kernel's ephemeral range, where every outgoing connection and every other
// Listen(":0") of the machine draws its ports: in the gap before the test's
// Caddy binds it, a parallel test's httptest server or a client socket can
// take it (Caddy then fails to load, or a "closed" upstream answers). Ports
// from here lie below that range, so the kernel never hands them out, and
// each is claimed with a lock file for the life of the test process, so two
// test binaries running at once (go test ./..., or two runs on one machine)
// never share one.
package testport

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The band searched: below Linux's default ephemeral range (32768–60999)
// and above the well-known ports most services use.
const (
	bandLow  = 20000
	bandHigh = 32000
)

var (
	mu   sync.Mutex
	next int
	// held keeps the claim files open: the claim lasts until the process
	// exits, however it exits.
	held []*os.File
)

// Free returns a loopback TCP port that nothing listens on now and that no
// other caller of Free, in this process or another, is given while this
// process runs.
func Free(tb testing.TB) int {
	tb.Helper()
	port, err := Claim()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// Claim is Free for code that has no testing.TB (a package's init).
func Claim() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	low, high := band()
	if next == 0 {
		// Processes start at different places, so concurrent ones rarely
		// even test the same ports.
		next = low + os.Getpid()*7919%(high-low)
	}
	for tried := 0; tried < high-low; tried++ {
		port := next
		next++
		if next >= high {
			next = low
		}
		if claim(port) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("testport: no free port in %d–%d", low, high)
}

// Addr is Free as a loopback host:port.
func Addr(tb testing.TB) string {
	tb.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(Free(tb)))
}

// band is the search band, moved below the ephemeral range when a machine
// starts that range lower than usual.
func band() (int, int) {
	low, high := bandLow, bandHigh
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if ephemeral, err := strconv.Atoi(f[0]); err == nil && ephemeral < high && ephemeral-2000 > 1024 {
				low, high = max(1024, ephemeral-12000), ephemeral
			}
		}
	}
	return low, high
}

// claim takes port for this process if no other process holds it and
// nothing listens on it.
func claim(port int) bool {
	f, err := claimFile(port)
	if err != nil {
		// A directory made by another user (a test run again as nobody):
		// no claim to take, so the probe alone decides.
		f = nil
	} else if !lock(f) {
		f.Close()
		return false
	}
	// Caddy binds every interface for its http_port: probe the same.
	for _, addr := range []string{fmt.Sprintf(":%d", port), fmt.Sprintf("127.0.0.1:%d", port)} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if f != nil {
				f.Close()
			}
			return false
		}
		l.Close()
	}
	if f != nil {
		held = append(held, f)
	}
	return true
}

// claimFile opens the file whose lock is the claim on port. The directory
// is shared by every user, as /tmp is; a lock needs only a read-only open.
func claimFile(port int) (*os.File, error) {
	dir := filepath.Join(os.TempDir(), "caddy-ucs-test-ports")
	if err := os.Mkdir(dir, 0o777); err == nil {
		_ = os.Chmod(dir, 0o777|os.ModeSticky) // past the umask
	} else if !os.IsExist(err) {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDONLY, 0o444)
}
