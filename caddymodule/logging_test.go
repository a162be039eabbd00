package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// provisioned returns h provisioned outside a server, logging to an observer.
func provisioned(t *testing.T, h *Handler) *observer.ObservedLogs {
	ctx, cancel := newTestContext(t)
	t.Cleanup(cancel)
	require.NoError(t, h.Provision(ctx))
	t.Cleanup(func() { _ = h.Cleanup() })
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	return logs
}

func TestLogsNameRepairsAndMissesButNeverAttachedData(t *testing.T) {
	h := &Handler{BusinessAttributes: []string{attrsFile}, UnknownNames: "pass"}
	logs := provisioned(t, h)
	const secret = "card-4111111111111111"
	body := `{note: '` + secret + `', "media_type": "pigeon"}`
	r := httptest.NewRequest(http.MethodPost, "/genesys/1/cs/services/42/tasks/7/end", strings.NewReader(body))
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

	require.NoError(t, h.ServeHTTP(httptest.NewRecorder(), r, next))

	debug := logs.FilterMessage("event normalised").All()
	require.Len(t, debug, 1)
	assert.Equal(t, zapcore.DebugLevel, debug[0].Level)
	assert.Contains(t, debug[0].ContextMap()["first_repairs"], "unquoted_key@1")
	warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
	require.Len(t, warns, 1)
	assert.Equal(t, map[string]any{"field": "media_type", "name": "pigeon"}, warns[0].ContextMap())
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if e.Level > zapcore.DebugLevel {
				assert.NotContains(t, fmt.Sprint(v), secret, "field %s of %q", k, e.Message)
			}
		}
	}
}

func TestTheDebugLineNamesTheTenant(t *testing.T) {
	h := &Handler{Tenants: []*Tenant{{IDs: []string{"101", "Acme"}, BusinessAttributes: []string{attrsFile}}}}
	logs := provisioned(t, h)
	r := httptest.NewRequest(http.MethodPost, "/genesys/1/cs/services/42/tasks/7/end", strings.NewReader(`{"media_type":"email"}`))
	r.Header.Set("ContactCenterId", "acme")
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	require.NoError(t, h.ServeHTTP(httptest.NewRecorder(), r, next))
	debug := logs.FilterMessage("event normalised").All()
	require.Len(t, debug, 1)
	assert.Equal(t, "101", debug[0].ContextMap()["tenant"])
}

// A refused call is one info line: what and why, never the body. A flood
// is sampled (refusalBurst lines a window) and the next line written says
// how many were left out.
func TestARefusedCallIsOneSampledInfoLine(t *testing.T) {
	clock := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	old := now
	now = func() time.Time { return clock }
	t.Cleanup(func() { now = old })
	h := &Handler{}
	logs := provisioned(t, h)
	const secret = "card-4111111111111111"
	refuse := func() {
		r := httptest.NewRequest(http.MethodPost, "/genesys/1/cs/services/42/tasks/x7/end", strings.NewReader(`{note: '`+secret+`'}`))
		repl := caddy.NewReplacer()
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		w := httptest.NewRecorder()
		require.NoError(t, h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })))
		require.Equal(t, http.StatusBadRequest, w.Code)
		msg, _ := repl.GetString("http.ucs.message")
		assert.Contains(t, w.Body.String(), msg, "{http.ucs.message} is the message the caller got")
	}

	for range refusalBurst + 5 {
		refuse()
	}
	lines := logs.FilterMessage("event refused").All()
	require.Len(t, lines, refusalBurst, "the rest of the window is counted, not written")
	first := lines[0]
	assert.Equal(t, zapcore.InfoLevel, first.Level)
	fields := first.ContextMap()
	assert.Equal(t, "task.end", fields["operation"])
	assert.Equal(t, "42", fields["service_id"])
	assert.Equal(t, int64(http.StatusBadRequest), fields["status"])
	assert.NotEmpty(t, fields["exception"])
	assert.Contains(t, fields["message"], "task_id")
	assert.NotContains(t, fields, "dropped")

	clock = clock.Add(refusalWindow)
	refuse()
	lines = logs.FilterMessage("event refused").All()
	require.Len(t, lines, refusalBurst+1)
	assert.Equal(t, int64(5), lines[refusalBurst].ContextMap()["dropped"], "the lines left out are counted on the next")
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			assert.NotContains(t, fmt.Sprint(v), secret, "field %s of %q", k, e.Message)
		}
	}
}
