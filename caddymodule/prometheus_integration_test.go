package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/testport"
	"github.com/ucsedge/caddy-ucs/upstream"
)

// The monitoring mixin against a real Prometheus (Debian's `prometheus`
// package, which .ci/run installs): it scrapes the test's Caddy every
// second with ../monitoring/alerts.yml loaded, while the test drives a
// dead letter, an outage that fills the spool, a journal that cannot
// write and a shadow-mode call the gateway would refuse but the UCS
// accepts; then every dashboard query must show data and the alerts must
// fire.

// promJob is the scrape job's name, the dashboard's $job.
const promJob = "caddy"

// promRateInterval stands for Grafana's $__rate_interval: several scrapes.
const promRateInterval = "10s"

// prometheusServer is a Prometheus process of the test's own, on a free
// port with its storage in a temporary directory.
type prometheusServer struct {
	url  string
	logs *bytes.Buffer
}

// startPrometheus runs Prometheus scraping the test Caddy's admin endpoint
// (its /metrics) every second and evaluating rules every second.
func startPrometheus(t *testing.T, bin, rules string) *prometheusServer {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: %s
    static_configs:
      - targets: ["localhost:%d"]
`, rules, promJob, adminPort), 0o600))
	addr := fmt.Sprintf("127.0.0.1:%d", testport.Free(t))
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Dir = dir
	p := &prometheusServer{url: "http://" + addr, logs: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", p.logs)
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "prometheus is ready")
	return p
}

// api calls Prometheus' HTTP API and decodes its data member into data.
func (p *prometheusServer) api(t *testing.T, path string, query url.Values, data any) {
	t.Helper()
	resp, err := http.Get(p.url + path + "?" + query.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, "success", body.Status, "%s %s: %s", path, query.Get("query"), body.Error)
	require.NoError(t, json.Unmarshal(body.Data, data))
}

// series are the series of an instant query.
func (p *prometheusServer) series(t *testing.T, query string) int {
	t.Helper()
	var data struct {
		Result []json.RawMessage `json:"result"`
	}
	p.api(t, "/api/v1/query", url.Values{"query": {query}}, &data)
	return len(data.Result)
}

// hasValues reports whether a range query over [from, now] has at least one
// value that is a number (a histogram_quantile of no observations is NaN:
// a panel shows nothing).
func (p *prometheusServer) hasValues(t *testing.T, query string, from time.Time) bool {
	t.Helper()
	var data struct {
		Result []struct {
			Values [][2]any `json:"values"`
		} `json:"result"`
	}
	p.api(t, "/api/v1/query_range", url.Values{
		"query": {query},
		"start": {strconv.FormatInt(from.Unix(), 10)},
		"end":   {strconv.FormatInt(time.Now().Unix()+1, 10)},
		"step":  {"1"},
	}, &data)
	for _, r := range data.Result {
		for _, v := range r.Values {
			if s, ok := v[1].(string); ok {
				if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) {
					return true
				}
			}
		}
	}
	return false
}

// firing is the set of firing alerts whose labels include match, by name.
func (p *prometheusServer) firing(t *testing.T, match map[string]string) map[string]bool {
	t.Helper()
	var data struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	p.api(t, "/api/v1/alerts", nil, &data)
	out := map[string]bool{}
alerts:
	for _, a := range data.Alerts {
		for k, v := range match {
			if a.Labels[k] != v {
				continue alerts
			}
		}
		if a.State == "firing" {
			out[a.Labels["alertname"]] = true
		}
	}
	return out
}

// runPromtool runs promtool in the monitoring directory and requires success.
func runPromtool(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = monitoringDir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
}

// dashboardExpr is a panel's query with the dashboard's variables as
// Grafana substitutes them for the test's job and every instance.
func dashboardExpr(expr string) string {
	return strings.NewReplacer("$__rate_interval", promRateInterval, "$job", promJob, "$instance", ".+").Replace(expr)
}

func TestPrometheusSeesEveryDashboardPanelAndTheShippedAlertsFire(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy and Prometheus; skipped with -short")
	}
	promBin, errProm := exec.LookPath("prometheus")
	promtool, errTool := exec.LookPath("promtool")
	if errProm != nil || errTool != nil {
		t.Skip("prometheus and promtool are not on PATH: install them (Debian: apt-get install prometheus) to test " +
			"the monitoring mixin against a real Prometheus; .ci/run does")
	}
	rules, err := filepath.Abs(filepath.Join(monitoringDir, "alerts.yml"))
	require.NoError(t, err)
	runPromtool(t, promtool, "check", "rules", "alerts.yml")
	runPromtool(t, promtool, "test", "rules", "alerts_test.yml")

	// The gateway: forward with a small spool to the stub UCS, a local
	// journal (on a disk the test can fill) for calls marked X-Sink: journal,
	// and shadow mode in front of a reverse_proxy to the stub UCS for calls
	// marked X-Sink: shadow.
	fastReplay(t)
	var diskFull atomic.Bool
	journalFS = faultFS{FileSystem: upstream.OSFileSystem(), full: &diskFull}
	t.Cleanup(func() { journalFS = nil })
	ucs := newUCSServer(t)
	spoolDir, err := filepath.Abs(t.TempDir())
	require.NoError(t, err)
	tester := startCaddy(t, `
	@journal header X-Sink journal
	handle @journal {
		ucs {
			local `+filepath.Join(t.TempDir(), "events.jsonl")+`
		}
		respond 404
	}
	@shadow header X-Sink shadow
	handle @shadow {
		ucs {
			shadow
		}
		reverse_proxy `+strings.TrimPrefix(ucs.url(), "http://")+`
	}
	handle {
		ucs {
			forward `+ucs.url()+` {
				timeout 2s
				spool `+spoolDir+`
				max_spool 4KiB
			}
		}
		respond 404
	}`)
	mine := map[string]string{"job": promJob, "spool": spoolDir}
	spooled := func(name string) float64 { return scrape(t, spoolSeries(t, name, spoolDir)) }
	// call posts the loose event n (padded: a few fill the 4KiB spool) to the
	// forward sink, or with "X-Sink: journal" to the journal.
	call := func(n int, header ...string) *http.Response {
		resp, _ := post(t, tester, taskEndURL, fmt.Appendf(nil, "{n: %d, pad: '%s'}", n, strings.Repeat("x", 200)), header...)
		return resp
	}
	journaled := []string{"X-Sink", "journal"}

	start := time.Now()
	prom := startPrometheus(t, promBin, rules)
	// The dead-letter counter must be seen at 0 before it moves, or
	// increase() has nothing to compare the first dead letter with.
	require.Eventually(t, func() bool {
		return prom.series(t, fmt.Sprintf(`caddy_ucs_spool_dead_lettered_total{spool=%q} == 0`, spoolDir)) == 1
	}, 20*time.Second, 100*time.Millisecond, "prometheus scrapes the gateway")

	// Ordinary traffic: delivered, journaled, refused, a journal that
	// cannot write, and in shadow mode a call the gateway would refuse but
	// the UCS (answering 204 to everything here) accepts.
	require.Equal(t, http.StatusNoContent, call(0).StatusCode)
	require.Equal(t, http.StatusNoContent, call(0, journaled...).StatusCode)
	resp, _ := post(t, tester, taskEndURL, []byte(`[`))
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	diskFull.Store(true)
	require.Equal(t, http.StatusServiceUnavailable, call(1, journaled...).StatusCode)
	diskFull.Store(false)
	resp, _ = post(t, tester, taskEndURL, []byte(`[`), "X-Sink", "shadow")
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "shadow mode relays the UCS's answer")

	// A Genesys 400 on replay: the event goes to the dead letter.
	ucs.stop()
	for n := 1; n <= 3; n++ {
		require.Equal(t, http.StatusNoContent, call(n).StatusCode, "event %d is spooled", n)
	}
	const rejected = `{"message":"attribute not found","exception":"InvalidBusinessAttributeException"}`
	ucs.set(func(u *ucsServer) {
		u.answer = func(s seenRequest) (int, http.Header, string) {
			if s.n() == 2 {
				return http.StatusBadRequest, http.Header{"Content-Type": {"application/json"}}, rejected
			}
			return http.StatusNoContent, nil, ""
		}
	})
	ucs.restart()
	require.Eventually(t, func() bool { return spooled("spool_records") == 0 && spooled("spool_dead_lettered_total") == 1 },
		20*time.Second, 10*time.Millisecond, "the rejected event is dead-lettered and the rest delivered")

	// An outage long enough to fill the spool: 503s, and the breaker opens.
	ucs.stop()
	n := 4
	for ; call(n).StatusCode == http.StatusNoContent; n++ {
		require.Less(t, n, 100, "a 4KiB spool fills within 100 events")
	}
	require.Eventually(t, func() bool { return spooled("spool_upstream_down") == 1 },
		20*time.Second, 10*time.Millisecond, "the spool takes the UCS to be down")
	// More refusals over a few scrapes: the first one only creates the series.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		require.Equal(t, http.StatusServiceUnavailable, call(n).StatusCode, "the full spool refuses")
	}

	// CaddyUcsUpstreamDown waits its `for: 1m`.
	want := []string{"CaddyUcsDeadLetters", "CaddyUcsUpstreamDown"}
	require.Eventually(t, func() bool {
		got := prom.firing(t, mine)
		return got["CaddyUcsDeadLetters"] && got["CaddyUcsUpstreamDown"]
	}, 90*time.Second, 500*time.Millisecond, "%v fire for spool %s", want, spoolDir)
	others := prom.firing(t, map[string]string{"job": promJob})
	assert.True(t, others["CaddyUcsSpoolFull"], "503s for a full spool fire CaddyUcsSpoolFull")
	assert.True(t, others["CaddyUcsJournalWriteFailing"], "a refused journal append fires CaddyUcsJournalWriteFailing")
	assert.True(t, prom.firing(t, map[string]string{"job": promJob, "operation": "task.end"})["CaddyUcsShadowWouldBreak"],
		"a shadow call rejected by the gateway and accepted (2xx) by the UCS fires CaddyUcsShadowWouldBreak")

	// Every panel of the dashboard shows data over the test's span, with
	// no exception: a panel that names a metric the module does not
	// register fails here as well as in the mixin's name check.
	for _, q := range dashboardQueries(t) {
		assert.True(t, prom.hasValues(t, dashboardExpr(q.expr), start), "panel %q shows data: %s", q.panel, dashboardExpr(q.expr))
	}
	ucs.restart() // the spool drains before the next test
}
