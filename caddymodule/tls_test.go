package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ucsedge/caddy-ucs/internal/testpki"
	"github.com/ucsedge/caddy-ucs/upstream"
)

// newTLSUCS is a recording UCS on https, its certificate signed by the test CA; with
// requireClientCert it refuses a client without a certificate of that CA.
func newTLSUCS(t *testing.T, pki *testpki.PKI, requireClientCert bool) (*ucsServer, string) {
	u := &ucsServer{t: t}
	srv := pki.Server(t, http.HandlerFunc(u.serve), requireClientCert)
	return u, srv.URL
}

// startCaddyLogging is startCaddy with Caddy's log written as JSON lines to the returned file.
func startCaddyLogging(t *testing.T, site string) (*caddytest.Tester, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "caddy.log")
	newSitePort(t)
	global := strings.Replace(globalOptions, "grace_period 1ns\n",
		"grace_period 1ns\n\tlog {\n\t\toutput file "+path+"\n\t\tformat json\n\t}\n", 1)
	return startCaddyWith(t, global, site), path
}

// logLines are the JSON log lines of file with message msg.
func logLines(t *testing.T, file, msg string) []map[string]any {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			out = append(out, line)
		}
	}
	return out
}

const refusedMsg = "upstream unavailable; event refused (no spool configured, or an operation that needs the server's answer)"

func TestForwardOverTLSTrustsTheConfiguredCAAndNamesWhatFailed(t *testing.T) {
	pki := testpki.New(t, "UCS test CA")
	tests := []struct {
		name    string
		mutual  bool   // the UCS requires a client certificate
		options string // in the forward block; <ca>, <cert> and <key> are the test PKI's files
		status  int
		cause   string // the log line's tls field
		goText  string // Go's own words, also in the log line
	}{
		{"the configured CA is trusted", false, "tls_trusted_ca_certs <ca>", http.StatusNoContent, "", ""},
		{"without the CA the call is 502 naming the unknown authority", false, "", http.StatusBadGateway,
			upstream.TLSUnknownAuthority, "x509: certificate signed by unknown authority"},
		{"a server name the certificate lacks is 502 naming the wrong name", false, "tls_trusted_ca_certs <ca>\n\t\t\ttls_server_name ucs.example.com",
			http.StatusBadGateway, upstream.TLSWrongName, "x509: certificate is valid for localhost, ucs.test, not ucs.example.com"},
		{"tls_server_name chooses the name checked", false, "tls_trusted_ca_certs <ca>\n\t\t\ttls_server_name ucs.test", http.StatusNoContent, "", ""},
		{"a client certificate is presented to a UCS that requires one", true, "tls_trusted_ca_certs <ca>\n\t\t\ttls_client_auth <cert> <key>",
			http.StatusNoContent, "", ""},
		{"without a client certificate the UCS refuses and the call is 502", true, "tls_trusted_ca_certs <ca>", http.StatusBadGateway,
			upstream.TLSClientCertRefuse, "tls: certificate required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ucs, url := newTLSUCS(t, pki, tt.mutual)
			options := strings.NewReplacer("<ca>", pki.CAFile, "<cert>", pki.ClientCertFile, "<key>", pki.ClientKeyFile).Replace(tt.options)
			tester, log := startCaddyLogging(t, fmt.Sprintf("ucs {\n\tforward %s {\n\t\ttimeout 5s\n\t\t\t%s\n\t}\n}\nrespond 404", url, options))

			sendEvent(t, tester, 1, tt.status)

			if tt.cause == "" {
				require.Len(t, ucs.received(), 1)
				assert.Equal(t, 1, ucs.received()[0].n())
				return
			}
			assert.Empty(t, ucs.received())
			var lines []map[string]any
			require.Eventually(t, func() bool { lines = logLines(t, log, refusedMsg); return len(lines) == 1 },
				5*time.Second, 10*time.Millisecond, "one log line for the refused event")
			assert.Equal(t, "WARN", strings.ToUpper(fmt.Sprint(lines[0]["level"])))
			assert.Equal(t, tt.cause, lines[0]["tls"])
			assert.Contains(t, lines[0]["cause"], tt.goText)
		})
	}
}

