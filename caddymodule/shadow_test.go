package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wireRequest is a request as the upstream received it.
type wireRequest struct {
	Method     string
	RequestURI string // raw path and query, as sent
	Header     http.Header
	Length     int64
	Chunked    bool
	Body       []byte
}

// wireRecorder is an upstream that keeps every request as received and
// answers with answer (204 when nil).
type wireRecorder struct {
	mu     sync.Mutex
	got    []wireRequest
	srv    *httptest.Server
	answer http.HandlerFunc
}

func newWireRecorder(t *testing.T, answer http.HandlerFunc) *wireRecorder {
	rec := &wireRecorder{answer: answer}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rec.mu.Lock()
		rec.got = append(rec.got, wireRequest{r.Method, r.RequestURI, r.Header.Clone(), r.ContentLength, len(r.TransferEncoding) > 0, b})
		rec.mu.Unlock()
		if rec.answer != nil {
			r.Body = io.NopCloser(bytes.NewReader(b))
			rec.answer(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *wireRecorder) addr() string { return strings.TrimPrefix(rec.srv.URL, "http://") }

func (rec *wireRecorder) take() []wireRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	got := rec.got
	rec.got = nil
	return got
}

// wireCase is one request of the byte-exactness test.
type wireCase struct {
	name    string
	path    string // raw, appended to caddyURL
	body    []byte
	header  http.Header
	chunked bool
}

// goldenWireCases are the golden inputs of package normalize, valid and
// invalid bodies, and the framings and paths a legacy client sends.
func goldenWireCases(t *testing.T) []wireCase {
	t.Helper()
	const taskEnd = "/genesys/1/cs/services/42/tasks/7/end"
	var cases []wireCase
	files, err := filepath.Glob("../normalize/testdata/golden/*.in.json")
	require.NoError(t, err)
	events, err := filepath.Glob("../normalize/testdata/golden/events/*.in.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	require.NotEmpty(t, events)
	eventPaths := map[string]string{
		"service.start": "/genesys/1/cs/services/start", "service.end": "/genesys/1/cs/services/42/end",
		"state.start": "/genesys/1/cs/services/42/states/start", "state.end": "/genesys/1/cs/services/42/states/3/end",
		"state.transition": "/genesys/1/cs/services/42/states/transition", "task.start": "/genesys/1/cs/services/42/tasks/start",
		"task.end": taskEnd, "service.associate": "/genesys/1/cs/customers/c1/services/42",
		"extension.update": "/genesys/1/cs/services/42/extensions/survey",
	}
	for _, f := range append(files, events...) {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		path := taskEnd
		if op, _, ok := strings.Cut(filepath.Base(f), "-"); ok && eventPaths[op] != "" && strings.Contains(f, "/events/") {
			path = eventPaths[op]
		}
		cases = append(cases, wireCase{name: filepath.Base(f), path: path, body: b})
	}
	gz := gzipped(t, []byte(`{interaction_id: 0000CSS0FXZUP6UR, price: 25 000}`))
	cases = append(cases,
		wireCase{name: "invalid: truncated", path: taskEnd, body: []byte(`{"a": [1, 2`)},
		wireCase{name: "invalid: not an object", path: taskEnd, body: []byte(`[1]`)},
		wireCase{name: "invalid: unknown attribute name", path: taskEnd, body: []byte(`{"media_type":"pigeon"}`)},
		wireCase{name: "invalid: bad task id", path: "/genesys/1/cs/services/42/tasks/x7/end", body: []byte(`{}`)},
		wireCase{name: "gzip", path: taskEnd, body: gz, header: http.Header{"Content-Encoding": {"gzip"}}},
		wireCase{name: "chunked", path: taskEnd, body: []byte(`{session_id: 'abc', x: True,}`), chunked: true},
		wireCase{name: "chunked gzip", path: taskEnd, body: gz, header: http.Header{"Content-Encoding": {"gzip"}}, chunked: true},
		wireCase{name: "over max_body", path: taskEnd, body: []byte(`{"a":"` + strings.Repeat("x", 5000) + `"}`)},
		wireCase{name: "over max_body chunked", path: taskEnd, body: []byte(`{"a":"` + strings.Repeat("y", 5000) + `"}`), chunked: true},
		wireCase{name: "windows-1252 body", path: taskEnd, body: []byte("{\"disposition_desc\":\"caf\xe9\"}"),
			header: http.Header{"Content-Type": {"application/json; charset=windows-1252"}}},
		wireCase{name: "non-UTF-8 header values", path: taskEnd, body: []byte(`{}`),
			header: http.Header{"X-Agent-Name": {"Jos\xe9 M\xfcller"}, "Contactcenterid": {"\xff\xfe"}}},
		wireCase{name: "encoded slash", path: "/genesys/1/cs/services/42%2Ftasks/7/end", body: []byte(`{a: 1}`)},
		wireCase{name: "double slashes", path: "//genesys/1/cs//services/42/tasks/7/end", body: []byte(`{a: 1}`)},
		wireCase{name: "jsessionid", path: "/genesys/1/cs/services/42/tasks/7/end;jsessionid=0A1B2C?x=%2F&y=1", body: []byte(`{a: 1}`)},
		wireCase{name: "query", path: taskEnd + "?a=1&b=%20&a=2", body: []byte(`{"b": 2}`)},
		wireCase{name: "empty body", path: taskEnd, body: nil},
	)
	return cases
}

// send posts c to Caddy and returns the status.
func (c wireCase) send(t *testing.T, client *http.Client) int {
	t.Helper()
	var body io.Reader = bytes.NewReader(c.body)
	if c.chunked {
		body = io.MultiReader(bytes.NewReader(c.body)) // no length known: chunked
	}
	req, err := http.NewRequest(http.MethodPost, caddyURL+c.path, body)
	require.NoError(t, err)
	if strings.Contains(c.path, "/extensions/") {
		req.Method = http.MethodPut
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range c.header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestShadowPassesEveryCallOnByteForByte sends each golden input, valid and
// invalid, and each awkward framing and path once through plain
// reverse_proxy and once through ucs in shadow mode in front of it: the
// upstream must receive the identical request (method, raw path and query,
// every header, framing, body bytes).
func TestShadowPassesEveryCallOnByteForByte(t *testing.T) {
	rec := newWireRecorder(t, nil)
	cases := goldenWireCases(t)
	tester := startCaddy(t, "reverse_proxy "+rec.addr())
	var plain []wireRequest
	for _, c := range cases {
		c.send(t, tester.Client)
		got := rec.take()
		require.Len(t, got, 1, c.name)
		plain = append(plain, got[0])
	}

	loadSite(t, tester, `
	ucs {
		business_attributes `+attrsFile+`
		max_body 1KiB
		shadow {
			journal `+filepath.Join(t.TempDir(), "shadow.jsonl")+`
			sample 100%
		}
	}
	reverse_proxy `+rec.addr())
	shadowed := scrapeSum(t, "caddy_ucs_requests_total{", `outcome="shadowed"`)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, http.StatusNoContent, c.send(t, tester.Client), "shadow mode never answers itself")
			got := rec.take()
			require.Len(t, got, 1)
			assert.Equal(t, plain[i].Method, got[0].Method)
			assert.Equal(t, plain[i].RequestURI, got[0].RequestURI)
			assert.Equal(t, plain[i].Header, got[0].Header)
			assert.Equal(t, plain[i].Length, got[0].Length)
			assert.Equal(t, plain[i].Chunked, got[0].Chunked)
			assert.Equal(t, string(c.body), string(got[0].Body), "the body as the client sent it")
			assert.Equal(t, plain[i].Body, got[0].Body)
		})
	}
	// Each of them was one of the handler's calls, not passed by.
	assert.Equal(t, float64(len(cases)), scrapeSum(t, "caddy_ucs_requests_total{", `outcome="shadowed"`)-shadowed)
}

