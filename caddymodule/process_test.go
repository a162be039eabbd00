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
	bin := filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	build.Dir = ".."
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

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
	var (
		mu    sync.Mutex
		acked []string
		count atomic.Int64
		wg    sync.WaitGroup
		stop  atomic.Bool
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				// Loose JSON with a body large enough for writes to tear.
				body := fmt.Sprintf("{id: '%s', pad: %q,}", id, strings.Repeat("x", 2000))
				resp, err := client.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					return // the server was killed
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusNoContent {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
					count.Add(1)
				}
			}
		}()
	}
	for count.Load() < 200 {
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	stop.Store(true)
	wg.Wait()

	// The restart cuts off a torn tail before appending; one more call
	// proves the journal is writable again.
	cmd = startBinary(t, bin, dir, cfg, port)
	resp, err := client.Post(url, "application/json", strings.NewReader(`{id: 'after-restart'}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

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
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d calls acknowledged before the kill, %d lines in the journal", len(acked), len(seen))
	for _, id := range acked {
		assert.Equal(t, 1, seen[id], "acknowledged event %s", id)
	}
	for id, n := range seen {
		assert.Equal(t, 1, n, "event %s journaled %d times", id, n)
	}
	assert.Equal(t, 1, seen["after-restart"])
}
