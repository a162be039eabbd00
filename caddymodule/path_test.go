package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/normalize"
)

func TestTheCompleteTaskCallMatchesOnThePathAsTheUCSCleansIt(t *testing.T) {
	t.Parallel()
	// operations task.end: the Complete Task call alone, as before issue 12.
	h := &Handler{BasePath: DefaultBasePath, basePfx: DefaultBasePath + "/", baseSegs: baseSegments(DefaultBasePath), ops: parseOperations([]string{"task.end"})}
	tests := []struct {
		method, path string
		sid, tid     string
		ok           bool
		rewritten    bool
		encoded      string
	}{
		{"POST", "/genesys/1/cs/services/42/tasks/7/end", "42", "7", true, false, ""},
		{"POST", "/genesys/1/cs/services/a_b/tasks/x/end", "a_b", "x", true, false, ""}, // matched, then refused as bad ids
		{"POST", "//genesys/1/cs/services/42/tasks/7/end", "42", "7", true, true, ""},
		{"POST", "/genesys//1/cs/services/42/tasks//7/end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/x/../services/42/tasks/7/end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/./services/42/tasks/7/./end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end;jsessionid=1", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/42;a=b/tasks/7/end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end/", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/%34%32/tasks/7/end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/%2e%2e/7/end", "42", "7", true, true, ""},
		{"POST", "/genesys/1/cs/services/42%2Ftasks%2F7/end", "42", "7", true, true, "service_id"},
		{"POST", "/genesys/1/cs/services/42/tasks/7%2fend", "42", "7", true, true, "task_id"},
		{"POST", "/genesys%2F1/cs/services/42/tasks/7/end", "42", "7", true, true, "path"},
		{"POST", "/genesys/1/cs/services/42%3Bx/tasks/7/end", "42", "7", true, true, "service_id"},
		{"POST", "/genesys/1/cs/services/42/tasks/7%3bx/end", "42", "7", true, true, "task_id"},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end%3Bx", "42", "7", true, true, "path"},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end/%3Bx", "42", "7", true, true, "path"},
		{"POST", "/genesys/1/cs/services//tasks//end", "", "", false, false, ""},
		{"GET", "/genesys/1/cs/services/42/tasks/7/end", "", "", false, false, ""},
		{"GET", "//genesys/1/cs/services/42/tasks/7/end", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/start", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/end", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/states/7/end", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end/x", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end/x/..", "42", "7", true, true, ""},
		{"POST", "/genesys/2/cs/services/42/tasks/7/end", "", "", false, false, ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end//", "42", "7", true, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			m := h.match(httptest.NewRequest(tt.method, tt.path, nil))
			assert.Equal(t, tt.ok, m.ok)
			assert.Equal(t, tt.sid, m.sid)
			assert.Equal(t, tt.tid, m.id)
			assert.Equal(t, tt.rewritten, m.rewritten)
			assert.Equal(t, tt.encoded, m.encodedAt)
		})
	}
}

