package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ucsedge/caddy-ucs/normalize"
	"github.com/ucsedge/caddy-ucs/upstream"
)

// The operator's tools for a forward sink's spool and dead letter:
//
//	caddy ucs spool status <dir> [--json] [--dead-letter <file>] [--top <n>] [--address <admin>]
//	caddy ucs dead-letter list <file> [--json] [--where <cond>]... [--address <admin>]
//	caddy ucs dead-letter resend <file> [--to <base URL>] [--where <cond>]... [--dry-run]
//	                                   [--header 'Name: value']... [--spool <dir>] [--file-only]
//	                                   [--ca <pem file>]... [--cert <pem file> --key <pem file>] [--server-name <name>]
//	                                   [--save-every <n>] [--save-interval <d>] [--max-unavailable <k>]
//	                                   [--address <admin>]
//
// Which way a command goes: it asks the admin API of the running Caddy (--address, else the
// address in --config, else Caddy's default, as `caddy stop` finds it) for its open spools. When
// that Caddy has the spool open, the command goes through it (admin.go), since the process owning
// the files is the one that may rewrite them. Otherwise (no answer, or a Caddy without this
// spool) the command reads the files itself, and resend takes the spool's lock, refusing while
// another process holds it.

// adminFlags say where the running Caddy's admin API is.
type adminFlags struct {
	address, config, adapter string
}

func (f *adminFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.address, "address", "", "the admin API of the running Caddy (default: from --config, else "+caddy.DefaultAdminListen+")")
	fl.StringVar(&f.config, "config", "", "the running Caddy's config file, to read its admin address from")
	fl.StringVar(&f.adapter, "adapter", "", "the adapter of --config")
}

// liveSpool asks the running Caddy for the open spool that match selects. It returns no status
// when no Caddy answers there, or when it has no such spool open; reason then says why, for
// messages. err is a --config that cannot be read: the operator named it, so it is not passed over.
func (f adminFlags) liveSpool(match func(*upstream.SpoolStatus) bool) (addr string, st *upstream.SpoolStatus, reason string, err error) {
	addr, err = caddycmd.DetermineAdminAPIAddress(f.address, nil, f.config, f.adapter)
	if err != nil {
		return "", nil, "", fmt.Errorf("--config: %w", err)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, http.MethodGet, "/ucs/spools?top=10", nil, nil)
	if err != nil {
		return addr, nil, fmt.Sprintf("admin API at %s: %v", addr, err), nil
	}
	defer resp.Body.Close()
	var list []*upstream.SpoolStatus
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return addr, nil, fmt.Sprintf("admin API at %s: %v", addr, err), nil
	}
	for _, s := range list {
		if match(s) {
			return addr, s, "", nil
		}
	}
	return addr, nil, fmt.Sprintf("the Caddy at %s has no such spool open", addr), nil
}

// absPath is path made absolute, as the running Caddy names its spools.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

type spoolStatusFlags struct {
	deadLetter string
	top        int
	json       bool
	admin      adminFlags
}

func newSpoolCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "spool",
		Short: "Inspect a forward sink's spool directory",
	}
	var f spoolStatusFlags
	status := &cobra.Command{
		Use:   "status <dir>",
		Short: "Print what a spool holds (read-only, safe while Caddy runs)",
		Long: `
Prints the events waiting in a spool directory and their bytes, the oldest
and newest accepted_at and the age of the oldest (how far behind the UCS is),
the services with the most events waiting, lines that are not events
(corrupt; a line over 64 MiB is skipped unread), and the dead-letter count.
When the Caddy at --address has the spool open, it answers; otherwise the
files are read, taking no lock and writing nothing. A directory holding no
spool file exits 2. --json prints one JSON object for monitoring scripts.`,
		Args: cobra.ExactArgs(1),
	}
	status.RunE = runCommand(status, "the spool could not be read", func(fl caddycmd.Flags) int {
		return runSpoolStatus(fl.Arg(0), f, time.Now(), status.OutOrStdout(), status.ErrOrStderr())
	})
	status.Flags().BoolVar(&f.json, "json", false, "print one JSON object")
	status.Flags().StringVar(&f.deadLetter, "dead-letter", "", "the dead-letter file to count (default <dir>/dead-letter.jsonl)")
	status.Flags().IntVar(&f.top, "top", 10, "how many services to list")
	f.admin.register(status)
	c.AddCommand(status)
	return c
}

