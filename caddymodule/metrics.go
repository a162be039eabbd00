package caddymodule

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ucsedge/caddy-ucs/normalize"
)

// Outcomes of a request through the handler: the {http.ucs.outcome}
// placeholder and the "outcome" label of caddy_ucs_requests_total.
const (
	outcomePassed    = "passed"    // not one of the handler's calls: handed to next untouched
	outcomeForwarded = "forwarded" // normalised and handed down the route (no sink, or local and not an end operation)
	outcomeJournaled = "journaled" // normalised and on disk in the local journal: 204
	outcomeRejected  = "rejected"  // the request was refused: 400, 413 or 415
	outcomeRelayed   = "relayed"   // forward sink: the upstream's answer was relayed (any status)
	outcomeSpooled   = "spooled"   // forward sink: stored in the spool for replay: 204
	outcomeError     = "error"     // the gateway failed: 502/504 (upstream), 503 (storage, full spool)
	outcomeShadowed  = "shadowed"  // shadow mode: handed down the route as it arrived, the verdict counted apart
)

// The collectors are created once per process and registered on every
// config's registry (Caddy's registry is per config load), so counts survive
// reloads. Labels are bounded sets only, never an id or a name from a body.
var (
	metricRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "requests_total",
		Help: "Requests seen by the ucs handler, by outcome (passed, forwarded, journaled, relayed, spooled, rejected, error, shadowed) and operation (task.end, …; none when passed).",
	}, []string{"outcome", "operation"})
	metricRejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "rejections_total",
		Help: "Calls answered with an error, by reason (the normaliser's error kind or the HTTP-level reason) and operation.",
	}, []string{"reason", "operation"})
	metricRepairs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "repairs_total",
		Help: "Repairs made to event bodies, by repair kind and operation.",
	}, []string{"kind", "operation"})
	metricMisses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "attribute_misses_total",
		Help: "Business-attribute names not in the table and passed on unchanged (unknown_names pass), by field.",
	}, []string{"field"})
	metricNormalize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "normalize_duration_seconds",
		Help:    "Time to normalise one event body.",
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
	metricJournalErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "journal_append_errors_total",
		Help: "Events the local journal could not store (the caller got 503 StorageException).",
	})

	// The spool series carry the spool directory (from the config, so a
	// bounded set) as reverse_proxy's carry the upstream address.
	metricSpoolRecords = spoolGauge("spool_records",
		"Events waiting in the forward spool for replay.")
	metricSpoolBytes = spoolGauge("spool_bytes",
		"Bytes of the events waiting in the forward spool, with their framing.")
	metricSpoolReplayed = spoolCounter("spool_replayed_total",
		"Spooled events the upstream accepted (2xx) on replay.")
	metricSpoolDeadLettered = spoolCounter("spool_dead_lettered_total",
		"Spooled events the upstream rejected on replay, written to the dead letter.")
	metricSpoolWorkerRestarts = spoolCounter("spool_worker_restarts_total",
		"Restarts of the spool's replay worker after it panicked (a bug: it resumed from the durable position).")
	metricSpoolInFlight = spoolGauge("spool_in_flight",
		"Spooled events sent by the replay and not yet recorded as finished.")
	metricSpoolConcurrency = spoolGauge("spool_replay_concurrency",
		"The replay's concurrency limit: requests it may have in flight at the upstream, direct deliveries included when adaptive (replay_concurrency auto), or the fixed replay_concurrency.")
	metricSpoolOldestAge = spoolGauge("spool_oldest_age_seconds",
		"Age of the oldest event waiting in the spool (0 when empty): how far behind the upstream is.")
	metricSpoolUpstreamDown = spoolGauge("spool_upstream_down",
		"1 while the spool takes the upstream to be down (deliveries in a row failed for unavailability: events are stored without a direct attempt and the replay probes), 0 once it answers.")
	metricUpstreamDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "upstream_duration_seconds",
		Help:    "Duration of each attempt to deliver an event to one upstream URL, direct or replayed, to the end of its answer.",
		Buckets: prometheus.ExponentialBuckets(5e-4, 2, 16), // 0.5ms .. ~16s, past the default 10s timeout
	})
	metricUpstreamResponses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "upstream_responses_total",
		Help: "Attempts to deliver an event to one upstream URL, by status class (1xx..5xx), or timeout or error when no answer came.",
	}, []string{"class"})

	metricAttributeRefresh = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "attribute_refresh_total",
		Help: "Fetches of the business attributes from a UCS (business_attributes_from), by result: ok, not_modified or error.",
	}, []string{"result"})
	metricAttributeAge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "attribute_tables_age_seconds",
		Help: "Age of the oldest business-attribute tables fetched from a UCS (since the last good or not-modified answer, or the cache file's time).",
	}, tablesAge)
	metricAttributeValues = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "ucs", Name: "attribute_values",
		Help: "Values of each business attribute that backs a key's table (the configured and default names), in the tables last built (any tenant).",
	}, []string{"attribute"})
	attributeRefreshOK          = metricAttributeRefresh.WithLabelValues("ok")
	attributeRefreshNotModified = metricAttributeRefresh.WithLabelValues("not_modified")
	attributeRefreshError       = metricAttributeRefresh.WithLabelValues("error")

	collectors = []prometheus.Collector{
		metricAttributeRefresh, metricAttributeAge, metricAttributeValues,
		metricRequests, metricRejections, metricRepairs, metricMisses,
		metricNormalize, metricFsync, metricJournalBytes, metricJournalErrors,
		metricSpoolRecords, metricSpoolBytes, metricSpoolReplayed, metricSpoolDeadLettered,
		metricSpoolInFlight, metricSpoolOldestAge, metricSpoolWorkerRestarts, metricSpoolConcurrency,
		metricUpstreamDuration, metricUpstreamResponses,
		metricSpoolUpstreamDown,
	}

	// Label children resolved once: WithLabelValues hashes its labels on every call.
	requestsByOutcome = map[string]*[numOperationLabels]prometheus.Counter{}
	repairsByKind     [normalize.NumRepairKinds][numOperationLabels]prometheus.Counter
	upstreamByClass   = map[string]prometheus.Counter{}

	// operationLabels are the operation label's values, indexed by
	// normalize.Operation; opNone is a request that is not a call.
	operationLabels [numOperationLabels]string
)

