package caddymodule

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/testport"
	"github.com/ucsedge/caddy-ucs/normalize"
	"github.com/ucsedge/caddy-ucs/upstream"
)

// All caddytest tests live in this one package: caddytest runs one Caddy
// per process, so no test that loads a config calls t.Parallel (the tests
// that need neither the server nor a package-level hook do). Its ports are
// picked free, not caddytest's default 2999 and 9080: those are one pair for
// the whole machine, and two test runs at once would load their configs into
// each other's server.

// testNow is the handler clock in every test.
var testNow = time.Date(2026, 3, 4, 5, 6, 7, 891_000_000, time.UTC)

// attrsFile is the repository's sample business-attributes file.
var attrsFile, _ = filepath.Abs("../testdata/business-attributes.json")

// runDir is the test run's temporary directory, removed when it ends.
var runDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// caddytest writes autosaved configs and certificates under $HOME
	// unless told otherwise.
	dir, err := os.MkdirTemp("", "ucs-caddytest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	runDir = dir
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	caddy.ConfigAutosavePath = filepath.Join(dir, "autosave.json")
	caddy.DefaultStorage.Path = filepath.Join(dir, "storage")
	now = func() time.Time { return testNow }
	code := m.Run()
	_ = caddy.Stop()
	return code
}

// The test Caddy's admin and https ports, this test process's for its life.
var adminPort, httpsPort int

// The test Caddy's site: set by useSitePort, read by the tests.
var (
	// caddyHost is the site as clients name it, caddyURL its base URL.
	caddyHost, caddyURL string
	// globalOptions are the global options of every test config.
	globalOptions string
	taskEndURL    string
	healthURL     string
)

func init() {
	p := freePorts(3)
	adminPort, httpsPort = p[0], p[1]
	useSitePort(p[2])
}

// newSitePort gives the config about to load a site port of its own, free
// now: the previous test's server, shutting down during the load, shares
// no listener with it and so can take none of its connections (a reload on
// one port lets it accept one and then drop it, which a loaded machine
// shows). A reload within one test keeps its port.
func newSitePort(tb testing.TB) { useSitePort(testport.Free(tb)) }

// useSitePort points the site variables at port.
func useSitePort(port int) {
	caddyHost = "localhost:" + strconv.Itoa(port)
	caddyURL = "http://" + caddyHost
	globalOptions = fmt.Sprintf(`{
	admin localhost:%d
	skip_install_trust
	http_port %d
	https_port %d
	grace_period 1ns
}
`, adminPort, port, httpsPort)
	taskEndURL = caddyURL + "/genesys/1/cs/services/42/tasks/7/end"
	healthURL = caddyURL + "/genesys/1/cs/ucs/health"
}

// freePorts is n ports of testport's, claimed before any test has a
// testing.TB: this package's init.
func freePorts(n int) []int {
	ports := make([]int, n)
	for i := range ports {
		port, err := testport.Claim()
		if err != nil {
			panic(err)
		}
		ports[i] = port
	}
	return ports
}

// siteConfig is the whole Caddyfile of one site block on the test Caddy's
// port, under the given global options.
func siteConfig(global, site string) string {
	return global + "\n" + caddyURL + " {\n" + site + "\n}\n"
}

// startCaddy loads a Caddyfile site block into the test Caddy, on a new
// caddyURL.
func startCaddy(t *testing.T, site string) *caddytest.Tester {
	t.Helper()
	newSitePort(t)
	return startCaddyWith(t, globalOptions, site)
}

// startCaddyWith is startCaddy with other global options, on the current
// caddyURL.
func startCaddyWith(t *testing.T, global, site string) *caddytest.Tester {
	t.Helper()
	if testing.Short() {
		t.Skip("caddytest starts a server; skipped with -short")
	}
	// Generous timeouts: the machine running CI may be shared and loaded.
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort:          adminPort,
		LoadRequestTimeout: 30 * time.Second,
		TestRequestTimeout: 30 * time.Second,
	})
	tester.InitServer(siteConfig(global, site), "caddyfile")
	return tester
}

