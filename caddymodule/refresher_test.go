package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fakeUCS serves GET /genesys/1/cs/metadata/business-attributes with a
// body the test changes, an ETag per body, and records what it was sent.
type fakeUCS struct {
	mu      sync.Mutex
	body    string
	status  int // 0: 200
	fetches int
	tenants []string // ContactCenterId of each fetch
	inm     []string // If-None-Match of each fetch
	auth    []string
	srv     *httptest.Server
}

func newFakeUCS(t *testing.T, body string) *fakeUCS {
	u := &fakeUCS{body: body}
	u.srv = httptest.NewServer(u)
	t.Cleanup(u.srv.Close)
	return u
}

func (u *fakeUCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if r.URL.Path != metadataPath {
		http.NotFound(w, r)
		return
	}
	u.fetches++
	u.tenants = append(u.tenants, r.Header.Get("ContactCenterId"))
	u.inm = append(u.inm, r.Header.Get("If-None-Match"))
	u.auth = append(u.auth, r.Header.Get("Authorization"))
	if u.status != 0 {
		w.WriteHeader(u.status)
		return
	}
	etag := fmt.Sprintf(`"%x"`, len(u.body)*31+int(u.body[len(u.body)/2]))
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(u.body))
}

func (u *fakeUCS) set(body string, status int) {
	u.mu.Lock()
	u.body, u.status = body, status
	u.mu.Unlock()
}

func (u *fakeUCS) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.fetches
}

// metadata is a metadata answer with a MediaType and a DispositionCode
// attribute of the given values (name → dbid).
func metadata(media, disposition map[string]int64) string {
	return attributesDoc(map[string]map[string]int64{"MediaType": media, "DispositionCode": disposition})
}