type listFlags struct {
	json  bool
	where []string
	admin adminFlags
}

func newDeadLetterCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "dead-letter",
		Short: "List and resend the events the UCS rejected during replay",
	}
	var lf listFlags
	list := &cobra.Command{
		Use:   "list <file>",
		Short: "Print one line per dead-lettered event: time, status, the UCS's message and exception, method and path",
		Long: `
Prints one line per dead-lettered event, the rotated files of the dead letter
first, and on stderr how many there are and how many lines are not dead
letters. A file none of whose lines is a dead letter exits 2. --where
selects, as resend's does.`,
		Args: cobra.ExactArgs(1),
	}
	list.RunE = runCommand(list, "the dead letter could not be read", func(fl caddycmd.Flags) int {
		return runDeadLetterList(fl.Arg(0), lf, list.OutOrStdout(), list.ErrOrStderr())
	})
	list.Flags().BoolVar(&lf.json, "json", false, "print the selected lines as they are in the file")
	list.Flags().StringArrayVar(&lf.where, "where", nil, whereHelp)
	lf.admin.register(list)
	c.AddCommand(list)

	var f resendFlags
	resend := &cobra.Command{
		Use:   "resend <file> [--to <base URL>]",
		Short: "Resend dead-lettered events and remove those the UCS accepts",
		Long: `
Re-sends each selected event with its own method, path, query and headers,
one at a time. A line the UCS accepts (2xx) is removed; a line it refuses
again stays, its record updated with the new status and answer, which are
printed. The file is rewritten atomically as it goes, at least every
--save-every lines or --save-interval, so a kill loses at most that batch.
SIGINT or SIGTERM stops after the request in flight and saves; after
--max-unavailable unavailable answers in a row it stops ("UCS unreachable").

When the Caddy at --address has the spool open, that Caddy does the resend
(its own dead letter, rewritten in step with its replay), to --to or else to
its forward upstream with its TLS settings. Otherwise the file is handled
here: --to is needed, the spool's lock is taken (the spool is the file's
directory, or --spool) and the command refuses while another process holds
it; --file-only skips the lock for a file no Caddy writes to (a copy).
--header replaces a header of every event, e.g. an expired Authorization.`,
		Args: cobra.ExactArgs(1),
	}
	resend.RunE = runCommand(resend, "some events were not accepted", func(fl caddycmd.Flags) int {
		f.progress = isTerminal(resend.ErrOrStderr())
		ctx, stop := interruptible(resend.ErrOrStderr())
		defer stop()
		return runDeadLetterResend(ctx, fl.Arg(0), f, resend.OutOrStdout(), resend.ErrOrStderr())
	})
	fl := resend.Flags()
	fl.StringVar(&f.to, "to", "", "base URL of the UCS, e.g. http://ucs1.example.com:8080 (default through a running Caddy: its forward upstream)")
	fl.StringArrayVar(&f.where, "where", nil, whereHelp)
	fl.BoolVar(&f.dryRun, "dry-run", false, "print what would be sent; send and change nothing")
	fl.StringArrayVar(&f.headers, "header", nil, "'Name: value' replacing that header of every event (may repeat)")
	fl.StringVar(&f.spool, "spool", "", "the spool directory whose lock to check (default: the file's directory)")
	fl.BoolVar(&f.fileOnly, "file-only", false, "handle the file here, without asking a running Caddy or checking the spool lock")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "per event")
	fl.IntVar(&f.saveEvery, "save-every", upstream.DefaultSaveEvery, "rewrite the file after this many lines")
	fl.DurationVar(&f.saveInterval, "save-interval", upstream.DefaultSaveInterval, "rewrite the file at least this often")
	fl.IntVar(&f.maxUnavailable, "max-unavailable", upstream.DefaultMaxUnavailable, "stop after this many unavailable answers in a row")
	f.tls.register(resend)
	f.admin.register(resend)
	c.AddCommand(resend)
	return c
}

