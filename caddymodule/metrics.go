package caddymodule

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucsedge/caddy-ucs/normalize"
)

// Outcomes of a request through the handler: the {http.ucs.outcome}
// placeholder and the "outcome" label of caddy_ucs_requests_total.
const (
	outcomePassed    = "passed"    // not the Complete Task call: handed to next untouched
	outcomeForwarded = "forwarded" // normalised and handed down the route (no sink configured)
	outcomeJournaled = "journaled" // normalised and on disk in the local journal: 204
	outcomeRejected  = "rejected"  // the request was refused: 400, 413 or 415
	outcomeError     = "error"     // the gateway failed: 503 (storage)
)

// The collectors are created once per process and registered on every
// config's registry (Caddy's registry is per config load), so counts survive
// reloads. Labels are bounded sets only, never an id or a name from a body.
var (
	metricRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "requests_total",
		Help: "Requests seen by the ucs handler, by outcome (passed, forwarded, journaled, rejected, error).",
	}, []string{"outcome"})
	metricRejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "rejections_total",
		Help: "Task End calls answered with an error, by reason (the normaliser's error kind or the HTTP-level reason).",
	}, []string{"reason"})
	metricRepairs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "repairs_total",
		Help: "Repairs made to Task End bodies, by repair kind.",
	}, []string{"kind"})
	metricMisses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "attribute_misses_total",
		Help: "Business-attribute names not in the table and passed on unchanged (unknown_names pass), by field.",
	}, []string{"field"})
	metricNormalize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "normalize_duration_seconds",
		Help:    "Time to normalise one Task End body.",
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10), // 1µs .. ~262ms
	})
	metricFsync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "journal_fsync_duration_seconds",
		Help:    "Duration of each fsync of the local journal (one fsync covers a group of records).",
		Buckets: prometheus.ExponentialBuckets(1e-4, 2, 14), // 100µs .. ~0.8s
	})
	metricJournalBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "journal_bytes_total",
		Help: "Bytes written to the local journal.",
	})

	collectors = []prometheus.Collector{
		metricRequests, metricRejections, metricRepairs, metricMisses,
		metricNormalize, metricFsync, metricJournalBytes,
	}

	// Label children resolved once: WithLabelValues hashes its labels on every call.
	requestsByOutcome = map[string]prometheus.Counter{}
	repairsByKind     [normalize.NumRepairKinds]prometheus.Counter
)

func init() {
	for _, o := range []string{outcomePassed, outcomeForwarded, outcomeJournaled, outcomeRejected, outcomeError} {
		requestsByOutcome[o] = metricRequests.WithLabelValues(o)
	}
	for k := range normalize.NumRepairKinds {
		repairsByKind[k] = metricRepairs.WithLabelValues(k.String())
	}
}

// registerMetrics registers the collectors on a config's registry. A
// collector already there (the same registry provisioned twice) is fine.
func registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return err
			}
		}
	}
	return nil
}

// observeReport adds one normalisation's repairs and misses.
func observeReport(rep *normalize.Report, took time.Duration) {
	metricNormalize.Observe(took.Seconds())
	for k, n := range rep.Counts {
		if n > 0 {
			repairsByKind[k].Add(float64(n))
		}
	}
	for i := range rep.NumMisses {
		metricMisses.WithLabelValues(rep.Misses[i].Field).Inc()
	}
}

func journalOnSync(d time.Duration) { metricFsync.Observe(d.Seconds()) }
func journalOnWrite(n int)          { metricJournalBytes.Add(float64(n)) }
