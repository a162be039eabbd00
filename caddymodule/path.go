package caddymodule

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ucsedge/caddy-ucs/normalize"
)

// The Context Services server runs in a servlet container, which maps a
// request to its resource after cleaning the path: path parameters
// (`;jsessionid=…`) cut off each segment, percent-escapes decoded, empty
// segments (`//`) and `.` dropped, `..` resolved, a trailing slash ignored.
// So `//genesys/1/cs/x/../services/42/tasks/7/end/;a=b` is the Complete
// Task call there, and must be here too: otherwise its loose body would
// walk around the normaliser. The handler matches every service-event call
// (see callPattern) on the path cleaned the same way and hands the event on
// under the canonical path, `{base_path}/` and the call's segments.
//
// An id never contains `/` or `;`: a call's path whose segments hold an
// encoded slash (`42%2Ftasks%2F7`) or semicolon (`e1%3Bx`, which a servlet
// container that decodes before cutting path parameters reads as `e1`) is
// refused with 400, whatever the operation.

// maxCallSegs is the most segments a call has after the base path
// (services/{sid}/tasks/{id}/extensions/{name}/merge).
const maxCallSegs = 7

// callMatch is what matching a request path found.
type callMatch struct {
	op normalize.Operation
	ok bool // one of the calls the handler takes (its ids still to be checked)
	// sid is the service id ("" for service.start); id the other id of
	// the path, named idName: task_id, state_id, customer_id, or "" (none).
	sid, id, idName string
	// path is the canonical path the event goes on under.
	path string
	// rewritten is set when the path was not already canonical.
	rewritten bool
	// encodedAt names where an encoded delimiter (encoded: "%2F" or
	// "%3B") sits in a path that is the call once decoded: "service_id",
	// the id's name, or "path"; "" for none.
	encodedAt, encoded string
}

// callShape is what matchSegments found: the operation and where its ids
// sit among the segments (-1: absent).
type callShape struct {
	op          normalize.Operation
	sidAt, idAt int
	idName      string
	ok          bool
}

// matchSegments matches the segments of a path after the base path. The
// table is Context Services 8.5's service-event API: every write call.
func matchSegments(method string, seg []string) callShape {
	n := len(seg)
	no := callShape{sidAt: -1, idAt: -1}
	if n < 2 {
		return no
	}
	shape := func(op normalize.Operation, sidAt, idAt int, idName string) callShape {
		return callShape{op: op, sidAt: sidAt, idAt: idAt, idName: idName, ok: true}
	}
	if method == http.MethodPut {
		// …/extensions/{name}[/merge] on a service, a state or a task.
		if seg[0] != "services" {
			return no
		}
		rest := seg[2:]
		if n > 2 && rest[len(rest)-1] == "merge" {
			rest = rest[:len(rest)-1]
		}
		switch {
		case len(rest) == 2 && rest[0] == "extensions":
			return shape(normalize.OpExtensionUpdate, 1, -1, "")
		case len(rest) == 4 && rest[2] == "extensions" && rest[0] == "states":
			return shape(normalize.OpExtensionUpdate, 1, 3, "state_id")
		case len(rest) == 4 && rest[2] == "extensions" && rest[0] == "tasks":
			return shape(normalize.OpExtensionUpdate, 1, 3, "task_id")
		}
		return no
	}
	if method != http.MethodPost {
		return no
	}
	if seg[0] == "customers" {
		if n == 4 && seg[2] == "services" {
			return shape(normalize.OpServiceAssociate, 3, 1, "customer_id")
		}
		return no
	}
	if seg[0] != "services" {
		return no
	}
	switch {
	case n == 2 && seg[1] == "start":
		return shape(normalize.OpServiceStart, -1, -1, "")
	case n == 3 && seg[2] == "end":
		return shape(normalize.OpServiceEnd, 1, -1, "")
	case n == 4 && seg[2] == "states" && seg[3] == "start":
		return shape(normalize.OpStateStart, 1, -1, "")
	case n == 4 && seg[2] == "states" && seg[3] == "transition":
		return shape(normalize.OpStateTransition, 1, -1, "")
	case n == 4 && seg[2] == "tasks" && seg[3] == "start":
		return shape(normalize.OpTaskStart, 1, -1, "")
	case n == 5 && seg[2] == "states" && seg[4] == "end":
		return shape(normalize.OpStateEnd, 1, 3, "state_id")
	case n == 5 && seg[2] == "tasks" && seg[4] == "end":
		return shape(normalize.OpTaskEnd, 1, 3, "task_id")
	}
	return no
}

// matchPath matches a service-event call on u's path as the UCS reads it.
func (h *Handler) matchPath(method string, u *url.URL) callMatch {
	if u.RawPath == "" && isCleanPath(u.Path) {
		// The common case: nothing to clean, no allocation.
		rest, found := strings.CutPrefix(u.Path, h.basePfx)
		if !found {
			return callMatch{}
		}
		var buf [maxCallSegs]string
		seg := buf[:0]
		for rest != "" {
			if len(seg) == maxCallSegs {
				return callMatch{}
			}
			var part string
			part, rest, _ = strings.Cut(rest, "/")
			seg = append(seg, part)
		}
		c := h.matchEnabled(method, seg)
		if !c.ok {
			return callMatch{}
		}
		return callMatch{op: c.op, ok: true, sid: at(seg, c.sidAt), id: at(seg, c.idAt), idName: c.idName, path: u.Path}
	}
	return h.matchUnclean(method, u.EscapedPath())
}

