package caddymodule

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// The operator's tool for a local journal:
//
//	caddy ucs journal replay <journal file or directory>... --to <base URL>
//	    [--header 'Authorization: Basic …']... [--base-path /genesys/1/cs]
//	    [--operation task.end,...] [--since <RFC 3339>] [--until <RFC 3339>] [--where service=<id>]...
//	    [--concurrency auto|<n>] [--max-concurrency <n>] [--max-attempts <n>] [--max-retry-age <duration>] [--timeout <duration>]
//	    [--state <file>] [--dead-letter <file>] [--dry-run] [--json]
//	    [--ca <pem file>]... [--cert <pem file> --key <pem file>] [--server-name <name>]
//
// The delivery is the spool's (upstream.JournalReplay); this file is flags, progress and summary.

// journalFlags are the options of `caddy ucs journal replay`.
type journalFlags struct {
	to, basePath, state, deadLetter string
	since, until                    string
	headers, operations, where      []string
	concurrency                     string
	maxConcurrency, maxAttempts     int
	maxRetryAge, timeout            time.Duration
	dryRun, asJSON                  bool
	progressEvery                   time.Duration
	tls                             tlsFlags
}

func newJournalCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "journal",
		Short: "Deliver a local journal to a UCS",
	}
	var f journalFlags
	replay := &cobra.Command{
		Use:   "replay <journal file or directory>... --to <base URL>",
		Short: "Send a local journal's events to a UCS, in order per service, resumable",
		Long: `
Sends the events of a local journal (its rotated files first, then the
active one) to the UCS at --to, on the spool's lanes: in acceptance order per
service, up to --concurrency in flight, a Genesys-shaped 4xx to the dead letter,
anything else retried with backoff under --max-attempts and --max-retry-age,
one probe at a time while the UCS is down. Each call is rebuilt from its line:
POST <base path>/services/<id>/tasks/<id>/end (or states/<id>/end, or end), the
event as journaled; journal lines hold no caller headers: give them with
--header.

The position is kept in a state file (default <journal>.replay-state.json,
rewritten atomically): a run interrupted by Ctrl-C, kill -9 or a lost network
resumes there, sending again at most --concurrency events per interruption;
a finished journal sends nothing; lines appended since are sent. A second
replay of the same state file is refused (a flock on <state>.lock). Reading a
journal Caddy is appending to is safe: what was complete at the start is sent.

Exit status: 0 when every event was delivered or filtered out, 1 when some
went to the dead letter (in this run or the interrupted runs it resumed), 2 on
a usage or I/O error, 130 when interrupted.`,
		Args: cobra.MinimumNArgs(1),
	}
	replay.RunE = runCommand(replay, "some events went to the dead letter", func(fl caddycmd.Flags) int {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runJournalReplay(ctx, replay.Flags().Args(), f, replay.OutOrStdout(), replay.ErrOrStderr())
	})
	fl := replay.Flags()
	fl.StringVar(&f.to, "to", "", "base URL of the UCS, e.g. http://ucs1.example.com:8080")
	fl.StringArrayVar(&f.headers, "header", nil, "'Name: value' sent with every event, e.g. 'Authorization: Basic …' (may repeat)")
	fl.StringVar(&f.basePath, "base-path", upstream.DefaultJournalBasePath, "the Context Services path the calls go under")
	fl.StringSliceVar(&f.operations, "operation", nil, "send only these operations: task.end, state.end, service.end (comma-separated or repeated)")
	fl.StringVar(&f.since, "since", "", "send only events received at or after this RFC 3339 time")
	fl.StringVar(&f.until, "until", "", "send only events received before this RFC 3339 time")
	fl.StringArrayVar(&f.where, "where", nil, "send only service=<id> (may repeat)")
	fl.StringVar(&f.concurrency, "concurrency", "auto", "events in flight at most: auto (the spool's adaptive limit, up to --max-concurrency) or a fixed number; the most sent twice per interruption is this number or the maximum")
	fl.IntVar(&f.maxConcurrency, "max-concurrency", upstream.DefaultReplayConcurrencyMax, "the adaptive limit's maximum (with --concurrency auto)")
	fl.IntVar(&f.maxAttempts, "max-attempts", upstream.DefaultMaxAttempts, "retryable answers (429, an HTML 404, …) before an event goes to the dead letter")
	fl.DurationVar(&f.maxRetryAge, "max-retry-age", upstream.DefaultMaxRetryAge, "time after an event's first retryable answer before it goes to the dead letter")
	fl.DurationVar(&f.timeout, "timeout", upstream.DefaultForwardTimeout, "per call")
	fl.StringVar(&f.state, "state", "", "the state file (default <journal>.replay-state.json)")
	fl.StringVar(&f.deadLetter, "dead-letter", "", "where rejected events go (default <journal>.dead-letter.jsonl)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print what would be sent: counts per operation and service, the first calls; send nothing")
	fl.BoolVar(&f.asJSON, "json", false, "print the summary as one JSON object")
	fl.DurationVar(&f.progressEvery, "progress-every", 10*time.Second, "how often the plain progress line is printed when stderr is not a terminal")
	_ = fl.MarkHidden("progress-every") // for tests
	f.tls.register(replay)
	c.AddCommand(replay)
	return c
}