// scrapeSum adds the values of the series starting with prefix and
// holding has.
func scrapeSum(t *testing.T, prefix, has string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	sum := 0.0
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, prefix) && strings.Contains(line, has) {
			var v float64
			_, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			require.NoError(t, err)
			sum += v
		}
	}
	return sum
}

// TestShadowStreamsABodyOverMaxBodyWithoutBufferingIt holds back the end
// of a body over max_body until the upstream has received its start: a
// handler that buffered the whole body would never let the start through.
func TestShadowStreamsABodyOverMaxBodyWithoutBufferingIt(t *testing.T) {
	started := make(chan struct{})
	var got []byte
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 4096)
		n, err := io.ReadFull(r.Body, buf)
		got = append(got, buf[:n]...)
		close(started)
		if err == nil {
			rest, _ := io.ReadAll(r.Body)
			got = append(got, rest...)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(up.Close)
	tester := startCaddy(t, `
	ucs {
		max_body 1KiB
		shadow
	}
	reverse_proxy `+strings.TrimPrefix(up.URL, "http://"))
	head := bytes.Repeat([]byte("a"), 4096)
	tail := bytes.Repeat([]byte("b"), 4096)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(head)
		select {
		case <-started:
			_, _ = pw.Write(tail)
			_ = pw.Close()
		case <-time.After(10 * time.Second):
			_ = pw.CloseWithError(fmt.Errorf("the upstream never saw the start of the body"))
		}
	}()
	before := scrape(t, `caddy_ucs_shadow_total{gateway="too_large",operation="task.end",upstream="2xx"}`)
	resp, err := tester.Client.Post(taskEndURL, "application/json", pr)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, append(head, tail...), got)
	assert.Equal(t, 1.0, scrape(t, `caddy_ucs_shadow_total{gateway="too_large",operation="task.end",upstream="2xx"}`)-before)
}

