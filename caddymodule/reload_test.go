package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testGate is a real Caddy middleware for these tests, placed before ucs
// in a route: it reports each request that reaches it and, while a test
// holds it, keeps the request there until released. That puts a request in
// flight across a config reload at a known point.
type testGate struct {
	Name string `json:"name,omitempty"`
}

// gateState is what a test sets for a gate name: arrived receives one
// value per request; a non-nil release holds each request until closed.
type gateState struct {
	arrived chan struct{}
	release chan struct{}
}

var gates sync.Map // name → *gateState

func init() {
	caddy.RegisterModule(testGate{})
	httpcaddyfile.RegisterHandlerDirective("ucs_test_gate", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		if !h.NextArg() {
			return nil, h.ArgErr()
		}
		return testGate{Name: h.Val()}, nil
	})
}

func (testGate) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.ucs_test_gate", New: func() caddy.Module { return new(testGate) }}
}

func (g testGate) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if v, ok := gates.Load(g.Name); ok {
		st := v.(*gateState)
		st.arrived <- struct{}{}
		if st.release != nil {
			<-st.release
		}
	}
	return next.ServeHTTP(w, r)
}

// loadSite replaces the running config with one site block on caddyURL,
// as `caddy reload` does (forced, so an identical config reloads too), and
// drops tester's idle connections (tester may be nil): the old server
// closed them, and a POST sent on one before the client saw it closed
// fails with EOF (Go resends only idempotent requests), which a loaded
// machine shows.
func loadSite(t *testing.T, tester *caddytest.Tester, site string) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(siteConfig(globalOptions, site)), nil)
	require.NoError(t, err)
	require.NoError(t, caddy.Load(cfg, true))
	if tester != nil {
		tester.Client.CloseIdleConnections()
	}
}

// journalCounts counts the journal lines per event "n" in the files.
func journalCounts(t *testing.T, paths ...string) (map[int]int, int) {
	t.Helper()
	counts := map[int]int{}
	lines := 0
	for _, p := range paths {
		f, err := os.Open(p)
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var rec struct {
				Event struct {
					N int `json:"n"`
				} `json:"event"`
			}
			require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), "line %q of %s", sc.Text(), p)
			counts[rec.Event.N]++
			lines++
		}
		require.NoError(t, sc.Err())
		f.Close()
	}
	return counts, lines
}

func TestARequestInFlightAcrossAReloadIsJournaledWhereItsConfigSaid(t *testing.T) {
	dir := t.TempDir()
	pathA, pathB := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	rec := newRecorder(t)
	site := func(path string, depth int) string {
		return fmt.Sprintf("route {\nucs_test_gate inflight\nucs {\nmax_depth %d\nlocal %s\n}\nreverse_proxy %s\n}", depth, path, rec.addr())
	}
	tests := []struct {
		name     string
		reloadTo string
		// hold keeps the request before ucs until the old config is gone;
		// otherwise it is inside ucs, reading its body, during the reload.
		hold bool
	}{
		{"reading its body while the reload keeps the journal", pathA, false},
		{"reading its body while the reload moves the journal", pathB, false},
		{"reaching the handler after its config was cleaned up", pathB, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &gateState{arrived: make(chan struct{}, 1)}
			if tt.hold {
				st.release = make(chan struct{})
			}
			gates.Store("inflight", st)
			t.Cleanup(func() { gates.Delete("inflight") })
			tester := startCaddy(t, site(pathA, 10))
			before, _ := journalCounts(t, pathA, pathB)

			body, bodyW := io.Pipe()
			req, err := http.NewRequest(http.MethodPost, taskEndURL, body)
			require.NoError(t, err)
			answered := make(chan *http.Response, 1)
			go func() {
				resp, err := tester.Client.Do(req)
				if !assert.NoError(t, err) {
					answered <- nil
					return
				}
				resp.Body.Close()
				answered <- resp
			}()
			<-st.arrived
			loadSite(t, tester, site(tt.reloadTo, 20+i)) // Cleanup of the old config has run when Load returns
			if tt.hold {
				close(st.release)
			}
			_, err = fmt.Fprintf(bodyW, `{"n": %d}`, 1000+i)
			require.NoError(t, err)
			require.NoError(t, bodyW.Close())
			resp := <-answered

			require.NotNil(t, resp)
			assert.Equal(t, http.StatusNoContent, resp.StatusCode)
			after, _ := journalCounts(t, pathA)
			assert.Equal(t, before[1000+i]+1, after[1000+i], "the event is in the journal of the config that took it")
			rec.mu.Lock()
			defer rec.mu.Unlock()
			assert.Zero(t, rec.calls, "no Task End call reaches the next handler")
		})
	}
}