// strictOf is what the normaliser makes of body with the test clock: the
// handler must hand on exactly these bytes.
func strictOf(t *testing.T, opts normalize.Options, body string) []byte {
	t.Helper()
	n, err := normalize.New(opts)
	require.NoError(t, err)
	out, err := n.TaskEnd(nil, []byte(body), testNow, nil)
	require.NoError(t, err)
	return out
}

// normalizeError is the normaliser's message for a body it refuses.
func normalizeError(t *testing.T, opts normalize.Options, body string) string {
	t.Helper()
	n, err := normalize.New(opts)
	require.NoError(t, err)
	_, err = n.TaskEnd(nil, []byte(body), testNow, nil)
	require.Error(t, err)
	return err.Error()
}

func attributeTables(t *testing.T) *normalize.Tables {
	t.Helper()
	attrs, err := normalize.LoadAttributesFile(attrsFile)
	require.NoError(t, err)
	tables, err := normalize.NewTables(normalize.TableConfig{Attributes: attrs})
	require.NoError(t, err)
	return tables
}

// recorder is an upstream that records what reverse_proxy sends it.
type recorder struct {
	mu     sync.Mutex
	calls  int
	path   string // as the upstream received it, escaped
	body   []byte
	header http.Header
	te     []string
	length int64
	srv    *httptest.Server
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.calls++
		rec.path = r.URL.EscapedPath()
		rec.body, rec.header, rec.te, rec.length = b, r.Header.Clone(), r.TransferEncoding, r.ContentLength
		rec.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) addr() string { return strings.TrimPrefix(rec.srv.URL, "http://") }

