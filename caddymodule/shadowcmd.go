package caddymodule

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The evidence for switching from shadow mode to inline:
//
//	caddy ucs shadow report <shadow journal>... [--json] [--since <time|duration>] [--operation <name>]... [--examples <n>]

// reportFlags are the options of `caddy ucs shadow report`.
type reportFlags struct {
	json       bool
	since      string
	operations []string
	examples   int
}

func newShadowCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "shadow",
		Short: "Read what shadow mode recorded",
	}
	var f reportFlags
	report := &cobra.Command{
		Use:   "report <shadow journal>...",
		Short: "Print the verdicts of a shadow journal: what switching inline would break and fix",
		Long: `
Reads shadow journals (the active file and any rotated ones) and prints, per
operation, the verdict matrix (what the gateway would have done × what the
UCS answered), the most frequent repair kinds and rejection reasons, the
first would-break calls (refused by the gateway, accepted by the UCS) and
would-fix calls (repaired by the gateway, refused by the UCS), and a closing
line with both counts. Counts of calls recorded by sample are estimated
(each sampled line stands for 1/sample calls); every would-break, would-fix
and refused call is recorded, unless the journal's queue dropped it
(caddy_ucs_shadow_dropped_total).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return exitWith(cmd, runShadowReport(f, args, time.Now(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	fl := report.Flags()
	fl.BoolVar(&f.json, "json", false, "print one JSON object")
	fl.StringVar(&f.since, "since", "", "only calls received since this RFC 3339 time, or this long ago (e.g. 24h)")
	fl.StringArrayVar(&f.operations, "operation", nil, "only this operation, e.g. task.end (may repeat)")
	fl.IntVar(&f.examples, "examples", 10, "how many would-break and would-fix calls to list")
	c.AddCommand(report)
	return c
}

// shadowReport is the report, as --json prints it.
type shadowReport struct {
	Files        []string `json:"files"`
	Records      int      `json:"records"`       // lines that passed the filters
	Calls        float64  `json:"calls"`         // the calls they stand for (estimated)
	SkippedLines int      `json:"skipped_lines"` // lines that are not records
	From         string   `json:"from,omitempty"`
	To           string   `json:"to,omitempty"`
	// Operations is operation → gateway verdict → upstream verdict →
	// calls (estimated).
	Operations         map[string]map[string]map[string]float64 `json:"operations"`
	RepairKinds        []reportCount                            `json:"repair_kinds"`
	RejectionReasons   []reportCount                            `json:"rejection_reasons"`
	WouldBreak         int                                      `json:"would_break"`
	WouldFix           int                                      `json:"would_fix"`
	UCSAccepted        float64                                  `json:"ucs_accepted"` // calls answered 2xx (estimated)
	WouldBreakPercent  float64                                  `json:"would_break_percent"`
	WouldBreakExamples []reportExample                          `json:"would_break_examples"`
	WouldFixExamples   []reportExample                          `json:"would_fix_examples"`
}

type reportCount struct {
	Name  string  `json:"name"`
	Count float64 `json:"count"`
}

type reportExample struct {
	ReceivedAt        string   `json:"received_at"`
	Operation         string   `json:"operation"`
	Method            string   `json:"method"`
	Path              string   `json:"path"`
	UpstreamStatus    int      `json:"upstream_status"`
	UpstreamException string   `json:"upstream_exception,omitempty"`
	Reason            string   `json:"reason,omitempty"`  // the gateway's, for a would-break
	Message           string   `json:"message,omitempty"` // the gateway's, for a would-break
	Repairs           []string `json:"repairs,omitempty"` // kind@line:column, for a would-fix
}

// runShadowReport reads the journals and prints the report; it returns the
// exit status: 0, or 2 for a usage or file error.
func runShadowReport(f reportFlags, files []string, now time.Time, stdout, stderr io.Writer) int {
	var since time.Time
	if f.since != "" {
		if d, err := time.ParseDuration(f.since); err == nil {
			since = now.Add(-d)
		} else if since, err = time.Parse(time.RFC3339Nano, f.since); err != nil {
			fmt.Fprintf(stderr, "--since %q: give an RFC 3339 time or a duration such as 24h\n", f.since)
			return 2
		}
	}
	rep := &shadowReport{Files: files, Operations: map[string]map[string]map[string]float64{}}
	repairs, reasons := map[string]float64{}, map[string]float64{}
	for _, name := range files {
		if err := readShadowLines(name, func(r *shadowRecord) {
			if len(f.operations) > 0 && !slices.Contains(f.operations, r.Operation) {
				return
			}
			at, err := time.Parse(receivedAtFormat, r.ReceivedAt)
			if !since.IsZero() && (err != nil || at.Before(since)) {
				return
			}
			rep.add(r, repairs, reasons, f.examples)
		}, &rep.SkippedLines); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	rep.RepairKinds, rep.RejectionReasons = sortedCounts(repairs), sortedCounts(reasons)
	if rep.UCSAccepted > 0 {
		rep.WouldBreakPercent = 100 * float64(rep.WouldBreak) / rep.UCSAccepted
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		return 0
	}
	rep.writeText(stdout)
	return 0
}

// readShadowLines calls each with every record of the file; a line that is
// not a record is counted in skipped.
func readShadowLines(name string, each func(*shadowRecord), skipped *int) error {
	fh, err := os.Open(name)
	if err != nil {
		return err
	}
	defer fh.Close()
	br := bufio.NewReader(fh)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			var r shadowRecord
			if json.Unmarshal(line, &r) != nil || r.Operation == "" {
				*skipped++
			} else {
				each(&r)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

// add counts one record; a sampled one stands for 1/Sample calls.
func (rep *shadowReport) add(r *shadowRecord, repairs, reasons map[string]float64, examples int) {
	weight := 1.0
	if r.Sample > 0 {
		weight = 1 / r.Sample
	}
	rep.Records++
	rep.Calls += weight
	if rep.From == "" || r.ReceivedAt < rep.From {
		rep.From = r.ReceivedAt
	}
	rep.To = max(rep.To, r.ReceivedAt)
	byGateway := rep.Operations[r.Operation]
	if byGateway == nil {
		byGateway = map[string]map[string]float64{}
		for _, g := range gatewayLabels {
			byGateway[g] = map[string]float64{}
			for _, u := range upstreamLabels {
				byGateway[g][u] = 0
			}
		}
		rep.Operations[r.Operation] = byGateway
	}
	if byGateway[r.Gateway] == nil {
		byGateway[r.Gateway] = map[string]float64{}
	}
	byGateway[r.Gateway][r.Upstream] += weight
	if r.Upstream == upstreamLabels[upstream2xx] {
		rep.UCSAccepted += weight
	}
	for k, n := range r.RepairCounts {
		repairs[k] += float64(n) * weight
	}
	if r.Rejection != nil {
		reasons[r.Rejection.Reason] += weight
	}
	ex := reportExample{ReceivedAt: r.ReceivedAt, Operation: r.Operation, Method: r.Method, Path: r.Path,
		UpstreamStatus: r.UpstreamStatus, UpstreamException: r.UpstreamException}
	switch r.Verdict {
	case verdictWouldBreak:
		rep.WouldBreak++
		if len(rep.WouldBreakExamples) < examples {
			ex.Reason, ex.Message = r.Rejection.Reason, r.Rejection.Message
			rep.WouldBreakExamples = append(rep.WouldBreakExamples, ex)
		}
	case verdictWouldFix:
		rep.WouldFix++
		if len(rep.WouldFixExamples) < examples {
			for _, rp := range r.Repairs {
				ex.Repairs = append(ex.Repairs, fmt.Sprintf("%s@%d:%d", rp.Kind, rp.Line, rp.Column))
			}
			rep.WouldFixExamples = append(rep.WouldFixExamples, ex)
		}
	}
}

// sortedCounts lists the counts, the largest first.
func sortedCounts(m map[string]float64) []reportCount {
	out := make([]reportCount, 0, len(m))
	for k, n := range m {
		out = append(out, reportCount{k, n})
	}
	slices.SortFunc(out, func(a, b reportCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Name, b.Name))
	})
	return out
}

// reportTop is how many repair kinds and rejection reasons the text lists.
const reportTop = 10

func (rep *shadowReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "%d records standing for about %.0f calls", rep.Records, rep.Calls)
	if rep.From != "" {
		fmt.Fprintf(w, ", %s to %s", rep.From, rep.To)
	}
	fmt.Fprintln(w)
	if rep.SkippedLines > 0 {
		fmt.Fprintf(w, "%d lines skipped: not shadow records\n", rep.SkippedLines)
	}
	ops := make([]string, 0, len(rep.Operations))
	for op := range rep.Operations {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	for _, op := range ops {
		fmt.Fprintf(w, "\n%-12s", op)
		for _, u := range upstreamLabels {
			fmt.Fprintf(w, " %9s", u)
		}
		fmt.Fprintln(w)
		for _, g := range gatewayLabels {
			fmt.Fprintf(w, "  %-10s", g)
			for _, u := range upstreamLabels {
				fmt.Fprintf(w, " %9.0f", rep.Operations[op][g][u])
			}
			fmt.Fprintln(w)
		}
	}
	for _, list := range []struct {
		title string
		c     []reportCount
	}{{"top repair kinds", rep.RepairKinds}, {"top rejection reasons", rep.RejectionReasons}} {
		if len(list.c) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s\n", list.title)
		for _, c := range list.c[:min(len(list.c), reportTop)] {
			fmt.Fprintf(w, "  %-24s %.0f\n", c.Name, c.Count)
		}
	}
	fmt.Fprintf(w, "\nwould break: %d (the gateway would refuse, the UCS accepted)\n", rep.WouldBreak)
	for _, e := range rep.WouldBreakExamples {
		fmt.Fprintf(w, "  %s %s %s %s → %d: %s: %s\n", e.ReceivedAt, e.Operation, e.Method, e.Path, e.UpstreamStatus, e.Reason, e.Message)
	}
	fmt.Fprintf(w, "would fix: %d (the gateway would repair, the UCS refused)\n", rep.WouldFix)
	for _, e := range rep.WouldFixExamples {
		fmt.Fprintf(w, "  %s %s %s %s → %d %s: repairs %s\n", e.ReceivedAt, e.Operation, e.Method, e.Path, e.UpstreamStatus,
			cmp.Or(e.UpstreamException, "-"), strings.Join(e.Repairs, " "))
	}
	fmt.Fprintf(w, "\nswitching inline would have refused %d calls the UCS accepted (%.1f %%) and repaired %d it refused\n",
		rep.WouldBreak, rep.WouldBreakPercent, rep.WouldFix)
}