// strictOnlyUCS answers like a UCS that refuses what is not strict JSON
// with a Genesys 400 and accepts the rest.
func strictOnlyUCS(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if !json.Valid(b) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"message":"Unexpected character at line 1","exception":"InvalidJsonException"}`))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readShadowJournal returns the records of a shadow journal.
func readShadowJournal(t *testing.T, path string) []shadowRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var recs []shadowRecord
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r shadowRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "line %q", sc.Text())
		recs = append(recs, r)
	}
	return recs
}

func shadowSeries(gateway, upstream string) string {
	return `caddy_ucs_shadow_total{gateway="` + gateway + `",operation="task.end",upstream="` + upstream + `"}`
}

// TestShadowVerdictsAgainstAUCSThatRefusesLooseJSON puts shadow mode in
// front of a UCS that refuses non-strict JSON with a Genesys 400: a loose
// body is a would-fix, a strict one is the same and accepted, an unknown
// attribute name is a would-break (warned about). Then `caddy ucs shadow
// report` reads the journal the gateway wrote, as text and as JSON.
func TestShadowVerdictsAgainstAUCSThatRefusesLooseJSON(t *testing.T) {
	ucs := newWireRecorder(t, strictOnlyUCS)
	dir := t.TempDir()
	journal := filepath.Join(dir, "shadow.jsonl")
	logFile := filepath.Join(dir, "caddy.log")
	global := strings.Replace(globalOptions, "grace_period 1ns", "grace_period 1ns\n\tlog {\n\t\toutput file "+logFile+"\n\t\tlevel WARN\n\t}", 1)
	tester := startCaddyWith(t, global, `
	ucs {
		business_attributes `+attrsFile+`
		unknown_names reject
		shadow {
			journal `+journal+`
			sample 100%
		}
	}
	reverse_proxy `+ucs.addr())

	tests := []struct {
		name     string
		body     string
		status   int // the UCS's, relayed unchanged
		gateway  string
		upstream string
		verdict  string
	}{
		{"a loose body is a would-fix", `{interaction_id: 0000CSS0FXZUP6UR, media_type: 'email'}`, 400, "repaired", "4xx", "would_fix"},
		{"a strict body is the same and accepted", `{"interaction_id":"0000CSS0FXZUP6UR","media_type":1003}`, 204, "same", "2xx", "neither"},
		{"an unknown attribute name is a would-break", `{"interaction_id":"0000CSS0FXZUP6UR","media_type":"pigeon"}`, 204, "rejected", "2xx", "would_break"},
	}
	bareWords := scrape(t, `caddy_ucs_repairs_total{kind="bare_word",operation="task.end"}`)
	unknownNames := scrape(t, `caddy_ucs_rejections_total{operation="task.end",reason="unknown_name"}`)
	var want []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := scrape(t, shadowSeries(tt.gateway, tt.upstream))
			resp, _ := post(t, tester, taskEndURL, []byte(tt.body), "Content-Type", "application/json")
			assert.Equal(t, tt.status, resp.StatusCode)
			assert.Equal(t, 1.0, scrape(t, shadowSeries(tt.gateway, tt.upstream))-before)
			want = append(want, tt.verdict)
		})
	}
	// The repair and rejection counters count shadow calls too.
	assert.Equal(t, 1.0, scrape(t, `caddy_ucs_repairs_total{kind="bare_word",operation="task.end"}`)-bareWords)
	assert.Equal(t, 1.0, scrape(t, `caddy_ucs_rejections_total{operation="task.end",reason="unknown_name"}`)-unknownNames)
	var recs []shadowRecord
	require.Eventually(t, func() bool { recs = readShadowJournal(t, journal); return len(recs) == len(want) }, 10*time.Second, 10*time.Millisecond)
	fix, same, brk := recs[0], recs[1], recs[2]
	assert.Equal(t, want, []string{fix.Verdict, same.Verdict, brk.Verdict})
	assert.Equal(t, "same", same.Gateway)
	assert.Equal(t, 1.0, same.Sample, "recorded by sample")
	assert.Zero(t, fix.Sample, "always recorded")
	assert.Equal(t, "would_fix", fix.Verdict)
	assert.Equal(t, "task.end", fix.Operation)
	assert.Equal(t, "42", fix.ServiceID)
	assert.Equal(t, "7", fix.TaskID)
	assert.Equal(t, 400, fix.UpstreamStatus)
	assert.Equal(t, "InvalidJsonException", fix.UpstreamException)
	assert.Equal(t, tests[0].body, fix.Original)
	assert.Equal(t, `{"interaction_id":"0000CSS0FXZUP6UR","media_type":1003,"timestamp":"2026-03-04T05:06:07.891Z"}`, fix.Strict)
	assert.Equal(t, map[string]int{"bare_word": 1, "unquoted_key": 2, "quotes": 1, "attribute_name": 1, "timestamp_added": 1}, fix.RepairCounts)
	assert.Equal(t, shadowRepair{Kind: "unquoted_key", Line: 1, Column: 2}, fix.Repairs[0])
	assert.Equal(t, "2026-03-04T05:06:07.891Z", fix.ReceivedAt)

	assert.Equal(t, "would_break", brk.Verdict)
	assert.Equal(t, 204, brk.UpstreamStatus)
	require.NotNil(t, brk.Rejection)
	assert.Equal(t, "unknown_name", brk.Rejection.Reason)
	assert.Equal(t, "InvalidBusinessAttributeException", brk.Rejection.Exception)
	assert.Contains(t, brk.Rejection.Message, "pigeon")
	assert.Equal(t, 1, brk.Rejection.Line)
	assert.Empty(t, brk.Strict)

	logs, err := os.ReadFile(logFile)
	require.NoError(t, err)
	var warn map[string]any
	for line := range strings.Lines(string(logs)) {
		if strings.Contains(line, "would refuse a call the UCS accepted") {
			require.NoError(t, json.Unmarshal([]byte(line), &warn))
		}
	}
	require.NotNil(t, warn, "the would-break is warned about: %s", logs)
	assert.Equal(t, "warn", warn["level"])
	assert.Equal(t, "task.end", warn["operation"])
	assert.Equal(t, "/genesys/1/cs/services/42/tasks/7/end", warn["path"])
	assert.Equal(t, "unknown_name", warn["reason"])
	assert.EqualValues(t, 1, warn["line"])
	assert.NotContains(t, string(logs), "pigeon", "no attached data in the log")

	t.Run("the report reads the journal as text", func(t *testing.T) {
		var out, errOut bytes.Buffer
		require.Equal(t, 0, runShadowReport(reportFlags{examples: 5}, []string{journal}, time.Now(), &out, &errOut), errOut.String())
		text := out.String()
		assert.Contains(t, text, "task.end")
		assert.Contains(t, text, "would break")
		assert.Contains(t, text, "/genesys/1/cs/services/42/tasks/7/end")
		assert.Contains(t, text, "unknown_name")
		assert.Regexp(t, regexp.MustCompile(`(?m)^\s*unquoted_key\s+2$`), text)
		assert.True(t, strings.HasSuffix(text, "switching inline would have refused 1 calls the UCS accepted (50.0 %) and repaired 1 it refused\n"), text)
	})
	t.Run("the report reads the journal as JSON", func(t *testing.T) {
		var out, errOut bytes.Buffer
		require.Equal(t, 0, runShadowReport(reportFlags{json: true, examples: 5}, []string{journal}, time.Now(), &out, &errOut), errOut.String())
		var rep shadowReport
		require.NoError(t, json.Unmarshal(out.Bytes(), &rep), out.String())
		assert.Equal(t, 1, rep.WouldBreak)
		assert.Equal(t, 1, rep.WouldFix)
		assert.Equal(t, 1.0, rep.Operations["task.end"]["rejected"]["2xx"])
		assert.Equal(t, 1.0, rep.Operations["task.end"]["repaired"]["4xx"])
		require.Len(t, rep.WouldBreakExamples, 1)
		assert.Equal(t, "unknown_name", rep.WouldBreakExamples[0].Reason)
	})
}