const (
	opNone             = int(normalize.NumOperations)
	numOperationLabels = opNone + 1
)

func init() {
	for op := range normalize.NumOperations {
		operationLabels[op] = op.String()
	}
	operationLabels[opNone] = "none"
	for _, o := range []string{outcomePassed, outcomeForwarded, outcomeJournaled, outcomeRelayed, outcomeSpooled, outcomeRejected, outcomeError, outcomeShadowed} {
		var byOp [numOperationLabels]prometheus.Counter
		for op, label := range operationLabels {
			byOp[op] = metricRequests.WithLabelValues(o, label)
		}
		requestsByOutcome[o] = &byOp
	}
	for _, c := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "timeout", "error"} {
		upstreamByClass[c] = metricUpstreamResponses.WithLabelValues(c)
	}
	for k := range normalize.NumRepairKinds {
		for op, label := range operationLabels {
			repairsByKind[k][op] = metricRepairs.WithLabelValues(k.String(), label)
		}
	}
}

// spoolGauge and spoolCounter are a series per spool directory.
func spoolGauge(name, help string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "caddy", Subsystem: "ucs", Name: name, Help: help}, []string{"spool"})
}

func spoolCounter(name, help string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "caddy", Subsystem: "ucs", Name: name, Help: help}, []string{"spool"})
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

// observeReport adds one normalisation's repairs and misses; op is the
// operation's index.
func observeReport(rep *normalize.Report, op int, took time.Duration) {
	metricNormalize.Observe(took.Seconds())
	for k, n := range rep.Counts {
		if n > 0 {
			repairsByKind[k][op].Add(float64(n))
		}
	}
	for i := range rep.NumMisses {
		metricMisses.WithLabelValues(rep.Misses[i].Field).Inc()
	}
}

// observeUpstream is the forwarder's Observe hook: one attempt on one URL.
func observeUpstream(status int, took time.Duration, err error) {
	metricUpstreamDuration.Observe(took.Seconds())
	upstreamByClass[statusClass(status, err)].Inc()
}

// statusClass is the bounded label of an attempt's result.
func statusClass(status int, err error) string {
	switch {
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || isTimeout(err)):
		return "timeout"
	case err != nil || status < 100 || status > 599:
		return "error"
	default:
		return [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}[status/100-1]
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func journalOnSync(d time.Duration) { metricFsync.Observe(d.Seconds()) }
func journalOnWrite(n int)          { metricJournalBytes.Add(float64(n)) }

// attributeValueSeries keeps caddy_ucs_attribute_values to the attributes
// the live tables use: a series goes when the last set of tables using its
// attribute is rebuilt without it (a refresh) or released (a reload), so
// the label set stays the configured attribute names.
var attributeValueSeries = seriesHolders{bySet: map[*attrSet][]string{}, holders: map[string]int{}}

type seriesHolders struct {
	mu      sync.Mutex
	bySet   map[*attrSet][]string // the labels each set holds
	holders map[string]int        // label → how many sets hold it
}

// publish replaces the series s holds with sizes (attribute → values;
// nil: none).
func (h *seriesHolders) publish(s *attrSet, sizes map[string]int) {
	values := make(map[string]int, len(sizes))
	for name, n := range sizes {
		label := labelValue(name)
		values[label] = max(values[label], n)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// The new series first: one both versions hold never disappears.
	labels := make([]string, 0, len(values))
	for label, n := range values {
		labels = append(labels, label)
		h.holders[label]++
		metricAttributeValues.WithLabelValues(label).Set(float64(n))
	}
	for _, label := range h.bySet[s] {
		if h.holders[label]--; h.holders[label] == 0 {
			delete(h.holders, label)
			metricAttributeValues.DeleteLabelValues(label)
		}
	}
	if len(labels) == 0 {
		delete(h.bySet, s)
		return
	}
	h.bySet[s] = labels
}

// labelValue is name as a label value with control characters and invalid
// UTF-8 escaped as in a Go string literal: the exposition format escapes
// only `\`, `"` and line feeds, and the client refuses invalid UTF-8.
func labelValue(name string) string {
	if utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsControl) < 0 {
		return name
	}
	q := strconv.Quote(name)
	return q[1 : len(q)-1]
}
