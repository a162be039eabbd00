package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/testport"
)

// TestKillDuringLoadLosesNoAcknowledgedEvent builds the real binary, loads
// it with concurrent Complete Task calls, kills it with SIGKILL mid-load and
// restarts it: every call answered 204 must be exactly one complete line in
// the journal, and no line may be torn.
func TestKillDuringLoadLosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildCaddy(t)

	port := testport.Free(t)
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
