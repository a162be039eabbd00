package caddymodule

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/testport"
	"github.com/ucsedge/caddy-ucs/upstream"
)

// TestTwoGatewaysBehindABalancerLoseNothing runs the README's "more than one gateway" set-up: two
// Caddy gateways, each with its own spool, behind a third Caddy whose reverse_proxy hashes the
// service id (lb_policy header on a header set from the path), in front of one UCS. During an
// outage both gateways spool; one is killed with SIGKILL mid-load and restarted; once the UCS is
// back every acknowledged event arrives, and each service's events arrive in order.
func TestTwoGatewaysBehindABalancerLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildCaddy(t)
	ucs := newUCSServer(t)
	ucs.stop()

	type gateway struct {
		dir, cfg, spool string
		port            int
	}
	var gws [2]gateway
	for i := range gws {
		g := &gws[i]
		g.dir = filepath.Join(dir, fmt.Sprintf("gw%d", i))
		require.NoError(t, os.MkdirAll(g.dir, 0o700))
		g.port = testport.Free(t)
		g.spool = filepath.Join(g.dir, "spool")
		g.cfg = writeForwardConfig(t, g.dir, g.port, ucs.url(), g.spool, "replay_backoff 5ms 100ms")
	}
	lbDir := filepath.Join(dir, "lb")
	require.NoError(t, os.MkdirAll(lbDir, 0o700))
	lbPort := testport.Free(t)
	lbCfg := filepath.Join(lbDir, "Caddyfile")
	require.NoError(t, os.WriteFile(lbCfg, fmt.Appendf(nil, `{
	admin off
	persist_config off
	storage file_system %s
}
http://127.0.0.1:%d {
	@service path_regexp sid ^/genesys/1/cs/services/([^/]+)/
	request_header @service X-UCS-Service {re.sid.1}
	reverse_proxy 127.0.0.1:%d 127.0.0.1:%d {
		lb_policy header X-UCS-Service
		header_up X-Gateway {http.reverse_proxy.upstream.hostport}
	}
}
`, filepath.Join(lbDir, "storage"), lbPort, gws[0].port, gws[1].port), 0o600))

	var cmds [2]*exec.Cmd
	for i, g := range gws {
		cmds[i] = startBinary(t, bin, g.dir, g.cfg, g.port)
	}
	lb := startBinary(t, bin, lbDir, lbCfg, lbPort)
	defer killHard(t, lb)

	client := &http.Client{Timeout: 5 * time.Second}
	// Caller g owns services g, g+8, …: each service's events are sent in order.
	urlOf := func(g, i int) string {
		return fmt.Sprintf("http://127.0.0.1:%d/genesys/1/cs/services/%d/tasks/%d/end", lbPort, 500+g+8*(i%40), i)
	}
	load := startLoadOn(client, urlOf, 100)
	load.waitAcked(t, 400)
	killHard(t, cmds[0]) // one gateway dies mid-load: its callers get errors, never a false 204
	load.waitAcked(t, 600)
	cmds[0] = startBinary(t, bin, gws[0].dir, gws[0].cfg, gws[0].port)
	load.waitAcked(t, 900)
	acked := load.stop()
	for _, g := range gws {
		st, err := upstream.InspectSpool(g.spool, "", 1, time.Now())
		require.NoError(t, err)
		assert.Positive(t, st.Records, "both gateways spooled during the outage: %s", g.spool)
	}

	ucs.set(func(u *ucsServer) { u.delay = 5 * time.Millisecond })
	ucs.restart()
	defer func() {
		for _, c := range cmds {
			killHard(t, c)
		}
	}()
	duplicates := waitAllArrive(t, ucs, acked, 120*time.Second)
	gatewayOf := map[string]string{}
	delivered := 0
	services := firstDeliveriesInOrder(t, ucs, func(s seenRequest, sid string) {
		delivered++
		gw := s.header.Get("X-Gateway")
		require.NotEmpty(t, gw)
		if prev, ok := gatewayOf[sid]; ok {
			assert.Equal(t, prev, gw, "service %s stays on one gateway", sid)
		}
		gatewayOf[sid] = gw
	})
	t.Logf("%d calls acknowledged, %d delivered, %d duplicates, %d services over 2 gateways",
		len(acked), delivered, duplicates, services)
}
