package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/ucsedge/caddy-ucs/normalize"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "ucs",
		Usage: "normalize|attributes|spool status|dead-letter list|dead-letter resend|shadow report|journal replay …",
		Short: "Tools of the ucs handler (Genesys Context Services gateway)",
		Long: `
ucs normalize runs an event body (Task End unless --operation names another
operation: service.start, state.start, …) through the same rules as the ucs
handler, without a server: it prints the strict body on stdout and each
repair on stderr (kind and line:column), and exits with status 1 and the
error message for a body the server would reject (400). With --config
<Caddyfile or JSON> it takes the options of the config's first ucs handler
(fetching business_attributes_from), and --tenant <ContactCenterId> picks
that tenant's tables as a request with that header would get them.

ucs attributes --from <base URL> [--header 'Name: value'] [--tenant <id>]
prints the business-attribute tables a gateway would build from that UCS:
each attribute, the keys it backs, its names and dbids, and the default.

ucs spool status <dir> prints what a forward sink's spool holds: events
waiting, the age of the oldest, the busiest services and the dead-letter
count (read-only, safe while Caddy runs).

ucs dead-letter list <file> prints the events the UCS rejected; ucs
dead-letter resend <file> [--to <base URL>] sends them again, removes those
the UCS accepts and updates those it refuses. These go through the admin API
of the running Caddy (--address) when it has the spool open, and read the
files otherwise.

ucs shadow report <shadow journal>... [--json] [--since <time|duration>]
[--operation <name>] prints what shadow mode recorded: the verdicts per
operation, the top repairs and rejections, and the calls switching inline
would break and fix.

ucs journal replay <journal file or directory>... --to <base URL> sends a
local journal's events to a UCS on the spool's lanes and replay rule,
resumable from a state file, with progress on stderr.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(newNormalizeCommand(), newAttributesCommand(), newSpoolCommand(), newDeadLetterCommand(), newShadowCommand(), newJournalCommand())
		},
	})
}

// normalizeFlags are the options of `caddy ucs normalize`.
type normalizeFlags struct {
	operation       string
	attributes      []string
	now             string
	maxDepth        int
	invalidUTF8     string
	unknownNames    string
	caseInsensitive bool
	fillDefaults    bool
	config          string
	tenant          string
}

func newNormalizeCommand() *cobra.Command {
	var f normalizeFlags
	c := &cobra.Command{
		Use:   "normalize [--operation <name>] [--attributes <file> | --config <file> [--tenant <id>]] [--now <RFC 3339 time>] [<file>|-]",
		Short: "Print the strict JSON the ucs handler makes of an event body (Task End by default)",
		Args:  cobra.MaximumNArgs(1),
	}
	c.RunE = runCommand(c, "the body would be refused", func(fl caddycmd.Flags) int {
		in := "-"
		if fl.NArg() == 1 {
			in = fl.Arg(0)
		}
		return runNormalize(f, in, os.Stdin, c.OutOrStdout(), c.ErrOrStderr())
	})
	fl := c.Flags()
	fl.StringVar(&f.operation, "operation", "task.end", "the call whose event the body is: "+normalize.OperationNames())
	fl.StringArrayVar(&f.attributes, "attributes", nil, "business-attributes metadata JSON file (may repeat)")
	fl.StringVar(&f.now, "now", "", "receive time for a missing timestamp, RFC 3339 (default: the current time)")
	fl.IntVar(&f.maxDepth, "max-depth", 0, "nesting limit (default 64)")
	fl.StringVar(&f.invalidUTF8, "invalid-utf8", "replace", "replace|reject")
	fl.StringVar(&f.unknownNames, "unknown-names", "reject", "reject|pass")
	fl.BoolVar(&f.caseInsensitive, "case-insensitive-names", false, "also match names ignoring case and surrounding white space")
	fl.BoolVar(&f.fillDefaults, "fill-defaults", false, "fill omitted attribute fields with their default value")
	fl.StringVar(&f.config, "config", "", "take the options of the first ucs handler of this Caddyfile or JSON config (the other option flags are ignored)")
	fl.StringVar(&f.tenant, "tenant", "", "with --config: the request's ContactCenterId, picking that tenant's tables")
	return c
}

// runNormalize is the command without the process around it, so tests run
// it in-process. It returns the exit status: 0, 1 for a body the server
// would reject, 2 for a usage or file error.
func runNormalize(f normalizeFlags, input string, stdin io.Reader, stdout, stderr io.Writer) int {
	h := &Handler{
		BusinessAttributes:   f.attributes,
		UnknownNames:         f.unknownNames,
		InvalidUTF8:          f.invalidUTF8,
		MaxDepth:             f.maxDepth,
		CaseInsensitiveNames: f.caseInsensitive,
		FillDefaults:         f.fillDefaults,
	}
	op := normalize.OpTaskEnd
	if f.operation != "" {
		var ok bool
		if op, ok = normalize.ParseOperation(f.operation); !ok {
			fmt.Fprintf(stderr, "--operation: unknown operation %q; the operations are %s\n", f.operation, normalize.OperationNames())
			return 2
		}
	}
	receivedAt := time.Now()
	if f.now != "" {
		t, err := time.Parse(time.RFC3339Nano, f.now)
		if err != nil {
			fmt.Fprintf(stderr, "--now: %v\n", err)
			return 2
		}
		receivedAt = t
	}
	if f.tenant != "" && f.config == "" {
		fmt.Fprintln(stderr, "--tenant needs --config: the tenants are configured there")
		return 2
	}
	if f.config != "" {
		var err error
		if h, err = loadHandlerConfig(f.config); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	// The server's own option checks and table loading, so a config the
	// server refuses is refused here with the same message.
	if err := h.checkOptions(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, cancel := offlineContext()
	defer cancel()
	if err := h.provisionAttributesTLS(ctx, caddy.Log()); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := h.buildSets(); err != nil {
		h.releaseSets()
		fmt.Fprintln(stderr, err)
		return 2
	}
	defer h.releaseSets()
	norm, err := h.tenantNormalizer(f.tenant)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}

	var body []byte
	if input == "-" {
		body, err = io.ReadAll(stdin)
	} else {
		body, err = os.ReadFile(input)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}

	var rep normalize.Report
	out, err := norm.Event(op, nil, body, receivedAt, &rep)
	if err != nil {
		var ne *normalize.Error
		if errors.As(err, &ne) {
			e := errFromNormalize(err)
			fmt.Fprintf(stderr, "%d %s: %s\n", e.status, e.exception, e.msg)
		} else {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	for i := range rep.NumListed {
		r := rep.First[i]
		line, col := normalize.Position(body, r.Offset)
		where := strconv.Itoa(line) + ":" + strconv.Itoa(col)
		if r.Field != "" {
			fmt.Fprintf(stderr, "repair %s at %s (field %s)\n", r.Kind, where, r.Field)
		} else {
			fmt.Fprintf(stderr, "repair %s at %s\n", r.Kind, where)
		}
	}
	if total := rep.Total(); total > rep.NumListed {
		fmt.Fprintf(stderr, "%d repairs in all (%d listed above):", total, rep.NumListed)
		for k, n := range rep.Counts {
			if n > 0 {
				fmt.Fprintf(stderr, " %s=%d", normalize.RepairKind(k), n)
			}
		}
		fmt.Fprintln(stderr)
	}
	for i := range rep.NumMisses {
		m := rep.Misses[i]
		fmt.Fprintf(stderr, "unknown %s name %q passed on unchanged\n", m.Field, m.Name)
	}
	out = append(out, '\n')
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	return 0
}

// runCommand is the RunE of a ucs command, registered as Caddy's own
// commands are (WrapCommandFuncForCobra, no os.Exit): run writes its output
// and its reasons and returns the exit status. Cobra says nothing more once
// run has spoken; a status of 1 must carry an error to exit 1 at all, and
// Caddy logs it: failure says in a few words what failed.
func runCommand(c *cobra.Command, failure string, run func(caddycmd.Flags) int) func(*cobra.Command, []string) error {
	return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		code := run(fl)
		c.SilenceErrors = code != 0
		if code == 1 {
			return 1, errors.New(failure)
		}
		return code, nil
	})
}

// parseHeaderFlag reads a --header flag, 'Name: value', trimming both.
func parseHeaderFlag(h string) (name, value string, err error) {
	name, value, ok := strings.Cut(h, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return "", "", fmt.Errorf("--header %q: want 'Name: value'", h)
	}
	return strings.TrimSpace(name), strings.TrimSpace(value), nil
}

// loadHandlerConfig reads the first ucs handler of a Caddyfile or a JSON
// config (`caddy ucs normalize --config`).
func loadHandlerConfig(path string) (*Handler, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if filepath.Ext(path) != ".json" {
		adapter := caddyconfig.GetAdapter("caddyfile")
		if adapter == nil {
			return nil, errors.New("the caddyfile adapter is not built in")
		}
		if body, _, err = adapter.Adapt(body, map[string]any{"filename": path}); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	var cfg any
	if err := json.Unmarshal(body, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	raw := findUCSHandler(cfg)
	if raw == nil {
		return nil, fmt.Errorf("%s: no ucs handler in the config", path)
	}
	b, _ := json.Marshal(raw)
	h := new(Handler)
	if err := json.Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("%s: the ucs handler: %w", path, err)
	}
	return h, nil
}

func findUCSHandler(v any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		if x["handler"] == "ucs" {
			return x
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // deterministic: apps, routes, …
		for _, k := range keys {
			if h := findUCSHandler(x[k]); h != nil {
				return h
			}
		}
	case []any:
		for _, e := range x {
			if h := findUCSHandler(e); h != nil {
				return h
			}
		}
	}
	return nil
}
