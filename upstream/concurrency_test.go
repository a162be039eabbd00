package upstream

import (
	"context"
	"errors"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fakeUCS answers a limit's requests in rounds on a fake clock, as a saturated replay sees it: every
// round, each place the limit allows is taken, and all of them are answered after the latency the
// model gives for that many in flight.
type fakeUCS struct {
	now time.Time
	// model gives the latency and status of n requests in flight at once at time now.
	model func(now time.Time, n int) (time.Duration, int)
}

// capacity is the benchmarks' model: base latency up to c in flight, then base × n/c, 503 past 3c.
func capacity(c int, base func(time.Time) time.Duration) func(time.Time, int) (time.Duration, int) {
	return func(now time.Time, n int) (time.Duration, int) {
		b := base(now)
		switch {
		case n > 3*c:
			return b, http.StatusServiceUnavailable
		case n > c:
			return b * time.Duration(n) / time.Duration(c), http.StatusNoContent
		}
		return b, http.StatusNoContent
	}
}

func constant(d time.Duration) func(time.Time) time.Duration {
	return func(time.Time) time.Duration { return d }
}

// round runs one round and returns how many were in flight.
func (u *fakeUCS) round(c *concurrencyLimit) int {
	var started []time.Time
	for {
		at, ok := c.acquire(u.now)
		if !ok {
			break
		}
		started = append(started, at)
	}
	n := len(started)
	took, status := u.model(u.now, n)
	u.now = u.now.Add(took)
	for _, at := range started {
		c.end(at, u.now, took, status, nil)
	}
	return n
}

// run runs rounds until d of fake time passed and returns the most in flight in any round.
func (u *fakeUCS) run(c *concurrencyLimit, d time.Duration) (peak int) {
	for until := u.now.Add(d); u.now.Before(until); {
		peak = max(peak, u.round(c))
	}
	return peak
}

func newFakeUCS(model func(time.Time, int) (time.Duration, int)) *fakeUCS {
	return &fakeUCS{now: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), model: model}
}

func observedLimit(max int) (*concurrencyLimit, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return newConcurrencyLimit(0, max, zap.New(core), nil), logs
}

func TestAutoLimitSlowStartsToItsMaximumWhileLatencyStaysAtBaseline(t *testing.T) {
	c, logs := observedLimit(256)
	require.Equal(t, autoStart, c.current(), "it starts low")
	u := newFakeUCS(capacity(10_000, constant(10*time.Millisecond)))
	rounds := 0
	for c.current() < 256 {
		u.round(c)
		rounds++
		require.Less(t, rounds, 30, "slow start grows by half a limit per round trip")
	}
	assert.Equal(t, 256, c.current())
	u.run(c, time.Minute)
	assert.Equal(t, 256, c.current(), "bounded by its maximum")
	assert.Zero(t, logs.Len(), "no cut against a UCS with room to spare")
}

func TestAutoLimitGrowsByItsSquareRootPerRoundTripAfterItsFirstCut(t *testing.T) {
	c, _ := observedLimit(256)
	u := newFakeUCS(capacity(10_000, constant(10*time.Millisecond)))
	for c.current() < 40 {
		u.round(c)
	}
	u.now = u.now.Add(time.Second)
	c.end(c.begin(u.now), u.now, 0, http.StatusTooManyRequests, nil)
	c.holdUntil = u.now // the hold after back-pressure has its own test
	limit := c.limit
	require.Less(t, int(limit), 40)
	var got, want []int
	for range 5 {
		u.round(c)
		limit += math.Sqrt(limit)
		got, want = append(got, c.current()), append(want, int(limit))
	}
	assert.Equal(t, want, got)
}

func TestAutoLimitHoldsLongerAfterEachCutForBackPressure(t *testing.T) {
	c, _ := observedLimit(256)
	u := newFakeUCS(capacity(10_000, constant(10*time.Millisecond)))
	u.run(c, time.Second)
	var holds []time.Duration
	for range 12 {
		c.end(c.begin(u.now), u.now, 0, http.StatusServiceUnavailable, nil)
		holds = append(holds, c.holdFor)
		cut := c.current()
		u.round(c)
		assert.Equal(t, cut, c.current(), "no growth during the hold")
		u.now = c.holdUntil
	}
	assert.Equal(t, 10*time.Millisecond, holds[0], "the first hold is one round trip")
	assert.Equal(t, 20*time.Millisecond, holds[1])
	assert.Equal(t, maxHold, holds[len(holds)-1], "bounded")
	u.run(c, time.Minute)
	assert.Less(t, c.holdFor, time.Second, "halved after each hold without back-pressure")
	assert.Equal(t, 256, c.current())
}

