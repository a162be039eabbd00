package upstream

import "time"

// rateMeter counts bytes per second in len(buckets) one-second buckets: the current second and the
// len(buckets)-1 full seconds before it, over which rate averages.
type rateMeter struct {
	buckets [10]int64
	last    int64 // the Unix second of the newest bucket
}

func (m *rateMeter) add(now time.Time, n int64) {
	m.advance(now.Unix())
	m.buckets[m.last%int64(len(m.buckets))] += n
}

// rate is the mean over the full seconds of the window, in bytes per second.
func (m *rateMeter) rate(now time.Time) float64 {
	m.advance(now.Unix())
	var sum int64
	for i, b := range m.buckets {
		if int64(i) != m.last%int64(len(m.buckets)) { // the current second is not over
			sum += b
		}
	}
	return float64(sum) / float64(len(m.buckets)-1)
}

func (m *rateMeter) advance(sec int64) {
	if sec <= m.last {
		return
	}
	for s := m.last + 1; s <= sec && s <= m.last+int64(len(m.buckets)); s++ {
		m.buckets[s%int64(len(m.buckets))] = 0
	}
	m.last = sec
}