func post(t *testing.T, tester *caddytest.Tester, url string, body []byte, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := tester.Client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func gzipped(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

type errorBody struct {
	Message   string `json:"message"`
	Exception string `json:"exception"`
}

func TestRefusedCallsGetTheGenesysErrorBody(t *testing.T) {
	tester := startCaddy(t, `
	ucs {
		business_attributes `+attrsFile+`
		max_body 1KiB
		local `+filepath.Join(t.TempDir(), "events.jsonl")+`
	}
	respond 404`)
	tableOpts := normalize.Options{Attributes: attributeTables(t)}
	bomb := gzipped(t, bytes.Repeat([]byte(" "), 256<<10))
	require.Less(t, len(bomb), 1024, "the bomb must be smaller than max_body compressed")

	tests := []struct {
		name      string
		url       string
		body      []byte
		header    []string
		status    int
		exception string
		message   string // exact message; "" when only messageHas is checked
		has       string
	}{
		{"bad JSON says line and column", taskEndURL, []byte("{\n  \"a\": 1,\n  ]"), nil,
			400, "InvalidJsonException", normalizeError(t, tableOpts, "{\n  \"a\": 1,\n  ]"), ""},
		{"truncated body", taskEndURL, []byte(`{"a": [1, 2`), nil,
			400, "InvalidJsonException", normalizeError(t, tableOpts, `{"a": [1, 2`), ""},
		{"top level is not an object", taskEndURL, []byte(`[1]`), nil,
			400, "InvalidJsonException", normalizeError(t, tableOpts, `[1]`), ""},
		{"field of the wrong type", taskEndURL, []byte(`{"session_id":{"a":1}}`), nil,
			400, "InvalidFieldException", normalizeError(t, tableOpts, `{"session_id":{"a":1}}`), ""},
		{"unknown business-attribute name", taskEndURL, []byte(`{"media_type":"pigeon"}`), nil,
			400, "InvalidBusinessAttributeException", normalizeError(t, tableOpts, `{"media_type":"pigeon"}`), ""},
		{"service id with a bad character", caddyURL + "/genesys/1/cs/services/a_b/tasks/7/end", []byte(`{}`), nil,
			400, "InvalidParameterException", "service_id may only hold letters, digits and '-' (byte 2 is not one)", ""},
		{"service id over 64 bits", caddyURL + "/genesys/1/cs/services/9223372036854775808/tasks/7/end", []byte(`{}`), nil,
			400, "InvalidParameterException", "service_id is a number that does not fit a signed 64-bit integer", ""},
		{"service id over 128 characters", caddyURL + "/genesys/1/cs/services/" + strings.Repeat("a", 129) + "/tasks/7/end", []byte(`{}`), nil,
			400, "InvalidParameterException", "service_id is 129 characters long; the limit is 128", ""},
		{"task id that is not a number", caddyURL + "/genesys/1/cs/services/42/tasks/x7/end", []byte(`{}`), nil,
			400, "InvalidParameterException", "task_id must be decimal digits only", ""},
		{"task id over 32 bits", caddyURL + "/genesys/1/cs/services/42/tasks/2147483648/end", []byte(`{}`), nil,
			400, "InvalidParameterException", "task_id must be at most 2147483647", ""},
		{"body over max_body", taskEndURL, []byte(`{"a":"` + strings.Repeat("x", 1100) + `"}`), nil,
			413, "PayloadTooLargeException", "the request body is larger than max_body (1024 bytes after decoding)", ""},
		{"gzip bomb over max_body once decoded", taskEndURL, bomb, []string{"Content-Encoding", "gzip"},
			413, "PayloadTooLargeException", "the request body is larger than max_body (1024 bytes after decoding)", ""},
		{"content coding other than gzip and deflate", taskEndURL, []byte(`{}`), []string{"Content-Encoding", "br"},
			415, "UnsupportedMediaTypeException", `Content-Encoding "br" is not supported; use gzip, deflate or none`, ""},
		{"corrupt gzip", taskEndURL, []byte("not gzip at all"), []string{"Content-Encoding", "gzip"},
			415, "UnsupportedMediaTypeException", "", "the gzip body cannot be decoded"},
		{"charset other than UTF-8 and Windows Latin", taskEndURL, []byte(`{}`), []string{"Content-Type", "application/json; charset=UTF-16"},
			415, "UnsupportedMediaTypeException", `charset "utf-16" is not supported; use UTF-8, ISO-8859-1 or windows-1252`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := post(t, tester, tt.url, tt.body, tt.header...)
			assert.Equal(t, tt.status, resp.StatusCode)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var eb errorBody
			require.NoError(t, json.Unmarshal(b, &eb), "body %q", b)
			assert.Equal(t, tt.exception, eb.Exception)
			if tt.message != "" {
				assert.Equal(t, tt.message, eb.Message)
			}
			assert.Contains(t, eb.Message, tt.has)
		})
	}
}

func TestBadJSONMessageNamesLineAndColumn(t *testing.T) {
	tester := startCaddy(t, "ucs\nrespond 404")
	_, b := post(t, tester, taskEndURL, []byte("{\n  \"a\": 1,\n  ]")) // a closer that does not match: never repaired
	var eb errorBody
	require.NoError(t, json.Unmarshal(b, &eb))
	assert.Regexp(t, regexp.MustCompile(`\(line \d+, column \d+, byte \d+\)$`), eb.Message)
}

func TestBodiesAreDecodedBeforeNormalising(t *testing.T) {
	rec := newRecorder(t)
	tester := startCaddy(t, "ucs\nreverse_proxy "+rec.addr())
	const utf8Body = `{"name":"José – “Ø”","price":"€5"}`
	latin := []byte("{\"name\":\"Jos\xe9 \x96 \x93\xd8\x94\",\"price\":\"\x805\"}")

	tests := []struct {
		name   string
		body   []byte
		header []string
	}{
		{"ISO-8859-1 is read as Windows Latin", latin, []string{"Content-Type", "application/json; charset=ISO-8859-1"}},
		{"windows-1252", latin, []string{"Content-Type", "application/json; charset=windows-1252"}},
		{"latin1 label in upper case", latin, []string{"Content-Type", "text/plain; charset=LATIN1"}},
		{"gzip", gzipped(t, []byte(utf8Body)), []string{"Content-Encoding", "gzip"}},
		{"UTF-8 declared", []byte(utf8Body), []string{"Content-Type", "application/json; charset=utf-8"}},
	}
	want := strictOf(t, normalize.Options{}, utf8Body)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := post(t, tester, taskEndURL, tt.body, tt.header...)
			assert.Equal(t, http.StatusNoContent, resp.StatusCode)
			rec.mu.Lock()
			defer rec.mu.Unlock()
			assert.Equal(t, string(want), string(rec.body))
			assert.Empty(t, rec.header.Get("Content-Encoding"))
		})
	}
}

