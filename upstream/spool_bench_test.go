package upstream

import (
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkSpoolAppend measures Submit while the upstream is down, so every event is stored: 64
// concurrent writers, group commit against one fsync per record, both through the same code path
// on the real disk. ns/op is per event; fsyncs/op shows how many events share an fsync.
func BenchmarkSpoolAppend(b *testing.B) {
	for _, bc := range []struct {
		name     string
		syncEach bool
	}{
		{"group_commit", false},
		{"fsync_per_record", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sim, srv := newUCSSim(b)
			sim.down = true
			fs := newFaultFS() // no faults: it counts the fsyncs
			s := openTunedSpool(b, b.TempDir(), srv.URL, spoolTuning{syncEachRecord: bc.syncEach}, func(o *SpoolOptions) {
				o.FS = fs
				o.MaxBytes = 1 << 40
				o.Replay.MinBackoff = time.Hour // the worker waits while the writers are measured
			})
			req := taskEnd(1)
			if _, err := s.Submit(context.Background(), req); err != nil { // the direct try fails once
				b.Fatal(err)
			}
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			_, syncsBefore := fs.counts()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := s.Submit(context.Background(), req)
					if err != nil || !resp.Spooled {
						b.Error(resp, err)
						return
					}
				}
			})
			b.StopTimer()
			_, syncs := fs.counts()
			b.ReportMetric(float64(syncs-syncsBefore)/float64(b.N), "fsyncs/op")
		})
	}
}

// BenchmarkSpoolReplay measures how fast the worker drains a spool of b.N events into a local
// upstream answering 204: one delivery and one cursor fsync per event, in order. Only the drain is
// timed.
func BenchmarkSpoolReplay(b *testing.B) {
	sim, srv := newUCSSim(b)
	sim.down = true
	drained := make(chan struct{})
	var once sync.Once
	var up bool
	var mu sync.Mutex
	s := openTestSpool(b, b.TempDir(), srv.URL, func(o *SpoolOptions) {
		o.MaxBytes = 1 << 40
		o.Replay.MaxBackoff = 2 * time.Millisecond
		o.OnDepth = func(records int, _ int64) {
			mu.Lock()
			defer mu.Unlock()
			if up && records == 0 {
				once.Do(func() { close(drained) })
			}
		}
	})
	per := (b.N + 63) / 64
	fillWith(b, s, func(w int) (reqs []ForwardRequest) {
		for n := w * per; n < min(b.N, (w+1)*per); n++ {
			reqs = append(reqs, taskEnd(n))
		}
		return reqs
	})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	mu.Lock()
	up = true
	mu.Unlock()
	sim.set(func(u *ucsSim) { u.down = false })
	<-drained
	elapsed := time.Since(start)
	b.StopTimer()
	if got := len(sim.received()); got != b.N {
		b.Fatalf("upstream received %d events, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
}

// BenchmarkSpoolDrain measures the replay of a backlog left by an outage: b.N events of 1 000
// services (in acceptance order, interleaved), drained into an httptest upstream that takes
// latency per call, at several replay concurrencies. Only the drain is timed; per-service order
// and exactly-once delivery are checked after it. Run with -benchtime 10000x for the 10 000-event
// figure (the concurrency-1 run then takes over 100 s at 10 ms).
func BenchmarkSpoolDrain(b *testing.B) {
	for _, latency := range []time.Duration{10 * time.Millisecond, 0} {
		for _, conc := range []int{1, 8, 64, 256} {
			if latency == 0 && conc != 64 && conc != 1 {
				continue
			}
			b.Run(fmt.Sprintf("latency=%s/concurrency=%d", latency, conc), func(b *testing.B) {
				benchDrain(b, latency, conc, 1000, "")
			})
		}
	}
}

// BenchmarkSpoolDrainOneStuck is BenchmarkSpoolDrain at the default concurrency with one of the
// 1 000 services answered 503 throughout: the figure is the drain of the other
// services' events, while the stuck one's stay spooled (and are parked once enough finished
// records wait behind them). Run with -benchtime 20000x to see the parking at work.
func BenchmarkSpoolDrainOneStuck(b *testing.B) {
	for _, latency := range []time.Duration{10 * time.Millisecond, 0} {
		b.Run(fmt.Sprintf("latency=%s/concurrency=64", latency), func(b *testing.B) {
			benchDrain(b, latency, 64, 1000, "svc0")
		})
	}
}

// benchDrain drains b.N events of lanes services; stuck, unless "", is answered 503 throughout.
func benchDrain(b *testing.B, latency time.Duration, conc, lanes int, stuck string) {
	ucs, srv := newLaneUCS(b, latency)
	ucs.down.Store(true)
	if stuck != "" {
		// A plain 503: with an hour's Retry-After, a stuck service that happened to carry the
		// breaker's first probe would hold every service for that hour (see spool.go's breaker).
		srv = httptest.NewServer(&switchUCS{ucs: ucs, stuck: map[string]bool{stuck: true}})
		b.Cleanup(srv.Close)
	}
	s := openTestSpool(b, b.TempDir(), srv.URL, func(o *SpoolOptions) {
		o.MaxBytes = 1 << 40
		o.Replay = ReplayPolicy{Concurrency: conc, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	})
	// Each writer owns whole lanes, so each lane's events are stored in their order. Event k of
	// lane l is number k*lanes+l.
	fillWith(b, s, func(w int) (reqs []ForwardRequest) {
		for l := w; l < lanes; l += 64 {
			for k := 0; k*lanes+l < b.N; k++ {
				reqs = append(reqs, laneRequest("svc"+strconv.Itoa(l), k))
			}
		}
		return reqs
	})
	left := 0 // the stuck lane's events (lane 0): those numbered k*lanes < b.N
	if stuck != "" {
		left = (b.N + lanes - 1) / lanes
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	ucs.down.Store(false)
	s.poke()
	for {
		if n, _ := s.Depth(); n == left {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	got := ucs.received()
	next := map[string]int{}
	for _, ev := range got {
		if ev.N != next[ev.Lane] {
			b.Fatalf("lane %s: got event %d, want %d", ev.Lane, ev.N, next[ev.Lane])
		}
		next[ev.Lane]++
	}
	b.ReportMetric(float64(len(got))/elapsed.Seconds(), "events/s")
}

// fillWith stores the requests of 64 concurrent writers, each in its order, so that group commit
// keeps a benchmark's setup short.
func fillWith(b *testing.B, s *Spool, requests func(w int) []ForwardRequest) {
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for _, req := range requests(w) {
				if _, err := s.Submit(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