// attributesDoc is a metadata answer with the given attributes (name →
// value name → dbid), in name order.
func attributesDoc(attrs map[string]map[string]int64) string {
	var doc []map[string]any
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		var vs []map[string]any
		for n, id := range attrs[name] {
			vs = append(vs, map[string]any{"name": n, "display_name": n, "dbid": id})
		}
		doc = append(doc, map[string]any{"name": name, "display_name": name, "dbid": "1", "values": vs})
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

var (
	metaV1 = metadata(map[string]int64{"voice": 1001, "email": 1003}, map[string]int64{"resolved": 2101})
	metaV2 = metadata(map[string]int64{"voice": 1001, "email": 1003}, map[string]int64{"resolved": 2101, "brand new": 2199})
)

// observeAttributeLogs routes the refreshers' log to an observer.
func observeAttributeLogs(t *testing.T) *observer.ObservedLogs {
	core, logs := observer.New(zapcore.DebugLevel)
	old := attributesLogger
	attributesLogger = func() *zap.Logger { return zap.New(core) }
	t.Cleanup(func() { attributesLogger = old })
	return logs
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAttributesFromUCSRefreshWithoutReload(t *testing.T) {
	t.Setenv("UCS_TEST_TOKEN", "s3cret")
	ucs := newFakeUCS(t, metaV1)
	rec := newRecorder(t)
	cache := filepath.Join(t.TempDir(), "attrs.json")
	tester := startCaddy(t, fmt.Sprintf(`
	ucs {
		business_attributes_from %s {
			refresh 1s
			cache %s
			header Authorization "Bearer {env.UCS_TEST_TOKEN}"
		}
	}
	reverse_proxy %s`, ucs.srv.URL, cache, rec.addr()))
	body := []byte(`{"media_type":"email","disposition":"resolved"}`)
	resp, _ := post(t, tester, taskEndURL, body)
	require.Equal(t, 204, resp.StatusCode)
	assert.Contains(t, string(rec.lastBody()), `"media_type":1003,"disposition":2101`)
	cached, err := os.ReadFile(cache)
	require.NoError(t, err)
	assert.JSONEq(t, metaV1, string(cached), "the first fetch is cached")

	// Added on the UCS: the background refresh picks it up, no reload.
	okBefore := scrape(t, `caddy_ucs_attribute_refresh_total{result="ok"}`)
	ucs.set(metaV2, 0)
	waitFor(t, "a refresh", func() bool { return scrape(t, `caddy_ucs_attribute_refresh_total{result="ok"}`) > okBefore })
	waitFor(t, "the cache rewrite", func() bool { b, _ := os.ReadFile(cache); return strings.Contains(string(b), "brand new") })
	resp, _ = post(t, tester, taskEndURL, []byte(`{"media_type":"email","disposition":"brand new"}`))
	require.Equal(t, 204, resp.StatusCode)
	assert.Contains(t, string(rec.lastBody()), `"disposition":2199`)

	// Unchanged: the validators are sent and a 304 counted.
	nmBefore := scrape(t, `caddy_ucs_attribute_refresh_total{result="not_modified"}`)
	waitFor(t, "a 304", func() bool { return scrape(t, `caddy_ucs_attribute_refresh_total{result="not_modified"}`) > nmBefore })
	ucs.mu.Lock()
	assert.NotEmpty(t, ucs.inm[len(ucs.inm)-1], "If-None-Match is sent")
	assert.Equal(t, "Bearer s3cret", ucs.auth[0], "header placeholders are replaced")
	ucs.mu.Unlock()
	assert.Less(t, scrape(t, "caddy_ucs_attribute_tables_age_seconds"), 5.0)
	assert.Equal(t, 2.0, scrape(t, `caddy_ucs_attribute_values{attribute="DispositionCode"}`))
}

func TestColdMissRefreshesBeforeThe400(t *testing.T) {
	ucs := newFakeUCS(t, metaV1)
	rec := newRecorder(t)
	tester := startCaddy(t, fmt.Sprintf(`
	ucs {
		business_attributes_from %s {
			refresh 1h
			cache %s
		}
	}
	reverse_proxy %s`, ucs.srv.URL, filepath.Join(t.TempDir(), "c.json"), rec.addr()))
	ucs.set(metaV2, 0)
	before := ucs.count()
	resp, _ := post(t, tester, taskEndURL, []byte(`{"disposition":"brand new"}`))
	require.Equal(t, 204, resp.StatusCode, "a new name works at once")
	assert.Contains(t, string(rec.lastBody()), `"disposition":2199`)
	assert.Equal(t, before+1, ucs.count(), "one early refresh")

	// Rate-limited: another unknown name within refresh/10 is a 400 at
	// once, with no fetch.
	resp, b := post(t, tester, taskEndURL, []byte(`{"disposition":"nope"}`))
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, string(b), exInvalidAttribute)
	assert.Equal(t, before+1, ucs.count(), "no second early refresh within refresh/10")
}

func TestUCSDownAtStartUsesTheCache(t *testing.T) {
	logs := observeAttributeLogs(t)
	ucs := newFakeUCS(t, metaV2)
	rec := newRecorder(t)
	cache := filepath.Join(t.TempDir(), "attrs.json")
	require.NoError(t, os.WriteFile(cache, []byte(metaV2), 0o600))
	ucs.set(metaV1, http.StatusServiceUnavailable)
	tester := startCaddy(t, fmt.Sprintf(`
	ucs {
		business_attributes_from %s {
			cache %s
		}
	}
	reverse_proxy %s`, ucs.srv.URL, cache, rec.addr()))
	resp, _ := post(t, tester, taskEndURL, []byte(`{"disposition":"brand new"}`))
	require.Equal(t, 204, resp.StatusCode)
	assert.Contains(t, string(rec.lastBody()), `"disposition":2199`)
	warned := logs.FilterMessageSnippet("using the cached business attributes").All()
	require.NotEmpty(t, warned)
	assert.Equal(t, zapcore.WarnLevel, warned[0].Level)
	assert.Contains(t, warned[0].ContextMap(), "cache_age")
}

func TestUCSDownAndNoCacheFailsProvisioning(t *testing.T) {
	ucs := newFakeUCS(t, metaV1)
	ucs.set(metaV1, http.StatusBadGateway)
	ctx, cancel := newTestContext(t)
	defer cancel()
	h := &Handler{BusinessAttributesFrom: &AttributesFrom{URL: ucs.srv.URL, Cache: filepath.Join(t.TempDir(), "none.json")}}
	err := h.Provision(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), ucs.srv.URL+metadataPath)
	assert.Contains(t, err.Error(), "502")
	assert.Contains(t, err.Error(), "no usable cache")
}