func TestOtherCallsPassThroughUntouched(t *testing.T) {
	rec := newRecorder(t)
	// operations task.end: the Complete Task call alone, as before issue 12.
	tester := startCaddy(t, "ucs {\noperations task.end\n}\nreverse_proxy "+rec.addr())
	loose := "{price: 25 000, 'a': True,}"
	tests := []struct {
		name   string
		method string
		url    string
	}{
		{"another method on the task end path", http.MethodPut, taskEndURL},
		{"task start, not among the operations", http.MethodPost, caddyURL + "/genesys/1/cs/services/42/tasks/start"},
		{"another base path", http.MethodPost, caddyURL + "/other/services/42/tasks/7/end"},
		{"service end, not among the operations", http.MethodPost, caddyURL + "/genesys/1/cs/services/42/end"},
		{"an extension update, not among the operations", http.MethodPut, caddyURL + "/genesys/1/cs/services/42/extensions/Survey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, tt.url, strings.NewReader(loose))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "text/plain")
			resp, err := tester.Client.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusNoContent, resp.StatusCode)
			rec.mu.Lock()
			defer rec.mu.Unlock()
			assert.Equal(t, loose, string(rec.body))
			assert.Equal(t, "text/plain", rec.header.Get("Content-Type"))
		})
	}
}

func TestNextSinkSendsTheStrictBodyUpstreamWithItsLength(t *testing.T) {
	rec := newRecorder(t)
	tester := startCaddy(t, "ucs\nreverse_proxy "+rec.addr())
	body := `{"interaction_id":"0000CSS0FXZUP6UR","price":25000,"x":[1,{"y":null}]}`
	want := strictOf(t, normalize.Options{}, body)

	// A chunked request (unknown length) must reach the upstream framed by Content-Length.
	req, err := http.NewRequest(http.MethodPost, taskEndURL, io.MultiReader(strings.NewReader(body)))
	require.NoError(t, err)
	req.ContentLength = -1
	resp, err := tester.Client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()

	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Equal(t, string(want), string(rec.body))
	assert.Equal(t, int64(len(want)), rec.length)
	assert.Equal(t, strconv.Itoa(len(want)), rec.header.Get("Content-Length"))
	assert.Equal(t, "application/json;charset=UTF-8", rec.header.Get("Content-Type"))
	assert.Empty(t, rec.te)
}

func TestLocalSinkJournalsOneExactRecordBefore204(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	tester := startCaddy(t, `
	ucs {
		business_attributes `+attrsFile+`
		local `+path+`
	}
	respond 404`)
	body := `{"media_type":"email","session_id":"S1","car":"sedan"}`
	want := strictOf(t, normalize.Options{Attributes: attributeTables(t)}, body)

	resp, b := post(t, tester, caddyURL+"/genesys/1/cs/services/383-f9a62aec/tasks/2147483647/end", []byte(body))

	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Empty(t, b)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	record := upstream.AppendEventRecord(nil, testNow, upstream.TaskEndIDs("383-f9a62aec", 2147483647), want)
	assert.Equal(t, string(record)+"\n", string(data))
	assert.True(t, json.Valid(bytes.TrimSpace(data)))
}

