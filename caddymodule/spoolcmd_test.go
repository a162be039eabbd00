package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// noCaddy is an admin address where no Caddy answers: the commands read the files.
var noCaddy = adminFlags{address: "localhost:1"}

// TestSpoolStatusReadsALiveSpool runs `caddy ucs spool status` on the spool of a running Caddy
// while callers keep adding events to it, then with --json.
func TestSpoolStatusReadsALiveSpool(t *testing.T) {
	ucs := newUCSServer(t)
	ucs.stop()
	dir := t.TempDir()
	tester := startCaddy(t, "ucs {\nforward "+ucs.url()+" {\nspool "+dir+"\n}\n}\nrespond 404")
	var sent atomic.Int64
	base := caddyURL // the client's own: the next test's site port is another
	stopClient := clients(t, 1, func(_ int, stop <-chan struct{}) {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			url := fmt.Sprintf(base+"/genesys/1/cs/services/%d/tasks/%d/end", 7+n%3, n)
			resp, _ := post(t, tester, url, fmt.Appendf(nil, "{n: %d}", n))
			if resp.StatusCode == http.StatusNoContent {
				sent.Add(1)
			}
		}
	})
	require.Eventually(t, func() bool { return sent.Load() >= 20 }, 20*time.Second, time.Millisecond)
	for range 5 {
		var out, errOut bytes.Buffer
		require.Equal(t, 0, runSpoolStatus(dir, spoolStatusFlags{top: 2, admin: noCaddy}, time.Now(), &out, &errOut), errOut.String())
		assert.Contains(t, out.String(), "spool        "+dir)
		assert.Contains(t, out.String(), "services")
		assert.Equal(t, 2, strings.Count(out.String(), "\nservice "), out.String())
		assert.Contains(t, out.String(), "dead letter  0 events")
	}
	stopClient()

	var out, errOut bytes.Buffer
	require.Equal(t, 0, runSpoolStatus(dir, spoolStatusFlags{top: 10, json: true, admin: noCaddy}, time.Now(), &out, &errOut), errOut.String())
	var st struct {
		Records  int64 `json:"records"`
		Lanes    int   `json:"lanes"`
		TopLanes []struct {
			Lane    string `json:"lane"`
			Records int    `json:"records"`
		} `json:"top_lanes"`
		OldestAge float64 `json:"oldest_age_seconds"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &st), out.String())
	assert.Equal(t, sent.Load(), st.Records, "every event answered 204 is waiting")
	assert.Equal(t, 3, st.Lanes)
	assert.Len(t, st.TopLanes, 3)
	assert.Positive(t, st.OldestAge)
}

// deadLetterOf makes a spool whose UCS rejected n events (services 1..n) with a Context Services
// error, and returns the spool directory; the test Caddy still runs with the spool.
func deadLetterOf(t *testing.T, n int) string {
	t.Helper()
	dir, _ := deadLetterWithUCS(t, n)
	return dir
}

// deadLetterWithUCS is deadLetterOf, also returning the UCS the spool forwards to.
func deadLetterWithUCS(t *testing.T, n int) (string, *ucsServer) {
	t.Helper()
	ucs := newUCSServer(t)
	ucs.set(func(u *ucsServer) {
		u.answer = func(seenRequest) (int, http.Header, string) {
			return http.StatusBadRequest, http.Header{"Content-Type": {"application/json"}},
				`{"message":"Service not found","exception":"InvalidParameterException"}`
		}
	})
	ucs.stop()
	dir := t.TempDir()
	fastReplay(t)
	tester := startCaddy(t, "ucs {\nforward "+ucs.url()+" {\nspool "+dir+"\n}\n}\nrespond 404")
	for i := 1; i <= n; i++ {
		resp, _ := post(t, tester, fmt.Sprintf(caddyURL+"/genesys/1/cs/services/%d/tasks/1/end", i), fmt.Appendf(nil, "{n: %d}", i))
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
	}
	ucs.restart()
	require.Eventually(t, func() bool {
		letters, _ := os.ReadFile(filepath.Join(dir, "dead-letter.jsonl"))
		return bytes.Count(letters, []byte("\n")) == n
	}, 20*time.Second, 5*time.Millisecond)
	return dir, ucs
}

func TestDeadLetterListAndResend(t *testing.T) {
	dir := deadLetterOf(t, 4)
	path := filepath.Join(dir, "dead-letter.jsonl")

	var out, errOut bytes.Buffer
	require.Equal(t, 0, runDeadLetterList(path, listFlags{admin: noCaddy}, &out, &errOut), errOut.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 4)
	assert.Contains(t, lines[0], "  400  POST /genesys/1/cs/services/")
	assert.Contains(t, lines[0], `"Service not found"`)

	// While Caddy owns the spool, resend refuses: it would rewrite a file Caddy appends to.
	out.Reset()
	errOut.Reset()
	ucs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer ucs.Close()
	assert.Equal(t, 2, runDeadLetterResend(context.Background(), path, resendFlags{to: ucs.URL, admin: noCaddy}, &out, &errOut))
	assert.Contains(t, errOut.String(), "is in use by another spool")
	// --file-only too: it names the live file, not a copy, and the rewrite would lose the
	// replay's next appends.
	errOut.Reset()
	assert.Equal(t, 2, runDeadLetterResend(context.Background(), path, resendFlags{to: ucs.URL, admin: noCaddy, fileOnly: true}, &out, &errOut))
	assert.Contains(t, errOut.String(), "the dead letter of a spool a running Caddy holds")

	// A dry run changes nothing.
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	out.Reset()
	assert.Equal(t, 0, runDeadLetterResend(context.Background(), path, resendFlags{dryRun: true, fileOnly: true}, &out, &errOut))
	assert.Contains(t, out.String(), "4 events selected; nothing sent or changed (dry run)")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after)

	// With Caddy gone (another config without the spool), the UCS takes services 1 and 3 and
	// still refuses 2 and 4: the file keeps exactly those.
	startCaddy(t, "respond 404")
	var auth []string
	var mu sync.Mutex
	fixed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		if strings.Contains(r.URL.Path, "/services/2/") || strings.Contains(r.URL.Path, "/services/4/") {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"message":"still not found","exception":"InvalidParameterException"}`))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer fixed.Close()
	out.Reset()
	errOut.Reset()
	code := runDeadLetterResend(context.Background(), path, resendFlags{to: fixed.URL, where: []string{"status=4xx"}, admin: noCaddy,
		headers: []string{"Authorization: Bearer fresh"}, timeout: 5 * time.Second}, &out, &errOut)
	assert.Equal(t, 1, code, "some events were refused again: %s%s", out.String(), errOut.String())
	assert.Contains(t, out.String(), "4 events selected: 2 accepted and removed, 2 refused again (kept, updated), 0 unavailable, 0 failed, 0 not tried; 2 lines kept")
	assert.Contains(t, out.String(), `400 "still not found" InvalidParameterException, kept (record updated)`)
	assert.Equal(t, []string{"Bearer fresh", "Bearer fresh", "Bearer fresh", "Bearer fresh"}, auth)
	out.Reset()
	require.Equal(t, 0, runDeadLetterList(path, listFlags{admin: noCaddy}, &out, &errOut))
	left := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, left, 2)
	// Services replay concurrently, so the dead letter has them in any order.
	kept := strings.Join(left, "\n")
	assert.Contains(t, kept, "/services/2/")
	assert.Contains(t, kept, "/services/4/")
}