const whereHelp = "select events (may repeat, all must hold): status=400, status=4xx, exception=<name>, service=<id>, operation=<op>"

// interruptible is a context that SIGINT or SIGTERM ends, saying so on stderr; a second signal
// has its default effect (the process ends at once).
func interruptible(stderr io.Writer) (context.Context, func()) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			stop()
			fmt.Fprintln(stderr, "\nstopping after the request in flight and saving; a second signal quits at once")
		case <-done:
		}
	}()
	return ctx, func() { close(done); stop() }
}

// isTerminal reports whether w is a terminal, where a progress line may redraw itself.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// plural is "1 event", "2 events".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// runSpoolStatus prints a spool's status; it returns the exit status.
func runSpoolStatus(dir string, f spoolStatusFlags, now time.Time, stdout, stderr io.Writer) int {
	abs := absPath(dir)
	_, st, _, err := f.admin.liveSpool(func(s *upstream.SpoolStatus) bool {
		return s.Dir == abs && (f.deadLetter == "" || s.DeadPath == absPath(f.deadLetter))
	})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if st == nil {
		if err := looksLikeASpool(dir); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if st, err = upstream.InspectSpool(dir, f.deadLetter, f.top, now); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	} else if len(st.TopLanes) > f.top {
		st.TopLanes = st.TopLanes[:max(f.top, 0)]
	}
	if f.json {
		b, _ := json.Marshal(st)
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	fmt.Fprintf(stdout, "spool        %s\n", st.Dir)
	fmt.Fprintf(stdout, "waiting      %s, %s, %s\n", plural(st.Records, "event", "events"), sizeText(st.Bytes), plural(st.LaneCount, "service", "services"))
	if st.Corrupt > 0 {
		fmt.Fprintf(stdout, "corrupt      %s that are not events (%d longer than %d MiB, skipped unread); the replay moves them to the dead letter\n",
			plural(st.Corrupt, "line", "lines"), st.TooLong, upstream.MaxSpoolLine>>20)
	}
	if st.Oldest != nil {
		fmt.Fprintf(stdout, "oldest       %s (%s ago)\n", st.Oldest.Format(time.RFC3339Nano), ageText(time.Duration(st.OldestAge*float64(time.Second))))
		fmt.Fprintf(stdout, "newest       %s\n", st.Newest.Format(time.RFC3339Nano))
	}
	for _, l := range st.TopLanes {
		oldest := "unknown"
		if !l.Oldest.IsZero() {
			oldest = l.Oldest.Format(time.RFC3339Nano)
		}
		fmt.Fprintf(stdout, "service      %-40s %s, oldest %s\n", l.Lane, plural(l.Records, "event", "events"), oldest)
	}
	fmt.Fprintf(stdout, "dead letter  %s in %s", plural(st.Dead, "event", "events"), st.DeadPath)
	if st.DeadUnreadable > 0 {
		fmt.Fprintf(stdout, " (and %s)", plural(st.DeadUnreadable, "line that is not a dead letter", "lines that are not dead letters"))
	}
	fmt.Fprintln(stdout)
	return 0
}

// sizeText is a byte count with its unit: "1 byte", "8212 bytes (8.0 KiB)".
func sizeText(n int64) string {
	s := plural(int(n), "byte", "bytes")
	if n >= 1024 {
		s += " (" + humanize.IBytes(uint64(n)) + ")"
	}
	return s
}

// ageText is a duration as an operator reads it: 3.2s, 12s, 4m10s.
func ageText(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// looksLikeASpool refuses a directory that holds none of a spool's files: a typo'd path, or the
// parent of the spool, would otherwise read as an empty spool.
func looksLikeASpool(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory: expected a forward sink's spool directory", dir)
	}
	files := []upstream.SpoolFile{upstream.SpoolRecords, upstream.SpoolCursor, upstream.SpoolLock}
	names := make([]string, 0, len(files))
	for _, f := range files {
		if _, err := os.Stat(upstream.SpoolPath(dir, f)); err == nil {
			return nil
		}
		names = append(names, upstream.SpoolPath("", f))
	}
	return fmt.Errorf("no spool in %s: expected %s (the files of a forward sink's spool directory)", dir, strings.Join(names, ", "))
}

// deadLetterList is what `dead-letter list` shows, and what GET /ucs/dead-letter answers.
type deadLetterList struct {
	Spool string `json:"spool,omitempty"` // the spool directory, when a running Caddy answered
	Path  string `json:"path"`            // the dead letter's active file
	// Letters are the selected dead letters, the rotated files' first.
	Letters []listedLetter `json:"letters"`
	// Total counts every dead letter, selected or not; Unreadable the lines that are not one.
	Total      int `json:"total"`
	Unreadable int `json:"unreadable"`
}

// listedLetter is one dead letter with the file and line it is on.
type listedLetter struct {
	File string `json:"file"`
	Line int    `json:"line"`
	upstream.DeadLetter
}

// listDeadLetters reads the dead letter whose active file is path, rotated files included.
func listDeadLetters(path string, where func(upstream.DeadLetter) bool) (*deadLetterList, error) {
	files, err := upstream.ReadDeadLetterLog(path)
	if err != nil {
		return nil, err
	}
	out := &deadLetterList{Path: path, Letters: []listedLetter{}}
	for _, f := range files {
		out.Unreadable += f.Unreadable
		out.Total += len(f.Letters)
		for _, d := range f.Letters {
			if where == nil || where(d) {
				out.Letters = append(out.Letters, listedLetter{File: f.Path, Line: d.Line, DeadLetter: d})
			}
		}
	}
	return out, nil
}

// runDeadLetterList prints one line per dead-lettered event.
func runDeadLetterList(path string, f listFlags, stdout, stderr io.Writer) int {
	where, err := parseWhere(f.where)
	if err != nil {
		fmt.Fprintf(stderr, "--where: %v\n", err)
		return 2
	}
	abs := absPath(path)
	var list *deadLetterList
	addr, st, _, err := f.admin.liveSpool(func(s *upstream.SpoolStatus) bool { return s.DeadPath == abs })
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if st != nil {
		q := url.Values{"spool": {st.Dir}, "where": f.where}
		resp, err := caddycmd.AdminAPIRequest(addr, http.MethodGet, "/ucs/dead-letter?"+q.Encode(), nil, nil)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			fmt.Fprintf(stderr, "admin API at %s: %v\n", addr, err)
			return 2
		}
	} else {
		if fi, err := os.Stat(path); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		} else if fi.IsDir() {
			fmt.Fprintf(stderr, "%s is a directory: expected a dead-letter file, e.g. %s\n", path, upstream.SpoolPath(path, upstream.SpoolDeadLetter))
			return 2
		}
		if list, err = listDeadLetters(path, where); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	for _, d := range list.Letters {
		if f.json {
			b, _ := json.Marshal(d.DeadLetter)
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
		line := fmt.Sprintf("%s  %d  %s %s  %s", d.FailedAt, d.Status, method, p, strconv.Quote(d.Message()))
		if e := d.Exception(); e != "" {
			line += "  " + e
		}
		fmt.Fprintln(stdout, line)
	}
	if list.Total == 0 && list.Unreadable > 0 {
		fmt.Fprintf(stderr, "warning: %s holds no dead letters: %s could not be read (is it a dead-letter file?)\n",
			path, plural(list.Unreadable, "line", "lines"))
		return 2
	}
	summary := plural(list.Total, "dead-lettered event", "dead-lettered events")
	if where != nil {
		summary = fmt.Sprintf("%d of %s selected", len(list.Letters), summary)
	}
	if list.Unreadable > 0 {
		summary += fmt.Sprintf("; warning: %s could not be read", plural(list.Unreadable, "line", "lines"))
	}
	fmt.Fprintln(stderr, summary)
	return 0
}

// resendFlags are the options of `caddy ucs dead-letter resend`.
type resendFlags struct {
	to, spool        string
	where, headers   []string
	dryRun, fileOnly bool
	timeout          time.Duration
	saveEvery        int
	saveInterval     time.Duration
	maxUnavailable   int
	tls              tlsFlags
	admin            adminFlags
	progress         bool // redraw a progress line on stderr (a terminal)
}

// request is the resend the flags describe, as the admin API takes it.
func (f resendFlags) request() (resendRequest, error) {
	q := resendRequest{Where: f.where, To: f.to, DryRun: f.dryRun, Timeout: caddy.Duration(f.timeout),
		SaveEvery: f.saveEvery, SaveInterval: caddy.Duration(f.saveInterval), MaxUnavailable: f.maxUnavailable}
	for _, h := range f.headers {
		name, value, err := parseHeaderFlag(h)
		if err != nil {
			return q, err
		}
		if q.Header == nil {
			q.Header = map[string]string{}
		}
		q.Header[name] = value
	}
	return q, nil
}

// runDeadLetterResend resends the selected events; it returns 0 when every selected event was
// accepted, 1 when some were not (refused, unavailable, not tried), 2 for a usage, lock or file
// error.
func runDeadLetterResend(ctx context.Context, path string, f resendFlags, stdout, stderr io.Writer) int {
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := f.request()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	opts, err := req.options()
	if err != nil {
		fmt.Fprintf(stderr, "--%v\n", err)
		return 2
	}
	p := &resendPrinter{stdout: stdout, dryRun: f.dryRun}
	if f.progress {
		p.progress = stderr
	}
	if !f.fileOnly {
		abs, spool := absPath(path), absPath(f.spool)
		addr, st, why, err := f.admin.liveSpool(func(s *upstream.SpoolStatus) bool {
			return s.DeadPath == abs && (f.spool == "" || s.Dir == spool)
		})
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if st != nil {
			if f.tls.config() != nil {
				fmt.Fprintf(stderr, "--ca, --cert, --key and --server-name apply to a file handled here: the Caddy at %s owns the spool and sends with its forward's TLS settings (or to --to with the system's CAs)\n", addr)
				return 2
			}
			req.Spool = st.Dir
			return resendThroughCaddy(ctx, addr, req, p, stderr)
		}
		return resendFile(ctx, path, f, opts, p, why, stderr)
	}
	return resendFile(ctx, path, f, opts, p, "", stderr)
}

// holdSpoolOfDeadLetter takes the lock of the spool whose active dead letter path is, for the
// resend: --file-only must not rewrite it under a running Caddy's appends, which would go to the
// replaced file. It refuses (false, saying why on stderr) while that Caddy holds the spool.
// Rotated dead-letter files and copies are nobody's to append to: nothing to hold.
func holdSpoolOfDeadLetter(path string, stderr io.Writer) (release func() error, ok bool) {
	none := func() error { return nil }
	dir := filepath.Dir(path)
	if filepath.Base(path) != filepath.Base(upstream.SpoolPath(dir, upstream.SpoolDeadLetter)) {
		return none, true
	}
	if _, err := os.Stat(upstream.SpoolPath(dir, upstream.SpoolLock)); err != nil {
		return none, true
	}
	release, err := upstream.LockSpoolDir(dir)
	if err != nil {
		fmt.Fprintf(stderr, "%s is the dead letter of a spool a running Caddy holds, which appends to it: resend through that Caddy (--address), or resend a copy of the file with --file-only\n", path)
		return nil, false
	}
	return release, true
}

// resendFile handles the file here, holding the spool's lock unless --file-only.
func resendFile(ctx context.Context, path string, f resendFlags, opts upstream.ResendOptions, p *resendPrinter, why string, stderr io.Writer) int {
	if opts.To == nil && !f.dryRun {
		fmt.Fprintln(stderr, "--to: the UCS base URL is needed when no running Caddy owns the spool")
		if why != "" {
			fmt.Fprintf(stderr, "(%s)\n", why)
		}
		return 2
	}
	if opts.To != nil {
		var err error
		if opts.TLS, err = f.tls.build(f.to); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
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
			fmt.Fprintln(stderr, err)
			if why != "" {
				fmt.Fprintf(stderr, "and no running Caddy answered for it (%s): pass --address <its admin address>, or resend a copy of the file with --file-only\n", why)
			}
			return 2
		}
		defer release()
	}
	if f.fileOnly && !f.dryRun {
		release, ok := holdSpoolOfDeadLetter(path, stderr)
		if !ok {
			return 2
		}
		defer release()
	}
	if !f.dryRun {
		// A journal replay appending to this file holds its lock: the rewrite would lose its lines.
		release, err := upstream.LockDeadLetter(path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		defer release()
	}
	opts.OnResult = func(r upstream.ResendResult) { p.result(resultLine(r)) }
	rep, err := upstream.ResendDeadLetters(ctx, path, opts)
	if err != nil && rep == nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	p.clearProgress()
	p.summary(rep)
	if err != nil {
		fmt.Fprintf(stderr, "saving the progress failed: %v\n", err)
		return 2
	}
	return p.exitStatus(rep)
}

// resendThroughCaddy has the running Caddy resend, printing its stream.
func resendThroughCaddy(ctx context.Context, addr string, req resendRequest, p *resendPrinter, stderr io.Writer) int {
	body, _ := json.Marshal(req)
	resp, err := caddycmd.AdminAPIRequest(addr, http.MethodPost, "/ucs/dead-letter/resend", nil, bytes.NewReader(body))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	// A signal closes the stream: the Caddy sees its client gone, stops after the request in
	// flight and saves.
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			resp.Body.Close()
		case <-stopped:
		}
	}()
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var ev resendEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			fmt.Fprintf(stderr, "admin API at %s: %v\n", addr, err)
			return 2
		}
		if ev.Result != nil {
			p.result(ev.Result)
			continue
		}
		p.clearProgress()
		if ev.Report != nil {
			p.summary(ev.Report)
		}
		if ev.Error != "" {
			fmt.Fprintf(stderr, "the Caddy at %s: %s\n", addr, ev.Error)
			return 2
		}
		return p.exitStatus(ev.Report)
	}
	p.clearProgress()
	if ctx.Err() != nil {
		fmt.Fprintf(p.stdout, "interrupted: the Caddy at %s stops after the request in flight and saves; `caddy ucs dead-letter list` shows what is left\n", addr)
		return 1
	}
	fmt.Fprintf(stderr, "the Caddy at %s ended the resend without a report (%v): `caddy ucs dead-letter list` shows what is left\n", addr, sc.Err())
	return 2
}