// journalTotals is the --json summary: the totals, then each journal's.
type journalTotals struct {
	Delivered    int `json:"delivered"`
	DeadLettered int `json:"dead_lettered"`
	// DeadLetteredInReplay adds those of earlier interrupted runs of the same replays.
	DeadLetteredInReplay int                       `json:"dead_lettered_in_replay"`
	Skipped              int                       `json:"skipped_by_filters"`
	PossibleDuplicates   int                       `json:"possible_duplicates"`
	Complete             bool                      `json:"complete"`
	Journals             []journalSummaryWithInput `json:"journals"`
}

type journalSummaryWithInput struct {
	Journal string `json:"journal"`
	upstream.JournalSummary
}

// runJournalReplay is the command without the process around it; it returns the exit status.
func runJournalReplay(ctx context.Context, args []string, f journalFlags, stdout, stderr io.Writer) int {
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, format+"\n", a...)
		return 2
	}
	journals, err := journalInputs(args)
	if err != nil {
		return usage("%v", err)
	}
	if len(journals) > 1 && (f.state != "" || f.deadLetter != "") {
		return usage("--state and --dead-letter name one journal's files; %d journals given", len(journals))
	}
	opts := upstream.JournalReplayOptions{
		BasePath: f.basePath, State: f.state, DeadLetter: f.deadLetter, DryRun: f.dryRun, Sample: 5,
		Header: http.Header{},
		Replay: upstream.ReplayPolicy{MaxConcurrency: f.maxConcurrency, MaxAttempts: f.maxAttempts, MaxRetryAge: f.maxRetryAge},
		Logger: commandLogger(stderr),
	}
	if f.concurrency != "auto" {
		n, err := strconv.Atoi(f.concurrency)
		if err != nil || n < 1 {
			return usage("--concurrency: want auto or a number of at least 1, got %q", f.concurrency)
		}
		opts.Replay.Concurrency = n
	}
	if f.maxConcurrency < 1 {
		return usage("--max-concurrency: want at least 1, got %d", f.maxConcurrency)
	}
	if opts.Filter, err = journalFilter(f); err != nil {
		return usage("%v", err)
	}
	for _, h := range f.headers {
		name, value, err := parseHeaderFlag(h)
		if err != nil {
			return usage("%v", err)
		}
		opts.Header.Add(name, value)
	}
	if !f.dryRun {
		u, err := parseBaseURL(f.to)
		if err != nil {
			return usage("--to: %v", err)
		}
		tlsConfig, err := f.tls.build(f.to)
		if err != nil {
			return usage("%v", err)
		}
		if opts.Forwarder, err = upstream.NewForwarder(upstream.ForwardOptions{URLs: []*url.URL{u}, Timeout: f.timeout, TLS: tlsConfig}); err != nil {
			return usage("--to: %v", err)
		}
	}

	totals := journalTotals{Complete: true}
	code := 0
	for _, j := range journals {
		o := opts
		o.Journal = j
		r, err := upstream.OpenJournalReplay(o)
		if err != nil {
			return usage("%s: %v", j, err)
		}
		plan := r.Plan()
		if plan.TornBytes > 0 {
			fmt.Fprintf(stderr, "warning: %s ends with an incomplete line of %d bytes (Caddy killed mid-append, or appending now): it is not sent; a later run sends it once it is complete\n", j, plan.TornBytes)
		}
		if f.dryRun {
			printJournalPlan(stdout, j, r, plan)
			r.Close()
			continue
		}
		p := startProgress(stderr, r, f.progressEvery)
		sum, err := r.Run(ctx)
		p.stop()
		r.Close()
		if err != nil {
			return usage("%s: %v", j, err)
		}
		totals.Delivered += sum.Delivered
		totals.DeadLettered += sum.DeadLettered
		totals.DeadLetteredInReplay += sum.DeadLetteredInReplay
		totals.Skipped += sum.Skipped
		totals.PossibleDuplicates += sum.PossibleDuplicates
		totals.Complete = totals.Complete && sum.Complete
		totals.Journals = append(totals.Journals, journalSummaryWithInput{Journal: j, JournalSummary: sum})
		if !f.asJSON {
			printJournalSummary(stdout, j, sum)
		}
		if !sum.Complete {
			break // interrupted: the next journals wait for the next run
		}
	}
	if f.dryRun {
		return 0
	}
	if f.asJSON {
		b, _ := json.Marshal(totals)
		fmt.Fprintf(stdout, "%s\n", b)
	}
	switch {
	case !totals.Complete:
		fmt.Fprintln(stderr, "interrupted: run the same command again to resume")
		code = 130
	case totals.DeadLetteredInReplay > 0:
		code = 1
	}
	return code
}

