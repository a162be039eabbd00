package upstream

import (
	"context"
	"os"
	"testing"
	"time"
)

// BenchmarkJournalReplay measures a journal replay of 10 000 events over 1 000 services into an
// httptest UCS answering 204 after 10 ms, at concurrency 64: the spool's lanes, replay rule and
// position fsyncs (here an atomically rewritten state file). One op is one whole replay; ev/s is
// the figure to compare with the spool's.
func BenchmarkJournalReplay(b *testing.B) {
	const services, events = 1000, 10
	_, srv := newJournalUCS(b, 10*time.Millisecond)
	path := writeJournal(b, b.TempDir(), services, events, time.Now())
	opts := JournalReplayOptions{Journal: path, Forwarder: journalForwarder(b, srv.URL), Replay: ReplayPolicy{Concurrency: 64}}
	b.ReportAllocs()
	var took time.Duration
	for b.Loop() {
		b.StopTimer()
		_ = os.Remove(path + ".replay-state.json")
		r, err := OpenJournalReplay(opts)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		sum, err := r.Run(context.Background())
		took += time.Since(start)
		r.Close()
		if err != nil || sum.Delivered != services*events {
			b.Fatal(sum, err)
		}
	}
	b.ReportMetric(float64(b.N*services*events)/took.Seconds(), "ev/s")
}