// faultFS is the operating system's file system with writes that fail
// with ENOSPC while full is set.
type faultFS struct {
	upstream.FileSystem
	full *atomic.Bool
}

func (f faultFS) OpenFile(name string, flag int, perm os.FileMode) (upstream.File, error) {
	file, err := f.FileSystem.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return faultFile{File: file, full: f.full}, nil
}

type faultFile struct {
	upstream.File
	full *atomic.Bool
}

func (f faultFile) Write(p []byte) (int, error) {
	if f.full.Load() {
		return 0, &os.PathError{Op: "write", Path: "journal", Err: syscall.ENOSPC}
	}
	return f.File.Write(p)
}

func TestFullDiskAnswers503AndLeavesNoPartialRecord(t *testing.T) {
	var full atomic.Bool
	journalFS = faultFS{FileSystem: upstream.OSFileSystem(), full: &full}
	t.Cleanup(func() { journalFS = nil })
	path := filepath.Join(t.TempDir(), "events.jsonl")
	tester := startCaddy(t, "ucs {\nlocal "+path+"\n}\nrespond 404")

	resp, _ := post(t, tester, taskEndURL, []byte(`{"n":1}`))
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	full.Store(true)
	errorsBefore := scrape(t, "caddy_ucs_journal_append_errors_total")
	resp, b := post(t, tester, taskEndURL, []byte(`{"n":2}`))
	full.Store(false)

	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, 1.0, scrape(t, "caddy_ucs_journal_append_errors_total")-errorsBefore, "the refused event is counted")
	var eb errorBody
	require.NoError(t, json.Unmarshal(b, &eb))
	assert.Equal(t, "StorageException", eb.Exception)
	assert.Contains(t, eb.Message, "no space left on device")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, 1, bytes.Count(data, []byte("\n")), "journal: %q", data)
	assert.Contains(t, string(data), `"event":{"n":1`)
	assert.NotContains(t, string(data), `"n":2`)
}

func TestCaddyErrorsModeHandsTheErrorToHandleErrors(t *testing.T) {
	tester := startCaddy(t, `
	ucs {
		errors caddy
	}
	respond 404
	handle_errors {
		respond "{err.status_code} {http.ucs.exception} {http.ucs.outcome}: {err.message}" {err.status_code}
	}`)
	tests := []struct {
		name string
		url  string
		body string
		want string
	}{
		{"bad JSON", taskEndURL, `[1]`, "400 InvalidJsonException rejected: " + normalizeError(t, normalize.Options{}, `[1]`)},
		{"bad task id", caddyURL + "/genesys/1/cs/services/42/tasks/-1/end", `{}`,
			"400 InvalidParameterException rejected: task_id must be decimal digits only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := post(t, tester, tt.url, []byte(tt.body))
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			assert.Equal(t, tt.want, string(b))
		})
	}
}

func TestPlaceholdersReachLaterHandlers(t *testing.T) {
	tester := startCaddy(t, `
	header {
		defer
		X-Ucs "{http.ucs.outcome}|{http.ucs.service_id}|{http.ucs.task_id}|{http.ucs.repairs}"
		X-Ucs-Message "{http.ucs.message}"
	}
	ucs {
		local `+filepath.Join(t.TempDir(), "events.jsonl")+`
	}
	respond 404`)
	loose := `{a: 1, b: 'x',}`
	var rep normalize.Report
	n, err := normalize.New(normalize.Options{})
	require.NoError(t, err)
	_, err = n.TaskEnd(nil, []byte(loose), testNow, &rep)
	require.NoError(t, err)
	require.Positive(t, rep.Total())

	tests := []struct {
		name string
		url  string
		body string
		want string
	}{
		{"journaled", caddyURL + "/genesys/1/cs/services/s-1/tasks/9/end", loose,
			"journaled|s-1|9|" + strconv.Itoa(rep.Total())},
		{"rejected", caddyURL + "/genesys/1/cs/services/s-1/tasks/9/end", `[`, "rejected|s-1|9|"},
		{"passed", caddyURL + "/genesys/1/cs/services/s-1", `{}`, "passed|||"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(t, tester, tt.url, []byte(tt.body))
			assert.Equal(t, tt.want, resp.Header.Get("X-Ucs"))
			var answer struct{ Message string }
			if tt.name == "rejected" {
				require.NoError(t, json.Unmarshal(body, &answer))
				require.NotEmpty(t, answer.Message)
			}
			assert.Equal(t, answer.Message, resp.Header.Get("X-Ucs-Message"), "the message the caller got, or none")
		})
	}
}

