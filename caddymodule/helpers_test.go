package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/caddyserver/caddy/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Helpers of the process tests, which build the real binary and run it, and
// of the tests that look inside the stores of shared sinks.

// startBinary runs the built caddy with cfg and waits until it has
// started: its site answers on port and Caddy logged that it serves the
// config, which it does once every app's Start returned (a site answers
// while the ucs app still opens its sinks).
func startBinary(t *testing.T, bin, dir, cfg string, port int) *exec.Cmd {
	cmd := exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"))
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", port))
		if err == nil {
			resp.Body.Close()
			if strings.Contains(logs.String(), "serving initial configuration") {
				return cmd
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("caddy did not start: %s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lockedBuffer is a bytes.Buffer that a process writes while a test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
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

// builtCaddy is the real binary, built by the first process test that
// needs it into the test run's directory and shared by the others.
var builtCaddy struct {
	once sync.Once
	path string
	out  []byte
	err  error
}

// buildCaddy returns the path of the real binary (cmd/caddy), building it
// once per test run.
func buildCaddy(t *testing.T) string {
	t.Helper()
	builtCaddy.once.Do(func() {
		builtCaddy.path = filepath.Join(runDir, "caddy")
		build := exec.Command("go", "build", "-o", builtCaddy.path, "./cmd/caddy")
		build.Dir = ".."
		builtCaddy.out, builtCaddy.err = build.CombinedOutput()
	})
	require.NoError(t, builtCaddy.err, "%s", builtCaddy.out)
	return builtCaddy.path
}

func killHard(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
}

// writeForwardConfig writes the Caddyfile of a gateway on port with a
// forward sink to ucsURL spooling in spool, plus extra forward options, and
// returns its path.
func writeForwardConfig(t *testing.T, dir string, port int, ucsURL, spool, extra string) string {
	t.Helper()
	cfg := filepath.Join(dir, fmt.Sprintf("Caddyfile-%d", port))
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, `{
	admin off
	persist_config off
	storage file_system %s
}
http://127.0.0.1:%d {
	ucs {
		forward %s {
			timeout 2s
			spool %s
			%s
		}
	}
	respond 404
}
`, filepath.Join(dir, "storage"), port, ucsURL, spool, extra), 0o600))
	return cfg
}

// waitAllArrive waits until every acknowledged event (by the id in its
// body) has reached the UCS, and returns how many arrived more than once.
func waitAllArrive(t *testing.T, ucs *ucsServer, acked []string, within time.Duration) (duplicates int) {
	t.Helper()
	ids := func() map[string]int {
		seen := map[string]int{}
		for _, s := range ucs.received() {
			var ev struct {
				ID string `json:"id"`
			}
			if json.Unmarshal([]byte(s.body), &ev) == nil {
				seen[ev.ID]++
			}
		}
		return seen
	}
	require.Eventually(t, func() bool {
		seen := ids()
		for _, id := range acked {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	}, within, 20*time.Millisecond, "every acknowledged event reaches the UCS")
	for _, n := range ids() {
		duplicates += n - 1
	}
	return duplicates
}

// firstDeliveriesInOrder checks that the first delivery of each event, per
// service, follows the order its caller sent them in (task ids grow per
// caller), hands each first delivery to each (may be nil), and returns the
// services seen.
func firstDeliveriesInOrder(t *testing.T, ucs *ucsServer, each func(s seenRequest, sid string)) (services int) {
	t.Helper()
	received := ucs.received()
	keys, paths := make([]string, len(received)), make([]string, len(received))
	for i, s := range received {
		keys[i], paths[i] = s.body, s.path
	}
	return firstArrivalsInOrder(t, keys, paths, func(i int, sid string) {
		if each != nil {
			each(received[i], sid)
		}
	})
}

// firstArrivalsInOrder checks that the first arrival of each event (the calls by key, in arrival
// order, at paths) comes, per service, in the order of its task ids; each sees every first arrival.
// It returns the number of services.
func firstArrivalsInOrder(t *testing.T, keys, paths []string, each func(i int, sid string)) (services int) {
	t.Helper()
	last := map[string]int{}
	first := map[string]bool{}
	for i, key := range keys {
		if first[key] {
			continue
		}
		first[key] = true
		sid, tid := serviceOf(t, paths[i])
		assert.Greater(t, tid+1, last[sid], "service %s out of order", sid)
		last[sid] = tid + 1
		if each != nil {
			each(i, sid)
		}
	}
	return len(last)
}

// openSinkOf is the sink a store has open for key, or nil: tests compare it
// across reloads to show that one sink stayed open.
func openSinkOf(s *sinkStore, key string) storedSink {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[key]
}

// referencesOf returns the references held on the sink of key (handlers,
// requests in flight, a drain) and whether one is open.
func referencesOf(s *sinkStore, key string) (int, bool) {
	v := openSinkOf(s, key)
	if v == nil {
		return 0, false
	}
	return int(v.refCounter().n.Load()), true
}

// newTestContext is a Caddy context of a config of its own, as Caddy gives
// a module while it loads one, so that a handler finds its ucs app.
func newTestContext(t testing.TB) (caddy.Context, context.CancelFunc) {
	base, err := caddy.ProvisionContext(nil)
	require.NoError(t, err)
	return caddy.NewContext(base)
}

// startUCSApp starts the ucs app of ctx's config, as Caddy does when the
// config runs: the handlers provisioned in ctx open their sinks. The app
// stops when the test ends.
func startUCSApp(t testing.TB, ctx caddy.Context) {
	require.NoError(t, startUCS(t, ctx))
}

// startUCS is startUCSApp returning Start's error.
func startUCS(t testing.TB, ctx caddy.Context) error {
	v, err := ctx.App("ucs")
	require.NoError(t, err)
	app := v.(*App)
	if err := app.Start(); err != nil {
		return err
	}
	t.Cleanup(func() { _ = app.Stop() })
	return nil
}

// clients runs n copies of run, each until stop is closed. The returned
// function closes it and waits for them; the test's end calls it too, so a
// failed require never leaves clients calling the next test's Caddy.
func clients(t *testing.T, n int, run func(c int, stop <-chan struct{})) (stopAndWait func()) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range n {
		wg.Go(func() { run(c, stop) })
	}
	var once sync.Once
	stopAndWait = func() { once.Do(func() { close(stop); wg.Wait() }) }
	t.Cleanup(stopAndWait)
	return stopAndWait
}
