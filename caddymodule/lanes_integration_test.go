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

// sendServices sends events events to each of services services (ids from 1000) from callers
// callers, each owning whole services so that each service's events go in order; send posts one
// loose body to a URL under base and checks the answer.
func sendServices(base string, callers, services, events int, pad string, send func(url string, body []byte)) {
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for k := range events {
				for s := g; s < services; s += callers {
					url := fmt.Sprintf(base+"/genesys/1/cs/services/%d/tasks/%d/end", 1000+s, k)
					send(url, fmt.Appendf(nil, "{svc: %d, k: %d, pad: '%s'}", s, k, pad))
				}
			}
		})
	}
	wg.Wait()
}

// eachServiceOnceInOrder checks that paths, in arrival order, hold every event of each of services
// services once, each service's in the order it was sent.
func eachServiceOnceInOrder(t *testing.T, paths []string, services, events int) {
	t.Helper()
	next := map[string]int{}
	for _, p := range paths {
		sid, tid := serviceOf(t, p)
		require.Equal(t, next[sid], tid, "service %s: out of order or twice", sid)
		next[sid]++
	}
	assert.Len(t, next, services)
	for sid, n := range next {
		assert.Equal(t, events, n, "service %s", sid)
	}
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
	sendServices(caddyURL, 8, services, events, strings.Repeat("x", 200), func(url string, body []byte) {
		resp, _ := post(t, tester, url, body)
		assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	})
	require.Equal(t, float64(services*events), scrape(t, spoolSeries(t, "spool_records", dir)))

	ucs.set(func(u *ucsServer) { u.delay = 10 * time.Millisecond })
	start := time.Now()
	ucs.restart()
	require.Eventually(t, func() bool { return len(ucs.received()) >= services*events }, 60*time.Second, 5*time.Millisecond)
	took := time.Since(start)
	require.Eventually(t, func() bool { return scrape(t, spoolSeries(t, "spool_records", dir)) == 0 },
		10*time.Second, 5*time.Millisecond)

	var paths []string
	for _, s := range ucs.received() {
		paths = append(paths, s.path)
	}
	eachServiceOnceInOrder(t, paths, services, events)
	t.Logf("%d events of %d services drained in %v through Caddy against a 10ms UCS: %.0f events/s",
		services*events, services, took.Round(time.Millisecond), float64(services*events)/took.Seconds())
}
