package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// capacityStub is a UCS of capacity c: 10ms per call up to c in flight, 10ms × n/c beyond, 503
// at once past 3c. While down it answers 503. It records the paths it took, in arrival order,
// and the most calls it had at once.
type capacityStub struct {
	c    int
	down atomic.Bool

	mu       sync.Mutex
	inFlight int
	peak     int
	refused  int
	paths    []string
}

func (u *capacityStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	u.mu.Lock()
	u.inFlight++
	n := u.inFlight
	u.peak = max(u.peak, n)
	if n > 3*u.c {
		u.inFlight--
		u.refused++
		u.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	u.mu.Unlock()
	time.Sleep(10 * time.Millisecond * time.Duration(max(n, u.c)) / time.Duration(u.c))
	u.mu.Lock()
	u.inFlight--
	u.paths = append(u.paths, r.URL.Path)
	u.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// TestAutoReplayConcurrencyDrainsABacklogWithinTheUCSCapacity: a backlog of 100 services × 20
// events, spooled through Caddy during an outage, drains with the default replay_concurrency
// (auto) into a UCS of capacity 16. The UCS never has more than three times its capacity in
// flight (it would refuse), every event arrives once, in order per service, and the limit is
// exposed as caddy_ucs_spool_replay_concurrency.
func TestAutoReplayConcurrencyDrainsABacklogWithinTheUCSCapacity(t *testing.T) {
	const capacity = 16
	ucs := &capacityStub{c: capacity}
	ucs.down.Store(true)
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
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for k := range events {
				for s := g; s < services; s += 4 {
					url := fmt.Sprintf(caddyURL+"/genesys/1/cs/services/%d/tasks/%d/end", 1000+s, k)
					resp, _ := post(t, tester, url, fmt.Appendf(nil, "{svc: %d, k: %d}", s, k))
					assert.Equal(t, http.StatusNoContent, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, float64(services*events), scrape(t, spoolSeries(t, "spool_records", dir)))
	limit, ok := sample(t, spoolSeries(t, "spool_replay_concurrency", dir))
	require.True(t, ok, "the limit is exposed per spool")
	assert.GreaterOrEqual(t, limit, 1.0)

	ucs.down.Store(false)
	var grown float64
	require.Eventually(t, func() bool {
		grown = max(grown, scrape(t, spoolSeries(t, "spool_replay_concurrency", dir)))
		return scrape(t, spoolSeries(t, "spool_records", dir)) == 0
	}, 60*time.Second, 5*time.Millisecond)

	ucs.mu.Lock()
	defer ucs.mu.Unlock()
	assert.LessOrEqual(t, ucs.peak, 3*capacity, "the UCS never had more than 3C in flight")
	assert.Zero(t, ucs.refused)
	assert.Greater(t, grown, float64(capacity)/2, "the limit grew towards the UCS's capacity")
	next := map[string]int{}
	for _, p := range ucs.paths {
		sid, tid := serviceOf(t, p)
		require.Equal(t, next[sid], tid, "service %s: out of order or twice", sid)
		next[sid]++
	}
	assert.Len(t, next, services)
	for sid, n := range next {
		assert.Equal(t, events, n, "service %s", sid)
	}
	t.Logf("peak %d in flight at a UCS of capacity %d; the limit reached %.0f", ucs.peak, capacity, grown)
}
