package caddymodule

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The monitoring mixin (../monitoring) is checked against the metrics the
// module registers: a renamed or removed metric fails here, not on an
// operator's empty dashboard.

// monitoringDir holds the dashboard, the alert rules and their tests.
const monitoringDir = "../monitoring"

// mixinFiles are the files of the mixin that name metrics.
var mixinFiles = []string{"dashboard.json", "alerts.yml", "alerts_test.yml"}

// metricNameRE finds the module's metric names in a query, a rule or a
// test series: every one starts with the namespace and subsystem.
var metricNameRE = regexp.MustCompile(`caddy_ucs_[a-zA-Z0-9_]*`)

// descNameRE is the fully-qualified name in a Desc's String, the only
// place client_golang shows it.
var descNameRE = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*")`)

// registeredSeries are the series names the module exposes: the name of
// every collector registerMetrics puts on a config's registry (as
// Provision does), plus _bucket, _sum and _count for its histograms.
func registeredSeries(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	require.NoError(t, registerMetrics(reg))
	names := map[string]bool{}
	for _, c := range collectors {
		require.True(t, reg.Unregister(c), "registerMetrics registered %T", c)
		suffixes := []string{""}
		switch c.(type) {
		case prometheus.Histogram, *prometheus.HistogramVec:
			suffixes = append(suffixes, "_bucket", "_sum", "_count")
		}
		for _, name := range describedNames(t, c) {
			for _, s := range suffixes {
				names[name+s] = true
			}
		}
	}
	return names
}

// describedNames are the fully-qualified names c describes.
func describedNames(t *testing.T, c prometheus.Collector) []string {
	t.Helper()
	descs := make(chan *prometheus.Desc)
	go func() {
		c.Describe(descs)
		close(descs)
	}()
	var names []string
	for d := range descs {
		m := descNameRE.FindStringSubmatch(d.String())
		require.NotNil(t, m, "a Desc's String shows its name: %s", d)
		name, err := strconv.Unquote(m[1])
		require.NoError(t, err)
		names = append(names, name)
	}
	return names
}

func TestMonitoringMixinNamesOnlyMetricsTheModuleRegisters(t *testing.T) {
	registered := registeredSeries(t)
	require.Contains(t, registered, "caddy_ucs_requests_total", "the registry's names were read")
	require.Contains(t, registered, "caddy_ucs_normalize_duration_seconds_bucket", "a histogram's series names were added")
	for _, file := range mixinFiles {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(monitoringDir, file))
			require.NoError(t, err)
			used := metricNameRE.FindAllString(string(data), -1)
			require.NotEmpty(t, used, "the file names the module's metrics")
			var unknown []string
			for _, name := range used {
				if !registered[name] && !slices.Contains(unknown, name) {
					unknown = append(unknown, name)
				}
			}
			assert.Empty(t, unknown, "%s names metrics the module does not register", file)
		})
	}
}

// panelQuery is one query of a dashboard panel.
type panelQuery struct {
	panel string // the panel's title
	expr  string // as in the dashboard, with its variables
}

// dashboardQueries reads the queries of every panel of the dashboard,
// requiring each panel (rows aside) to have at least one.
func dashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(monitoringDir, "dashboard.json"))
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(data, &dash))
	var out []panelQuery
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has a query", p.Title)
		for _, tg := range p.Targets {
			require.NotEmpty(t, tg.Expr, "panel %q has a query", p.Title)
			out = append(out, panelQuery{panel: p.Title, expr: tg.Expr})
		}
	}
	require.NotEmpty(t, out, "the dashboard has panels")
	return out
}

func TestEveryDashboardPanelHasAQueryOfTheModulesMetrics(t *testing.T) {
	for _, q := range dashboardQueries(t) {
		assert.Regexp(t, metricNameRE, q.expr, "panel %q", q.panel)
	}
}