// resendPrinter prints a resend's results, a progress line on a terminal, and its summary.
type resendPrinter struct {
	stdout   io.Writer
	progress io.Writer // nil: no progress line
	dryRun   bool

	done, accepted, refused, unavailable int
	drawn                                time.Time
}

// result prints one event's outcome; accepted events only count in the progress and summary.
func (p *resendPrinter) result(r *resendResultLine) {
	p.done++
	where := fmt.Sprintf("line %d: %s %s", r.Line, r.Method, r.Path)
	switch r.Outcome {
	case upstream.ResendDryRun:
		p.clearProgress()
		fmt.Fprintf(p.stdout, "would resend %s\n", where)
	case upstream.ResendAccepted:
		p.accepted++
	case upstream.ResendRefused:
		p.refused++
		p.clearProgress()
		msg := strconv.Quote(r.Message)
		if r.Exception != "" {
			msg += " " + r.Exception
		}
		fmt.Fprintf(p.stdout, "%s: %d %s, kept (record updated)\n", where, r.Status, msg)
	default:
		p.unavailable++
		p.clearProgress()
		fmt.Fprintf(p.stdout, "%s: %s, kept\n", where, r.Error)
	}
	if p.progress != nil && time.Since(p.drawn) >= 100*time.Millisecond {
		fmt.Fprintf(p.progress, "\r\033[Kresending: %d sent, %d accepted, %d refused, %d unavailable", p.done, p.accepted, p.refused, p.unavailable)
		p.drawn = time.Now()
	}
}