// journalInputs expands the arguments: a file is a journal, a directory holds journals.
func journalInputs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, a)
			continue
		}
		js, err := upstream.JournalFiles(a)
		if err != nil {
			return nil, err
		}
		if len(js) == 0 {
			return nil, fmt.Errorf("%s holds no journal (*.jsonl)", a)
		}
		out = append(out, js...)
	}
	return out, nil
}

// journalFilter reads the filter flags.
func journalFilter(f journalFlags) (upstream.JournalFilter, error) {
	var jf upstream.JournalFilter
	for _, op := range f.operations {
		switch op = strings.TrimSpace(op); op {
		case "task.end", "state.end", "service.end":
			jf.Operations = append(jf.Operations, op)
		default:
			return jf, fmt.Errorf("--operation: %q is not a journaled operation (task.end, state.end, service.end)", op)
		}
	}
	for _, w := range f.where {
		id, ok := strings.CutPrefix(w, "service=")
		if !ok || id == "" {
			return jf, fmt.Errorf("--where %q: want service=<id>", w)
		}
		jf.Services = append(jf.Services, id)
	}
	var err error
	if f.since != "" {
		if jf.Since, err = time.Parse(time.RFC3339Nano, f.since); err != nil {
			return jf, fmt.Errorf("--since: %w", err)
		}
	}
	if f.until != "" {
		if jf.Until, err = time.Parse(time.RFC3339Nano, f.until); err != nil {
			return jf, fmt.Errorf("--until: %w", err)
		}
	}
	return jf, nil
}

// commandLogger writes the replay's errors (a state or dead letter it cannot write) to stderr;
// warnings per event would break the progress bar, and the summary counts them.
func commandLogger(w io.Writer) *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), zap.ErrorLevel)
	return zap.New(core)
}

// printJournalPlan prints a dry run: what would be sent.
func printJournalPlan(w io.Writer, journal string, r *upstream.JournalReplay, p upstream.JournalPlan) {
	fmt.Fprintf(w, "journal      %s\n", journal)
	fmt.Fprintf(w, "would send   %d events (%d skipped by filters, %d unreadable lines to the dead letter)\n", p.Waiting, p.Skipped, p.Unreadable)
	for _, op := range slices.Sorted(maps.Keys(p.Operations)) {
		fmt.Fprintf(w, "operation    %-12s %d\n", op, p.Operations[op])
	}
	services := slices.SortedFunc(maps.Keys(p.Services), func(a, b string) int {
		return cmp.Or(p.Services[b]-p.Services[a], strings.Compare(a, b))
	})
	const top = 20
	for _, s := range services[:min(len(services), top)] {
		fmt.Fprintf(w, "service      %-40s %d\n", s, p.Services[s])
	}
	if len(services) > top {
		fmt.Fprintf(w, "             … and %d more services\n", len(services)-top)
	}
	for _, c := range p.First {
		fmt.Fprintf(w, "first        %s %s %s\n", c.Method, c.Path, c.Body)
	}
	fmt.Fprintf(w, "state        %s\n", r.StatePath())
}

