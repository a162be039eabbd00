package caddymodule

import (
	"os"
	"runtime"
	"testing"
)

// soakRequests and soakWarmup are the soak's length: the live heap after
// soakRequests must be within 10 % of the live heap after soakWarmup.
const (
	soakRequests = 1_000_000
	soakWarmup   = 100_000
)

// TestSoakLiveHeapDoesNotGrow sends 1 000 000 Complete Task calls through
// ucs + reverse_proxy (route b of the load benchmark) and checks that the
// live heap does not grow after warm-up: pooled buffers, the journal-free
// next sink and Caddy's own state must reach a steady state.
//
// It takes minutes (about 2–3 on 2 cores, far longer under -race), so it
// runs only when asked:
//
//	UCS_SOAK=1 go test -run TestSoak -v -timeout 30m ./caddymodule/
func TestSoakLiveHeapDoesNotGrow(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	if os.Getenv("UCS_SOAK") != "1" {
		t.Skip("soak: takes minutes; run with UCS_SOAK=1")
	}
	env := startE2E(t)
	bodies := e2eBodies(t)
	url := env.url("/b")
	workers := e2eParallelism * runtime.GOMAXPROCS(0)

	// Alternate the strict and the loose body, in blocks, so both paths
	// soak; every answer is checked to be 204.
	const block = 10_000
	send := func(n int) {
		for sent := 0; sent < n; sent += block {
			body := bodies[(sent/block)%len(bodies)].body
			closedBlock(t, env, url, body, min(block, n-sent), workers)
		}
	}
	send(soakWarmup)
	warm := liveHeap()
	send(soakRequests - soakWarmup)
	end := liveHeap()

	t.Logf("after %d requests: HeapInuse %d B, HeapAlloc %d B, %d objects", soakWarmup, warm.HeapInuse, warm.HeapAlloc, warm.HeapObjects)
	t.Logf("after %d requests: HeapInuse %d B, HeapAlloc %d B, %d objects", soakRequests, end.HeapInuse, end.HeapAlloc, end.HeapObjects)
	if float64(end.HeapInuse) > 1.10*float64(warm.HeapInuse) {
		t.Errorf("heap in use grew from %d to %d bytes (more than 10 %%) between request %d and %d",
			warm.HeapInuse, end.HeapInuse, soakWarmup, soakRequests)
	}
	if float64(end.HeapAlloc) > 1.10*float64(warm.HeapAlloc) {
		t.Errorf("live heap grew from %d to %d bytes (more than 10 %%) between request %d and %d",
			warm.HeapAlloc, end.HeapAlloc, soakWarmup, soakRequests)
	}
}

// liveHeap returns the memory statistics after two full collections (the
// second frees what the first one's finalizers released).
func liveHeap() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}
