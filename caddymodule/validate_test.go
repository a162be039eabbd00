package caddymodule

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ucsedge/caddy-ucs/internal/testport"
)

// treeOf lists every file and directory under root with its size: what a
// command that must not touch the disk may not change.
func treeOf(t *testing.T, root string) map[string]int64 {
	t.Helper()
	tree := map[string]int64{}
	require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		tree[rel] = info.Size()
		if d.IsDir() {
			tree[rel] = -1
		}
		return nil
	}))
	return tree
}

// TestValidateBesideARunningCaddyTakesNoLockAndCreatesNoFile runs the real
// binary with a spool and a journal (relative paths, as an operator who
// starts Caddy from its directory writes them), then `caddy validate` on
// the same Caddyfile from the same directory: it succeeds, warns about the
// relative paths, fetches the business attributes (checking the UCS) and
// leaves the working directory, HOME, the XDG data and config directories
// (where the cache of the fetched tables lives) and the storage as they
// were.
func TestValidateBesideARunningCaddyTakesNoLockAndCreatesNoFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildCaddy(t)
	ucs := newUCSServer(t)
	meta := newFakeUCS(t, metadata(map[string]int64{"Email": 2}, nil))
	port, journalPort := testport.Free(t), testport.Free(t)
	cfg := filepath.Join(dir, "Caddyfile")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, `{
	admin off
	persist_config off
	storage file_system %s
}
http://127.0.0.1:%d {
	ucs {
		forward %s {
			spool data/spool
		}
	}
	respond 404
}
http://127.0.0.1:%d {
	ucs {
		local data/events.jsonl
		business_attributes_from %s
	}
	respond 404
}
`, filepath.Join(dir, "storage"), port, ucs.url(), journalPort, meta.srv.URL), 0o600))
	cmd := startBinary(t, bin, dir, cfg, port)
	defer killHard(t, cmd)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/genesys/1/cs/services/42/tasks/7/end", journalPort),
		"application/json", strings.NewReader(`{id: 'before-validate'}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.FileExists(t, filepath.Join(dir, "data", "spool", ".lock"), "the running Caddy holds the spool")
	caches, err := filepath.Glob(filepath.Join(dir, "xdg-data", "caddy", "ucs", "attributes-*.json"))
	require.NoError(t, err)
	require.Len(t, caches, 1, "the running Caddy keeps its fetched tables")
	require.NoError(t, os.Remove(caches[0])) // so that a validate writing it would show
	fetches := meta.count()
	before := treeOf(t, dir)

	validate := exec.Command(bin, "validate", "--config", cfg, "--adapter", "caddyfile")
	validate.Dir = dir
	validate.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"))
	out, err := validate.CombinedOutput()

	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Valid configuration")
	assert.NotContains(t, string(out), "flock")
	for _, path := range []string{`"path":"data/spool"`, `"path":"data/events.jsonl"`} {
		assert.Contains(t, string(out), path, "the relative path is warned about")
	}
	assert.Equal(t, before, treeOf(t, dir), "validate changed the tree")
	assert.Greater(t, meta.count(), fetches, "validate checks the UCS answers")
}

// TestProvisioningChecksSinkPathsWithoutCreatingThem: provisioning (all
// that `caddy validate` does) refuses what cannot be created or written,
// naming the directive, and creates nothing, not even the directories of
// paths that are fine; starting the config creates them.
func TestProvisioningChecksSinkPathsWithoutCreatingThem(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	tests := []struct {
		name string
		h    *Handler
		err  string // "" when it provisions
	}{
		{"a journal in directories to be made", &Handler{Local: &LocalSink{Path: filepath.Join(root, "a", "b", "events.jsonl")}}, ""},
		{"a spool in directories to be made", &Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: filepath.Join(root, "c", "spool")}}, ""},
		{"a journal under a file", &Handler{Local: &LocalSink{Path: filepath.Join(file, "events.jsonl")}}, "ucs: local: " + file + " is not a directory"},
		{"a spool under a file", &Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: filepath.Join(file, "spool")}},
			"ucs: forward spool: " + file + " is not a directory"},
		{"a journal that is a directory", &Handler{Local: &LocalSink{Path: root}}, "ucs: local: " + root + " is a directory"},
		{"a dead letter under a file", &Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: filepath.Join(root, "d"),
			DeadLetter: filepath.Join(file, "dl.jsonl")}}, "ucs: forward dead_letter: " + file + " is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := treeOf(t, root)
			ctx, cancel := newTestContext(t)
			defer cancel()

			err := tt.h.Provision(ctx)
			defer tt.h.Cleanup()

			assert.Equal(t, before, treeOf(t, root), "provisioning created something")
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			startUCSApp(t, ctx)
			assert.NotEqual(t, before, treeOf(t, root), "starting opens the sink")
		})
	}
}

// TestAJournalRotatingDuringTheCheckStillChecksWritable pins the check a
// reload runs beside a live journal: the journal renames its file away and
// opens a new one, and a check caught between its stat and its access call
// must judge the directory, not fail with "no such file" (it failed a reload
// under load).
func TestAJournalRotatingDuringTheCheckStillChecksWritable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.Rename(path, filepath.Join(dir, fmt.Sprintf("events-%d.jsonl", i%4)))
			_ = os.WriteFile(path, nil, 0o600)
		}
	}()
	failures := 0
	for range 20000 {
		if err := checkWritableFile("local", path); err != nil {
			failures++
		}
	}
	close(stop)
	<-done
	assert.Zero(t, failures, "checks failed while the file rotated")
}

// Two handlers of one config that would write one file are refused while
// provisioning, whichever comes first.
func TestOneConfigCannotWriteOneFileFromTwoHandlers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	spool := filepath.Join(t.TempDir(), "spool")
	local := func() *Handler { return &Handler{Local: &LocalSink{Path: path}} }
	shadow := func() *Handler { return &Handler{Shadow: &ShadowMode{Journal: path}} }
	forward := func() *Handler {
		return &Handler{Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: spool}}
	}
	tests := []struct {
		name          string
		first, second func() *Handler
		err           string
	}{
		{"a local journal, then a shadow journal on it", local, shadow, "is both the local journal of a ucs handler and the shadow journal of another"},
		{"a shadow journal, then a local journal on it", shadow, local, "is both the local journal of a ucs handler and the shadow journal of another"},
		{"two spools on one directory", forward, forward, "already the spool of another forward sink in this config"},
		{"one journal with two sets of options", local, func() *Handler { return &Handler{Local: &LocalSink{Path: path, Fsync: "off"}} },
			"another ucs handler of this config names the same journal with other fsync, max_size or keep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := newTestContext(t)
			defer cancel()
			first, second := tt.first(), tt.second()
			require.NoError(t, first.Provision(ctx))
			defer first.Cleanup()

			err := second.Provision(ctx)
			defer second.Cleanup()

			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}

// TestTheStartupLineSaysWhatTheHandlerDoes: once the config starts, each
// handler says at info what it does; with no table at all it warns.
func TestTheStartupLineSaysWhatTheHandlerDoes(t *testing.T) {
	tests := []struct {
		name   string
		h      *Handler
		fields map[string]any
		warn   bool
	}{
		{"a journal and a file of tables", &Handler{BusinessAttributes: []string{attrsFile}, Local: &LocalSink{Path: "events.jsonl"}},
			map[string]any{"sink": "local", "fsync": true, "max_size": int64(DefaultJournalSize), "keep": int64(DefaultJournalKeep)}, false},
		{"no sink and no table", &Handler{}, map[string]any{"sink": "next"}, true},
		{"a spool and a tenant", &Handler{
			Forward: &ForwardSink{URLs: []string{"http://127.0.0.1:1"}, Spool: "spool"},
			Tenants: []*Tenant{{IDs: []string{"acme"}, AttributeValues: map[string]map[string]int64{"Task.type": {"Sale": 7}}}},
		}, map[string]any{"sink": "forward+spool", "spool_records": int64(0), "spool_bytes": int64(0)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			ctx, cancel := newTestContext(t)
			defer cancel()
			require.NoError(t, tt.h.Provision(ctx))
			defer tt.h.Cleanup()
			core, logs := observer.New(zapcore.InfoLevel)
			tt.h.logger = zap.New(core)

			startUCSApp(t, ctx)

			started := logs.FilterMessage("ucs handler started").All()
			require.Len(t, started, 1)
			got := started[0].ContextMap()
			for k, v := range tt.fields {
				assert.Equal(t, v, got[k], k)
			}
			assert.Equal(t, tt.warn, logs.FilterMessageSnippet("attribute names pass through unmapped").Len() == 1)
			if tt.h.Tenants != nil {
				assert.Equal(t, []any{"acme"}, got["tenants"])
				assert.Equal(t, map[string]int{"acme: TaskType": 1}, got["tables"])
			}
			if tt.h.BusinessAttributes != nil {
				assert.NotEmpty(t, got["tables"])
			}
		})
	}
}

// A request that reaches a handler before the ucs app opened its sink
// (Caddy starts its apps in no fixed order) waits for it, and is then
// journaled, not passed down the route.
func TestARequestBeforeTheAppStartedWaitsForTheSink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	ctx, cancel := newTestContext(t)
	defer cancel()
	h := &Handler{Local: &LocalSink{Path: path}}
	require.NoError(t, h.Provision(ctx))
	defer h.Cleanup()

	code := make(chan int, 1)
	go func() { code <- serveEvent(t, h, `{n: 1}`) }()
	select {
	case c := <-code:
		t.Fatalf("answered %d before the sink was open", c)
	case <-time.After(50 * time.Millisecond):
	}
	startUCSApp(t, ctx)

	assert.Equal(t, http.StatusNoContent, <-code)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"n":1`)
}

// Before the ucs app opened the sink, health says the gateway is starting
// (503), so a balancer waits; once it is open, ok.
func TestHealthSaysStartingUntilTheSinkIsOpen(t *testing.T) {
	ctx, cancel := newTestContext(t)
	defer cancel()
	h := &Handler{Health: true, Local: &LocalSink{Path: filepath.Join(t.TempDir(), "events.jsonl")}}
	require.NoError(t, h.Provision(ctx))
	defer h.Cleanup()
	health := func() (int, string) {
		w := httptest.NewRecorder()
		require.NoError(t, h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/genesys/1/cs/ucs/health", nil), nil))
		return w.Code, w.Body.String()
	}

	code, body := health()
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.JSONEq(t, `{"status":"starting"}`, body)

	startUCSApp(t, ctx)
	code, body = health()
	assert.Equal(t, http.StatusOK, code)
	var answer struct{ Status, Journal string } // spools of other tests still draining may show too
	require.NoError(t, json.Unmarshal([]byte(body), &answer))
	assert.Equal(t, "ok", answer.Status)
	assert.Equal(t, "ok", answer.Journal)
}
