package caddymodule

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// healthAnswer is the body of `GET {base_path}/ucs/health`.
type healthAnswer struct {
	Status       string   `json:"status"`                  // ok or unavailable
	Journal      string   `json:"journal,omitempty"`       // ok, or why the last append failed
	Spool        string   `json:"spool,omitempty"`         // ok or full
	SpoolRecords *int     `json:"spool_records,omitempty"` // events waiting, in every spool replayed
	SpoolBytes   *int64   `json:"spool_bytes,omitempty"`
	OldestAgeS   *float64 `json:"oldest_age_s,omitempty"` // how far behind the UCS is
}

// serveHealth answers a load balancer's health check: 503 while the sink
// would refuse events (the journal's last append failed, the spool is
// full), 200 otherwise. It reads the sinks' state; it writes nothing.
func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) error {
	if h.starting() {
		// The ucs app has not opened the sink yet (Caddy starts its apps in
		// no fixed order): events would wait.
		return writeHealth(w, r, healthAnswer{Status: "starting"})
	}
	a := healthAnswer{Status: "ok"}
	if h.journal != nil {
		a.Journal = "ok"
		if err := h.journal.Err(); err != nil {
			a.Status, a.Journal = "unavailable", err.Error()
		}
	}
	// The depth is every spool this process replays: a spool that a reload moved away is still
	// draining, and its events are as far behind as the configured one's.
	if records, bytes, oldest, open := replayedSpools(); h.spool != nil || open {
		age := oldest.Seconds()
		a.Spool, a.SpoolRecords, a.SpoolBytes, a.OldestAgeS = "ok", &records, &bytes, &age
		if h.spool != nil && h.spool.Full() {
			a.Status, a.Spool = "unavailable", "full"
		}
	}
	return writeHealth(w, r, a)
}

// writeHealth writes the answer: 200 when its status is ok, else 503.
func writeHealth(w http.ResponseWriter, r *http.Request, a healthAnswer) error {
	body, _ := json.Marshal(a) // plain values: cannot fail
	status := http.StatusOK
	if a.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	hdr := w.Header()
	hdr.Set("Content-Type", contentTypeJSON)
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}
