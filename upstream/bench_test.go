package upstream

import (
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkJournalAppend measures journal throughput with 64 concurrent writers, group commit against
// one fsync per record, both through the same code path and on the real disk (b.TempDir). ns/op is
// per record; fsyncs/op shows how many records share an fsync.
func BenchmarkJournalAppend(b *testing.B) {
	event := []byte(`{"session_id":"0000CSS0FXZUP6UR","interaction_id":"0000CSS0FXZUP6UR","media_type":1003,` +
		`"disposition":2001,"timestamp":"2026-11-26T20:15:00.123Z","attached":{"customer":"1234","note":"x"}}`)
	rec := AppendEventRecord(nil, time.Date(2026, 11, 26, 20, 15, 0, 0, time.UTC),
		TaskEndIDs("383-f9a62aec-e6f2-45cb-aa01-0d9404f905bd", 42), event)
	for _, bc := range []struct {
		name     string
		syncEach bool
	}{
		{"group_commit", false},
		{"fsync_per_record", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var syncs atomic.Int64
			j, err := openJournal(filepath.Join(b.TempDir(), "events.jsonl"), JournalOptions{
				OnSync: func(time.Duration) { syncs.Add(1) },
			}, bc.syncEach)
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			// RunParallel starts parallelism × GOMAXPROCS goroutines: 64 writers on any core count.
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.SetBytes(int64(len(rec) + 1))
			b.ReportAllocs()
			syncs.Store(0)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := j.Append(rec); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(syncs.Load())/float64(b.N), "fsyncs/op")
		})
	}
}
