package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// The operator's tools for a forward sink's spool and dead letter:
//
//	caddy ucs spool status <dir> [--json] [--dead-letter <file>] [--top <n>]
//	caddy ucs dead-letter list <file> [--json]
//	caddy ucs dead-letter resend <file> --to <base URL> [--where status=400] [--dry-run]
//	                                   [--header 'Name: value']... [--spool <dir>] [--file-only]
//	                                   [--ca <pem file>]... [--cert <pem file> --key <pem file>] [--server-name <name>]

func newSpoolCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "spool",
		Short: "Inspect a forward sink's spool directory",
	}
	var asJSON bool
	var deadLetter string
	var top int
	status := &cobra.Command{
		Use:   "status <dir>",
		Short: "Print what a spool holds (read-only, safe while Caddy runs)",
		Long: `
Prints the events waiting in a spool directory and their bytes, the oldest
and newest accepted_at and the age of the oldest (how far behind the UCS is),
the services with the most events waiting, lines that are not events
(corrupt; a line over 64 MiB is skipped unread), and the dead-letter count. It
takes no lock and writes nothing, so it is safe while Caddy owns the spool.
--json prints one JSON object for monitoring scripts.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return exitWith(cmd, runSpoolStatus(args[0], deadLetter, top, asJSON, time.Now(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	status.Flags().StringVar(&deadLetter, "dead-letter", "", "the dead-letter file to count (default <dir>/dead-letter.jsonl)")
	status.Flags().IntVar(&top, "top", 10, "how many services to list")
	c.AddCommand(status)
	return c
}

func newDeadLetterCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "dead-letter",
		Short: "List and resend the events the UCS rejected during replay",
	}
	var listJSON bool
	list := &cobra.Command{
		Use:   "list <file>",
		Short: "Print one line per dead-lettered event: time, status, the UCS's message, method and path",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return exitWith(cmd, runDeadLetterList(args[0], listJSON, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print the selected lines as they are in the file")
	c.AddCommand(list)

	var f resendFlags
	resend := &cobra.Command{
		Use:   "resend <file> --to <base URL>",
		Short: "Resend dead-lettered events and remove those the UCS accepts",
		Long: `
Re-sends each selected event with its own method, path, query and headers to
the UCS at --to, and removes the lines the UCS accepted (2xx) from the file by
an atomic rewrite (temporary file, fsync, rename, directory fsync); the other
lines stay. It refuses to run while the Caddy owning the spool holds its lock
(the spool is the file's directory, or --spool), and holds the lock itself
meanwhile; --file-only skips the lock for a file no Caddy writes to (a copy).
--header replaces a header of every event, e.g. an expired Authorization.
--where selects by status: status=400, status=4xx.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return exitWith(cmd, runDeadLetterResend(cmd.Context(), args[0], f, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	fl := resend.Flags()
	fl.StringVar(&f.to, "to", "", "base URL of the UCS, e.g. http://ucs1.example.com:8080")
	fl.StringVar(&f.where, "where", "", "select events by status: status=400 or status=4xx")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print what would be sent; send and change nothing")
	fl.StringArrayVar(&f.headers, "header", nil, "'Name: value' replacing that header of every event (may repeat)")
	fl.StringVar(&f.spool, "spool", "", "the spool directory whose lock to check (default: the file's directory)")
	fl.BoolVar(&f.fileOnly, "file-only", false, "do not check the spool lock")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "per event")
	f.tls.register(resend)
	c.AddCommand(resend)
	return c
}

// exitWith ends a command with status code, as `caddy ucs normalize` does.
func exitWith(cmd *cobra.Command, code int) error {
	if code != 0 {
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		os.Exit(code)
	}
	return nil
}

// runSpoolStatus prints a spool's status; it returns the exit status.
func runSpoolStatus(dir, deadLetter string, top int, asJSON bool, now time.Time, stdout, stderr io.Writer) int {
	st, err := upstream.InspectSpool(dir, deadLetter, top, now)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if asJSON {
		b, _ := json.Marshal(st)
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	fmt.Fprintf(stdout, "spool        %s\n", st.Dir)
	fmt.Fprintf(stdout, "waiting      %d events, %d bytes, %d services\n", st.Records, st.Bytes, st.LaneCount)
	if st.Corrupt > 0 {
		fmt.Fprintf(stdout, "corrupt      %d lines that are not events (%d longer than %d MiB, skipped unread); the replay moves them to the dead letter\n",
			st.Corrupt, st.TooLong, upstream.MaxSpoolLine>>20)
	}
	if st.Oldest != nil {
		fmt.Fprintf(stdout, "oldest       %s (%s ago)\n", st.Oldest.Format(time.RFC3339Nano), (time.Duration(st.OldestAge * float64(time.Second))).Round(time.Second))
		fmt.Fprintf(stdout, "newest       %s\n", st.Newest.Format(time.RFC3339Nano))
	}
	for _, l := range st.TopLanes {
		oldest := "unknown"
		if !l.Oldest.IsZero() {
			oldest = l.Oldest.Format(time.RFC3339Nano)
		}
		fmt.Fprintf(stdout, "service      %-40s %d events, oldest %s\n", l.Lane, l.Records, oldest)
	}
	fmt.Fprintf(stdout, "dead letter  %d events in %s\n", st.Dead, st.DeadPath)
	return 0
}

// runDeadLetterList prints one line per dead-lettered event.
func runDeadLetterList(path string, asJSON bool, stdout, stderr io.Writer) int {
	letters, err := upstream.ReadDeadLetters(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	for _, d := range letters {
		if asJSON {
			b, _ := json.Marshal(d)
			fmt.Fprintf(stdout, "%s\n", b)
			continue
		}
		method, p, query, _, _, err := d.Request()
		if err != nil {
			method, p = "?", err.Error()
		}
		if query != "" {
			p += "?" + query
		}
		fmt.Fprintf(stdout, "%s  %d  %s %s  %s\n", d.FailedAt, d.Status, method, p, strconv.Quote(d.Message()))
	}
	return 0
}

// resendFlags are the options of `caddy ucs dead-letter resend`.
type resendFlags struct {
	to, where, spool string
	headers          []string
	dryRun, fileOnly bool
	timeout          time.Duration
	tls              tlsFlags
}

// runDeadLetterResend resends the selected events; it returns 0 when every selected event was
// accepted, 1 when some were not, 2 for a usage, lock or file error.
func runDeadLetterResend(ctx context.Context, path string, f resendFlags, stdout, stderr io.Writer) int {
	if ctx == nil {
		ctx = context.Background()
	}
	opts := upstream.ResendOptions{DryRun: f.dryRun, Timeout: f.timeout, Header: http.Header{}}
	if !f.dryRun || f.to != "" {
		u, err := parseBaseURL(f.to)
		if err != nil {
			fmt.Fprintf(stderr, "--to: %v\n", err)
			return 2
		}
		opts.To = u
		if opts.TLS, err = f.tls.build(f.to); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	where, err := parseWhere(f.where)
	if err != nil {
		fmt.Fprintf(stderr, "--where: %v\n", err)
		return 2
	}
	opts.Where = where
	for _, h := range f.headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			fmt.Fprintf(stderr, "--header %q: want 'Name: value'\n", h)
			return 2
		}
		opts.Header[http.CanonicalHeaderKey(strings.TrimSpace(name))] = []string{strings.TrimSpace(value)}
	}
	if !f.fileOnly && !f.dryRun {
		dir := f.spool
		if dir == "" {
			dir = filepath.Dir(path)
			if _, err := os.Stat(upstream.SpoolPath(dir, upstream.SpoolLock)); errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(stderr, "no spool lock next to %s: pass --spool <dir> (the spool whose dead letter this is) or --file-only\n", path)
				return 2
			}
		}
		release, err := upstream.LockSpoolDir(dir)
		if err != nil {
			fmt.Fprintf(stderr, "%v\nstop the Caddy that owns the spool first, or resend a copy of the file with --file-only\n", err)
			return 2
		}
		defer release()
	}
	failed := 0
	opts.OnResult = func(r upstream.ResendResult) {
		method, p, _, _, _, _ := r.Letter.Request()
		switch {
		case f.dryRun:
			fmt.Fprintf(stdout, "would resend line %d: %s %s\n", r.Letter.Line, method, p)
		case r.Accepted():
			fmt.Fprintf(stdout, "line %d: %s %s: %d, removed\n", r.Letter.Line, method, p, r.Status)
		case r.Err != nil:
			failed++
			fmt.Fprintf(stdout, "line %d: %s %s: %v, kept\n", r.Letter.Line, method, p, withTLSCause(r.Err))
		default:
			failed++
			fmt.Fprintf(stdout, "line %d: %s %s: %d, kept\n", r.Letter.Line, method, p, r.Status)
		}
	}
	rep, err := upstream.ResendDeadLetters(ctx, path, opts)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	fmt.Fprintf(stdout, "%d selected, %d accepted and removed, %d lines kept\n", rep.Selected, rep.Accepted, rep.Kept)
	if failed > 0 {
		return 1
	}
	return 0
}

// parseWhere reads `status=400` or `status=4xx`; "" selects everything.
func parseWhere(s string) (func(upstream.DeadLetter) bool, error) {
	if s == "" {
		return nil, nil
	}
	v, ok := strings.CutPrefix(s, "status=")
	if !ok {
		return nil, fmt.Errorf("%q: only status=<code> or status=<class>xx is supported", s)
	}
	if len(v) == 3 && strings.HasSuffix(v, "xx") && v[0] >= '1' && v[0] <= '5' {
		class := int(v[0] - '0')
		return func(d upstream.DeadLetter) bool { return d.Status/100 == class }, nil
	}
	// Exactly three digits: `status=4` selecting nothing (or meaning 4xx to
	// the operator) must not pass silently.
	code, err := strconv.Atoi(v)
	if err != nil || len(v) != 3 || code < 100 || code > 599 {
		return nil, fmt.Errorf("%q: want a status of three digits such as 400, or a class such as 4xx", s)
	}
	return func(d upstream.DeadLetter) bool { return d.Status == code }, nil
}