func TestSpooledEventsWaitOnTLSAndAreDeliveredOnceTheCAIsConfigured(t *testing.T) {
	fastReplay(t)
	pki := testpki.New(t, "UCS test CA")
	ucs, url := newTLSUCS(t, pki, false)
	dir := t.TempDir()
	site := "ucs {\n\tforward " + url + " {\n\t\ttimeout 2s\n\t\tspool " + dir + "\n\t\tmax_attempts 1\n\t\t%s\n\t}\n}\nrespond 404"
	tester := startCaddy(t, fmt.Sprintf(site, ""))

	for n := range 3 {
		sendEvent(t, tester, n, http.StatusNoContent)
	}
	// The replay keeps failing on the unknown CA: the events wait, none is dead-lettered even with
	// max_attempts 1, since TLS failures are unavailability.
	time.Sleep(300 * time.Millisecond)
	st, err := upstream.InspectSpool(dir, "", 10, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 3, st.Records)
	assert.Zero(t, st.Dead)
	assert.Empty(t, ucs.received())

	startCaddy(t, fmt.Sprintf(site, "tls_trusted_ca_certs "+pki.CAFile)) // the reload

	require.Eventually(t, func() bool { return len(ucs.received()) == 3 }, 10*time.Second, 10*time.Millisecond)
	for i, s := range ucs.received() {
		assert.Equal(t, i, s.n(), "in the order they were accepted")
	}
	// The UCS has the events before the replay records them done.
	require.Eventually(t, func() bool {
		st, err = upstream.InspectSpool(dir, "", 10, time.Now())
		return err == nil && st.Records == 0
	}, 10*time.Second, 10*time.Millisecond, "the spool empties once the UCS has the events")
	assert.Zero(t, st.Dead)
}

func TestBusinessAttributesFromAPrivateCAWithAClientCertificate(t *testing.T) {
	pki := testpki.New(t, "UCS test CA")
	ucs := &fakeUCS{body: metaV1}
	ucs.srv = pki.Server(t, ucs, true)
	rec := newRecorder(t)
	tester := startCaddy(t, fmt.Sprintf(`
	ucs {
		business_attributes_from %s {
			cache %s
			tls_trusted_ca_certs %s
			tls_client_auth %s %s
		}
	}
	reverse_proxy %s`, ucs.srv.URL, filepath.Join(t.TempDir(), "attrs.json"), pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile, rec.addr()))

	resp, _ := post(t, tester, taskEndURL, []byte(`{"media_type":"email","disposition":"resolved"}`))

	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Contains(t, string(rec.lastBody()), `"media_type":1003,"disposition":2101`)
}

