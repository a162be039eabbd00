package upstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// A spool record is one JSON line holding everything a replay needs, the outbound request as it
// would have been sent when the event was accepted:
//
//	{"accepted_at":"<canonical UTC ms>","path":"/genesys/…/end","query":"","header":{"Authorization":["…"],…},"body":{…}}
//
// The body is embedded as is when it is JSON on one line (the normalised event always is); any
// other body is kept losslessly as "body_base64" instead.

// spoolRecord is the decoded form of a spool line.
type spoolRecord struct {
	AcceptedAt string          `json:"accepted_at"`
	Path       string          `json:"path"`
	Query      string          `json:"query"`
	Header     http.Header     `json:"header"`
	Body       json.RawMessage `json:"body"`
	BodyBase64 []byte          `json:"body_base64"`
}

// appendSpoolRecord appends the spool line for o, accepted at t, without the newline.
func appendSpoolRecord(dst []byte, t time.Time, o outbound) []byte {
	dst = append(dst, `{"accepted_at":"`...)
	dst = t.UTC().AppendFormat(dst, receivedAtLayout)
	dst = append(dst, `","path":`...)
	dst = appendJSONString(dst, o.path)
	dst = append(dst, `,"query":`...)
	dst = appendJSONString(dst, o.rawQuery)
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
			dst = appendJSONString(dst, v)
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

// decodeSpoolRecord parses a spool line back into the request to replay.
func decodeSpoolRecord(line []byte) (outbound, error) {
	var r spoolRecord
	if err := json.Unmarshal(line, &r); err != nil {
		return outbound{}, fmt.Errorf("unreadable spool record: %w", err)
	}
	if r.Path == "" {
		return outbound{}, fmt.Errorf("unreadable spool record: no path")
	}
	body := []byte(r.Body)
	if r.Body == nil {
		body = r.BodyBase64
	}
	if body == nil {
		body = []byte{}
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	return outbound{path: r.Path, rawQuery: r.Query, header: r.Header, body: body}, nil
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
