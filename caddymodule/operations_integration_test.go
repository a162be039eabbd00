package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/normalize"
)

// opCall is one call of the service-event API with a loose body and the
// answer the stand-in UCS gives it.
type opCall struct {
	op           normalize.Operation
	method, path string
	loose        string
	status       int    // the UCS's answer
	answer       string // its body
}

const base = "/genesys/1/cs"

// opCalls has one call per operation, on service 42: a service's events
// keep their order through the spool.
var opCalls = []opCall{
	{normalize.OpServiceStart, http.MethodPost, base + "/services/start",
		`{service_type: sales, customer_id: 4711, "price": 25 000}`, http.StatusCreated, `{"service_id":"383-f9a62aec"}`},
	{normalize.OpServiceEnd, http.MethodPost, base + "/services/42/end",
		`{disposition: resolved, disposition_desc: 200}`, http.StatusNoContent, ``},
	{normalize.OpStateStart, http.MethodPost, base + "/services/42/states/start",
		`{state_type: identification, previous_state_id: "2"}`, http.StatusCreated, `{"state_id":3}`},
	{normalize.OpStateEnd, http.MethodPost, base + "/services/42/states/3/end",
		`{disposition: 'transferred',}`, http.StatusNoContent, ``},
	{normalize.OpStateTransition, http.MethodPost, base + "/services/42/states/transition",
		`{from: {state_id: "3", disposition: resolved}, to: {state_type: self service}}`, http.StatusCreated, `{"state_id":4}`},
	{normalize.OpTaskStart, http.MethodPost, base + "/services/42/tasks/start",
		`{"task_type":customer info,"price":25 000}`, http.StatusCreated, `{"task_id":7}`},
	{normalize.OpTaskEnd, http.MethodPost, base + "/services/42/tasks/7/end",
		`{interaction_id: 0000CSS0FXZUP6UR, state_id: 24}`, http.StatusNoContent, ``},
	{normalize.OpServiceAssociate, http.MethodPost, base + "/customers/4711/services/42",
		`{contact_key: ab-12}`, http.StatusOK, `{"customer_id":"4711"}`},
	{normalize.OpExtensionUpdate, http.MethodPut, base + "/services/42/tasks/7/extensions/Survey/merge",
		`{question1: 7, question2: True,}`, http.StatusOK, `{}`},
}

// strictEvent is what the normaliser makes of c's body with the test clock.
func strictEvent(t *testing.T, c opCall) string {
	t.Helper()
	n, err := normalize.New(normalize.Options{Attributes: attributeTables(t)})
	require.NoError(t, err)
	out, err := n.Event(c.op, nil, []byte(c.loose), testNow, nil)
	require.NoError(t, err)
	return string(out)
}

// answerByPath makes the stand-in UCS answer each call as opCalls says.
func answerByPath(u *ucsServer) {
	u.answer = func(s seenRequest) (int, http.Header, string) {
		for _, c := range opCalls {
			if c.path == s.path {
				return c.status, http.Header{"Content-Type": {"application/json"}}, c.answer
			}
		}
		return http.StatusNotFound, nil, ""
	}
}

func send(t *testing.T, tester *caddytest.Tester, c opCall) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(c.method, caddyURL+c.path, strings.NewReader(c.loose))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := tester.Client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// sendRelayed sends c and checks that the UCS's answer came back unchanged
// and that the UCS saw the strict body on c's own method and path.
func sendRelayed(t *testing.T, tester *caddytest.Tester, ucs *ucsServer, c opCall) *http.Response {
	t.Helper()
	resp, b := send(t, tester, c)
	assert.Equal(t, c.status, resp.StatusCode)
	assert.Equal(t, c.answer, string(b), "the answer is relayed unchanged")
	seen := last(t, ucs)
	assert.Equal(t, c.method, seen.method)
	assert.Equal(t, c.path, seen.path)
	assert.Equal(t, strictEvent(t, c), seen.body)
	return resp
}

// last is the last request the stand-in UCS received.
func last(t *testing.T, u *ucsServer) seenRequest {
	t.Helper()
	got := u.received()
	require.NotEmpty(t, got)
	return got[len(got)-1]
}

