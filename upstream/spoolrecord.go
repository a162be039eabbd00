package upstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
	"unicode/utf8"
)

// A spool record is one JSON line holding everything a replay needs, the outbound request as it
// would have been sent when the event was accepted:
//
//	{"accepted_at":"<canonical UTC ms>","lane":"42","method":"POST","path":"/genesys/…/end","query":"",
//	 "header":{"Authorization":["…"],…},"body":{…}}
//
// Replay sends the bytes the upstream would have got directly, so every part is kept losslessly:
//   - the body is embedded as is when it is JSON on one line (the normalised event always is); any
//     other body is kept as "body_base64" instead;
//   - a path or query that is not valid UTF-8 is kept as "path_base64" or "query_base64";
//   - a header value that is not valid UTF-8 (a Latin-1 `GroupId: grüppe`) is kept as
//     {"base64":"…"} in its place in the list, so the order of repeated values holds.
//
// lane is the ordering key (the service id): records of one lane are delivered in acceptance order.
// Records written before lanes existed have none and share the lane "".

// spoolRecord is the decoded form of a spool line.
type spoolRecord struct {
	AcceptedAt  string                       `json:"accepted_at"`
	Lane        string                       `json:"lane"`
	Method      string                       `json:"method"`
	Path        string                       `json:"path"`
	PathBase64  []byte                       `json:"path_base64"`
	Query       string                       `json:"query"`
	QueryBase64 []byte                       `json:"query_base64"`
	Header      map[string][]json.RawMessage `json:"header"`
	Body        json.RawMessage              `json:"body"`
	BodyBase64  []byte                       `json:"body_base64"`
}

// recordPrefix is how every record written by appendSpoolRecord starts; recordAtLen is the length
// of the canonical time that follows it.
const (
	recordPrefix  = `{"accepted_at":"`
	recordAtLen   = len("2006-01-02T15:04:05.000Z")
	recordLaneKey = `","lane":"`
)