// printJournalSummary prints one journal's summary.
func printJournalSummary(w io.Writer, journal string, s upstream.JournalSummary) {
	fmt.Fprintf(w, "journal      %s\n", journal)
	fmt.Fprintf(w, "delivered    %d\n", s.Delivered)
	fmt.Fprintf(w, "dead letter  %d events in %s", s.DeadLettered, s.DeadLetter)
	if s.DeadLetteredInReplay > s.DeadLettered {
		fmt.Fprintf(w, " (%d with the interrupted runs before)", s.DeadLetteredInReplay)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "skipped      %d by filters\n", s.Skipped)
	if s.Unreadable > 0 {
		fmt.Fprintf(w, "unreadable   %d lines that are not events (in the dead letter)\n", s.Unreadable)
	}
	if s.TornBytes > 0 {
		fmt.Fprintf(w, "torn tail    %d bytes of an incomplete last line, not sent\n", s.TornBytes)
	}
	fmt.Fprintf(w, "duplicates   at most %d events may have reached the UCS twice (earlier interrupted runs)\n", s.PossibleDuplicates)
	state := "complete"
	if !s.Complete {
		state = fmt.Sprintf("interrupted, %d events left", s.Remaining)
	}
	fmt.Fprintf(w, "state        %s (%s)\n", s.State, state)
}

// progress draws a replay's progress on stderr: a bar redrawn at most 10 times a second on a
// terminal, a plain line every progressEvery otherwise.
type progress struct {
	w       io.Writer
	r       *upstream.JournalReplay
	tty     bool
	width   int
	start   time.Time
	done    chan struct{}
	stopped sync.WaitGroup
}

func startProgress(w io.Writer, r *upstream.JournalReplay, every time.Duration) *progress {
	p := &progress{w: w, r: r, start: time.Now(), done: make(chan struct{}), width: 80}
	if every <= 0 {
		every = 10 * time.Second
	}
	if isTerminal(w) {
		p.tty = true
		if cols, _, err := term.GetSize(int(w.(*os.File).Fd())); err == nil && cols > 0 {
			p.width = cols
		}
		every = 100 * time.Millisecond
	}
	p.stopped.Add(1)
	go func() {
		defer p.stopped.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				if p.tty {
					p.draw()
					fmt.Fprintln(p.w)
				}
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

func (p *progress) stop() {
	close(p.done)
	p.stopped.Wait()
}

// draw prints the progress once.
func (p *progress) draw() {
	pr := p.r.Progress()
	sent := pr.Delivered + pr.DeadLettered
	elapsed := time.Since(p.start)
	rate := float64(sent) / max(elapsed.Seconds(), 1e-3)
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(pr.Total-sent)/rate) * time.Second).Round(time.Second).String()
	}
	pct := 100.0
	if pr.Total > 0 {
		pct = 100 * float64(sent) / float64(pr.Total)
	}
	oldest := "none"
	if !pr.Oldest.IsZero() {
		oldest = pr.Oldest.UTC().Format(time.RFC3339)
	}
	stats := fmt.Sprintf("%d/%d %3.0f%% %.0f ev/s ETA %s dead %d oldest waiting %s",
		sent, pr.Total, pct, rate, eta, pr.DeadLettered, oldest)
	if !p.tty {
		fmt.Fprintf(p.w, "journal replay: %s\n", stats)
		return
	}
	// [=====>    ] then the figures, cut to the terminal's width.
	barWidth := max(p.width-len(stats)-4, 10)
	filled := int(float64(barWidth) * pct / 100)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled)
	if filled > 0 && filled < barWidth {
		bar = strings.Repeat("=", filled-1) + ">" + strings.Repeat(" ", barWidth-filled)
	}
	line := "[" + bar + "] " + stats
	if len(line) > p.width-1 {
		line = line[:p.width-1]
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
}