// TestResendRefusesTheDeadLetterOfARunningJournalReplay: a journal replay appends to its dead
// letter and holds its lock; a resend from the files, --file-only included, refuses to rewrite it
// meanwhile, and leaves it as it was.
func TestResendRefusesTheDeadLetterOfARunningJournalReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl.dead-letter.jsonl")
	line := `{"failed_at":"2026-03-01T08:00:00.000Z","status":400,"attempts":1,"record":{"method":"POST","path":"/genesys/1/cs/services/1/tasks/1/end","event":{"n":1}}}` + "\n"
	require.NoError(t, os.WriteFile(path, []byte(line), 0o600))
	release, err := upstream.LockDeadLetter(path)
	require.NoError(t, err)
	defer release()
	var out, errOut bytes.Buffer
	assert.Equal(t, 2, runDeadLetterResend(context.Background(), path, resendFlags{to: "http://127.0.0.1:1", admin: noCaddy, fileOnly: true}, &out, &errOut))
	assert.Contains(t, errOut.String(), "a journal replay appends to it")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, line, string(after))
}

func TestResendNeedsToKnowTheSpool(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rejected.jsonl")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	var out, errOut bytes.Buffer
	assert.Equal(t, 2, runDeadLetterResend(context.Background(), path, resendFlags{to: "http://127.0.0.1:1", admin: noCaddy}, &out, &errOut))
	assert.Contains(t, errOut.String(), "pass --spool <dir>")
	errOut.Reset()
	assert.Equal(t, 2, runDeadLetterResend(context.Background(), path, resendFlags{to: "http://127.0.0.1:1", where: []string{"code=1"}, fileOnly: true}, &out, &errOut))
	assert.Contains(t, errOut.String(), "--where")
}

