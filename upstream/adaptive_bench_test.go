//go:build !race

package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// capacityUCS is a UCS with a capacity model: a request that arrives with n in flight (itself
// included) is served after base while n <= c, after base × n/c beyond, and refused with 503 at
// once beyond 3c. status, when set, answers every request with it after base instead (a UCS
// asking the gateway to slow down). It keeps the accepted events in arrival order, the latency
// it served each accepted request with, and the most it had in flight.
type capacityUCS struct {
	c      int
	base   time.Duration
	status atomic.Int32

	mu       sync.Mutex
	inFlight int
	peak     int
	refused  int
	served   []time.Duration
	got      []laneEvent
}

func newCapacityUCS(tb testing.TB, c int, base time.Duration) (*capacityUCS, *httptest.Server) {
	u := &capacityUCS{c: c, base: base}
	srv := httptest.NewServer(u)
	tb.Cleanup(srv.Close)
	return u, srv
}

func (u *capacityUCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if st := int(u.status.Load()); st != 0 {
		time.Sleep(u.base)
		w.WriteHeader(st)
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
	d := u.base
	if n > u.c {
		d = u.base * time.Duration(n) / time.Duration(u.c)
	}
	time.Sleep(d)
	var ev laneEvent
	_ = json.Unmarshal(body, &ev)
	u.mu.Lock()
	u.inFlight--
	u.served = append(u.served, d)
	u.got = append(u.got, ev)
	u.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// servedP99 is the 99th percentile of the latency the UCS served accepted requests with.
func (u *capacityUCS) servedP99() time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	return p99(u.served)
}

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)*99/100]
}

const (
	benchEvents   = 20_000
	benchServices = 2_000
	benchBase     = 10 * time.Millisecond
	// benchCap stops a drain too slow to finish in a sensible time (fixed 1 and 4 need minutes for
	// 20 000 events at 10ms): a fixed limit drains at a steady rate, so its events/s over the
	// first benchCap is its rate. complete=0 says it was stopped.
	benchCap = 30 * time.Second
)

// BenchmarkAdaptiveDrain drains 20 000 spooled events of 2 000 services into a capacityUCS of
// capacity C (10ms up to C in flight, 10ms × n/C beyond, 503 past 3C), at each fixed
// replay_concurrency of the sweep and with auto. Run with -benchtime=1x: one drain per setting.
// Reported: events/s, the p99 latency the UCS served (ucs_p99_ms; its base is 10), the most it
// had in flight, and how many requests it refused.
func BenchmarkAdaptiveDrain(b *testing.B) {
	for _, c := range []int{16, 64, 512} {
		for _, conc := range []int{1, 4, 16, 64, 256, 0} {
			name := "fixed=" + strconv.Itoa(conc)
			if conc == 0 {
				name = "auto"
			}
			b.Run(fmt.Sprintf("C=%d/%s", c, name), func(b *testing.B) {
				for range b.N {
					benchAdaptiveDrain(b, c, conc, 0)
				}
			})
		}
	}
}

// BenchmarkAdaptiveLiveTraffic is a drain at C=16 while 20 callers send live events of services
// with nothing waiting, each every 50ms: the p99 of the direct (not spooled) calls, with auto
// and with fixed 256, and the share of live calls spooled instead.
func BenchmarkAdaptiveLiveTraffic(b *testing.B) {
	for _, conc := range []int{0, 256} {
		name := "auto"
		if conc > 0 {
			name = "fixed=" + strconv.Itoa(conc)
		}
		b.Run("C=16/"+name, func(b *testing.B) {
			for range b.N {
				benchAdaptiveDrain(b, 16, conc, 20)
			}
		})
	}
}