func TestAttributeFetchErrorsNameTheTLSFailure(t *testing.T) {
	pki := testpki.New(t, "UCS test CA")
	plain := &fakeUCS{body: metaV1}
	plain.srv = pki.Server(t, plain, false)
	mutual := &fakeUCS{body: metaV1}
	mutual.srv = pki.Server(t, mutual, true)
	tests := []struct {
		name   string
		url    string
		tls    *reverseproxy.TLSConfig
		errors []string
	}{
		{"no CA", plain.srv.URL, nil, []string{"TLS " + upstream.TLSUnknownAuthority, "x509: certificate signed by unknown authority"}},
		{"wrong name", plain.srv.URL, &reverseproxy.TLSConfig{CARaw: trustedCAFiles([]string{pki.CAFile}), ServerName: "ucs.example.com"},
			[]string{"TLS " + upstream.TLSWrongName}},
		{"no client certificate", mutual.srv.URL, &reverseproxy.TLSConfig{CARaw: trustedCAFiles([]string{pki.CAFile})},
			[]string{"TLS " + upstream.TLSClientCertRefuse, "tls: certificate required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := newTestContext(t)
			defer cancel()
			h := &Handler{BusinessAttributesFrom: &AttributesFrom{URL: tt.url, TLS: tt.tls, Cache: filepath.Join(t.TempDir(), "none.json")}}
			require.NoError(t, h.provisionAttributesTLS(ctx, caddy.Log()))

			err := h.buildSets()

			h.releaseSets()
			require.Error(t, err)
			for _, want := range tt.errors {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

func TestUCSCommandsTakeTheTLSFlags(t *testing.T) {
	pki := testpki.New(t, "UCS test CA")
	ucs := &fakeUCS{body: metaV1}
	ucs.srv = pki.Server(t, ucs, true)
	trusted := tlsFlags{ca: []string{pki.CAFile}, cert: pki.ClientCertFile, key: pki.ClientKeyFile}
	tests := []struct {
		name   string
		url    string
		tls    tlsFlags
		code   int
		stderr string
	}{
		{"--ca, --cert and --key reach a UCS of a private CA that requires a client certificate", ucs.srv.URL, trusted, 0, ""},
		{"--server-name names the certificate's host", ucs.srv.URL, tlsFlags{ca: trusted.ca, cert: trusted.cert, key: trusted.key, sni: "ucs.test"}, 0, ""},
		{"without --ca the fetch names the unknown authority", ucs.srv.URL, tlsFlags{}, 1, "TLS " + upstream.TLSUnknownAuthority},
		{"without --cert the fetch names the refusal", ucs.srv.URL, tlsFlags{ca: trusted.ca}, 1, "TLS " + upstream.TLSClientCertRefuse},
		{"a missing --ca file is a usage error", ucs.srv.URL, tlsFlags{ca: []string{"/no/such/ca.pem"}}, 2, "reading /no/such/ca.pem"},
		{"--cert without --key is a usage error", ucs.srv.URL, tlsFlags{cert: pki.ClientCertFile}, 2, "client_certificate_file specified without client_certificate_key_file"},
		{"TLS flags with an http URL are a usage error", "http://127.0.0.1:1", trusted, 2, "need an https:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer

			code := runAttributes(attributesFlags{from: tt.url, timeout: 5 * time.Second, tls: tt.tls}, &stdout, &stderr)

			assert.Equal(t, tt.code, code, stderr.String())
			assert.Contains(t, stderr.String(), tt.stderr)
			if tt.code == 0 {
				assert.Regexp(t, `"email"\s+1003`, stdout.String())
			}
		})
	}
}

func TestDeadLetterResendTakesTheTLSFlags(t *testing.T) {
	// A copy: the spool's own file is the running Caddy's (--file-only refuses it).
	live, err := os.ReadFile(filepath.Join(deadLetterOf(t, 1), "dead-letter.jsonl"))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "dead-letter-copy.jsonl")
	require.NoError(t, os.WriteFile(path, live, 0o600))
	pki := testpki.New(t, "UCS test CA")
	ucs, url := newTLSUCS(t, pki, true)
	var out, errOut bytes.Buffer

	code := runDeadLetterResend(context.Background(), path, resendFlags{to: url, fileOnly: true, timeout: 5 * time.Second,
		tls: tlsFlags{ca: []string{pki.CAFile}}}, &out, &errOut)

	assert.Equal(t, 1, code, errOut.String())
	assert.Contains(t, out.String(), "TLS "+upstream.TLSClientCertRefuse)
	assert.Contains(t, out.String(), "0 accepted and removed")
	assert.Empty(t, ucs.received())

	out.Reset()
	code = runDeadLetterResend(context.Background(), path, resendFlags{to: url, fileOnly: true, timeout: 5 * time.Second,
		tls: tlsFlags{ca: []string{pki.CAFile}, cert: pki.ClientCertFile, key: pki.ClientKeyFile}}, &out, &errOut)

	assert.Equal(t, 0, code, out.String()+errOut.String())
	assert.Contains(t, out.String(), "1 accepted and removed, 0 refused again (kept, updated), 0 unavailable, 0 failed, 0 not tried; 0 lines kept")
	assert.Len(t, ucs.received(), 1)
}

func TestTLSOptionsAdaptToReverseProxysTLSObject(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "UCS test CA")
	options := fmt.Sprintf(`tls_trusted_ca_certs %s
			tls_client_auth %s %s
			tls_server_name ucs.test
			tls_insecure_skip_verify`, pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile)
	tlsJSON := fmt.Sprintf(`{"ca": {"pem_files": [%q], "provider": "file"}, "client_certificate_file": %q,
		"client_certificate_key_file": %q, "insecure_skip_verify": true, "server_name": "ucs.test"}`,
		pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile)
	tests := []struct {
		name      string
		caddyfile string
		json      string
	}{
		{"in forward", fmt.Sprintf(":8080 {\n\tucs {\n\t\tforward https://ucs:8443 {\n\t\t\t%s\n\t\t}\n\t}\n}", options),
			adaptRoute(`{"forward": {"tls": ` + tlsJSON + `, "urls": ["https://ucs:8443"]}, "handler": "ucs"}`)},
		{"in business_attributes_from", fmt.Sprintf(":8080 {\n\tucs {\n\t\tbusiness_attributes_from https://ucs:8443 {\n\t\t\t%s\n\t\t}\n\t}\n}", options),
			adaptRoute(`{"business_attributes_from": {"tls": ` + tlsJSON + `, "url": "https://ucs:8443"}, "handler": "ucs"}`)},
		{"in a tenant's business_attributes_from", fmt.Sprintf(":8080 {\n\tucs {\n\t\ttenant 101 {\n\t\t\tbusiness_attributes_from https://ucs:8443 {\n\t\t\t%s\n\t\t\t}\n\t\t}\n\t}\n}", options),
			adaptRoute(`{"handler": "ucs", "tenants": [{"business_attributes_from": {"tls": ` + tlsJSON + `, "url": "https://ucs:8443"}, "ids": ["101"]}]}`)},
		{"reverse_proxy's transport writes the same object", fmt.Sprintf(":8080 {\n\treverse_proxy https://ucs:8443 {\n\t\ttransport http {\n\t\t\t%s\n\t\t}\n\t}\n}",
			strings.Replace(options, "tls_trusted_ca_certs", "tls_trust_pool file", 1)),
			adaptRoute(`{"handler": "reverse_proxy", "transport": {"protocol": "http", "tls": ` + tlsJSON + `}, "upstreams": [{"dial": "ucs:8443"}]}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assertAdapts(t, tt.caddyfile, tt.json) })
	}
}

func TestTLSOptionErrorsNameTheOptionAndTheLine(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t, "UCS test CA")
	tests := []struct {
		name    string
		block   string // inside forward https://ucs (line 4 is its first option) or as given
		where   string
		err     string
		urlLine string // "" for forward https://ucs, else the block's opening line
	}{
		{"a missing CA file", "tls_trusted_ca_certs /no/such/ca.pem", "Caddyfile:4",
			"forward tls_trusted_ca_certs: failed to load ca module: loading module 'file': provision tls.ca_pool.source.file: reading /no/such/ca.pem: open /no/such/ca.pem: no such file or directory", ""},
		{"a missing CA file in business_attributes_from", "tls_trusted_ca_certs " + pki.CAFile + " /no/such/ca.pem", "Caddyfile:4",
			"business_attributes_from tls_trusted_ca_certs: failed to load ca module", "business_attributes_from https://ucs"},
		{"a missing client certificate", "tls_client_auth /no/such/cert.pem " + pki.ClientKeyFile, "Caddyfile:4",
			"forward tls_client_auth: loading client certificate key pair: open /no/such/cert.pem: no such file or directory", ""},
		{"a key that is not the certificate's", "tls_client_auth " + pki.ClientCertFile + " " + pki.CAFile, "Caddyfile:4",
			"forward tls_client_auth: loading client certificate key pair", ""},
		{"tls_trusted_ca_certs without a file", "tls_trusted_ca_certs", "Caddyfile:4", "forward tls_trusted_ca_certs needs at least one PEM file", ""},
		{"tls_trusted_ca_certs twice", "tls_trusted_ca_certs " + pki.CAFile + "\n\t\t\ttls_trusted_ca_certs " + pki.CAFile, "Caddyfile:5",
			"forward tls_trusted_ca_certs is already set: list every CA file on one line", ""},
		{"tls_client_auth with one file", "tls_client_auth " + pki.ClientCertFile, "Caddyfile:4",
			"forward tls_client_auth needs a certificate file and its key file", ""},
		{"tls_server_name without a name", "tls_server_name", "Caddyfile:4", "tls_server_name needs a value", ""},
		{"tls_insecure_skip_verify with a value", "tls_insecure_skip_verify yes", "Caddyfile:4", "wrong argument count", ""},
		{"an unknown TLS option", "tls_renegotiation once", "Caddyfile:4",
			`forward: unknown TLS option "tls_renegotiation"; the TLS options are tls_trusted_ca_certs, tls_client_auth, tls_server_name, tls_insecure_skip_verify`, ""},
		{"TLS options with only http URLs", "tls_server_name ucs.test", "Caddyfile:5", "forward: the tls options need an https:// URL", "forward http://ucs http://ucs2"},
		{"TLS options with an http business_attributes_from", "tls_server_name ucs.test", "Caddyfile:5",
			"business_attributes_from http://ucs: the tls options need an https:// URL", "business_attributes_from http://ucs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open := tt.urlLine
			if open == "" {
				open = "forward https://ucs"
			}
			cf := fmt.Sprintf(":8080 {\n\tucs {\n\t\t%s {\n\t\t\t%s\n\t\t}\n\t}\n}", open, tt.block)

			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), map[string]any{"filename": "Caddyfile"})

			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
			assert.Contains(t, err.Error(), tt.where)
		})
	}
}

func TestTLSConfigErrorsFailValidation(t *testing.T) {
	if testing.Short() {
		t.Skip("provisions Caddy's http app")
	}
	pki := testpki.New(t, "UCS test CA")
	tests := []struct {
		name    string
		handler string
		err     string
	}{
		{"forward with a missing CA file", `"forward": {"urls": ["https://ucs"], "tls": {"ca": {"provider": "file", "pem_files": ["/no/such/ca.pem"]}}}`,
			"ucs: forward tls: failed to load ca module: loading module 'file': provision tls.ca_pool.source.file: reading /no/such/ca.pem"},
		{"forward with reverse_proxy's deprecated root_ca_pem_files missing", `"forward": {"urls": ["https://ucs"], "tls": {"root_ca_pem_files": ["/no/such/ca.pem"]}}`,
			"ucs: forward tls: failed reading ca cert: open /no/such/ca.pem"},
		{"forward with a client certificate but no key", fmt.Sprintf(`"forward": {"urls": ["https://ucs"], "tls": {"client_certificate_file": %q}}`, pki.ClientCertFile),
			"ucs: forward tls: client_certificate_file specified without client_certificate_key_file"},
		{"forward with tls and only http URLs", `"forward": {"urls": ["http://ucs"], "tls": {"server_name": "ucs.test"}}`,
			"ucs: forward: the tls options need an https:// URL"},
		{"business_attributes_from with a missing client certificate",
			`"business_attributes_from": {"url": "https://ucs", "tls": {"client_certificate_file": "/no/c.pem", "client_certificate_key_file": "/no/k.pem"}}`,
			"ucs: business_attributes_from tls: loading client certificate key pair: open /no/c.pem"},
		{"a tenant's business_attributes_from with a missing CA file",
			`"tenants": [{"ids": ["101"], "business_attributes_from": {"url": "https://ucs", "tls": {"ca": {"provider": "file", "pem_files": ["/no/ca.pem"]}}}}]`,
			"ucs: tenant 101: business_attributes_from tls: failed to load ca module"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg caddy.Config
			require.NoError(t, json.Unmarshal([]byte(`{"apps":{"http":{"servers":{"srv0":{"listen":[":8080"],"routes":[{"handle":[{"handler":"ucs",`+
				tt.handler+`}]}]}}}}}`), &cfg))

			err := caddy.Validate(&cfg)

			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}

func TestInsecureSkipVerifyIsWarnedAboutAtStart(t *testing.T) {
	pki := testpki.New(t, "UCS test CA")
	ucs, url := newTLSUCS(t, pki, false)
	h, logs := forwardHandlerWith(t, &ForwardSink{URLs: []string{url}, TLS: &reverseproxy.TLSConfig{InsecureSkipVerify: true}})

	warned := logs.FilterMessageSnippet("TLS certificate verification of the UCS is off").All()
	require.Len(t, warned, 1)
	assert.Equal(t, "forward", warned[0].ContextMap()["directive"])
	assert.Equal(t, http.StatusNoContent, serveEvent(t, h, `{"n":1}`), "an unknown CA is not checked")
	assert.Len(t, ucs.received(), 1)
}

func TestACertificateRenewedInPlaceIsANewRefresherOnReload(t *testing.T) {
	pki := testpki.New(t, "UCS test CA")
	from := &AttributesFrom{URL: "https://ucs", TLS: &reverseproxy.TLSConfig{CARaw: trustedCAFiles([]string{pki.CAFile})}}
	before := refresherKey(from, "")
	ctx, cancel := newTestContext(t)
	defer cancel()
	_, err := clientTLS(ctx, from.TLS, "business_attributes_from", caddy.Log())
	require.NoError(t, err)
	assert.Equal(t, before, refresherKey(from, ""), "building the TLS config leaves the config as it was")

	renewed, err := os.ReadFile(testpki.New(t, "renewed CA").CAFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(pki.CAFile, renewed, 0o600))

	assert.NotEqual(t, before, refresherKey(from, ""), "the same config with a renewed file")
}
