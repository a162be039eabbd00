package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serviceOf reads the service id and the task id out of a Complete Task path.
func serviceOf(t *testing.T, path string) (string, int) {
	t.Helper()
	rest, ok := strings.CutPrefix(path, "/genesys/1/cs/services/")
	require.True(t, ok, path)
	sid, rest, _ := strings.Cut(rest, "/tasks/")
	tid, err := strconv.Atoi(strings.TrimSuffix(rest, "/end"))
	require.NoError(t, err, path)
	return sid, tid
}

// TestSpoolDrainsManyServicesConcurrentlyInOrder: 150 services × 10 events are spooled during an
// outage of a UCS that then takes 10 ms per call; they drain concurrently, every event exactly
// once and each service's events in the order the gateway accepted them.
func TestSpoolDrainsManyServicesConcurrentlyInOrder(t *testing.T) {
	ucs := newUCSServer(t)
	ucs.stop()
	dir := t.TempDir()
	tester := startCaddy(t, `
	ucs {
		forward `+ucs.url()+` {
			timeout 2s
			spool `+dir+`
			replay_concurrency 64
			replay_backoff 5ms 50ms
		}
	}
	respond 404`)
	const services, events = 150, 10
	// Eight callers, each owning whole services, so each service's events are sent in order.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for k := range events {
				for s := g; s < services; s += 8 {
					url := fmt.Sprintf(caddyURL+"/genesys/1/cs/services/%d/tasks/%d/end", 1000+s, k)
					resp, _ := post(t, tester, url, fmt.Appendf(nil, "{svc: %d, k: %d, pad: '%s'}", s, k, strings.Repeat("x", 200)))
					assert.Equal(t, http.StatusNoContent, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, float64(services*events), scrape(t, spoolSeries(t, "spool_records", dir)))

	ucs.set(func(u *ucsServer) { u.delay = 10 * time.Millisecond })
	start := time.Now()
	ucs.restart()
	require.Eventually(t, func() bool { return len(ucs.received()) >= services*events }, 60*time.Second, 5*time.Millisecond)
	took := time.Since(start)
	require.Eventually(t, func() bool { return scrape(t, spoolSeries(t, "spool_records", dir)) == 0 },
		10*time.Second, 5*time.Millisecond)

	next := map[string]int{}
	for _, s := range ucs.received() {
		sid, tid := serviceOf(t, s.path)
		require.Equal(t, next[sid], tid, "service %s: out of order or twice", sid)
		next[sid]++
	}
	assert.Len(t, next, services)
	t.Logf("%d events of %d services drained in %v through Caddy against a 10ms UCS: %.0f events/s",
		services*events, services, took.Round(time.Millisecond), float64(services*events)/took.Seconds())
}