func TestEveryOperationGoesDownTheRouteStrictOnItsOwnMethodAndPath(t *testing.T) {
	ucs := newUCSServer(t)
	ucs.set(answerByPath)
	tester := startCaddy(t, `
	header {
		defer
		X-Ucs "{http.ucs.operation}|{http.ucs.outcome}|{http.ucs.service_id}|{http.ucs.task_id}"
	}
	ucs {
		business_attributes `+attrsFile+`
	}
	reverse_proxy `+strings.TrimPrefix(ucs.url(), "http://"))
	for _, c := range opCalls {
		t.Run(c.op.String(), func(t *testing.T) {
			series := `caddy_ucs_requests_total{operation="` + c.op.String() + `",outcome="forwarded"}`
			before := scrape(t, series)
			resp := sendRelayed(t, tester, ucs, c)
			assert.Equal(t, "application/json;charset=UTF-8", last(t, ucs).header.Get("Content-Type"))
			sid, tid := "42", ""
			switch c.op {
			case normalize.OpServiceStart:
				sid = ""
			case normalize.OpTaskEnd, normalize.OpExtensionUpdate:
				tid = "7"
			}
			assert.Equal(t, c.op.String()+"|forwarded|"+sid+"|"+tid, resp.Header.Get("X-Ucs"))
			assert.Equal(t, 1.0, scrape(t, series)-before)
		})
	}
}

func TestEveryOperationGoesThroughForwardAndItsAnswerIsRelayed(t *testing.T) {
	ucs := newUCSServer(t)
	ucs.set(answerByPath)
	tester := startCaddy(t, `
	ucs {
		business_attributes `+attrsFile+`
		forward `+ucs.url()+`
	}
	respond 404`)
	for _, c := range opCalls {
		t.Run(c.op.String(), func(t *testing.T) {
			sendRelayed(t, tester, ucs, c)
		})
	}
}

func TestDuringAnOutageOnlyEndOperationsAreSpooledAndReplayedWithTheirOwnPath(t *testing.T) {
	fastReplay(t)
	ucs := newUCSServer(t)
	ucs.set(answerByPath)
	dir := t.TempDir()
	tester := startCaddy(t, `
	header {
		defer
		X-Outcome "{http.ucs.outcome}"
	}
	ucs {
		business_attributes `+attrsFile+`
		forward `+ucs.url()+` {
			timeout 2s
			spool `+dir+`
		}
	}
	respond 404`)
	ucs.stop()
	var spooled []opCall
	for _, c := range opCalls {
		t.Run(c.op.String(), func(t *testing.T) {
			resp, b := send(t, tester, c)
			if !c.op.IsEnd() {
				assert.Equal(t, http.StatusBadGateway, resp.StatusCode, "the caller needs the server's answer")
				assert.Equal(t, "error", resp.Header.Get("X-Outcome"))
				var eb errorBody
				require.NoError(t, json.Unmarshal(b, &eb), "body %q", b)
				assert.Equal(t, "UpstreamUnavailableException", eb.Exception)
				return
			}
			assert.Equal(t, http.StatusNoContent, resp.StatusCode)
			assert.Equal(t, "spooled", resp.Header.Get("X-Outcome"))
			spooled = append(spooled, c)
		})
	}
	require.Len(t, spooled, 3)
	assert.Equal(t, 3.0, scrape(t, spoolSeries(t, "spool_records", dir)))

	ucs.restart()
	require.Eventually(t, func() bool { return len(ucs.received()) == len(spooled) },
		20*time.Second, 10*time.Millisecond, "the spooled events are replayed")
	for i, seen := range ucs.received() {
		c := spooled[i]
		assert.Equal(t, c.method, seen.method, c.op.String())
		assert.Equal(t, c.path, seen.path, c.op.String())
		assert.Equal(t, strictEvent(t, c), seen.body, c.op.String())
	}
}

