package caddymodule

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/capacityucs"
	"github.com/ucsedge/caddy-ucs/internal/testport"
)

// TestAutoReplayConcurrencyDrainsABacklogWithinTheUCSCapacity: a backlog of 100 services × 20
// events, spooled through Caddy during an outage, drains with the default replay_concurrency
// (auto) into a UCS of capacity 16. The UCS never has more than three times its capacity in
// flight (it would refuse), every event arrives once, in order per service, and the limit is
// exposed as caddy_ucs_spool_replay_concurrency.
func TestAutoReplayConcurrencyDrainsABacklogWithinTheUCSCapacity(t *testing.T) {
	const capacity = 16
	ucs := capacityucs.New(capacity, 10*time.Millisecond)
	ucs.Down.Store(true)
	srv := httptest.NewServer(ucs)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	tester := startCaddy(t, `
	ucs {
		forward `+srv.URL+` {
			timeout 2s
			spool `+dir+`
			replay_backoff 5ms 50ms
		}
	}
	respond 404`)
	const services, events = 100, 20
	sendServices(caddyURL, 4, services, events, "", func(url string, body []byte) {
		resp, _ := post(t, tester, url, body)
		assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	})
	require.Equal(t, float64(services*events), scrape(t, spoolSeries(t, "spool_records", dir)))
	limit, ok := sample(t, spoolSeries(t, "spool_replay_concurrency", dir))
	require.True(t, ok, "the limit is exposed per spool")
	assert.GreaterOrEqual(t, limit, 1.0)

	ucs.Down.Store(false)
	var grown float64
	require.Eventually(t, func() bool {
		grown = max(grown, scrape(t, spoolSeries(t, "spool_replay_concurrency", dir)))
		return scrape(t, spoolSeries(t, "spool_records", dir)) == 0
	}, 60*time.Second, 5*time.Millisecond)

	seen := ucs.Stats()
	assert.LessOrEqual(t, seen.Peak, 3*capacity, "the UCS never had more than 3C in flight")
	assert.Zero(t, seen.Refused)
	// Beyond its start of 4: how far depends on the round trips the machine adds (a quiet one
	// reaches about the capacity, 14 of 16; a loaded race run 7 to 12).
	assert.Greater(t, grown, 4.0, "the limit grew from its start towards the UCS's capacity")
	var paths []string
	for _, call := range seen.Calls {
		paths = append(paths, call.Path)
	}
	eachServiceOnceInOrder(t, paths, services, events)
	t.Logf("peak %d in flight at a UCS of capacity %d; the limit reached %.0f", seen.Peak, capacity, grown)
}

// TestAutoReplayConcurrencyKeepsTheBuiltGatewayWithinTheUCSCapacity is the process form: the
// built binary with the default replay_concurrency (auto) spools 60 services × 20 events during an
// outage, then drains them into a UCS of capacity 16. The UCS never has more than 3C in flight
// (it would answer 503), and every event arrives once, in order per service.
func TestAutoReplayConcurrencyKeepsTheBuiltGatewayWithinTheUCSCapacity(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary; skipped with -short")
	}
	const capacity, services, events = 16, 60, 20
	dir := t.TempDir()
	bin := buildCaddy(t)
	ucs := capacityucs.New(capacity, 10*time.Millisecond)
	ucs.Down.Store(true)
	srv := httptest.NewServer(ucs)
	t.Cleanup(srv.Close)
	port := testport.Free(t)
	cfg := writeForwardConfig(t, dir, port, srv.URL, filepath.Join(dir, "spool"), "replay_backoff 5ms 50ms")
	cmd := startBinary(t, bin, dir, cfg, port)
	defer killHard(t, cmd)

	client := &http.Client{Timeout: 5 * time.Second}
	sendServices(fmt.Sprintf("http://127.0.0.1:%d", port), 4, services, events, "", func(url string, body []byte) {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if assert.NoError(t, err) {
			resp.Body.Close()
			assert.Equal(t, http.StatusNoContent, resp.StatusCode)
		}
	})
	ucs.Down.Store(false)
	require.Eventually(t, func() bool { return len(ucs.Stats().Calls) >= services*events }, 60*time.Second, 10*time.Millisecond,
		"the backlog drains")

	seen := ucs.Stats()
	assert.LessOrEqual(t, seen.Peak, 3*capacity, "the UCS never had more than 3C in flight")
	assert.Zero(t, seen.Refused, "nothing answered 503 for overload")
	var paths []string
	for _, call := range seen.Calls {
		paths = append(paths, call.Path)
	}
	eachServiceOnceInOrder(t, paths, services, events)
	t.Logf("peak %d in flight at a UCS of capacity %d", seen.Peak, capacity)
}