func TestAutoLimitSettlesAboveCapacityWhereLatencyRisesWellBelowThreeTimesIt(t *testing.T) {
	for _, capa := range []int{4, 16, 64} {
		c, logs := observedLimit(256)
		u := newFakeUCS(capacity(capa, constant(10*time.Millisecond)))
		peak := u.run(c, 10*time.Second)
		assert.LessOrEqual(t, peak, 3*capa, "C=%d: never past the point where the UCS refuses", capa)
		var lows, highs int
		for range 200 {
			n := u.round(c)
			require.LessOrEqual(t, n, 3*capa, "C=%d", capa)
			lows += btoi(n < capa)
			highs += btoi(n > 2*capa)
		}
		assert.LessOrEqual(t, highs, 2, "C=%d: latency within 2× its base in 99%% of the rounds", capa)
		assert.Less(t, lows, 100, "C=%d: the UCS is kept busy most of the time", capa)
		rise := logs.FilterField(zap.String("cause", "rtt rise")).Len()
		assert.Positive(t, rise, "C=%d: cut when the RTT rose, with the cause logged", capa)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestAutoLimitCutsAtOnceOnBackPressure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		err    error
		cause  string
	}{
		{"429", http.StatusTooManyRequests, nil, "429"},
		{"503 answered", http.StatusServiceUnavailable, nil, "503"},
		{"503 from every URL", 0, &UnavailableError{Status: 503}, "503"},
		{"502", 0, &UnavailableError{Status: 502}, "502"},
		{"504", 0, &UnavailableError{Status: 504}, "504"},
		{"timeout", 0, &UnavailableError{Timeout: true, Err: context.DeadlineExceeded}, "timeout"},
		{"connection refused", 0, &UnavailableError{Err: errors.New("connection refused")}, "connection failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, logs := observedLimit(256)
			u := newFakeUCS(capacity(10_000, constant(10*time.Millisecond)))
			for c.current() < 100 {
				u.round(c)
			}
			from := c.current()
			a, b := c.begin(u.now), c.begin(u.now)
			c.end(a, u.now, time.Millisecond, tc.status, tc.err)
			c.end(b, u.now, time.Millisecond, tc.status, tc.err)
			assert.Equal(t, int(float64(from)*pressureCut), c.current(), "one cut per round trip, however many answers tell of it")
			cuts := logs.FilterMessage("replay concurrency decreased").All()
			require.Len(t, cuts, 1)
			assert.Equal(t, zapcore.DebugLevel, cuts[0].Level)
			assert.Equal(t, tc.cause, cuts[0].ContextMap()["cause"])
			assert.Equal(t, int64(from), cuts[0].ContextMap()["from"])
		})
	}
}

func TestAutoLimitLearnsNothingFromAnEndThatSaysNothingOfTheUpstream(t *testing.T) {
	c, logs := observedLimit(256)
	for _, err := range []error{context.Canceled, errors.New("spool closing")} {
		now := time.Now()
		c.end(c.begin(now), now, time.Hour, 0, err)
	}
	now := time.Now()
	c.end(c.begin(now), now, time.Hour, 0, nil) // nothing was sent
	assert.Equal(t, autoStart, c.current())
	assert.Zero(t, logs.Len())
}

func TestAutoLimitStaysWithinOneAndItsMaximum(t *testing.T) {
	c, _ := observedLimit(8)
	u := newFakeUCS(func(time.Time, int) (time.Duration, int) { return time.Millisecond, http.StatusServiceUnavailable })
	u.run(c, time.Minute)
	assert.Equal(t, 1, c.current(), "a UCS that only answers 503 gets one request at a time")
	u.model = capacity(10_000, constant(time.Millisecond))
	peak := u.run(c, time.Minute)
	assert.Equal(t, 8, c.current())
	assert.Equal(t, 8, peak)
}

