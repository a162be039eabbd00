package upstream

import (
	"context"
	"runtime"
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
			s := openTestSpool(b, b.TempDir(), srv.URL, func(o *SpoolOptions) {
				o.FS = fs
				o.MaxBytes = 1 << 40
				o.Replay.MinBackoff = time.Hour // the worker waits while the writers are measured
				o.syncEachRecord = bc.syncEach
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
	// Fill with 64 writers, so group commit keeps the setup short.
	var wg sync.WaitGroup
	per := (b.N + 63) / 64
	for w := range 64 {
		wg.Go(func() {
			for n := w * per; n < min(b.N, (w+1)*per); n++ {
				if _, err := s.Submit(context.Background(), taskEnd(n)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
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
