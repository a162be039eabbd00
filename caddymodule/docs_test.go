package caddymodule

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The docs that cannot drift: every option the Caddyfile parser accepts is in the configuration
// reference, every metric the module registers is in the metrics reference, and every relative link
// of the docs reaches a file and, with a #fragment, a heading of it.

const (
	configurationDoc = "../docs/configuration.md"
	metricsDoc       = "../docs/metrics.md"
)

// optionName is what a Caddyfile option looks like; it leaves out the empty string and values.
var optionName = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// caddyfileOptions reads the option names the parser accepts from its source: every string in a
// `case` of a switch, or compared with `==`, inside a function that takes a *caddyfile.Dispenser
// (UnmarshalCaddyfile and the helpers it hands a block to). A new option is a new case (or
// comparison) there, so it cannot be added without this test seeing it.
func caddyfileOptions(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	seen := map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil || !takesDispenser(fn.Type) {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				var lits []ast.Expr
				switch n := n.(type) {
				case *ast.CaseClause:
					lits = n.List
				case *ast.BinaryExpr:
					if n.Op == token.EQL {
						lits = []ast.Expr{n.X, n.Y}
					}
				}
				for _, e := range lits {
					lit, ok := e.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					s, err := strconv.Unquote(lit.Value)
					require.NoError(t, err)
					if optionName.MatchString(s) {
						seen[s] = true
					}
				}
				return true
			})
		}
	}
	var names []string
	for s := range seen {
		names = append(names, s)
	}
	slices.Sort(names)
	return names
}

// takesDispenser reports whether a function has a *caddyfile.Dispenser parameter.
func takesDispenser(ft *ast.FuncType) bool {
	for _, p := range ft.Params.List {
		star, ok := p.Type.(*ast.StarExpr)
		if !ok {
			continue
		}
		sel, ok := star.X.(*ast.SelectorExpr)
		if !ok {
			continue
		}
		if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "caddyfile" && sel.Sel.Name == "Dispenser" {
			return true
		}
	}
	return false
}

// fencedBlock matches a fenced code block, from its opening fence line to its closing one.
var fencedBlock = regexp.MustCompile("(?ms)^\\s*```.*?^\\s*```[^\\n]*$")

// codeSpan matches an inline code span of the prose.
var codeSpan = regexp.MustCompile("`([^`\\n]+)`")

// codeSpans returns the inline code spans of a markdown file, outside fenced code blocks: an option
// or a metric is documented where the prose or a table names it, not only in an example.
func codeSpans(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	prose := fencedBlock.ReplaceAllString(string(raw), "")
	var spans []string
	for _, m := range codeSpan.FindAllStringSubmatch(prose, -1) {
		spans = append(spans, m[1])
	}
	return spans
}

// names is the first word of each span: `replay_backoff <min> <max>` names replay_backoff.
func names(spans []string) map[string]bool {
	out := map[string]bool{}
	for _, s := range spans {
		if f := strings.Fields(s); len(f) > 0 {
			out[f[0]] = true
		}
	}
	return out
}

// referenceRows maps each option named in the first cell of a table row of the configuration
// reference (its Caddyfile line) to the row's cells: the Caddyfile line, the JSON name, the default and
// what the option is.
func referenceRows(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(configurationDoc)
	require.NoError(t, err)
	prose := fencedBlock.ReplaceAllString(string(raw), "")
	rows := map[string][]string{}
	for line := range strings.SplitSeq(prose, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		// A `|` inside a code span (reject\|pass) is escaped; it does not split cells.
		cells := strings.Split(strings.ReplaceAll(strings.Trim(line, "| "), `\|`, "\x00"), " | ")
		for _, m := range codeSpan.FindAllStringSubmatch(cells[0], -1) {
			if f := strings.Fields(m[1]); len(f) > 0 {
				rows[f[0]] = cells
			}
		}
	}
	return rows
}

func TestEveryCaddyfileOptionTheParserAcceptsIsInTheConfigurationReference(t *testing.T) {
	options := caddyfileOptions(t)
	// The reader of the source finds the options of every block, the ones compared with == and the
	// TLS options of tls.go too, or it reads nothing useful.
	for _, known := range []string{"base_path", "tenant", "refresh", "fsync", "spool", "replay_backoff",
		"follow_symlinks", "tls_insecure_skip_verify"} {
		require.Contains(t, options, known, "the parser's source reader missed an option it should see")
	}
	rows := referenceRows(t)
	for _, opt := range options {
		cells, ok := rows[opt]
		if !assert.Truef(t, ok, "the Caddyfile parser accepts %q, but no table row of docs/configuration.md starts with it (its Caddyfile line)", opt) {
			continue
		}
		if assert.Lenf(t, cells, 4, "the row of %q: the Caddyfile line, the JSON name, the default, what it is", opt) {
			for i, what := range []string{"its JSON name", "its default", "what it is"} {
				assert.NotEmptyf(t, strings.TrimSpace(cells[i+1]), "the row of %q lacks %s", opt, what)
			}
		}
	}
}

// collectorRecorder is a Registerer that keeps what registerMetrics registers.
type collectorRecorder struct{ collectors []prometheus.Collector }

func (r *collectorRecorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *collectorRecorder) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}