// TestShadowRelaysTheUpstreamAnswerUnchanged checks status, headers, body,
// streaming and trailers, for an answer the handler does not capture and
// for an error answer whose start it reads.
func TestShadowRelaysTheUpstreamAnswerUnchanged(t *testing.T) {
	var step sync.Map // the answer's status → chan: the client read the first part
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		status := 201
		if strings.Contains(r.URL.RawQuery, "error") {
			status = 503
		}
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("X-Upstream", "yes")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"message":"first part","exception":"Busy",`))
		w.(http.Flusher).Flush()
		ch, _ := step.Load(r.URL.RawQuery)
		select {
		case <-ch.(chan struct{}):
		case <-time.After(10 * time.Second):
		}
		_, _ = w.Write([]byte(`"pad":"` + strings.Repeat("z", 6000) + `"}`))
		w.Header().Set("X-Checksum", "c0ffee")
	}))
	t.Cleanup(up.Close)
	tester := startCaddy(t, `
	ucs {
		shadow
	}
	reverse_proxy `+strings.TrimPrefix(up.URL, "http://")+` {
		flush_interval -1
	}`)
	for _, q := range []string{"ok", "error"} {
		t.Run(q, func(t *testing.T) {
			ch := make(chan struct{})
			step.Store(q, ch)
			before := scrape(t, `caddy_ucs_requests_total{operation="task.end",outcome="shadowed"}`)
			resp, err := tester.Client.Post(taskEndURL+"?"+q, "application/json", strings.NewReader(`{a: 1}`))
			require.NoError(t, err)
			defer resp.Body.Close()
			first := make([]byte, len(`{"message":"first part","exception":"Busy",`))
			_, err = io.ReadFull(resp.Body, first)
			require.NoError(t, err, "the first part arrives before the upstream sends the rest")
			close(ch)
			rest, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, map[bool]int{true: 503, false: 201}[q == "error"], resp.StatusCode)
			assert.Equal(t, "yes", resp.Header.Get("X-Upstream"))
			assert.Equal(t, `{"message":"first part","exception":"Busy","pad":"`+strings.Repeat("z", 6000)+`"}`, string(first)+string(rest))
			assert.Equal(t, "c0ffee", resp.Trailer.Get("X-Checksum"))
			assert.Equal(t, 1.0, scrape(t, `caddy_ucs_requests_total{operation="task.end",outcome="shadowed"}`)-before)
		})
	}
}

// TestValidateRefusesShadowWithASink checks that a config with shadow and
// local or forward fails as `caddy validate` runs it (adapt, then
// caddy.Validate), for a Caddyfile (with the line) and for JSON.
func TestValidateRefusesShadowWithASink(t *testing.T) {
	tests := []struct {
		name, block, want string
	}{
		{"shadow then forward", "shadow\n\t\tforward http://ucs:8080", "forward cannot be combined with shadow"},
		{"local then shadow", "local /tmp/x.jsonl\n\t\tshadow", "shadow cannot be combined with local"},
	}
	for _, tt := range tests {
		t.Run("Caddyfile: "+tt.name, func(t *testing.T) {
			cfg := ":8080 {\n\tucs {\n\t\tbusiness_attributes x.json\n\t\t" + tt.block + "\n\t}\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), map[string]any{"filename": "Caddyfile"})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "Caddyfile:5", "the line of the option")
		})
	}
	t.Run("caddy validate, the binary", func(t *testing.T) {
		if testing.Short() {
			t.Skip("builds the binary; skipped with -short")
		}
		dir := t.TempDir()
		bin := buildCaddy(t)
		cfg := filepath.Join(dir, "Caddyfile")
		require.NoError(t, os.WriteFile(cfg, []byte(":8080 {\n\tucs {\n\t\tforward http://ucs:8080\n\t\tshadow\n\t}\n}\n"), 0o600))
		out, err := exec.Command(bin, "validate", "--config", cfg, "--adapter", "caddyfile").CombinedOutput()
		require.Error(t, err, "%s", out)
		assert.Contains(t, string(out), "shadow cannot be combined with forward")
		assert.Contains(t, string(out), "Caddyfile:4")
	})
	for _, sink := range []string{`"forward":{"urls":["http://ucs:8080"]}`, `"local":{"path":"/tmp/ucs-validate.jsonl"}`} {
		t.Run("JSON: "+sink, func(t *testing.T) {
			cfg := `{"apps":{"http":{"servers":{"s":{"listen":[":8080"],"routes":[{"handle":[{"handler":"ucs","shadow":{},` + sink + `}]}]}}}}}`
			var c caddy.Config
			require.NoError(t, json.Unmarshal([]byte(cfg), &c))
			err := caddy.Validate(&c)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "shadow cannot be combined with")
		})
	}
}

// TestShadowReloadUnderLoadLosesAndDoublesNothing reloads the config
// (sample changing, the journal kept) while 8 clients keep posting: every
// call answered 204 reached the upstream exactly once, none more than once
// (a call whose connection a reload closed may have reached it or not),
// and the journal holds no call twice.
func TestShadowReloadUnderLoadLosesAndDoublesNothing(t *testing.T) {
	const callers, reloads = 8, 6
	idRe := regexp.MustCompile(`id: '([^']+)'`)
	ucs := newWireRecorder(t, nil)
	journal := filepath.Join(t.TempDir(), "shadow.jsonl")
	site := func(i int) string {
		return `
	ucs {
		shadow {
			journal ` + journal + `
			sample ` + []string{"100%", "50%"}[i%2] + `
		}
	}
	reverse_proxy ` + ucs.addr()
	}
	startCaddy(t, site(0))

	var mu sync.Mutex
	status := map[string]int{} // call id → status; 0 when the call failed
	var answered atomic.Int64
	url := taskEndURL // the clients' own: the next test's site port is another
	stopClients := clients(t, callers, func(c int, stop <-chan struct{}) {
		client := &http.Client{Timeout: 30 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("c%d-%d", c, i)
			code := 0
			resp, err := client.Post(url, "application/json", strings.NewReader(fmt.Sprintf("{id: '%s', pad: %q,}", id, strings.Repeat("x", 64))))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
				answered.Add(1)
			}
			mu.Lock()
			status[id] = code
			mu.Unlock()
		}
	})
	waitAnswered := func(n int64) {
		require.Eventually(t, func() bool { return answered.Load() >= n }, time.Minute, 5*time.Millisecond)
	}
	for i := range reloads {
		waitAnswered(int64(40 * (i + 1)))
		loadSite(t, nil, site(i+1)) // the clients count what a reload cuts
	}
	waitAnswered(int64(40 * (reloads + 1)))
	stopClients()

	seen := map[string]int{}
	for _, r := range ucs.take() {
		if m := idRe.FindSubmatch(r.Body); m != nil {
			seen[string(m[1])]++
		}
	}
	failed := 0
	for id, code := range status {
		switch code {
		case http.StatusNoContent:
			assert.Equal(t, 1, seen[id], "call %s answered 204 reached the upstream once", id)
		case 0:
			failed++
			assert.LessOrEqual(t, seen[id], 1, "failed call %s reached the upstream more than once", id)
		default:
			t.Errorf("call %s answered %d", id, code)
		}
	}
	for id := range seen {
		assert.Contains(t, status, id, "the upstream received a call nobody sent")
	}
	assert.Less(t, failed, len(status)/10, "calls failed by the reloads: %d of %d", failed, len(status))
	lines := map[string]int{}
	require.Eventually(t, func() bool { return len(readShadowJournal(t, journal)) > 0 }, 10*time.Second, 10*time.Millisecond)
	for _, r := range readShadowJournal(t, journal) {
		if m := idRe.FindStringSubmatch(r.Original); m != nil {
			lines[m[1]]++
		}
	}
	for id, n := range lines {
		assert.Equal(t, 1, n, "call %s recorded %d times", id, n)
	}
}

