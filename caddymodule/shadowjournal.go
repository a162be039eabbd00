package caddymodule

import (
	"bytes"
	"cmp"
	"encoding/json"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// receivedAtFormat is the SPEC's canonical UTC time, as the local journal
// writes received_at.
const receivedAtFormat = "2006-01-02T15:04:05.000Z"

// shadowRecord is one line of the shadow journal; `caddy ucs shadow
// report` reads it back.
type shadowRecord struct {
	ReceivedAt string `json:"received_at"`
	Operation  string `json:"operation"`
	Method     string `json:"method"`
	Path       string `json:"path"` // as it arrived, escaped
	// The ids of the path, as they were sent (a refused call's may be
	// malformed, so they are strings).
	ServiceID  string `json:"service_id,omitempty"`
	TaskID     string `json:"task_id,omitempty"`
	StateID    string `json:"state_id,omitempty"`
	CustomerID string `json:"customer_id,omitempty"`
	Tenant     string `json:"tenant,omitempty"`

	// UpstreamStatus is the route's answer; 0 when there was none.
	UpstreamStatus    int    `json:"upstream_status"`
	UpstreamException string `json:"upstream_exception,omitempty"`
	UpstreamMessage   string `json:"upstream_message,omitempty"`

	Gateway  string `json:"gateway"`  // same, repaired, rejected, too_large
	Upstream string `json:"upstream"` // 2xx, 4xx, 5xx, none
	Verdict  string `json:"verdict"`  // would_break, would_fix or neither

	Repairs      []shadowRepair   `json:"repairs,omitempty"`       // the first repairs, where they were made
	RepairCounts map[string]int   `json:"repair_counts,omitempty"` // every repair, by kind
	Rejection    *shadowRejection `json:"rejection,omitempty"`

	// Original is the body as the normaliser saw it (content coding
	// removed, a legacy charset transcoded), or as it arrived when it could
	// not be decoded; OriginalBase64 holds it instead when it is not UTF-8.
	Original       string `json:"original,omitempty"`
	OriginalBase64 []byte `json:"original_base64,omitempty"`
	Strict         string `json:"strict,omitempty"` // what the gateway would have sent
	Truncated      bool   `json:"truncated,omitempty"`

	// Sample is set on a line recorded by sampling: it stands for 1/Sample
	// calls. Would-break, would-fix and refused calls are all recorded.
	Sample float64 `json:"sample,omitempty"`
}

type shadowRepair struct {
	Kind   string `json:"kind"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Field  string `json:"field,omitempty"`
}

type shadowRejection struct {
	Status    int    `json:"status"`
	Exception string `json:"exception"`
	Reason    string `json:"reason"`
	Message   string `json:"message"`
	Line      int    `json:"line,omitempty"`
	Column    int    `json:"column,omitempty"`
}

// shadowJournals holds one open shadow journal per absolute path across
// config reloads, as journals does for the local sink (see sinkStore).
var shadowJournals = newSinkStore()

// The queue between the requests and the journal's writer. Tests shrink
// it.
var (
	shadowQueueLen   = 1024
	shadowQueueBytes = int64(8 << 20)
	// shadowRetry is how long the writer waits before it tries again to
	// open a journal it could not open; records queue meanwhile, and are
	// dropped once the queue is full.
	shadowRetry = time.Second
)

// shadowJournal is the shadow journal and the goroutine that writes it.
// Requests hand records over with offer, which never blocks: the record
// is dropped and counted when the queue is full. The journal is opened by
// the writer, so a disk that cannot be written costs records, never calls.
type shadowJournal struct {
	refs   refCount
	path   string
	opts   upstream.JournalOptions
	logs   *liveCore
	logger *zap.Logger
	retry  time.Duration // shadowRetry when it opened

	queue  chan *shadowRecord // encoded by the writer, off the request path
	queued atomic.Int64       // bytes of the bodies in queue
	stop   chan struct{}
	exited chan struct{}
}

func (s *shadowJournal) refCounter() *refCount { return &s.refs }

// shut stops the writer once no handler and no request uses the journal:
// it writes what is queued (or drops it if the file cannot be opened) and
// closes the file.
func (s *shadowJournal) shut() error {
	close(s.stop)
	close(s.queue)
	<-s.exited
	return nil
}

// acquireShadowJournal returns the shared shadow journal of absPath with
// one more reference, starting its writer on first use. The first
// options win while it stays open.
func acquireShadowJournal(absPath string, opts upstream.JournalOptions, logger *zap.Logger) *shadowJournal {
	v, loaded, _ := shadowJournals.acquire(absPath, func() (storedSink, error) {
		logs := newLiveCore(logger.Core())
		s := &shadowJournal{
			path:   absPath,
			logs:   logs,
			logger: zap.New(logs).Named(cmp.Or(logger.Name(), "http.handlers.ucs") + ".shadow"),
			retry:  shadowRetry,
			queue:  make(chan *shadowRecord, shadowQueueLen),
			stop:   make(chan struct{}),
			exited: make(chan struct{}),
		}
		s.opts = opts
		s.opts.Logger = s.logger
		go s.run()
		return s, nil
	})
	s := v.(*shadowJournal)
	if loaded {
		s.logs.swap(logger.Core())
	}
	return s
}

// offerShadowRecord queues rec for the journal, or drops and counts it.
func (h *Handler) offerShadowRecord(rec *shadowRecord) {
	s := h.shadow.journal
	if !s.refs.tryAcquire() {
		// This config was cleaned up and its last request finished: the
		// journal of the config now running (the same path) takes it.
		s = acquireShadowJournal(h.shadow.key, h.shadow.opts, h.logger)
	}
	defer func() { _ = shadowJournals.release(h.shadow.key, s) }()
	n := rec.size()
	if s.queued.Add(n) > shadowQueueBytes {
		s.queued.Add(-n)
		metricShadowDropped.Inc()
		return
	}
	select {
	case s.queue <- rec:
	default:
		s.queued.Add(-n)
		metricShadowDropped.Inc()
	}
}

// size is what a queued record holds, roughly: its bodies.
func (r *shadowRecord) size() int64 {
	return int64(len(r.Original) + len(r.OriginalBase64) + len(r.Strict) + 512)
}

// run is the writer: it appends each queued record, opening the journal
// when it first needs it and again after a failed open, shadowRetry
// later. While it cannot open the file, records wait in the queue (and
// the requests drop theirs when it is full).
func (s *shadowJournal) run() {
	defer close(s.exited)
	var (
		j         *upstream.Journal
		nextTry   time.Time
		appendErr error
	)
	defer func() {
		if j != nil {
			if err := j.Close(); err != nil {
				s.logger.Error("shadow: closing the journal failed", zap.String("path", s.path), zap.Error(err))
			}
		}
	}()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for rec := range s.queue {
		s.queued.Add(-rec.size())
		// After a failed open, wait to retry; once stopping, retry no more.
		for j == nil && (nextTry.IsZero() || !isClosed(s.stop)) {
			if wait := time.Until(nextTry); wait > 0 {
				select {
				case <-time.After(wait):
				case <-s.stop:
					continue
				}
			}
			var err error
			if j, err = upstream.OpenJournal(s.path, s.opts); err != nil {
				j = nil
				if nextTry.IsZero() {
					s.logger.Error("shadow: the journal cannot be opened; its records are dropped while it cannot, calls are not affected",
						zap.String("path", s.path), zap.Error(err))
				}
				nextTry = time.Now().Add(s.retry)
			} else if !nextTry.IsZero() {
				s.logger.Info("shadow: the journal is open again", zap.String("path", s.path))
				nextTry = time.Time{}
			}
		}
		if j == nil {
			metricShadowDropped.Inc()
			continue
		}
		buf.Reset()
		if err := enc.Encode(rec); err != nil {
			s.logger.Error("shadow: a journal record could not be encoded", zap.Error(err))
			metricShadowDropped.Inc()
			continue
		}
		line := bytes.TrimSuffix(buf.Bytes(), []byte("\n")) // the journal adds the newline
		if err := j.Append(line); err != nil {
			metricShadowDropped.Inc()
			if appendErr == nil {
				s.logger.Error("shadow: writing the journal failed; its records are dropped while it fails, calls are not affected",
					zap.String("path", s.path), zap.Error(err))
			}
			appendErr = err
		} else {
			appendErr = nil
		}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
