package upstream

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flapUCS is the UCS a probe showed the breaker flapping against: it takes a request when it is
// the only one in flight and answers 503 otherwise, each after latency. While healthy it takes
// every request.
type flapUCS struct {
	latency time.Duration
	healthy atomic.Bool
	down    atomic.Bool

	mu       sync.Mutex
	inFlight int
	got      []laneEvent
	at       []time.Time
}

func (u *flapUCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if u.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	u.mu.Lock()
	u.inFlight++
	alone := u.inFlight == 1 || u.healthy.Load()
	u.mu.Unlock()
	time.Sleep(u.latency)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.inFlight--
	if !alone {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var ev laneEvent
	_ = json.Unmarshal(body, &ev)
	u.got = append(u.got, ev)
	u.at = append(u.at, time.Now())
	w.WriteHeader(http.StatusNoContent)
}

func (u *flapUCS) delivered(since time.Time) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, at := range u.at {
		n += btoi(!at.Before(since))
	}
	return n
}

// TestAgainstAUCSThatTakesOneRequestAtATimeTheBreakerSettlesWithAuto: the UCS answers the
// breaker's single probe with 204 and any load with 503. With a fixed limit each close of the
// breaker released the whole window, and the breaker opened again at once; a fixed limit still
// spends the UCS's one place on requests it refuses. With auto the limit starts again from one
// after each close and seldom tries two, the breaker stays closed, and deliveries go on at about
// one per latency. Nothing is lost or reordered.
func TestAgainstAUCSThatTakesOneRequestAtATimeTheBreakerSettlesWithAuto(t *testing.T) {
	const latency, watch = 10 * time.Millisecond, 4 * time.Second
	const paced = int(watch / latency / 2) // half of one delivery per latency
	autoDelivered := 0
	for _, tc := range []struct {
		name    string
		policy  ReplayPolicy
		settles bool
	}{
		{"auto", ReplayPolicy{}, true},
		{"fixed 64", ReplayPolicy{Concurrency: 64}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ucs := &flapUCS{latency: latency}
			srv := httptest.NewServer(ucs)
			t.Cleanup(srv.Close)
			ucs.down.Store(true)
			var opens atomic.Int32
			s := openTestSpool(t, t.TempDir(), srv.URL, func(o *SpoolOptions) {
				p := tc.policy
				p.MinBackoff, p.MaxBackoff = 50*time.Millisecond, time.Second
				o.Replay = p
				o.OnUpstreamDown = func(down bool) {
					if down {
						opens.Add(1)
					}
				}
			})
			const lanes, events = 40, 30
			spoolLanes(t, s, lanes, events)
			require.Eventually(t, func() bool { return opens.Load() == 1 }, 5*time.Second, time.Millisecond)

			ucs.down.Store(false) // back, but one request at a time
			start := time.Now()
			time.Sleep(watch)
			flaps := int(opens.Load()) - 1
			delivered := ucs.delivered(start)
			t.Logf("%s: %d opens and %d deliveries in %s", tc.name, flaps, delivered, watch)
			if tc.settles {
				// 0 or 1 on a quiet machine; a loaded race run (CI) has seen 2. A fixed limit
				// opens it dozens of times in the same 4s.
				assert.LessOrEqual(t, flaps, 3, "the breaker settles: a few opens, not one per close")
				assert.GreaterOrEqual(t, delivered, paced, "about one delivery per latency")
				autoDelivered = delivered
			} else {
				// 115 to 213 in runs here, against auto's 250 to 330.
				assert.Less(t, delivered, autoDelivered, "the stub does punish load: the test tells auto from a fixed limit")
			}

			ucs.healthy.Store(true)
			waitDrained(t, s)
			checkLanes(t, ucs.got, lanes, events)
		})
	}
}

// TestLiveTrafficFeedsTheLimit: direct deliveries of services with nothing waiting go straight to
// the UCS whatever the limit, and their answers move it: 429s to direct calls cut the replay's
// limit though the replay itself saw none.
func TestLiveTrafficFeedsTheLimit(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusNoContent)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(srv.Close)
	var limits []int
	var mu sync.Mutex
	s := openTestSpool(t, t.TempDir(), srv.URL, func(o *SpoolOptions) {
		o.OnConcurrency = func(n int) {
			mu.Lock()
			limits = append(limits, n)
			mu.Unlock()
		}
	})
	current := func() int { return s.limit.Load().current() }
	// 32 callers at once: the limit is in full use, and grows. A loaded machine's noisy round
	// trips can cut it back meanwhile, so the callers go on until it has grown (or 20s pass).
	deadline, n := time.Now().Add(20*time.Second), 0
	for current() <= autoStart && time.Now().Before(deadline) {
		var wg sync.WaitGroup
		for w := range 32 {
			wg.Go(func() {
				for k := range 20 {
					resp, err := s.Submit(context.Background(), laneRequest("live"+strconv.Itoa(w), n+k))
					assert.NoError(t, err)
					assert.False(t, resp.Spooled, "nothing waits: direct")
				}
			})
		}
		wg.Wait()
		n += 20
	}
	grown := current()
	require.Greater(t, grown, autoStart, "grown by the direct deliveries' answers")

	status.Store(http.StatusTooManyRequests)
	for n := range 20 {
		resp, err := s.Submit(context.Background(), laneRequest("live", n))
		require.NoError(t, err)
		require.Equal(t, http.StatusTooManyRequests, resp.Status, "relayed")
	}
	assert.Less(t, current(), grown, "cut by the 429s of direct calls")
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, limits)
	assert.Equal(t, autoStart, limits[0], "OnConcurrency reports the starting limit")
	assert.Equal(t, current(), limits[len(limits)-1], "and every change")
}