// scrape reads one sample of the admin /metrics endpoint (0 if absent).
func scrape(t *testing.T, series string) float64 {
	t.Helper()
	v, _ := sample(t, series)
	return v
}

// sample reads one sample of the admin /metrics endpoint and whether the
// series is exposed at all.
func sample(t *testing.T, series string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f, true
		}
	}
	return 0, false
}

func TestMetricsCountOutcomesRepairsAndJournalWrites(t *testing.T) {
	tester := startCaddy(t, "ucs {\nlocal "+filepath.Join(t.TempDir(), "events.jsonl")+"\n}\nrespond 404")
	series := []string{
		`caddy_ucs_requests_total{operation="task.end",outcome="journaled"}`,
		`caddy_ucs_requests_total{operation="task.end",outcome="rejected"}`,
		`caddy_ucs_requests_total{operation="none",outcome="passed"}`,
		`caddy_ucs_repairs_total{kind="unquoted_key",operation="task.end"}`,
		`caddy_ucs_rejections_total{operation="task.end",reason="bad_task_id"}`,
		`caddy_ucs_normalize_duration_seconds_count`,
		`caddy_ucs_journal_fsync_duration_seconds_count`,
	}
	before := map[string]float64{}
	for _, s := range series {
		before[s] = scrape(t, s)
	}
	bytesBefore := scrape(t, "caddy_ucs_journal_bytes_total")

	post(t, tester, taskEndURL, []byte(`{a: 1}`))
	post(t, tester, taskEndURL, []byte(`{"b": 2}`))
	post(t, tester, caddyURL+"/genesys/1/cs/services/42/tasks/x/end", []byte(`{}`))
	post(t, tester, caddyURL+"/elsewhere", []byte(`{}`))

	want := map[string]float64{
		`caddy_ucs_requests_total{operation="task.end",outcome="journaled"}`:    2,
		`caddy_ucs_requests_total{operation="task.end",outcome="rejected"}`:     1,
		`caddy_ucs_requests_total{operation="none",outcome="passed"}`:           1,
		`caddy_ucs_repairs_total{kind="unquoted_key",operation="task.end"}`:     1,
		`caddy_ucs_rejections_total{operation="task.end",reason="bad_task_id"}`: 1,
		`caddy_ucs_normalize_duration_seconds_count`:                            2,
		`caddy_ucs_journal_fsync_duration_seconds_count`:                        0, // checked below: at least 1
	}
	for _, s := range series {
		delta := scrape(t, s) - before[s]
		if s == `caddy_ucs_journal_fsync_duration_seconds_count` {
			assert.GreaterOrEqual(t, delta, 1.0, s)
			continue
		}
		assert.Equal(t, want[s], delta, s)
	}
	assert.Positive(t, scrape(t, "caddy_ucs_journal_bytes_total")-bytesBefore)
}

func TestReloadKeepsOneJournalWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	abs, err := filepath.Abs(path)
	require.NoError(t, err)
	tester := startCaddy(t, "ucs {\nlocal "+path+"\n}\nrespond 404")
	post(t, tester, taskEndURL, []byte(`{"n":1}`))
	before := openSinkOf(journals, abs)
	// A changed config with the same journal: Caddy provisions it before
	// cleaning up the old one, so both share the open journal.
	loadSite(t, tester, "ucs {\nmax_depth 10\nlocal "+path+"\n}\nrespond 404")
	post(t, tester, taskEndURL, []byte(`{"n":2}`))

	assert.Same(t, before, openSinkOf(journals, abs), "one journal writer across the reload")
	refs, ok := referencesOf(journals, abs)
	assert.True(t, ok)
	assert.Equal(t, 1, refs)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, 2, bytes.Count(data, []byte("\n")))
}