func TestGarbageRefreshKeepsTheOldTables(t *testing.T) {
	logs := observeAttributeLogs(t)
	ucs := newFakeUCS(t, metaV1)
	rec := newRecorder(t)
	tester := startCaddy(t, fmt.Sprintf(`
	ucs {
		business_attributes_from %s {
			refresh 1s
			cache %s
		}
	}
	reverse_proxy %s`, ucs.srv.URL, filepath.Join(t.TempDir(), "c.json"), rec.addr()))
	errBefore := scrape(t, `caddy_ucs_attribute_refresh_total{result="error"}`)
	ucs.set(`<html>oops</html>`, 0)
	waitFor(t, "a failed refresh", func() bool { return scrape(t, `caddy_ucs_attribute_refresh_total{result="error"}`) > errBefore })
	resp, _ := post(t, tester, taskEndURL, []byte(`{"media_type":"email","disposition":"resolved"}`))
	require.Equal(t, 204, resp.StatusCode)
	assert.Contains(t, string(rec.lastBody()), `"media_type":1003,"disposition":2101`)
	assert.NotEmpty(t, logs.FilterMessageSnippet("keeping the last good tables").All())
}

func TestReloadKeepsOneRefresherPerURLAndTenant(t *testing.T) {
	ucs := newFakeUCS(t, metaV1)
	rec := newRecorder(t)
	site := fmt.Sprintf(`
	ucs {
		business_attributes_from %s {
			refresh 1h
			cache %s
		}
	}
	reverse_proxy %s`, ucs.srv.URL, filepath.Join(t.TempDir(), "c.json"), rec.addr())
	startCaddy(t, site)
	n := ucs.count()
	startCaddy(t, site+"\n# reloaded") // a changed config, the same refresher
	assert.Equal(t, n, ucs.count(), "the reload reuses the refresher: no new fetch")
	live := 0
	liveRefreshers.Range(func(k, _ any) bool {
		if k.(*refresher).url == ucs.srv.URL {
			live++
		}
		return true
	})
	assert.Equal(t, 1, live)
}

