package upstream

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ucsedge/caddy-ucs/internal/testpki"
)

func TestTLSFailuresNameTheirCause(t *testing.T) {
	pki := testpki.New(t, "UCS test CA")
	clientCert, err := tls.LoadX509KeyPair(pki.ClientCertFile, pki.ClientKeyFile)
	require.NoError(t, err)
	plain := pki.Server(t, &recorder{}, false)
	mutual := pki.Server(t, &recorder{}, true)
	expired := pki.ExpiredServer(t, &recorder{})
	tests := []struct {
		name   string
		url    string
		tls    *tls.Config
		status int
		cause  string
		goText string
	}{
		{"trusted CA delivers", plain.URL, &tls.Config{RootCAs: pki.Pool}, http.StatusNoContent, "", ""},
		{"no CA configured: unknown authority", plain.URL, nil, 0, TLSUnknownAuthority, "x509: certificate signed by unknown authority"},
		{"another name than the certificate's", plain.URL, &tls.Config{RootCAs: pki.Pool, ServerName: "ucs.example.com"}, 0, TLSWrongName,
			"x509: certificate is valid for localhost, ucs.test, not ucs.example.com"},
		{"an expired certificate", expired.URL, &tls.Config{RootCAs: pki.Pool}, 0, TLSInvalidCert, "x509: certificate has expired or is not yet valid"},
		{"client certificate presented", mutual.URL, &tls.Config{RootCAs: pki.Pool, Certificates: []tls.Certificate{clientCert}}, http.StatusNoContent, "", ""},
		{"no client certificate: refused", mutual.URL, &tls.Config{RootCAs: pki.Pool}, 0, TLSClientCertRefuse, "tls: certificate required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewForwarder(ForwardOptions{URLs: []*url.URL{mustURL(t, tt.url)}, Timeout: 5 * time.Second, TLS: tt.tls})
			require.NoError(t, err)
			defer f.CloseIdleConnections()

			resp, err := f.Forward(context.Background(), taskEnd(1))

			if tt.cause == "" {
				require.NoError(t, err)
				assert.Equal(t, tt.status, resp.Status)
				return
			}
			var unavailable *UnavailableError
			require.ErrorAs(t, err, &unavailable, "a TLS failure is unavailability, never an answer")
			assert.Equal(t, tt.cause, TLSCause(err))
			assert.Contains(t, err.Error(), tt.goText)
		})
	}
	assert.Empty(t, TLSCause(&UnavailableError{URL: "http://x", Status: 503}), "not a TLS failure")
}

func TestReplayFailingOnTLSWaitsAndDeadLettersNothing(t *testing.T) {
	pki := testpki.New(t, "UCS test CA")
	sim := &ucsSim{budget: -1}
	srv := pki.Server(t, sim, false)
	dir := t.TempDir()
	core, logs := observer.New(zapcore.DebugLevel)
	untrusting, err := NewForwarder(ForwardOptions{URLs: []*url.URL{mustURL(t, srv.URL)}, Timeout: 2 * time.Second})
	require.NoError(t, err)
	s := openTestSpool(t, dir, srv.URL, func(o *SpoolOptions) {
		o.Forwarder, o.Logger = untrusting, zap.New(core)
		o.Replay.MaxAttempts = 1 // one counted answer would dead-letter: TLS failures must not count
	})

	submitSpooled(t, s, 0, 3)
	require.Eventually(t, func() bool { return logs.FilterMessage("replay delivery failed; retrying").Len() >= 5 },
		10*time.Second, 5*time.Millisecond, "the replay keeps trying")
	n, _ := s.Depth()
	assert.Equal(t, 3, n, "every event still waits")
	dead, _ := os.ReadFile(filepath.Join(dir, "dead-letter.jsonl"))
	assert.Empty(t, dead, "nothing was dead-lettered")
	start := logs.FilterMessage("upstream unavailable; spooling events").All()
	require.Len(t, start, 1)
	assert.Equal(t, TLSUnknownAuthority, start[0].ContextMap()["tls"])
	assert.Contains(t, start[0].ContextMap()["cause"], "x509: certificate signed by unknown authority")

	// The CA is configured (a config reload hands the spool a new forwarder): the backlog drains.
	trusting, err := NewForwarder(ForwardOptions{URLs: []*url.URL{mustURL(t, srv.URL)}, Timeout: 2 * time.Second,
		TLS: &tls.Config{RootCAs: pki.Pool}})
	require.NoError(t, err)
	s.SetForwarder(trusting)
	waitDrained(t, s)
	assert.Equal(t, events(0, 3), sim.received())
}