// TestAFullShadowQueueDropsAndCountsAndNeverBlocks points the journal at a
// directory that cannot be created (a regular file stands where the
// directory should be; see also the test with a directory of mode 0500,
// which runs the handler without a server). The writer waits to retry, the queue fills, and every
// call still goes through at once; the records beyond the queue are
// dropped and counted.
func TestAFullShadowQueueDropsAndCountsAndNeverBlocks(t *testing.T) {
	oldLen, oldRetry := shadowQueueLen, shadowRetry
	shadowQueueLen, shadowRetry = 4, time.Hour
	t.Cleanup(func() { shadowQueueLen, shadowRetry = oldLen, oldRetry })
	dir := t.TempDir()
	blocked := filepath.Join(dir, "not-a-directory")
	require.NoError(t, os.WriteFile(blocked, nil, 0o600))
	ucs := newWireRecorder(t, nil)
	tester := startCaddy(t, `
	ucs {
		shadow {
			journal `+filepath.Join(blocked, "shadow.jsonl")+`
		}
	}
	reverse_proxy `+ucs.addr())
	dropped := scrape(t, "caddy_ucs_shadow_dropped_total")
	const calls = 40
	// Never blocking needs no clock: a call that waited for the writer would
	// wait out its hour-long retry, and the test with it.
	for i := range calls {
		// Not an object: refused by the gateway, so always recorded.
		resp, _ := post(t, tester, taskEndURL, []byte(`[`+fmt.Sprint(i)+`]`))
		assert.Equal(t, http.StatusNoContent, resp.StatusCode)
		if i == 0 {
			// The writer takes the first record and waits to retry the open.
			require.Eventually(t, func() bool {
				sj := openSinkOf(shadowJournals, filepath.Join(blocked, "shadow.jsonl"))
				return sj != nil && len(sj.(*shadowJournal).queue) == 0
			}, 5*time.Second, time.Millisecond)
		}
	}
	assert.Len(t, ucs.take(), calls)
	// The writer holds one record while it waits to retry, the queue four.
	assert.Equal(t, float64(calls-1-4), scrape(t, "caddy_ucs_shadow_dropped_total")-dropped)
}

