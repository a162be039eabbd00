package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startBinary runs the built caddy with cfg and waits until it answers.
func startBinary(t *testing.T, bin, dir, cfg string, port int) *exec.Cmd {
	cmd := exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", port))
		if err == nil {
			resp.Body.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("caddy did not start: %s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKillDuringLoadLosesNoAcknowledgedEvent builds the real binary, loads
// it with concurrent Complete Task calls, kills it with SIGKILL mid-load and
// restarts it: every call answered 204 must be exactly one complete line in
// the journal, and no line may be torn.
func TestKillDuringLoadLosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildCaddy(t, dir)

	port := freePort(t)
	journal := filepath.Join(dir, "data", "events.jsonl")
	cfg := filepath.Join(dir, "Caddyfile")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %s
}
http://127.0.0.1:%d {
	ucs {
		local %s
	}
	respond 404
}
`, filepath.Join(dir, "storage"), port, journal)), 0o600))

	cmd := startBinary(t, bin, dir, cfg, port)
	url := fmt.Sprintf("http://127.0.0.1:%d/genesys/1/cs/services/42/tasks/7/end", port)
	client := &http.Client{Timeout: 5 * time.Second}
	// Loose JSON with a body large enough for writes to tear.
	load := startLoad(client, url, 2000)
	load.waitAcked(t, 200)
	killHard(t, cmd)
	acked := load.stop()

	// The restart cuts off a torn tail before appending; one more call
	// proves the journal is writable again.
	cmd = startBinary(t, bin, dir, cfg, port)
	resp, err := client.Post(url, "application/json", strings.NewReader(`{id: 'after-restart'}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	killHard(t, cmd)

	data, err := os.ReadFile(journal)
	require.NoError(t, err)
	require.True(t, bytes.HasSuffix(data, []byte("\n")))
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Event struct {
				ID string `json:"id"`
			} `json:"event"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), "torn line %q", sc.Text())
		seen[rec.Event.ID]++
	}
	require.NoError(t, sc.Err())
	t.Logf("%d calls acknowledged before the kill, %d lines in the journal", len(acked), len(seen))
	for _, id := range acked {
		assert.Equal(t, 1, seen[id], "acknowledged event %s", id)
	}
	for id, n := range seen {
		assert.Equal(t, 1, n, "event %s journaled %d times", id, n)
	}
	assert.Equal(t, 1, seen["after-restart"])
}

// load is concurrent Complete Task calls with unique ids, sent until the
// server is killed; it records the ids answered 204.
type load struct {
	mu    sync.Mutex
	acked []string
	count atomic.Int64
	wg    sync.WaitGroup
	done  atomic.Bool
}

// startLoad starts 8 callers posting loose bodies ({id: '…', pad: "…"})
// with pad bytes of padding.
func startLoad(client *http.Client, url string, pad int) *load {
	return startLoadOn(client, func(int, int) string { return url }, pad)
}

// startLoadOn is startLoad with the URL of call i of caller g given by
// urlOf, so callers can own services of their own.
func startLoadOn(client *http.Client, urlOf func(g, i int) string, pad int) *load {
	l := &load{}
	for g := range 8 {
		l.wg.Go(func() {
			for i := 0; !l.done.Load(); i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				body := fmt.Sprintf("{id: '%s', pad: %q,}", id, strings.Repeat("x", pad))
				resp, err := client.Post(urlOf(g, i), "application/json", strings.NewReader(body))
				if err != nil {
					return // the server was killed
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusNoContent {
					l.mu.Lock()
					l.acked = append(l.acked, id)
					l.mu.Unlock()
					l.count.Add(1)
				}
			}
		})
	}
	return l
}

// waitAcked waits until n calls have been answered 204, and fails the test
// when that takes over two minutes: a broken server must not hang it.
func (l *load) waitAcked(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for l.count.Load() < n {
		if time.Now().After(deadline) {
			l.done.Store(true)
			t.Fatalf("only %d of %d calls answered 204 within two minutes", l.count.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends the load (call it once the server is killed) and returns the
// ids answered 204.
func (l *load) stop() []string {
	l.done.Store(true)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked
}

// buildCaddy builds the real binary (cmd/caddy) into dir.
func buildCaddy(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	build.Dir = ".."
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

func killHard(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
}
