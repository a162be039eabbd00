package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// testCaddy is the admin API of the test Caddy (caddytest's).
func testCaddy() adminFlags { return adminFlags{address: fmt.Sprintf("localhost:%d", adminPort)} }

// adminGet gets a path of the test Caddy's admin API, with the Origin Caddy wants.
func adminGet(t *testing.T, path string) (int, []byte) {
	t.Helper()
	return adminDo(t, http.MethodGet, path, "")
}

// adminDo sends a request to the test Caddy's admin API, with the Origin it checks.
func adminDo(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://localhost:%d%s", adminPort, path), strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Origin", fmt.Sprintf("http://localhost:%d", adminPort))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// TestDeadLettersAreHandledThroughTheRunningCaddy: with the Caddy that owns the spool running,
// status, list and resend go through its admin API: the resend removes the accepted events,
// updates the refused one, and the spool's later dead letters still land in the rewritten file.
func TestDeadLettersAreHandledThroughTheRunningCaddy(t *testing.T) {
	dir, ucs := deadLetterWithUCS(t, 4) // the test Caddy runs with the spool; the UCS refuses everything
	path := filepath.Join(dir, "dead-letter.jsonl")

	code, body := adminGet(t, "/ucs/spools")
	require.Equal(t, http.StatusOK, code, "%s", body)
	var spools []upstream.SpoolStatus
	require.NoError(t, json.Unmarshal(body, &spools))
	require.Len(t, spools, 1)
	assert.Equal(t, dir, spools[0].Dir)
	assert.Equal(t, path, spools[0].DeadPath)
	assert.Equal(t, 4, spools[0].Dead)

	var out, errOut bytes.Buffer
	require.Equal(t, 0, runSpoolStatus(dir, spoolStatusFlags{top: 10, admin: testCaddy()}, time.Now(), &out, &errOut), errOut.String())
	assert.Contains(t, out.String(), "dead letter  4 events in "+path)
	out.Reset()
	require.Equal(t, 0, runDeadLetterList(path, listFlags{admin: testCaddy()}, &out, &errOut), errOut.String())
	assert.Len(t, strings.Split(strings.TrimSpace(out.String()), "\n"), 4, "status and list count the same events")
	assert.Contains(t, errOut.String(), "4 dead-lettered events")
	out.Reset()
	errOut.Reset()
	require.Equal(t, 0, runDeadLetterList(path, listFlags{admin: testCaddy(), where: []string{"service=2", "operation=task.end", "exception=InvalidParameterException"}}, &out, &errOut), errOut.String())
	assert.Equal(t, 1, strings.Count(out.String(), "\n"), out.String())
	assert.Contains(t, out.String(), "/services/2/tasks/1/end")
	assert.Contains(t, errOut.String(), "1 of 4 dead-lettered events selected")

	// Without --to, the running Caddy sends to its own forward upstream, which still refuses:
	// the line stays, with one more attempt.
	out.Reset()
	errOut.Reset()
	code = runDeadLetterResend(context.Background(), path, resendFlags{where: []string{"service=4"}, admin: testCaddy()}, &out, &errOut)
	assert.Equal(t, 1, code, out.String()+errOut.String())
	assert.Contains(t, out.String(), `/services/4/tasks/1/end: 400 "Service not found" InvalidParameterException, kept (record updated)`)
	letters, _, err := upstream.ReadDeadLetters(path)
	require.NoError(t, err)
	require.Len(t, letters, 4)

	// To a UCS that takes services 1 and 3, refuses 2 with a new answer and 4 with the old one.
	var mu sync.Mutex
	sent := map[string]int{}
	fixed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent[r.URL.Path]++
		mu.Unlock()
		if strings.Contains(r.URL.Path, "/services/2/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"message":"disposition unknown","exception":"InvalidAttributeException"}`))
			return
		}
		if strings.Contains(r.URL.Path, "/services/4/") {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"message":"Service not found","exception":"InvalidParameterException"}`))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer fixed.Close()
	out.Reset()
	errOut.Reset()
	code = runDeadLetterResend(context.Background(), path, resendFlags{to: fixed.URL, where: []string{"status=400"},
		headers: []string{"Authorization: Bearer fresh"}, admin: testCaddy(), saveEvery: 1}, &out, &errOut)
	assert.Equal(t, 1, code, out.String()+errOut.String())
	assert.Contains(t, out.String(), "4 events selected: 2 accepted and removed, 2 refused again (kept, updated)")
	assert.Contains(t, out.String(), `/services/2/tasks/1/end: 422 "disposition unknown" InvalidAttributeException, kept (record updated)`)
	letters, _, err = upstream.ReadDeadLetters(path)
	require.NoError(t, err)
	require.Len(t, letters, 2)
	byService := map[string]upstream.DeadLetter{}
	for _, d := range letters {
		byService[d.Lane()] = d
	}
	require.Contains(t, byService, "2")
	assert.Equal(t, 422, byService["2"].Status)
	assert.Equal(t, "disposition unknown", byService["2"].Message())
	require.Contains(t, byService, "4")
	assert.Equal(t, 400, byService["4"].Status)
	assert.Equal(t, "Service not found", byService["4"].Message())
	assert.Equal(t, 3, byService["4"].Attempts, "the replay's, then two resends")
	assert.Equal(t, 1, sent["/genesys/1/cs/services/1/tasks/1/end"])

	// The spool goes on dead-lettering into the rewritten file.
	ucs.stop()
	resp, err := http.Post(caddyURL+"/genesys/1/cs/services/9/tasks/1/end", "application/json", strings.NewReader("{n: 9}"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	ucs.restart()
	require.Eventually(t, func() bool {
		letters, _, _ := upstream.ReadDeadLetters(path)
		return len(letters) == 3
	}, 20*time.Second, 5*time.Millisecond)
	out.Reset()
	require.Equal(t, 0, runSpoolStatus(dir, spoolStatusFlags{top: 10, admin: testCaddy()}, time.Now(), &out, &errOut), errOut.String())
	assert.Contains(t, out.String(), "dead letter  3 events in "+path)
}

// TestAdminAPIRefusesWrongRequests: each wrong request gets its status and a reason.
func TestAdminAPIRefusesWrongRequests(t *testing.T) {
	dir := t.TempDir()
	startCaddy(t, "ucs {\nforward http://127.0.0.1:1 {\nspool "+dir+"\n}\n}\nrespond 404")
	tests := []struct {
		name, method, path, body string
		status                   int
		reason                   string
	}{
		{"an unknown spool", http.MethodGet, "/ucs/dead-letter?spool=/nowhere", "", http.StatusNotFound, "no open spool"},
		{"a wrong where", http.MethodGet, "/ucs/dead-letter?where=code%3D1", "", http.StatusBadRequest, "where"},
		{"resend with GET", http.MethodGet, "/ucs/dead-letter/resend", "", http.StatusMethodNotAllowed, "use POST"},
		{"an unknown field", http.MethodPost, "/ucs/dead-letter/resend", `{"spool":"` + dir + `","wher":["status=400"]}`, http.StatusBadRequest, "wher"},
		{"a wrong URL", http.MethodPost, "/ucs/dead-letter/resend", `{"to":"ftp://x"}`, http.StatusBadRequest, "http or https"},
		{"spools with POST", http.MethodPost, "/ucs/spools", `{}`, http.StatusMethodNotAllowed, "use GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := adminDo(t, tt.method, tt.path, tt.body)
			assert.Equal(t, tt.status, status, "%s", b)
			assert.Contains(t, string(b), tt.reason)
		})
	}
}

// TestCLIRefusesTheWrongInput: the spool and dead-letter commands given something else than a
// spool or a dead letter say what they expected, and count what they could not read.
func TestCLIRefusesTheWrongInput(t *testing.T) {
	empty := t.TempDir()
	notDead := filepath.Join(t.TempDir(), "events.jsonl")
	require.NoError(t, os.WriteFile(notDead, []byte("{\"received_at\":\"x\"}\n\ngarbage\n"), 0o600))
	half := filepath.Join(t.TempDir(), "dead-letter.jsonl")
	letter := `{"failed_at":"2026-01-01T00:00:00.000Z","status":400,"attempts":1,"statuses":[400],"response":{"message":"m","exception":"E"},"record":{"accepted_at":"2026-01-01T00:00:00.000Z","lane":"7","method":"POST","path":"/genesys/1/cs/services/7/tasks/1/end","query":"","header":{},"body":{"n":1}}}`
	require.NoError(t, os.WriteFile(half, []byte(letter+"\nnot a letter\n"), 0o600))

	tests := []struct {
		name     string
		run      func(stdout, stderr io.Writer) int
		code     int
		stdout   string
		stderr   string
		noStdout bool
	}{
		{"spool status on a directory without spool files", func(o, e io.Writer) int {
			return runSpoolStatus(empty, spoolStatusFlags{top: 10, admin: noCaddy}, time.Now(), o, e)
		}, 2, "", "no spool in " + empty + ": expected spool.jsonl, cursor.jsonl, .lock", true},
		{"spool status on a file", func(o, e io.Writer) int {
			return runSpoolStatus(notDead, spoolStatusFlags{top: 10, admin: noCaddy}, time.Now(), o, e)
		}, 2, "", "is not a directory", true},
		{"list on a file with no dead letters", func(o, e io.Writer) int {
			return runDeadLetterList(notDead, listFlags{admin: noCaddy}, o, e)
		}, 2, "", "holds no dead letters: 3 lines could not be read", true},
		{"list on a directory", func(o, e io.Writer) int {
			return runDeadLetterList(empty, listFlags{admin: noCaddy}, o, e)
		}, 2, "", "expected a dead-letter file", true},
		{"list counts the unreadable lines beside the letters", func(o, e io.Writer) int {
			return runDeadLetterList(half, listFlags{admin: noCaddy}, o, e)
		}, 0, `400  POST /genesys/1/cs/services/7/tasks/1/end  "m"  E`, "1 dead-lettered event; warning: 1 line could not be read", false},
		{"list with an unknown operation", func(o, e io.Writer) int {
			return runDeadLetterList(half, listFlags{admin: noCaddy, where: []string{"operation=task.finish"}}, o, e)
		}, 2, "", "no operation task.finish; the operations are", true},
		{"resend without --to and no running Caddy", func(o, e io.Writer) int {
			return runDeadLetterResend(context.Background(), half, resendFlags{admin: noCaddy, fileOnly: true}, o, e)
		}, 2, "", "--to: the UCS base URL is needed", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			assert.Equal(t, tt.code, tt.run(&out, &errOut), "stdout %q stderr %q", out.String(), errOut.String())
			assert.Contains(t, out.String(), tt.stdout)
			assert.Contains(t, errOut.String(), tt.stderr)
			if tt.noStdout {
				assert.Empty(t, out.String())
			}
		})
	}
}

// TestSpoolStatusCountsAgreeWithListAndSayUnits: the dead-letter count of status is list's, the
// unreadable lines apart, and the text has singulars and units.
func TestSpoolStatusCountsAgreeWithListAndSayUnits(t *testing.T) {
	dir := t.TempDir()
	rec := `{"accepted_at":"2026-01-01T00:00:00.000Z","lane":"7","method":"POST","path":"/genesys/1/cs/services/7/tasks/1/end","query":"","header":{},"body":{"n":1}}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "spool.jsonl"), []byte(rec+"\n"), 0o600))
	letter := `{"failed_at":"2026-01-01T00:00:00.000Z","status":400,"attempts":1,"statuses":[400],"response":{"message":"m","exception":"E"},"record":` + rec + `}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dead-letter.jsonl"), []byte(letter+"\n"+letter+"\ntorn"), 0o600))
	now := time.Date(2026, 1, 1, 0, 0, 3, 200e6, time.UTC)

	var out, errOut bytes.Buffer
	require.Equal(t, 0, runSpoolStatus(dir, spoolStatusFlags{top: 10, admin: noCaddy}, now, &out, &errOut), errOut.String())
	assert.Contains(t, out.String(), fmt.Sprintf("waiting      1 event, %d bytes, 1 service\n", len(rec)+1))
	assert.Contains(t, out.String(), "(3.2s ago)")
	assert.Contains(t, out.String(), "7                                        1 event, oldest")
	assert.Contains(t, out.String(), "dead letter  2 events in "+filepath.Join(dir, "dead-letter.jsonl")+" (and 1 line that is not a dead letter)")
	out.Reset()
	require.Equal(t, 0, runDeadLetterList(filepath.Join(dir, "dead-letter.jsonl"), listFlags{admin: noCaddy}, &out, &errOut))
	assert.Equal(t, 2, strings.Count(out.String(), "\n"))
	assert.Contains(t, errOut.String(), "2 dead-lettered events; warning: 1 line could not be read")
}

// TestAResendThroughCaddyStopsAndSavesWhenItsClientGoes: the command closing its stream (what it
// does on SIGINT) stops the Caddy's resend after the request in flight, and what was accepted is
// gone from the file.
func TestAResendThroughCaddyStopsAndSavesWhenItsClientGoes(t *testing.T) {
	dir, _ := deadLetterWithUCS(t, 6)
	path := filepath.Join(dir, "dead-letter.jsonl")
	fixed := newUCSServer(t)
	fixed.set(func(u *ucsServer) { u.delay = 200 * time.Millisecond })
	resend := func(body string) *http.Response {
		req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://localhost:%d/ucs/dead-letter/resend", adminPort), strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Origin", fmt.Sprintf("http://localhost:%d", adminPort))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	resp := resend(`{"to":"` + fixed.url() + `"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
	require.NoError(t, err)
	var first resendEvent
	require.NoError(t, json.Unmarshal(line, &first))
	require.NotNil(t, first.Result)
	assert.Equal(t, upstream.ResendAccepted, first.Result.Outcome)
	resp.Body.Close()

	// A second resend is refused until the first has stopped and saved.
	require.Eventually(t, func() bool {
		r := resend(`{"dry_run":true}`)
		defer r.Body.Close()
		return r.StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond)
	left, _, err := upstream.ReadDeadLetters(path)
	require.NoError(t, err)
	accepted := map[string]bool{}
	for _, s := range fixed.received() {
		accepted[s.path] = true
	}
	assert.Less(t, len(accepted), 6, "the resend stopped before the end")
	assert.Equal(t, 6, len(left)+len(accepted), "each event is either accepted or still in the file")
	for _, d := range left {
		_, p, _, _, _, err := d.Request()
		require.NoError(t, err)
		assert.False(t, accepted[p], "%s was accepted, yet its line stayed", p)
	}
}

// TestResendProgressLineRedrawsOnATerminalOnly: the progress line goes to the terminal, erased
// before each printed line, and never to a pipe.
func TestResendProgressLineRedrawsOnATerminalOnly(t *testing.T) {
	var out, tty bytes.Buffer
	p := &resendPrinter{stdout: &out, progress: &tty}
	p.result(&resendResultLine{Line: 1, Method: "POST", Path: "/a", Outcome: upstream.ResendAccepted, Status: 204})
	assert.Equal(t, "\r\033[Kresending: 1 sent, 1 accepted, 0 refused, 0 unavailable", tty.String())
	p.result(&resendResultLine{Line: 2, Method: "POST", Path: "/b", Outcome: upstream.ResendRefused, Status: 400, Message: "no", Exception: "E"})
	assert.Equal(t, "line 2: POST /b: 400 \"no\" E, kept (record updated)\n", out.String())
	assert.Contains(t, tty.String(), "\r\033[K", "erased before the line")
	p.clearProgress()
	p.summary(&upstream.ResendReport{Selected: 2, Accepted: 1, Refused: 1, Kept: 1})
	assert.Contains(t, out.String(), "2 events selected: 1 accepted and removed, 1 refused again (kept, updated), 0 unavailable, 0 failed, 0 not tried; 1 line kept\n")
	assert.False(t, isTerminal(&out))
}

// TestAConfigThatCannotBeReadIsNotPassedOver: --config names the running Caddy's config; when it
// cannot be read the command says so instead of reading the files behind the operator's back.
func TestAConfigThatCannotBeReadIsNotPassedOver(t *testing.T) {
	var out, errOut bytes.Buffer
	missing := filepath.Join(t.TempDir(), "Caddyfile")
	assert.Equal(t, 2, runSpoolStatus(t.TempDir(), spoolStatusFlags{admin: adminFlags{config: missing}}, time.Now(), &out, &errOut))
	assert.Contains(t, errOut.String(), "--config")
	assert.Empty(t, out.String())
}