func TestLocalJournalsEndOperationsAndSendsTheOthersDownTheRoute(t *testing.T) {
	ucs := newUCSServer(t)
	ucs.set(answerByPath)
	journal := filepath.Join(t.TempDir(), "events.jsonl")
	tester := startCaddy(t, `
	ucs {
		business_attributes `+attrsFile+`
		local `+journal+`
	}
	reverse_proxy `+strings.TrimPrefix(ucs.url(), "http://"))
	var journaled []opCall
	for _, c := range opCalls {
		t.Run(c.op.String(), func(t *testing.T) {
			before := len(ucs.received())
			resp, b := send(t, tester, c)
			if c.op.IsEnd() {
				assert.Equal(t, http.StatusNoContent, resp.StatusCode)
				assert.Len(t, ucs.received(), before, "an end event stays in the journal")
				journaled = append(journaled, c)
				return
			}
			assert.Equal(t, c.status, resp.StatusCode)
			assert.Equal(t, c.answer, string(b))
			seen := last(t, ucs)
			assert.Equal(t, c.path, seen.path)
			assert.Equal(t, strictEvent(t, c), seen.body)
		})
	}
	f, err := os.Open(journal)
	require.NoError(t, err)
	defer f.Close()
	var lines []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	ids := map[normalize.Operation]string{
		normalize.OpServiceEnd: `"service_id":"42"`,
		normalize.OpStateEnd:   `"service_id":"42","state_id":3`,
		normalize.OpTaskEnd:    `"service_id":"42","task_id":7`,
	}
	require.Len(t, lines, len(journaled))
	for i, c := range journaled {
		want := `{"received_at":"2026-03-04T05:06:07.891Z","operation":"` + c.op.String() + `",` + ids[c.op] +
			`,"event":` + strictEvent(t, c) + `}`
		assert.Equal(t, want, lines[i])
	}
}

func TestFillDefaultsGivesAStartServiceTheDefaultServiceType(t *testing.T) {
	ucs := newUCSServer(t)
	ucs.set(answerByPath)
	tester := startCaddy(t, `
	ucs {
		business_attributes `+attrsFile+`
		fill_defaults
	}
	reverse_proxy `+strings.TrimPrefix(ucs.url(), "http://"))
	resp, b := send(t, tester, opCall{method: http.MethodPost, path: base + "/services/start", loose: `{customer_id: 4711}`})
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, `{"service_id":"383-f9a62aec"}`, string(b))
	// ServiceType flags "customer service" (6001), MediaType "voice" (1001).
	assert.Equal(t, `{"customer_id":"4711","media_type":1001,"service_type":6001,"timestamp":"2026-03-04T05:06:07.891Z"}`, last(t, ucs).body)
}

func TestAPathIdOfEachOperationIsChecked(t *testing.T) {
	ucs := newUCSServer(t)
	tester := startCaddy(t, "ucs\nreverse_proxy "+strings.TrimPrefix(ucs.url(), "http://"))
	tests := []struct {
		name, method, path, message string
	}{
		{"state_id of state.end", http.MethodPost, base + "/services/42/states/x/end", "state_id must be decimal digits only"},
		{"state_id of an extension", http.MethodPut, base + "/services/42/states/2147483648/extensions/A", "state_id must be at most 2147483647"},
		{"service_id of task.start", http.MethodPost, base + "/services/a_b/tasks/start", "service_id may only hold letters, digits and '-' (byte 2 is not one)"},
		{"an encoded slash in a customer id", http.MethodPost, base + "/customers/4711%2F/services/42", "customer_id cannot contain '/': the path holds an encoded slash (%2F)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, caddyURL+tt.path, bytes.NewReader([]byte(`{}`)))
			require.NoError(t, err)
			resp, err := tester.Client.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			var eb errorBody
			require.NoError(t, json.Unmarshal(b, &eb), "body %q", b)
			assert.Equal(t, "InvalidParameterException", eb.Exception)
			assert.Equal(t, tt.message, eb.Message)
		})
	}
	assert.Empty(t, ucs.received(), "nothing reaches the upstream")
}

func TestAnEmptyBodyIsAnEmptyEventButNeverAnInventedExtension(t *testing.T) {
	ucs := newUCSServer(t)
	ucs.set(answerByPath)
	tester := startCaddy(t, `
	ucs {
		forward `+ucs.url()+`
	}
	respond 404`)
	for _, c := range opCalls {
		for _, body := range []string{"", "  \r\n", "// nothing here\n"} {
			t.Run(c.op.String()+"/"+strings.TrimSpace(body), func(t *testing.T) {
				before := len(ucs.received())
				empty := c
				empty.loose = body
				if c.op != normalize.OpExtensionUpdate {
					sendRelayed(t, tester, ucs, empty)
					return
				}
				resp, b := send(t, tester, empty)
				assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
				var eb errorBody
				require.NoError(t, json.Unmarshal(b, &eb), "body %q", b)
				assert.Equal(t, exInvalidJSON, eb.Exception)
				assert.Contains(t, eb.Message, "the body is empty")
				assert.Len(t, ucs.received(), before, "no extension is sent the UCS would store as {}")
			})
		}
	}
}