// matchEnabled is matchSegments limited to the configured operations.
func (h *Handler) matchEnabled(method string, seg []string) callShape {
	c := matchSegments(method, seg)
	if c.ok && h.ops&(1<<c.op) == 0 {
		c.ok = false
	}
	return c
}

func at(seg []string, i int) string {
	if i < 0 {
		return ""
	}
	return seg[i]
}

// isCleanPath reports whether p is absolute with no empty, `.` or `..`
// segment, no trailing slash and no `;`: the path a servlet container
// would map as it is.
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' || p[len(p)-1] == '/' {
		return false
	}
	start := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if p[i] == ';' {
				return false
			}
			continue
		}
		if seg := p[start:i]; seg == "" || seg == "." || seg == ".." {
			return false
		}
		start = i + 1
	}
	return true
}

// pathPart is one segment of a cleaned path; encoded is the encoded
// delimiter ("%2F", "%3B") that split it off or cut it short, "" for none.
type pathPart struct {
	text    string
	encoded string
}

// matchUnclean cleans the escaped path as a servlet container does, then
// matches it.
func (h *Handler) matchUnclean(method, escaped string) callMatch {
	var parts []pathPart
	pathEncoded := "" // an encoded delimiter anywhere, even in a dropped segment
	for raw := range strings.SplitSeq(escaped, "/") {
		raw, _, _ = strings.Cut(raw, ";") // path parameters
		seg, err := url.PathUnescape(raw)
		if err != nil {
			return callMatch{}
		}
		switch seg {
		case "", ".":
			continue
		case "..":
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
			continue
		}
		if !strings.ContainsAny(seg, "/;") {
			parts = append(parts, pathPart{text: seg})
			continue
		}
		// Any ';' here was %3B (a literal one was cut above). Matched as a
		// container that decodes first would map it: cut there.
		slash := strings.Contains(seg, "/")
		for sub := range strings.SplitSeq(seg, "/") {
			enc := ""
			if slash {
				enc = "%2F"
			}
			if head, _, cut := strings.Cut(sub, ";"); cut {
				sub, enc = head, "%3B"
			}
			if pathEncoded == "" {
				pathEncoded = enc
			}
			if sub != "" {
				parts = append(parts, pathPart{text: sub, encoded: enc})
			}
		}
	}

	base := h.baseSegs
	if len(parts) < len(base) || len(parts) > len(base)+maxCallSegs {
		return callMatch{}
	}
	for i, b := range base {
		if parts[i].text != b {
			return callMatch{}
		}
	}
	call := parts[len(base):]
	seg := make([]string, len(call))
	for i, p := range call {
		seg[i] = p.text
	}
	c := h.matchEnabled(method, seg)
	if !c.ok {
		return callMatch{}
	}
	m := callMatch{op: c.op, ok: true, sid: at(seg, c.sidAt), id: at(seg, c.idAt), idName: c.idName,
		path: h.canonicalPath(seg), rewritten: true}
	switch {
	case c.sidAt >= 0 && call[c.sidAt].encoded != "":
		m.encodedAt, m.encoded = "service_id", call[c.sidAt].encoded
	case c.idAt >= 0 && call[c.idAt].encoded != "":
		m.encodedAt, m.encoded = c.idName, call[c.idAt].encoded
	case pathEncoded != "":
		m.encodedAt, m.encoded = "path", pathEncoded
	}
	return m
}

// canonicalPath is the path a call is handed on under: the base path and
// the call's decoded segments (net/url escapes them when the path is sent).
func (h *Handler) canonicalPath(seg []string) string {
	var b strings.Builder
	b.WriteString(h.BasePath)
	for _, s := range seg {
		b.WriteByte('/')
		b.WriteString(s)
	}
	return b.String()
}

// baseSegments splits a base path into its segments ("/" has none).
func baseSegments(base string) []string {
	base = strings.Trim(base, "/")
	if base == "" {
		return nil
	}
	return strings.Split(base, "/")
}

// checkServiceID accepts a decimal that fits a signed 64-bit integer or an
// opaque id of [A-Za-z0-9-]{1,128}. All digits means a decimal, so it must
// fit: an overflowing number is a client bug, not an opaque id.
func checkServiceID(s string) *requestError {
	if s == "" {
		return errBadServiceID("is empty")
	}
	if len(s) > maxServiceIDLen {
		return errBadServiceID("is " + strconv.Itoa(len(s)) + " characters long; the limit is 128")
	}
	digits := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
			digits = false
		default:
			return errBadServiceID("may only hold letters, digits and '-' (byte " + strconv.Itoa(i+1) + " is not one)")
		}
	}
	if digits {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return errBadServiceID("is a number that does not fit a signed 64-bit integer")
		}
	}
	return nil
}

// parseID32 checks a 32-bit id of the path (task_id, state_id): decimal
// digits only, 0 to 2147483647 (a Java int).
func parseID32(name, s string) (int64, *requestError) {
	if s == "" {
		return 0, errBadID(name, "is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errBadID(name, "must be decimal digits only")
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxID32 {
		return 0, errBadID(name, "must be at most 2147483647")
	}
	return n, nil
}