func TestWhereTakesAThreeDigitStatusOrAClass(t *testing.T) {
	tests := []struct {
		where     string
		ok        bool
		picks404  bool
		picks500  bool
		wantError string
	}{
		{"", true, true, true, ""},
		{"status=404", true, true, false, ""},
		{"status=4xx", true, true, false, ""},
		{"status=5xx", true, false, true, ""},
		{"status=4", false, false, false, "three digits"},
		{"status=40", false, false, false, "three digits"},
		{"status=0404", false, false, false, "three digits"},
		{"status=+40", false, false, false, "three digits"},
		{"status=099", false, false, false, "three digits"},
		{"status=600", false, false, false, "three digits"},
		{"status=6xx", false, false, false, "three digits"},
		{"code=404", false, false, false, "want status=<code>, exception=<name>"},
	}
	for _, tt := range tests {
		t.Run(tt.where, func(t *testing.T) {
			var conds []string
			if tt.where != "" {
				conds = []string{tt.where}
			}
			pick, err := parseWhere(conds)
			if !tt.ok {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantError)
				assert.Contains(t, err.Error(), tt.where, "the error names the filter")
				return
			}
			require.NoError(t, err)
			if pick == nil {
				return // "" selects everything
			}
			assert.Equal(t, tt.picks404, pick(upstream.DeadLetter{Status: 404}))
			assert.Equal(t, tt.picks500, pick(upstream.DeadLetter{Status: 500}))
		})
	}
}

// TestSpoolStatusOfADamagedSpoolCountsCorruptLinesApart: garbage and blank lines are not events,
// and a record that says it was accepted at the zero time gives no age.
func TestSpoolStatusOfADamagedSpoolCountsCorruptLinesApart(t *testing.T) {
	dir := t.TempDir()
	zero := `{"accepted_at":"0001-01-01T00:00:00.000Z","lane":"42","method":"POST","path":"/genesys/1/cs/services/42/tasks/1/end","query":"","header":{},"body":{"n":1}}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "spool.jsonl"), []byte("garbage\n\n"+zero+"\n"), 0o600))

	var out, errOut bytes.Buffer
	require.Equal(t, 0, runSpoolStatus(dir, spoolStatusFlags{top: 10, admin: noCaddy}, time.Now(), &out, &errOut), errOut.String())
	assert.Contains(t, out.String(), "waiting      1 event, ")
	assert.Contains(t, out.String(), "corrupt      2 lines that are not events")
	assert.NotContains(t, out.String(), "oldest       ", "no age from a zero time")
	assert.Contains(t, out.String(), "oldest unknown")

	out.Reset()
	require.Equal(t, 0, runSpoolStatus(dir, spoolStatusFlags{top: 10, json: true, admin: noCaddy}, time.Now(), &out, &errOut), errOut.String())
	var st map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &st))
	assert.Equal(t, 1.0, st["records"])
	assert.Equal(t, 2.0, st["corrupt"])
	assert.Equal(t, 0.0, st["oldest_age_seconds"])
	assert.Nil(t, st["oldest_accepted_at"])
}