// TestRefreshSwapsUnderLoad: 64 clients post while the tables are swapped
// between two versions as fast as the refresher can; every event is mapped
// wholly by one version.
func TestRefreshSwapsUnderLoad(t *testing.T) {
	v1 := metadata(map[string]int64{"email": 1003}, map[string]int64{"resolved": 2101})
	v2 := metadata(map[string]int64{"email": 91003}, map[string]int64{"resolved": 92101})
	ucs := newFakeUCS(t, v1)
	var bad atomic.Int64
	var seen [2]atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			Media       int64 `json:"media_type"`
			Disposition int64 `json:"disposition"`
		}
		_ = json.NewDecoder(r.Body).Decode(&ev)
		switch {
		case ev.Media == 1003 && ev.Disposition == 2101:
			seen[0].Add(1)
		case ev.Media == 91003 && ev.Disposition == 92101:
			seen[1].Add(1)
		default:
			bad.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer up.Close()
	tester := startCaddy(t, fmt.Sprintf(`
	ucs {
		business_attributes_from %s {
			refresh 1h
			cache %s
		}
	}
	reverse_proxy %s`, ucs.srv.URL, filepath.Join(t.TempDir(), "c.json"), strings.TrimPrefix(up.URL, "http://")))
	var r *refresher
	liveRefreshers.Range(func(k, _ any) bool {
		if k.(*refresher).url == ucs.srv.URL {
			r = k.(*refresher)
		}
		return true
	})
	require.NotNil(t, r)

	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				swapped <- n
				return
			default:
			}
			if n%2 == 0 {
				ucs.set(v2, 0)
			} else {
				ucs.set(v1, 0)
			}
			if _, err := r.refresh(); err == nil {
				n++
			}
		}
	}()
	var wg sync.WaitGroup
	var failed atomic.Int64
	body := []byte(`{"media_type":"email","disposition":"resolved"}`)
	for range 64 {
		wg.Go(func() {
			for range 30 {
				resp, _ := post(t, tester, taskEndURL, body)
				if resp.StatusCode != 204 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	swaps := <-swapped
	assert.Zero(t, failed.Load())
	assert.Zero(t, bad.Load(), "an event mapped by two versions of the tables")
	assert.Greater(t, swaps, 10)
	assert.Positive(t, seen[0].Load())
	assert.Positive(t, seen[1].Load())
}

func (rec *recorder) lastBody() []byte {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.body
}

func TestAttributesCommandPrintsTheTablesOfAUCS(t *testing.T) {
	ucs := newFakeUCS(t, metadata(map[string]int64{"email": 1003}, map[string]int64{"resolved": 2101}))
	var stdout, stderr bytes.Buffer
	code := runAttributes(attributesFlags{from: ucs.srv.URL, tenant: "101", headers: []string{"Authorization: Basic x"},
		mapping: []string{"Task.disposition=DispositionCode"}, timeout: time.Second}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	out := stdout.String()
	assert.Contains(t, out, "DispositionCode (1 values) ← Service.disposition, State.disposition, Task.disposition")
	assert.Regexp(t, `"email"\s+1003`, out)
	assert.Contains(t, out, "keys without a table (names forwarded unchanged): Service.application_type")
	ucs.mu.Lock()
	assert.Equal(t, "101", ucs.tenants[0])
	assert.Equal(t, "Basic x", ucs.auth[0])
	ucs.mu.Unlock()

	ucs.set(metaV1, http.StatusUnauthorized)
	stdout.Reset()
	stderr.Reset()
	assert.Equal(t, 1, runAttributes(attributesFlags{from: ucs.srv.URL, timeout: time.Second}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "401")
	assert.Equal(t, 2, runAttributes(attributesFlags{from: "ucs:80"}, &stdout, &stderr))
}

func TestNormalizeCommandTakesATenantFromTheConfig(t *testing.T) {
	dir := t.TempDir()
	globex := newFakeUCS(t, metadata(map[string]int64{"email": 7003}, map[string]int64{"resolved": 7101}))
	cfg := filepath.Join(dir, "Caddyfile")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`:8080 {
	route {
		ucs {
			business_attributes %s
			tenant 202 Globex {
				business_attributes_from %s {
					cache %s
				}
			}
		}
	}
}`, attrsFile, globex.srv.URL, filepath.Join(dir, "g.json"))), 0o600))
	body := filepath.Join(dir, "body.json")
	require.NoError(t, os.WriteFile(body, []byte(`{"media_type":"email","timestamp":"2026-03-04T05:06:07.891Z"}`), 0o600))
	for _, c := range []struct{ tenant, want string }{{"globex", `"media_type":7003`}, {"", `"media_type":1003`}, {"999", `"media_type":1003`}} {
		var stdout, stderr bytes.Buffer
		code := runNormalize(normalizeFlags{config: cfg, tenant: c.tenant}, body, nil, &stdout, &stderr)
		require.Equal(t, 0, code, stderr.String())
		assert.Contains(t, stdout.String(), c.want, c.tenant)
	}
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 2, runNormalize(normalizeFlags{tenant: "202"}, body, nil, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "--tenant needs --config")
}

// redirectingUCS answers the metadata with status, pointing Location at
// another server, which records every request it gets.
func redirectingUCS(t *testing.T, status int) (ucs, elsewhere *httptest.Server, hits *atomic.Int64) {
	hits = new(atomic.Int64)
	elsewhere = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(metadata(map[string]int64{"email": 6666}, map[string]int64{"resolved": 6666})))
	}))
	t.Cleanup(elsewhere.Close)
	ucs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", elsewhere.URL+metadataPath)
		w.WriteHeader(status)
	}))
	t.Cleanup(ucs.Close)
	return ucs, elsewhere, hits
}

