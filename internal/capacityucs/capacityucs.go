// Package capacityucs is a stub Context Services for tests and benchmarks of the replay's
// concurrency: a UCS with a capacity model. A request that arrives with n in flight (itself
// included) is served after Base while n <= C, after Base × n/C beyond, and refused with 503 at
// once beyond 3C, as a UCS whose Cassandra queues and then times out.
package capacityucs

import (
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// UCS is the stub; use it as an http.Handler. Its zero Down and Status serve the model.
type UCS struct {
	// C is the capacity, Base the latency up to it.
	C    int
	Base time.Duration
	// Down answers 503 at once, like a UCS that is away.
	Down atomic.Bool
	// Status, when set, answers every request with it after Base (a UCS asking the gateway to
	// slow down).
	Status atomic.Int32

	mu       sync.Mutex
	inFlight int
	peak     int
	refused  int
	served   []time.Duration
	calls    []Call
}

// Call is one request the model accepted.
type Call struct {
	Path string
	Body []byte
}

// New is a stub of capacity c and base latency base.
func New(c int, base time.Duration) *UCS { return &UCS{C: c, Base: base} }

func (u *UCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if u.Down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if st := int(u.Status.Load()); st != 0 {
		time.Sleep(u.Base)
		w.WriteHeader(st)
		return
	}
	u.mu.Lock()
	u.inFlight++
	n := u.inFlight
	u.peak = max(u.peak, n)
	if n > 3*u.C {
		u.inFlight--
		u.refused++
		u.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	u.mu.Unlock()
	d := u.Base
	if n > u.C {
		d = u.Base * time.Duration(n) / time.Duration(u.C)
	}
	time.Sleep(d)
	u.mu.Lock()
	u.inFlight--
	u.served = append(u.served, d)
	u.calls = append(u.calls, Call{Path: r.URL.Path, Body: body})
	u.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Stats is what the stub saw: the accepted calls in arrival order, the most requests it had in
// flight, and how many it refused for being over 3C.
type Stats struct {
	Calls   []Call
	Peak    int
	Refused int
}

// Stats returns a copy of what the stub saw so far.
func (u *UCS) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return Stats{Calls: slices.Clone(u.calls), Peak: u.peak, Refused: u.refused}
}

// ServedP99 is the 99th percentile of the latency the stub served accepted requests with: the
// latency the UCS itself sees, without the gateway's share.
func (u *UCS) ServedP99() time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	return P99(u.served)
}

// P99 is the 99th percentile of ds, 0 for none.
func P99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)*99/100]
}