// clearProgress erases the progress line, before a line of output.
func (p *resendPrinter) clearProgress() {
	if p.progress != nil && !p.drawn.IsZero() {
		fmt.Fprint(p.progress, "\r\033[K")
		p.drawn = time.Time{}
	}
}

func (p *resendPrinter) summary(rep *upstream.ResendReport) {
	if p.dryRun {
		fmt.Fprintf(p.stdout, "%s selected; nothing sent or changed (dry run)\n", plural(rep.Selected, "event", "events"))
		return
	}
	fmt.Fprintf(p.stdout, "%s selected: %d accepted and removed, %d refused again (kept, updated), %d unavailable, %d failed, %d not tried; %s kept\n",
		plural(rep.Selected, "event", "events"), rep.Accepted, rep.Refused, rep.Unavailable, rep.Failed, rep.NotTried, plural(rep.Kept, "line", "lines"))
	switch rep.Stopped {
	case upstream.StopUnreachable:
		fmt.Fprintf(p.stdout, "UCS unreachable: stopped after %s in a row; %s not tried. Resend again once it answers.\n",
			plural(rep.Unavailable, "unavailable answer", "unavailable answers"), plural(rep.NotTried, "selected event", "selected events"))
	case upstream.StopInterrupted:
		fmt.Fprintf(p.stdout, "interrupted: stopped after the request in flight, progress saved; %s not tried\n", plural(rep.NotTried, "selected event", "selected events"))
	}
}