func TestAttributeFetchRefusesRedirectsAndKeepsTheLastGoodTables(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			good := newFakeUCS(t, metaV1)
			r := newRefresher(&AttributesFrom{URL: good.srv.URL, Timeout: caddy.Duration(time.Second),
				Headers: map[string][]string{"Authorization": {"Basic SECRET123"}, "X-Api-Key": {"KEY456"}}}, "")
			_, err := r.fetch()
			require.NoError(t, err)
			last := r.cur.Load()

			redirecting, elsewhere, hits := redirectingUCS(t, status)
			r.url = redirecting.URL
			_, err = r.refresh()
			require.Error(t, err)
			assert.Contains(t, err.Error(), "redirects to \""+elsewhere.URL+metadataPath+"\"")
			assert.Contains(t, err.Error(), redirecting.URL+metadataPath, "the error names the URL fetched")
			assert.Same(t, last, r.cur.Load(), "the last good tables are kept")
			assert.Zero(t, hits.Load(), "nothing, and no header, goes to the host the operator did not name")
		})
	}
}

func TestAttributesCommandRefusesARedirect(t *testing.T) {
	redirecting, elsewhere, hits := redirectingUCS(t, http.StatusFound)
	var stdout, stderr bytes.Buffer
	code := runAttributes(attributesFlags{from: redirecting.URL, headers: []string{"X-Api-Key: KEY456"}, timeout: time.Second}, &stdout, &stderr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "302 Found redirects to \""+elsewhere.URL+metadataPath+"\"")
	assert.Empty(t, stdout.String())
	assert.Zero(t, hits.Load(), "the other host gets nothing")
}

// gatherAttributeValues gathers caddy_ucs_attribute_values from reg.
func gatherAttributeValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "caddy_ucs_attribute_values" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "attribute" {
					got[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return got
}

func TestAttributeValueSeriesAreTheConfiguredAttributesOfTheLiveTables(t *testing.T) {
	reg := prometheus.NewRegistry()
	require.NoError(t, registerMetrics(reg))
	served := map[string]map[string]int64{
		"MediaType":       {"voice": 1001, "email": 1003},
		"DispositionCode": {"resolved": 2101},
		"Kind\aType":      {"survey": 3001},
		"Media\aType":     {"fax": 9001}, // served, backing no key
		"Unmapped19":      {"a": 1, "b": 2, "c": 3},
	}
	ucs := newFakeUCS(t, attributesDoc(served))
	startCaddy(t, fmt.Sprintf(`
	ucs {
		business_attribute Task.type "Kind%sType"
		business_attributes_from %s {
			refresh 1s
			cache %s
		}
	}
	respond 404`, "\a", ucs.srv.URL, filepath.Join(t.TempDir(), "c.json")))

	assert.Equal(t, map[string]float64{"MediaType": 2, "DispositionCode": 1, `Kind\aType`: 1}, gatherAttributeValues(t, reg),
		"one series per attribute backing a key, a control character escaped; no name only the UCS serves")

	// The UCS stops serving DispositionCode: its series goes with the refresh.
	delete(served, "DispositionCode")
	ucs.set(attributesDoc(served), 0)
	waitFor(t, "the refresh without DispositionCode", func() bool {
		_, ok := gatherAttributeValues(t, reg)["DispositionCode"]
		return !ok
	})
	assert.Equal(t, map[string]float64{"MediaType": 2, `Kind\aType`: 1}, gatherAttributeValues(t, reg))

	// A reload to a config without tables: every series goes with the old tables.
	startCaddy(t, "ucs\nrespond 404")
	assert.Empty(t, gatherAttributeValues(t, reg))
}

func TestAttributeLabelsNeverHoldAControlCharacter(t *testing.T) {
	tests := []struct{ name, label string }{
		{"MediaType", "MediaType"},
		{"Média Type", "Média Type"},
		{"Media\aType", `Media\aType`},
		{"Media\x00Type\n", `Media\x00Type\n`},
		{"Media\u0085Type", `Media\u0085Type`},
		{"Media\xffType", `Media\xffType`},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			assert.Equal(t, tt.label, labelValue(tt.name))
		})
	}
}