// postCutShort sends a request announcing contentLength bytes of body but
// sending only body, then ends its side of the connection, and returns the
// status and body of the answer.
func postCutShort(t *testing.T, body []byte, contentLength int, header string) (int, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", caddyHost)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /genesys/1/cs/services/42/tasks/7/end HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s",
		caddyHost, header, contentLength, body)
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func TestABodyCutShortByTheClientIsABadRequestNotABadEncoding(t *testing.T) {
	startCaddy(t, "ucs {\nlocal "+filepath.Join(t.TempDir(), "events.jsonl")+"\n}\nrespond 404")
	gz := gzipped(t, []byte(`{"a":"`+strings.Repeat("x", 200)+`"}`))
	tests := []struct {
		name   string
		body   []byte
		length int
		header string
	}{
		{"plain body", []byte(`{"a": 1,`), 100, ""},
		{"gzip body", gz[:len(gz)/2], len(gz), "Content-Encoding: gzip\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bodyRead := scrape(t, `caddy_ucs_rejections_total{operation="task.end",reason="body_read"}`)
			badEncoding := scrape(t, `caddy_ucs_rejections_total{operation="task.end",reason="bad_encoding"}`)

			status, b := postCutShort(t, tt.body, tt.length, tt.header)

			assert.Equal(t, http.StatusBadRequest, status)
			var eb errorBody
			require.NoError(t, json.Unmarshal(b, &eb), "body %q", b)
			assert.Equal(t, "InvalidJsonException", eb.Exception)
			assert.Equal(t, "the request body ended before the length it announced (Content-Length or chunked framing): "+
				"a truncated event is not accepted", eb.Message)
			assert.NotContains(t, eb.Message, "  ")
			assert.Equal(t, 1.0, scrape(t, `caddy_ucs_rejections_total{operation="task.end",reason="body_read"}`)-bodyRead)
			assert.Equal(t, 0.0, scrape(t, `caddy_ucs_rejections_total{operation="task.end",reason="bad_encoding"}`)-badEncoding)
		})
	}
}

func TestABodyAnnouncedOverMaxBodyIsRefusedWithoutInvitingIt(t *testing.T) {
	rec := newRecorder(t)
	startCaddy(t, "ucs {\nmax_body 1KiB\n}\nreverse_proxy "+rec.addr())
	tests := []struct {
		name          string
		header        string
		contentLength int
		want          int
	}{
		{"over max_body: 413 at once, no 100 Continue", "", 1025, http.StatusRequestEntityTooLarge},
		{"gzip far over max_body on the wire: 413 at once", "Content-Encoding: gzip\r\n", 1 << 20, http.StatusRequestEntityTooLarge},
		{"within max_body: the body is invited", "", 1024, http.StatusContinue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", caddyHost)
			require.NoError(t, err)
			defer conn.Close()
			// Headers only: a gateway that invites the body first answers 100 and then waits for it.
			_, err = fmt.Fprintf(conn, "POST /genesys/1/cs/services/42/tasks/7/end HTTP/1.1\r\nHost: "+caddyHost+"\r\n"+
				"Expect: 100-continue\r\n%sContent-Length: %d\r\n\r\n", tt.header, tt.contentLength)
			require.NoError(t, err)
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, tt.want, resp.StatusCode, "the first answer")
			if tt.want == http.StatusRequestEntityTooLarge {
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				assert.Contains(t, string(b), exPayloadTooLarge)
			}
		})
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Zero(t, rec.calls, "nothing reaches the upstream")
}
