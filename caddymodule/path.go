package caddymodule

import (
	"net/url"
	"strconv"
	"strings"
)

// The Context Services server runs in a servlet container, which maps a
// request to its resource after cleaning the path: path parameters
// (`;jsessionid=…`) cut off each segment, percent-escapes decoded, empty
// segments (`//`) and `.` dropped, `..` resolved, a trailing slash ignored.
// So `//genesys/1/cs/x/../services/42/tasks/7/end/;a=b` is the Complete
// Task call there, and must be here too: otherwise its loose body would
// walk around the normaliser. The handler matches on the path cleaned the
// same way and hands the event on under the canonical path
// `{base_path}/services/{service_id}/tasks/{task_id}/end`.
//
// An id never contains `/`: a Complete Task path whose segments hold an
// encoded slash (`42%2Ftasks%2F7`) is refused with 400.

// taskEndMatch is what matching a request path found.
type taskEndMatch struct {
	sid, tid string
	ok       bool // the Complete Task call (the ids still to be checked)
	// rewritten is set when the path was not already canonical: the event
	// goes on under canonicalPath.
	rewritten bool
	// encodedSlash names where an encoded slash sits in a path that is the
	// call once decoded: "service_id", "task_id" or "path"; "" for none.
	encodedSlash string
}

// matchPath matches the Complete Task call on u's path as the UCS reads it.
func (h *Handler) matchPath(u *url.URL) taskEndMatch {
	if u.RawPath == "" && isCleanPath(u.Path) {
		// The common case: nothing to clean, no allocation.
		sid, tid, ok := h.matchSegments(u.Path)
		return taskEndMatch{sid: sid, tid: tid, ok: ok}
	}
	return h.matchUnclean(u.EscapedPath())
}

// matchSegments matches a clean path exactly.
func (h *Handler) matchSegments(p string) (sid, tid string, ok bool) {
	rest, found := strings.CutPrefix(p, h.servicesPfx)
	if !found {
		return "", "", false
	}
	sid, rest, found = strings.Cut(rest, "/")
	if !found {
		return "", "", false
	}
	rest, found = strings.CutPrefix(rest, "tasks/")
	if !found {
		return "", "", false
	}
	tid, rest, found = strings.Cut(rest, "/")
	if !found || rest != "end" {
		return "", "", false
	}
	return sid, tid, true
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

// pathPart is one segment of a cleaned path; fromEncoded marks a part that
// an encoded slash split off a raw segment.
type pathPart struct {
	text        string
	fromEncoded bool
}

// matchUnclean cleans the escaped path as a servlet container does, then
// matches it.
func (h *Handler) matchUnclean(escaped string) taskEndMatch {
	var parts []pathPart
	for raw := range strings.SplitSeq(escaped, "/") {
		raw, _, _ = strings.Cut(raw, ";") // path parameters
		seg, err := url.PathUnescape(raw)
		if err != nil {
			return taskEndMatch{}
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
		if !strings.Contains(seg, "/") {
			parts = append(parts, pathPart{text: seg})
			continue
		}
		for sub := range strings.SplitSeq(seg, "/") {
			if sub != "" {
				parts = append(parts, pathPart{text: sub, fromEncoded: true})
			}
		}
	}

	base := h.baseSegs
	if len(parts) != len(base)+5 {
		return taskEndMatch{}
	}
	for i, b := range base {
		if parts[i].text != b {
			return taskEndMatch{}
		}
	}
	call := parts[len(base):]
	if call[0].text != "services" || call[2].text != "tasks" || call[4].text != "end" {
		return taskEndMatch{}
	}
	m := taskEndMatch{sid: call[1].text, tid: call[3].text, ok: true, rewritten: true}
	switch {
	case call[1].fromEncoded:
		m.encodedSlash = "service_id"
	case call[3].fromEncoded:
		m.encodedSlash = "task_id"
	default:
		for _, p := range parts {
			if p.fromEncoded {
				m.encodedSlash = "path"
			}
		}
	}
	return m
}

// canonicalPath is the Complete Task path the event is handed on under.
func (h *Handler) canonicalPath(sid, tid string) string {
	return h.servicesPfx + sid + "/tasks/" + tid + "/end"
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

// parseTaskID accepts decimal digits only, 0 to 2147483647 (a Java int).
func parseTaskID(s string) (int64, *requestError) {
	if s == "" {
		return 0, errBadTaskID("is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errBadTaskID("must be decimal digits only")
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxTaskID {
		return 0, errBadTaskID("must be at most 2147483647")
	}
	return n, nil
}
