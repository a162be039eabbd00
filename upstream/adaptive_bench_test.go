//go:build !race

package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ucsedge/caddy-ucs/internal/capacityucs"
)

// newCapacityUCS is a capacityucs stub served over HTTP for the benchmark's life.
func newCapacityUCS(tb testing.TB, c int, base time.Duration) (*capacityucs.UCS, *httptest.Server) {
	u := capacityucs.New(c, base)
	srv := httptest.NewServer(u)
	tb.Cleanup(srv.Close)
	return u, srv
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
	seen := ucs.Stats()
	peak, refused := seen.Peak, seen.Refused
	next := map[string]int{}
	replayed := 0
	for _, call := range seen.Calls {
		var ev laneEvent
		_ = json.Unmarshal(call.Body, &ev)
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
	b.ReportMetric(float64(ucs.ServedP99())/float64(time.Millisecond), "ucs_p99_ms")
	b.ReportMetric(float64(peak), "ucs_peak")
	b.ReportMetric(float64(refused), "ucs_503s")
	b.ReportMetric(complete, "complete")
	if callers > 0 {
		mu.Lock()
		b.ReportMetric(float64(capacityucs.P99(live))/float64(time.Millisecond), "live_p99_ms")
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
		ucs.Status.Store(http.StatusTooManyRequests)
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
		ucs.Status.Store(0)
	}
}