// appendSpoolRecord appends the spool line for o, accepted at t, without the newline.
func appendSpoolRecord(dst []byte, t time.Time, o outbound) []byte {
	dst = append(dst, recordPrefix...)
	dst = t.UTC().AppendFormat(dst, receivedAtLayout)
	dst = append(dst, `","lane":`...)
	dst = appendJSONString(dst, o.lane)
	dst = append(dst, `,"method":`...)
	dst = appendJSONString(dst, o.method)
	dst = appendLossless(dst, "path", o.path)
	dst = appendLossless(dst, "query", o.rawQuery)
	dst = append(dst, `,"header":{`...)
	keys := make([]string, 0, len(o.header))
	for k := range o.header {
		keys = append(keys, k)
	}
	slices.Sort(keys) // stable bytes for the same request
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ":["...)
		for j, v := range o.header[k] {
			if j > 0 {
				dst = append(dst, ',')
			}
			if utf8.ValidString(v) {
				dst = appendJSONString(dst, v)
				continue
			}
			dst = append(dst, `{"base64":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, []byte(v))
			dst = append(dst, `"}`...)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, '}')
	if embeddable(o.body) {
		dst = append(dst, `,"body":`...)
		dst = append(dst, o.body...)
	} else {
		dst = append(dst, `,"body_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, o.body)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// appendLossless appends `,"<name>":"<s>"`, or `,"<name>_base64":"…"` when s is not valid UTF-8 and
// a JSON string could not carry it byte for byte.
func appendLossless(dst []byte, name, s string) []byte {
	dst = append(dst, `,"`...)
	dst = append(dst, name...)
	if utf8.ValidString(s) {
		dst = append(dst, `":`...)
		return appendJSONString(dst, s)
	}
	dst = append(dst, `_base64":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, []byte(s))
	return append(dst, '"')
}

// errUnreadableRecord is wrapped by every decoding failure: such a record can never be sent, so it
// goes to the dead letter at once.
var errUnreadableRecord = errors.New("unreadable spool record")

// decodeSpoolRecord parses a spool line back into the request to replay.
func decodeSpoolRecord(line []byte) (outbound, error) {
	var r spoolRecord
	if err := json.Unmarshal(line, &r); err != nil {
		return outbound{}, fmt.Errorf("%w: %w", errUnreadableRecord, err)
	}
	path := r.Path
	if r.PathBase64 != nil {
		path = string(r.PathBase64)
	}
	if path == "" {
		return outbound{}, fmt.Errorf("%w: no path", errUnreadableRecord)
	}
	query := r.Query
	if r.QueryBase64 != nil {
		query = string(r.QueryBase64)
	}
	header := make(http.Header, len(r.Header))
	for k, raw := range r.Header {
		vals := make([]string, len(raw))
		for i, v := range raw {
			var err error
			if vals[i], err = decodeHeaderValue(v); err != nil {
				return outbound{}, fmt.Errorf("%w: header %s: %w", errUnreadableRecord, k, err)
			}
		}
		header[k] = vals
	}
	body := []byte(r.Body)
	if r.Body == nil {
		body = r.BodyBase64
	}
	if body == nil {
		body = []byte{}
	}
	method := r.Method
	if method == "" {
		method = http.MethodPost // records written before the method was kept were all POSTs
	}
	return outbound{method: method, path: path, rawQuery: query, header: header, body: body, lane: r.Lane}, nil
}

// decodeHeaderValue reads one header value: a JSON string, or {"base64":"…"} for bytes that are
// not UTF-8.
func decodeHeaderValue(v json.RawMessage) (string, error) {
	if len(v) > 0 && v[0] == '{' {
		var b struct {
			Base64 []byte `json:"base64"`
		}
		if err := json.Unmarshal(v, &b); err != nil {
			return "", err
		}
		return string(b.Base64), nil
	}
	var s string
	err := json.Unmarshal(v, &s)
	return s, err
}

// recordLane reads a record's lane: what the replay needs of every record it reads, without
// parsing the time or the rest.
func recordLane(rec []byte) string {
	if lane, ok := fastLane(rec); ok {
		return lane
	}
	lane, _ := recordMeta(rec)
	return lane
}

// recordMeta reads a record's lane and acceptance time without decoding the rest. Records written
// by appendSpoolRecord start with both; other lines (written before lanes existed, or damaged)
// take the slow path, and one that cannot be read at all gets the lane "" and the zero time, and
// fails again, for good, when it is sent.
func recordMeta(rec []byte) (lane string, acceptedAt time.Time) {
	if lane, ok := fastLane(rec); ok {
		if at, err := time.Parse(receivedAtLayout, string(rec[len(recordPrefix):len(recordPrefix)+recordAtLen])); err == nil {
			return lane, at
		}
	}
	var r struct {
		AcceptedAt string `json:"accepted_at"`
		Lane       string `json:"lane"`
	}
	_ = json.Unmarshal(rec, &r)
	acceptedAt, _ = time.Parse(receivedAtLayout, r.AcceptedAt)
	return r.Lane, acceptedAt
}

// fastLane reads the lane of a record that starts as appendSpoolRecord writes it, with a lane
// needing no unescaping; ok is false for any other line.
func fastLane(rec []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(rec, []byte(recordPrefix))
	if !ok || len(rest) <= recordAtLen {
		return "", false
	}
	l, ok := bytes.CutPrefix(rest[recordAtLen:], []byte(recordLaneKey))
	if !ok {
		return "", false
	}
	if end := bytes.IndexAny(l, `"\`); end >= 0 && l[end] == '"' {
		return string(l[:end]), true
	}
	return "", false
}

// embeddable reports whether body can sit in the record as a JSON value and come back byte for
// byte: valid JSON on one line, without the surrounding white space a decoder would drop.
func embeddable(body []byte) bool {
	if len(body) == 0 || bytes.IndexByte(body, '\n') >= 0 {
		return false
	}
	if first, last := body[0], body[len(body)-1]; isJSONSpace(first) || isJSONSpace(last) {
		return false
	}
	return json.Valid(body)
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