func TestFixedLimitNeverMoves(t *testing.T) {
	var seen []int
	c := newConcurrencyLimit(64, 0, nil, func(n int) { seen = append(seen, n) })
	u := newFakeUCS(func(time.Time, int) (time.Duration, int) { return time.Second, http.StatusServiceUnavailable })
	for range 100 {
		at := c.begin(u.now)
		u.now = u.now.Add(time.Second)
		c.end(at, u.now, time.Second, http.StatusServiceUnavailable, nil)
	}
	c.restart(u.now)
	assert.Equal(t, 64, c.current())
	assert.Equal(t, []int{64}, seen, "reported once, when set")
	assert.True(t, c.sameAs(64, 0))
	assert.False(t, c.sameAs(0, 256))
}

func TestAutoLimitRestartsFromItsSlowStartWhenTheBreakerCloses(t *testing.T) {
	c, _ := observedLimit(256)
	u := newFakeUCS(capacity(10_000, constant(10*time.Millisecond)))
	u.run(c, time.Second)
	require.Equal(t, 256, c.current())
	c.restart(u.now)
	assert.Equal(t, afterOutage, c.current())
	assert.Equal(t, afterOutage, u.round(c), "the first round after the outage sends no more than the probe did")
}

func TestAutoLimitBaselineFollowsAUCSWhoseLatencyDrifts(t *testing.T) {
	const capa = 16
	for _, tc := range []struct {
		name string
		base func(start time.Time) func(time.Time) time.Duration
	}{
		{"slow drift from 10ms to 40ms over ten minutes", func(start time.Time) func(time.Time) time.Duration {
			return func(now time.Time) time.Duration {
				return 10*time.Millisecond + min(now.Sub(start), 10*time.Minute)*30/(10*time.Minute)*time.Millisecond
			}
		}},
		{"a step from 10ms to 30ms", func(start time.Time) func(time.Time) time.Duration {
			return func(now time.Time) time.Duration {
				if now.Sub(start) < time.Minute {
					return 10 * time.Millisecond
				}
				return 30 * time.Millisecond
			}
		}},
		{"a step down from 40ms to 10ms", func(start time.Time) func(time.Time) time.Duration {
			return func(now time.Time) time.Duration {
				if now.Sub(start) < time.Minute {
					return 40 * time.Millisecond
				}
				return 10 * time.Millisecond
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := observedLimit(256)
			u := newFakeUCS(nil)
			base := tc.base(u.now)
			u.model = capacity(capa, base)
			u.run(c, 11*time.Minute)
			var rounds, busy int
			for until := u.now.Add(time.Minute); u.now.Before(until); rounds++ {
				n := u.round(c)
				busy += btoi(n >= capa)
				require.LessOrEqual(t, n, 3*capa)
			}
			assert.Greater(t, busy*10, rounds*6, "the UCS is kept at its capacity after the drift (%d of %d rounds)", busy, rounds)
			assert.InDelta(t, float64(base(u.now)), float64(c.base.min(u.now)), float64(base(u.now))*0.5,
				"the baseline is the UCS's latency now")
		})
	}
}

func TestARequestLeftHangingNoLongerHoldsAPlace(t *testing.T) {
	c, _ := observedLimit(256)
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	hung, ok := c.acquire(now)
	require.True(t, ok)
	later := now.Add(100 * time.Millisecond)
	var others []time.Time
	for range autoStart - 1 {
		at, ok := c.acquire(later)
		require.True(t, ok)
		others = append(others, at)
	}
	_, ok = c.acquire(now.Add(minStale - time.Millisecond))
	assert.False(t, ok, "full, and the first request may just be slow")
	assert.True(t, now.Add(minStale).Equal(c.wakeAt()), "the replay is woken when it counts as hanging")
	_, ok = c.acquire(now.Add(minStale))
	assert.True(t, ok, "in flight for a second: it no longer holds its place")
	_, ok = c.acquire(now.Add(minStale))
	assert.False(t, ok, "the others still do")
	c.end(others[0], now.Add(minStale), 10*time.Millisecond, http.StatusNoContent, nil)
	_, ok = c.acquire(now.Add(minStale))
	assert.True(t, ok, "an end makes room as ever")
	c.end(hung, now.Add(time.Minute), time.Minute, 0, &UnavailableError{Timeout: true})
	assert.Empty(t, c.starts[hung.UnixNano()], "its end is counted once")
}