func TestEveryServiceEventCallMatchesWithItsIds(t *testing.T) {
	t.Parallel()
	h := &Handler{BasePath: DefaultBasePath, basePfx: DefaultBasePath + "/", baseSegs: baseSegments(DefaultBasePath), ops: parseOperations(nil)}
	none := normalize.NumOperations
	tests := []struct {
		method, path string
		op           normalize.Operation // none: not a call
		sid, id      string
		idName       string
		canonical    string
	}{
		{"POST", "/genesys/1/cs/services/start", normalize.OpServiceStart, "", "", "", "/genesys/1/cs/services/start"},
		{"POST", "/genesys/1/cs/services/42/end", normalize.OpServiceEnd, "42", "", "", "/genesys/1/cs/services/42/end"},
		{"POST", "/genesys/1/cs/services/42/states/start", normalize.OpStateStart, "42", "", "", "/genesys/1/cs/services/42/states/start"},
		{"POST", "/genesys/1/cs/services/42/states/3/end", normalize.OpStateEnd, "42", "3", "state_id", "/genesys/1/cs/services/42/states/3/end"},
		{"POST", "/genesys/1/cs/services/42/states/transition", normalize.OpStateTransition, "42", "", "", "/genesys/1/cs/services/42/states/transition"},
		{"POST", "/genesys/1/cs/services/42/tasks/start", normalize.OpTaskStart, "42", "", "", "/genesys/1/cs/services/42/tasks/start"},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end", normalize.OpTaskEnd, "42", "7", "task_id", "/genesys/1/cs/services/42/tasks/7/end"},
		{"POST", "/genesys/1/cs/customers/c-1/services/42", normalize.OpServiceAssociate, "42", "c-1", "customer_id", "/genesys/1/cs/customers/c-1/services/42"},
		{"PUT", "/genesys/1/cs/services/42/extensions/Survey", normalize.OpExtensionUpdate, "42", "", "", "/genesys/1/cs/services/42/extensions/Survey"},
		{"PUT", "/genesys/1/cs/services/42/extensions/Survey/merge", normalize.OpExtensionUpdate, "42", "", "", "/genesys/1/cs/services/42/extensions/Survey/merge"},
		{"PUT", "/genesys/1/cs/services/42/states/3/extensions/Survey", normalize.OpExtensionUpdate, "42", "3", "state_id", "/genesys/1/cs/services/42/states/3/extensions/Survey"},
		{"PUT", "/genesys/1/cs/services/42/tasks/7/extensions/Survey/merge", normalize.OpExtensionUpdate, "42", "7", "task_id", "/genesys/1/cs/services/42/tasks/7/extensions/Survey/merge"},
		{"PUT", "//genesys/1/cs/services/42/./tasks/7/extensions/Survey/merge/", normalize.OpExtensionUpdate, "42", "7", "task_id", "/genesys/1/cs/services/42/tasks/7/extensions/Survey/merge"},
		{"POST", "/genesys/1/cs/x/../services/start;jsessionid=1", normalize.OpServiceStart, "", "", "", "/genesys/1/cs/services/start"},
		{"POST", "/genesys/1/cs/services//42/states/transition/", normalize.OpStateTransition, "42", "", "", "/genesys/1/cs/services/42/states/transition"},
		{"PUT", "/genesys/1/cs/services/42/end", none, "", "", "", ""},
		{"POST", "/genesys/1/cs/services/42/extensions/Survey", none, "", "", "", ""},
		{"GET", "/genesys/1/cs/services/start", none, "", "", "", ""},
		{"DELETE", "/genesys/1/cs/services/42/extensions/Survey", none, "", "", "", ""},
		{"POST", "/genesys/1/cs/services/42/states/3/start", none, "", "", "", ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end/more", none, "", "", "", ""},
		{"POST", "/genesys/1/cs/customers/c-1/services", none, "", "", "", ""},
		{"PUT", "/genesys/1/cs/services/42/tasks/7/8/extensions/Survey", none, "", "", "", ""},
		{"POST", "/genesys/1/cs/services/42/tasks/7/extensions/a/b/c/d", none, "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			m := h.match(httptest.NewRequest(tt.method, tt.path, nil))
			require.Equal(t, tt.op != none, m.ok)
			if !m.ok {
				return
			}
			assert.Equal(t, tt.op, m.op)
			assert.Equal(t, tt.sid, m.sid)
			assert.Equal(t, tt.id, m.id)
			assert.Equal(t, tt.idName, m.idName)
			assert.Equal(t, tt.canonical, m.path)
		})
	}
}

func TestOnlyTheConfiguredOperationsMatch(t *testing.T) {
	t.Parallel()
	h := &Handler{BasePath: DefaultBasePath, basePfx: DefaultBasePath + "/", baseSegs: baseSegments(DefaultBasePath),
		ops: parseOperations([]string{"state.start", "extension.update"})}
	tests := []struct {
		method, path string
		ok           bool
	}{
		{"POST", "/genesys/1/cs/services/42/states/start", true},
		{"PUT", "/genesys/1/cs/services/42/extensions/A", true},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end", false},
		{"POST", "/genesys/1/cs/services/start", false},
		{"POST", "//genesys/1/cs/services/42/end", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.ok, h.match(httptest.NewRequest(tt.method, tt.path, nil)).ok, tt.method+" "+tt.path)
	}
}

func TestPathsTheUCSMapsToCompleteTaskAreNormalisedAndSentCanonical(t *testing.T) {
	rec := newRecorder(t)
	ucs := newUCSServer(t)
	const loose = `{price: 25 000, 'a': True,}`
	want := string(strictOf(t, normalize.Options{}, loose))
	const canonical = "/genesys/1/cs/services/42/tasks/7/end"
	forms := []struct{ name, path string }{
		{"repeated slashes", "//genesys/1/cs/services/42//tasks/7/end"},
		{"dot segments", "/genesys/1/cs/x/../services/42/tasks/./7/end"},
		{"a path parameter", "/genesys/1/cs/services/42/tasks/7/end;jsessionid=1"},
		{"a trailing slash", "/genesys/1/cs/services/42/tasks/7/end/"},
		{"percent-encoded characters", "/genesys/1/cs/services/%34%32/tasks/7/%65nd"},
		{"the canonical path itself", canonical},
	}
	sinks := []struct {
		name, site string
		seen       func() (path, body string)
	}{
		{"reverse_proxy after ucs", "ucs\nreverse_proxy " + rec.addr(), func() (string, string) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return rec.path, string(rec.body)
		}},
		{"forward", "ucs {\nforward " + ucs.url() + "\n}\nrespond 404", func() (string, string) {
			got := ucs.received()
			if len(got) == 0 {
				return "", ""
			}
			return got[len(got)-1].path, got[len(got)-1].body
		}},
	}
	for _, sink := range sinks {
		tester := startCaddy(t, sink.site)
		for _, f := range forms {
			t.Run(sink.name+"/"+f.name, func(t *testing.T) {
				resp, _ := post(t, tester, caddyURL+f.path+"?x=1", []byte(loose), "Content-Type", "text/plain")
				assert.Equal(t, http.StatusNoContent, resp.StatusCode)
				path, body := sink.seen()
				assert.Equal(t, canonical, path)
				assert.Equal(t, want, body)
			})
		}
	}
}