func (r *collectorRecorder) Unregister(prometheus.Collector) bool { return false }

var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// registeredMetrics are the names of the metrics registerMetrics puts on a config's registry, as
// Provision calls it.
func registeredMetrics(t *testing.T) []string {
	t.Helper()
	var rec collectorRecorder
	require.NoError(t, registerMetrics(&rec))
	// A registry takes them all (no clash, no invalid name) when the descriptions are read back.
	require.NoError(t, registerMetrics(prometheus.NewRegistry()))
	seen := map[string]bool{}
	for _, c := range rec.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() {
			c.Describe(ch)
			close(ch)
		}()
		for d := range ch {
			m := descName.FindStringSubmatch(d.String())
			require.NotNil(t, m, "a description without a name: %s", d)
			seen[m[1]] = true
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func TestEveryMetricTheModuleRegistersIsInTheMetricsReference(t *testing.T) {
	metrics := registeredMetrics(t)
	require.Contains(t, metrics, "caddy_ucs_requests_total")
	require.Contains(t, metrics, "caddy_ucs_spool_records")
	documented := names(codeSpans(t, metricsDoc))
	for _, m := range metrics {
		assert.Truef(t, documented[m], "the module registers %s, but docs/metrics.md does not name it in a code span", m)
	}
}

// metricSpan is a code span that is a bare metric name, maybe with a label list.
var metricSpan = regexp.MustCompile(`^(caddy_ucs_[a-z0-9_]+)(\{[^}]*\})?$`)

func TestEveryMetricTheDocsNameIsOneTheModuleRegisters(t *testing.T) {
	registered := map[string]bool{}
	for _, m := range registeredMetrics(t) {
		registered[m] = true
	}
	for _, doc := range markdownFiles(t) {
		for _, s := range codeSpans(t, doc) {
			if m := metricSpan.FindStringSubmatch(s); m != nil {
				assert.Truef(t, registered[m[1]], "%s names the metric %s, which the module does not register", doc, m[1])
			}
		}
	}
}

// markdownFiles are the docs whose links are checked: the README, CONTRIBUTING, BENCHMARKS, docs/ and
// the README of a directory (monitoring/, deploy/).
func markdownFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../*.md")
	require.NoError(t, err)
	for _, pattern := range []string{"../docs/*.md", "../*/README.md"} {
		more, err := filepath.Glob(pattern)
		require.NoError(t, err)
		files = append(files, more...)
	}
	require.Contains(t, files, "../README.md")
	require.Contains(t, files, configurationDoc)
	return files
}

// mdLink matches an inline link's target: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// headingAnchors are the fragments GitHub gives a markdown file's headings: lower case, letters,
// digits, '_' and '-' kept, spaces made '-', everything else dropped; a repeated one gets -1, -2, ….
func headingAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	text := fencedBlock.ReplaceAllString(string(raw), "")
	anchors := map[string]bool{}
	count := map[string]int{}
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case unicode.IsLetter(r), unicode.IsDigit(r), r == '_', r == '-':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		a := b.String()
		if n := count[a]; n > 0 {
			anchors[a+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[a] = true
		}
		count[a]++
	}
	return anchors
}

func TestEveryRelativeLinkOfTheDocsReachesAFileAndAHeading(t *testing.T) {
	links := 0
	for _, doc := range markdownFiles(t) {
		raw, err := os.ReadFile(doc)
		require.NoError(t, err)
		prose := fencedBlock.ReplaceAllString(string(raw), "")
		for _, m := range mdLink.FindAllStringSubmatch(prose, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links++
			file, frag, _ := strings.Cut(target, "#")
			path := doc
			if file != "" {
				path = filepath.Join(filepath.Dir(doc), file)
				if _, err := os.Stat(path); err != nil {
					assert.Failf(t, "a link reaches no file", "%s links to %s: %v", doc, target, err)
					continue
				}
			}
			if frag != "" {
				require.Truef(t, strings.HasSuffix(path, ".md"), "%s links to a fragment of a file that is not markdown: %s", doc, target)
				assert.Truef(t, headingAnchors(t, path)[frag], "%s links to %s, but %s has no heading with that anchor", doc, target, path)
			}
		}
	}
	require.Greater(t, links, 20, "the link reader found too few links to be reading them")
}

// caddyfileBlock matches a fenced caddyfile block and its text.
var caddyfileBlock = regexp.MustCompile("(?ms)^```caddyfile\\n(.*?)^```")

func TestEveryWholeCaddyfileOfTheReadmeAdapts(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	adapter := caddyconfig.GetAdapter("caddyfile")
	require.NotNil(t, adapter)
	sites := 0
	for _, m := range caddyfileBlock.FindAllStringSubmatch(string(raw), -1) {
		if !strings.HasPrefix(m[1], "http://") {
			continue // a fragment, not a whole Caddyfile
		}
		sites++
		_, warnings, err := adapter.Adapt([]byte(m[1]), nil)
		assert.NoErrorf(t, err, "the README's Caddyfile does not adapt:\n%s", m[1])
		assert.Emptyf(t, warnings, "the README's Caddyfile adapts with warnings:\n%s", m[1])
	}
	require.GreaterOrEqual(t, sites, 3, "a whole Caddyfile for each sink")
}