// TestShadowJournalRecordsWhatItMustAndCutsWhatIsLong checks the journal's
// rules: refused calls are recorded whatever the sample (0 % here), the
// others are not; a body that is not UTF-8 is kept as base64; a body over
// max_record is cut and flagged; the file is 0600 and rotates at max_size.
func TestShadowJournalRecordsWhatItMustAndCutsWhatIsLong(t *testing.T) {
	ucs := newWireRecorder(t, nil)
	dir := filepath.Join(t.TempDir(), "shadow")
	journal := filepath.Join(dir, "shadow.jsonl")
	tester := startCaddy(t, `
	ucs {
		invalid_utf8 reject
		shadow {
			journal `+journal+`
			sample 0%
			max_record 100B
			max_size 2KiB
			keep 2
		}
	}
	reverse_proxy `+ucs.addr())
	long := `{"note":"` + strings.Repeat("é", 200) + `"` // refused: truncated
	bodies := []string{`{"a":1}`}                        // the same: not recorded
	for i := range 12 {
		bodies = append(bodies, fmt.Sprintf("[%d]", i)) // refused: not an object
	}
	bodies = append(bodies, "{\"a\":\"caf\xe9\"}", long) // last, so rotation keeps them
	for _, body := range bodies {
		resp, _ := post(t, tester, taskEndURL, []byte(body))
		assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	}
	byReason := map[string]shadowRecord{}
	require.Eventually(t, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "shadow*.jsonl"))
		for _, f := range files {
			for _, r := range readShadowJournal(t, f) {
				require.NotNil(t, r.Rejection, "only refused calls are recorded at sample 0%%: %+v", r)
				byReason[r.Rejection.Reason] = r
			}
		}
		return byReason["truncated"].Operation != "" && byReason["invalid_utf8"].Operation != ""
	}, 10*time.Second, 10*time.Millisecond)
	files, err := filepath.Glob(filepath.Join(dir, "shadow*.jsonl"))
	require.NoError(t, err)
	assert.Greater(t, len(files), 1, "the journal rotated at max_size")
	assert.LessOrEqual(t, len(files), 3, "one active file and keep 2 rotated ones")
	for _, f := range files {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), f)
	}
	binary := byReason["invalid_utf8"]
	assert.Empty(t, binary.Original)
	assert.Equal(t, []byte("{\"a\":\"caf\xe9\"}"), binary.OriginalBase64)
	cut := byReason["truncated"]
	assert.True(t, cut.Truncated)
	assert.Equal(t, long[:99], cut.Original, "cut at 100 bytes on a character boundary")
}