func TestAnEncodedSlashOrSemicolonInACallsPathIsRefused(t *testing.T) {
	rec := newRecorder(t)
	tester := startCaddy(t, "ucs\nreverse_proxy "+rec.addr())
	tests := []struct{ name, path, message string }{
		{"in service_id", "/genesys/1/cs/services/42%2Ftasks%2F7/end",
			"service_id cannot contain '/': the path holds an encoded slash (%2F)"},
		{"in task_id", "/genesys/1/cs/services/42/tasks/7%2Fend",
			"task_id cannot contain '/': the path holds an encoded slash (%2F)"},
		{"before the ids", "/genesys%2F1/cs/services/42/tasks/7/end",
			"the path holds an encoded slash (%2F), which no Context Services path has"},
		{"a semicolon in service_id", "/genesys/1/cs/services/42%3Bx/tasks/7/end",
			"service_id cannot contain ';': the path holds an encoded semicolon (%3B)"},
		{"a semicolon after end", "/genesys/1/cs/services/42/tasks/7/end%3Bx",
			"the path holds an encoded semicolon (%3B), which no Context Services path has"},
		{"a semicolon in an extension name", "PUT /genesys/1/cs/services/42/extensions/e1%3Bx",
			"the path holds an encoded semicolon (%3B), which no Context Services path has"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path, put := strings.Cut(tt.path, " ")
			if !put {
				method, path = http.MethodPost, tt.path
			}
			resp, b := send(t, tester, opCall{method: method, path: path, loose: `{a: 1}`})
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			var eb errorBody
			require.NoError(t, json.Unmarshal(b, &eb), "body %q", b)
			assert.Equal(t, "InvalidParameterException", eb.Exception)
			assert.Equal(t, tt.message, eb.Message)
		})
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Zero(t, rec.calls, "nothing reaches the upstream")
}

func TestAnEncodedSemicolonInASegmentOfEveryOperationIsFound(t *testing.T) {
	t.Parallel()
	h := &Handler{BasePath: DefaultBasePath, basePfx: DefaultBasePath + "/", baseSegs: baseSegments(DefaultBasePath), ops: parseOperations(nil)}
	tests := []struct {
		method, path string
		op           normalize.Operation
		encodedAt    string
	}{
		{"POST", "/genesys/1/cs/services/start%3Bx", normalize.OpServiceStart, "path"},
		{"POST", "/genesys/1/cs/services/42/end%3Bx", normalize.OpServiceEnd, "path"},
		{"POST", "/genesys/1/cs/services/42%3B7/end", normalize.OpServiceEnd, "service_id"},
		{"POST", "/genesys/1/cs/services/42/states/start%3B", normalize.OpStateStart, "path"},
		{"POST", "/genesys/1/cs/services/42/states/3%3Bx/end", normalize.OpStateEnd, "state_id"},
		{"POST", "/genesys/1/cs/services/42/states%3Bx/transition", normalize.OpStateTransition, "path"},
		{"POST", "/genesys/1/cs/services/42/tasks%3Bx/start", normalize.OpTaskStart, "path"},
		{"POST", "/genesys/1/cs/services/42/tasks/7/end%3Bx", normalize.OpTaskEnd, "path"},
		{"POST", "/genesys/1/cs/customers/c-1%3Bx/services/42", normalize.OpServiceAssociate, "customer_id"},
		{"PUT", "/genesys/1/cs/services/42/extensions/e1%3Bx", normalize.OpExtensionUpdate, "path"},
		{"PUT", "/genesys/1/cs/services/42/tasks/7/extensions/e1%3Bx/merge", normalize.OpExtensionUpdate, "path"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			m := h.match(httptest.NewRequest(tt.method, tt.path, nil))
			require.True(t, m.ok, "the call as a container that decodes first would map it")
			assert.Equal(t, tt.op, m.op)
			assert.Equal(t, tt.encodedAt, m.encodedAt)
			assert.Equal(t, "%3B", m.encoded)
		})
	}
}