func benchAdaptiveDrain(b *testing.B, c, conc, callers int) {
	b.StopTimer()
	ucs, srv := newCapacityUCS(b, c, benchBase)
	dir := b.TempDir()
	writeBacklog(b, dir, benchServices, benchEvents/benchServices, 4<<20)
	s := openTestSpool(b, dir, srv.URL, func(o *SpoolOptions) {
		o.MaxBytes = 1 << 40
		o.Forwarder = newTestForwarder(b, 10*time.Second, srv.URL)
		o.Replay = ReplayPolicy{Concurrency: conc, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second}
	})
	var live []time.Duration
	var spooled atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range callers {
		wg.Go(func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				start := time.Now()
				resp, err := s.Submit(context.Background(), laneRequest("live"+strconv.Itoa(w)+"-"+strconv.Itoa(n), 0))
				took := time.Since(start)
				if err != nil {
					b.Error(err)
					return
				}
				if resp.Spooled {
					spooled.Add(1)
					continue
				}
				mu.Lock()
				live = append(live, took)
				mu.Unlock()
			}
		})
	}
	b.StartTimer()
	start := time.Now()
	complete := 1.0
	for {
		if n, _ := s.Depth(); n == 0 {
			break
		}
		if time.Since(start) > benchCap {
			complete = 0
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	wg.Wait()
	ucs.mu.Lock()
	got := slices.Clone(ucs.got)
	peak, refused := ucs.peak, ucs.refused
	ucs.mu.Unlock()
	next := map[string]int{}
	replayed := 0
	for _, ev := range got {
		if ev.N != next[ev.Lane] {
			b.Fatalf("lane %s: got event %d, want %d", ev.Lane, ev.N, next[ev.Lane])
		}
		next[ev.Lane]++
		if len(ev.Lane) > 3 && ev.Lane[:3] == "svc" {
			replayed++
		}
	}
	if complete == 1 && replayed < benchEvents {
		b.Fatalf("drained, but the UCS took %d of %d events", replayed, benchEvents)
	}
	b.ReportMetric(float64(replayed)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(ucs.servedP99())/float64(time.Millisecond), "ucs_p99_ms")
	b.ReportMetric(float64(peak), "ucs_peak")
	b.ReportMetric(float64(refused), "ucs_503s")
	b.ReportMetric(complete, "complete")
	if callers > 0 {
		mu.Lock()
		b.ReportMetric(float64(p99(live))/float64(time.Millisecond), "live_p99_ms")
		b.ReportMetric(float64(spooled.Load())/float64(int(spooled.Load())+len(live)), "live_spooled")
		mu.Unlock()
	}
}

// BenchmarkAdaptiveHalvesAfter429: auto drains into a UCS with room to spare until the limit
// passes 128 (or for 2s); then the UCS answers every request 429 after its 10ms. Reported: the time from the
// first 429 answered to the limit at half of what it was (halve_ms; the goal is under 1000).
func BenchmarkAdaptiveHalvesAfter429(b *testing.B) {
	for range b.N {
		b.StopTimer()
		ucs, srv := newCapacityUCS(b, 100_000, benchBase)
		dir := b.TempDir()
		writeBacklog(b, dir, benchServices, benchEvents/benchServices, 4<<20)
		s := openTestSpool(b, dir, srv.URL, func(o *SpoolOptions) {
			o.MaxBytes = 1 << 40
			o.Replay = ReplayPolicy{MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, MaxAttempts: 1000}
		})
		lim := func() int { return s.limit.Load().current() }
		// On a shared machine the gateway's own CPU may make the RTT rise before 128: then the
		// limit it reached in 2s is the one halved.
		for deadline := time.Now().Add(2 * time.Second); lim() < 128 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		from := lim()
		if from < 16 {
			b.Fatalf("the limit only reached %d against a UCS with room to spare", from)
		}
		b.StartTimer()
		ucs.status.Store(http.StatusTooManyRequests)
		start := time.Now()
		// The first 429 comes one latency after the switch: that latency is taken off.
		for lim() > from/2 {
			if time.Since(start) > 30*time.Second {
				b.Fatalf("the limit is still %d of %d after 30s of 429s", lim(), from)
			}
			time.Sleep(100 * time.Microsecond)
		}
		took := time.Since(start) - benchBase
		b.StopTimer()
		b.ReportMetric(float64(took)/float64(time.Millisecond), "halve_ms")
		b.ReportMetric(float64(from), "limit_before")
		ucs.status.Store(0)
	}
}