func TestEveryEventAnswered204IsJournaledExactlyOnceAcrossReloads(t *testing.T) {
	const callers, reloads = 8, 12
	rec := newRecorder(t)
	const small = "fsync off\nmax_size 4KiB\nkeep 1000"
	tests := []struct {
		name  string
		paths []string // the journal of each successive config, in turn
		opts  []string // the local block of each successive config, in turn
	}{
		{"the reloads keep the journal path", []string{"events.jsonl"}, []string{""}},
		{"the reloads move the journal between two paths", []string{"a.jsonl", "b.jsonl"}, []string{""}},
		// The last config (reloads is even) has the small files: a journal
		// kept with the first options would never rotate.
		{"the reloads change the journal's options", []string{"events.jsonl"}, []string{small, "keep 1000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			for _, p := range tt.paths {
				paths = append(paths, filepath.Join(dir, p))
			}
			site := func(i int) string {
				return fmt.Sprintf("ucs {\nmax_depth %d\nlocal %s {\n%s\n}\n}\nreverse_proxy %s", 10+i, paths[i%len(paths)], tt.opts[i%len(tt.opts)], rec.addr())
			}
			startCaddy(t, site(0))

			var next, answered, refused, failed atomic.Int64
			var mu sync.Mutex
			status := map[int]int{} // n → status; 0 when the call failed
			url := taskEndURL       // the clients' own: the next test's site port is another
			stopClients := clients(t, callers, func(_ int, stop <-chan struct{}) {
				client := &http.Client{Timeout: 30 * time.Second}
				for {
					select {
					case <-stop:
						return
					default:
					}
					n := int(next.Add(1))
					resp, err := client.Post(url, "application/json", bytes.NewReader(fmt.Appendf(nil, `{"n": %d}`, n)))
					code := 0
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						code = resp.StatusCode
					}
					switch code {
					case http.StatusNoContent:
						answered.Add(1)
					case 0:
						failed.Add(1)
					default:
						refused.Add(1)
					}
					mu.Lock()
					status[n] = code
					mu.Unlock()
				}
			})
			for i := 1; i <= reloads; i++ {
				// Each reload happens under load: wait for answers since the last one.
				target := answered.Load() + 200
				require.Eventually(t, func() bool { return answered.Load() >= target }, 30*time.Second, time.Millisecond)
				loadSite(t, nil, site(i)) // the clients count what a reload cuts
			}
			target := answered.Load() + 200
			require.Eventually(t, func() bool { return answered.Load() >= target }, 30*time.Second, time.Millisecond)
			stopClients()

			files, err := filepath.Glob(filepath.Join(dir, "*.jsonl")) // with the rotated ones
			require.NoError(t, err)
			counts, lines := journalCounts(t, files...)
			missing, doubled, failedButJournaled := 0, 0, 0
			for n, code := range status {
				switch {
				case code == http.StatusNoContent && counts[n] != 1:
					missing++
				case counts[n] > 1:
					doubled++
				case code == 0 && counts[n] == 1:
					failedButJournaled++
				}
			}
			t.Logf("%s: %d reloads, %d calls, %d answered 204, %d journal lines; %d answered otherwise; "+
				"%d calls failed on the client side (connection closed by a reload), %d of them journaled",
				tt.name, reloads, next.Load(), answered.Load(), lines, refused.Load(), failed.Load(), failedButJournaled)
			assert.Zero(t, missing, "events answered 204 but not journaled exactly once")
			assert.Zero(t, doubled, "events journaled twice")
			assert.Zero(t, refused.Load(), "answers other than 204")
			assert.LessOrEqual(t, int64(lines), answered.Load()+failed.Load(), "no line without a call")
			rec.mu.Lock()
			defer rec.mu.Unlock()
			assert.Zero(t, rec.calls, "no Task End call reaches the next handler")
			if tt.opts[0] != small {
				return
			}
			open := openSinkOf(journals, paths[0]).(*sharedJournal)
			assert.True(t, open.opts.NoSync, "the last config's fsync")
			assert.Equal(t, int64(4096), open.opts.MaxSize, "the last config's max_size")
			// Each config's files show its options: the small ones rotate at
			// 4 KiB; under the default 100 MiB a file grows until the next
			// small config rotates it.
			smallFiles, bigFiles := 0, 0
			for _, f := range files {
				fi, err := os.Stat(f)
				require.NoError(t, err)
				if fi.Size() <= 4096 {
					smallFiles++
				} else {
					bigFiles++
				}
			}
			active, err := os.Stat(paths[0])
			require.NoError(t, err)
			assert.LessOrEqual(t, active.Size(), int64(4096), "the last config's max_size")
			assert.GreaterOrEqual(t, smallFiles, reloads/2, "every small config rotated")
			assert.GreaterOrEqual(t, bigFiles, reloads/2-1, "every default config grew a file past 4 KiB")
		})
	}
}