// hijackRecorder is a ResponseWriter that can be hijacked and flushed, as
// net/http's is.
type hijackRecorder struct {
	*httptest.ResponseRecorder
	hijacked bool
}

// WriteHeader sends a 1xx on, not as the final status, as net/http does.
func (h *hijackRecorder) WriteHeader(code int) {
	if code >= 200 {
		h.ResponseRecorder.WriteHeader(code)
	}
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h.hijacked = true
	return nil, nil, nil
}

// TestShadowWriterKeepsFlushAndHijackAndCapturesOnlyErrorBodies checks the
// writer on its own: http.ResponseController reaches the real writer's
// Flush and Hijack, ReadFrom and Write pass every byte on, and only the
// first 4 KiB of a 4xx or 5xx body is kept.
func TestShadowWriterKeepsFlushAndHijackAndCapturesOnlyErrorBodies(t *testing.T) {
	tests := []struct {
		name        string
		status      int // 0: no WriteHeader, the first Write is a 200
		readFrom    bool
		wantCapture int
	}{
		{"200 by Write", 0, false, 0},
		{"201 by ReadFrom", 201, true, 0},
		{"400 by Write", 400, false, maxShadowCapture},
		{"502 by ReadFrom", 502, true, maxShadowCapture},
	}
	body := bytes.Repeat([]byte("x"), 3*maxShadowCapture)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			real := &hijackRecorder{ResponseRecorder: httptest.NewRecorder()}
			sw := &shadowWriter{}
			sw.ResponseWriter = real
			rc := http.NewResponseController(sw)
			sw.WriteHeader(http.StatusContinue) // interim: not the status
			if tt.status != 0 {
				sw.WriteHeader(tt.status)
			}
			if tt.readFrom {
				_, err := sw.ReadFrom(bytes.NewReader(body))
				require.NoError(t, err)
			} else {
				for i := 0; i < len(body); i += 1000 {
					_, err := sw.Write(body[i:min(i+1000, len(body))])
					require.NoError(t, err)
				}
			}
			require.NoError(t, rc.Flush())
			_, _, err := rc.Hijack()
			require.NoError(t, err)
			var asserted http.ResponseWriter = sw
			asserted.(http.Flusher).Flush()
			_, _, err = asserted.(http.Hijacker).Hijack()
			require.NoError(t, err)
			assert.True(t, real.hijacked)
			assert.True(t, real.Flushed)
			assert.Equal(t, body, real.Body.Bytes())
			assert.Equal(t, max(tt.status, 200), sw.status)
			assert.Len(t, sw.capture, tt.wantCapture)
		})
	}
}

// BenchmarkServeHTTPShadow is BenchmarkServeHTTPNextSink in shadow mode,
// with a journal at the default sample: the original body passed on, a
// copy normalised, the answer's status noted and the verdict counted.
func BenchmarkServeHTTPShadow(b *testing.B) {
	for _, body := range e2eBodies(b) {
		b.Run(body.name, func(b *testing.B) {
			benchServeHTTP(b, &Handler{BusinessAttributes: []string{attrsFile},
				Shadow: &ShadowMode{Journal: filepath.Join(b.TempDir(), "shadow.jsonl")}}, body.body)
		})
	}
}