func (p *resendPrinter) exitStatus(rep *upstream.ResendReport) int {
	if rep == nil || (!p.dryRun && rep.Accepted < rep.Selected) {
		return 1
	}
	return 0
}

// parseWhere reads --where conditions, all of which must hold; none selects everything:
// status=400 (three digits) or status=4xx, exception=<the UCS's exception name>,
// service=<service id>, operation=<operation name, e.g. task.end>.
func parseWhere(conds []string) (func(upstream.DeadLetter) bool, error) {
	if len(conds) == 0 {
		return nil, nil
	}
	var all []func(upstream.DeadLetter) bool
	for _, s := range conds {
		key, v, ok := strings.Cut(s, "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("%q: want status=<code>, exception=<name>, service=<id> or operation=<op>", s)
		}
		switch key {
		case "status":
			match, err := parseStatusCond(s, v)
			if err != nil {
				return nil, err
			}
			all = append(all, match)
		case "exception":
			all = append(all, func(d upstream.DeadLetter) bool { return d.Exception() == v })
		case "service":
			all = append(all, func(d upstream.DeadLetter) bool { return d.Lane() == v })
		case "operation":
			if _, ok := normalize.ParseOperation(v); !ok {
				return nil, fmt.Errorf("%q: no operation %s; the operations are %s", s, v, normalize.OperationNames())
			}
			all = append(all, func(d upstream.DeadLetter) bool { return operationOf(d) == v })
		default:
			return nil, fmt.Errorf("%q: want status=<code>, exception=<name>, service=<id> or operation=<op>", s)
		}
	}
	return func(d upstream.DeadLetter) bool {
		for _, match := range all {
			if !match(d) {
				return false
			}
		}
		return true
	}, nil
}

// parseStatusCond reads the value of status=: 400 or 4xx.
func parseStatusCond(s, v string) (func(upstream.DeadLetter) bool, error) {
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

// operationOf names the operation of a dead letter's request (task.end, …), matched on its
// path from the services segment on, as the handler matched it; "" when it is none.
func operationOf(d upstream.DeadLetter) string {
	method, p, _, _, _, err := d.Request()
	if err != nil {
		return ""
	}
	seg := strings.Split(strings.Trim(p, "/"), "/")
	for i, s := range seg {
		if s == "services" || s == "customers" {
			if shape := matchSegments(method, seg[i:]); shape.ok {
				return shape.op.String()
			}
		}
	}
	return ""
}
