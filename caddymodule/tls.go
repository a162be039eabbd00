package caddymodule

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ucsedge/caddy-ucs/upstream"
)

// TLS to a UCS (the forward sink, business_attributes_from and the commands that talk to a UCS)
// is reverse_proxy's: the same TLSConfig, built by its MakeTLSClientConfig, and the same option
// names, so a block copies between a reverse_proxy transport and these.

// tlsOptionNames are the Caddyfile options unmarshalTLSOption takes, for "unknown option" errors.
const tlsOptionNames = "tls_trusted_ca_certs, tls_client_auth, tls_server_name, tls_insecure_skip_verify"

// unmarshalTLSOption parses the option at the dispenser, if it is one of reverse_proxy's transport
// TLS options, into *t (created on first use), and reports whether it was. where names the block
// ("forward", "business_attributes_from") in errors. Each option is built at once with Caddy's own
// loader, so a missing or unreadable file is refused at its line.
func unmarshalTLSOption(d *caddyfile.Dispenser, where string, t **reverseproxy.TLSConfig) (bool, error) {
	opt := d.Val()
	if !strings.HasPrefix(opt, "tls_") {
		return false, nil
	}
	if *t == nil {
		*t = new(reverseproxy.TLSConfig)
	}
	c := *t
	switch opt {
	case "tls_trusted_ca_certs":
		files := d.RemainingArgs()
		if len(files) == 0 {
			return true, d.Errf("%s tls_trusted_ca_certs needs at least one PEM file", where)
		}
		if c.CARaw != nil {
			return true, d.Errf("%s tls_trusted_ca_certs is already set: list every CA file on one line", where)
		}
		c.CARaw = trustedCAFiles(files)
	case "tls_client_auth":
		args := d.RemainingArgs()
		if len(args) != 2 {
			return true, d.Errf("%s tls_client_auth needs a certificate file and its key file, e.g. tls_client_auth gateway.pem gateway-key.pem", where)
		}
		c.ClientCertificateFile, c.ClientCertificateKeyFile = args[0], args[1]
	case "tls_server_name":
		v, err := oneArg(d)
		if err != nil {
			return true, err
		}
		c.ServerName = v
	case "tls_insecure_skip_verify":
		if d.NextArg() {
			return true, d.ArgErr()
		}
		c.InsecureSkipVerify = true
	default:
		return true, d.Errf("%s: unknown TLS option %q; the TLS options are %s", where, opt, tlsOptionNames)
	}
	if _, err := loadClientTLS(c); err != nil {
		return true, d.Errf("%s %s: %v", where, opt, err)
	}
	return true, nil
}

// trustedCAFiles is the `ca` module trusting the CAs in files, what `tls_trust_pool file` writes.
// (root_ca_pem_files, what reverse_proxy's tls_trusted_ca_certs still writes, is deprecated and
// warned about at every start; both are accepted in JSON.)
func trustedCAFiles(files []string) json.RawMessage {
	return caddyconfig.JSONModuleObject(caddytls.FileCAPool{TrustedCACertPEMFiles: files}, "provider", "file", nil)
}

// clientTLS builds the client TLS config t describes with reverse_proxy's MakeTLSClientConfig;
// nil t (or one that changes nothing) gives nil: Go's defaults, the system's roots. where names
// the block in the error and in the warning logged when verification is off.
func clientTLS(ctx caddy.Context, t *reverseproxy.TLSConfig, where string, logger *zap.Logger) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	// LoadModule clears the raw CA module of the struct it loads from: a copy keeps the config whole
	// for the next reload and for refresherKey.
	c := *t
	cfg, err := c.MakeTLSClientConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("ucs: %s tls: %w", where, err)
	}
	if t.InsecureSkipVerify {
		logger.Warn("TLS certificate verification of the UCS is off (tls_insecure_skip_verify): anyone on the path can read and change the events; use it only for testing",
			zap.String("directive", where))
	}
	return cfg, nil
}

// loadClientTLS is MakeTLSClientConfig outside a running Caddy (the Caddyfile adapter, the
// commands).
func loadClientTLS(t *reverseproxy.TLSConfig) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	ctx, cancel := offlineContext()
	defer cancel()
	c := *t
	return c.MakeTLSClientConfig(ctx)
}

// offlineContext is a Caddy context without a running config, enough to load a CA pool module.
func offlineContext() (caddy.Context, context.CancelFunc) {
	return caddy.NewContext(caddy.Context{Context: context.Background()})
}

// provisionAttributesTLS builds the TLS config of every business_attributes_from, before
// buildSets starts their refreshers.
func (h *Handler) provisionAttributesTLS(ctx caddy.Context, logger *zap.Logger) error {
	build := func(from *AttributesFrom, where string) (err error) {
		if from != nil {
			from.tlsConfig, err = clientTLS(ctx, from.TLS, where+"business_attributes_from", logger)
		}
		return err
	}
	if err := build(h.BusinessAttributesFrom, ""); err != nil {
		return err
	}
	for _, t := range h.Tenants {
		if err := build(t.BusinessAttributesFrom, "tenant "+t.IDs[0]+": "); err != nil {
			return err
		}
	}
	return nil
}

// withTLSCause puts the cause of a TLS failure in front of its error ("TLS unknown authority: …").
func withTLSCause(err error) error {
	if c := upstream.TLSCause(err); c != "" {
		return fmt.Errorf("TLS %s: %w", c, err)
	}
	return err
}

// transportWith is Go's default transport with cfg as its TLS client config; nil cfg gives nil
// (http.DefaultTransport).
func transportWith(cfg *tls.Config) http.RoundTripper {
	if cfg == nil {
		return nil
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	return t
}

// tlsIdentity is what makes two TLS configs the same for a component kept across reloads: the
// config and the contents of the files it names, so a certificate renewed in place counts as a
// change.
func tlsIdentity(t *reverseproxy.TLSConfig) string {
	if t == nil {
		return ""
	}
	h := sha256.New()
	b, _ := json.Marshal(t)
	h.Write(b)
	//lint:ignore SA1019 deprecated, yet a JSON config may still name its CA files there
	files := append([]string{t.ClientCertificateFile, t.ClientCertificateKeyFile}, t.RootCAPEMFiles...)
	var pool caddytls.FileCAPool
	if json.Unmarshal(t.CARaw, &pool) == nil {
		files = append(files, pool.TrustedCACertPEMFiles...)
	}
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil {
			h.Write(data)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// needsHTTPS refuses TLS options where no URL uses https: they would be ignored.
func needsHTTPS(t *reverseproxy.TLSConfig, where string, urls ...string) error {
	if t == nil {
		return nil
	}
	for _, u := range urls {
		if strings.HasPrefix(strings.ToLower(u), "https://") {
			return nil
		}
	}
	return fmt.Errorf("ucs: %s: the tls options need an https:// URL", where)
}

// tlsFlags are the TLS options of the commands that talk to a UCS, as flags.
type tlsFlags struct {
	ca             []string
	cert, key, sni string
}

func (f *tlsFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringArrayVar(&f.ca, "ca", nil, "a PEM file of a CA to trust for the UCS's certificate, instead of the system's (may repeat)")
	fl.StringVar(&f.cert, "cert", "", "a PEM client certificate to present to the UCS (with --key)")
	fl.StringVar(&f.key, "key", "", "the PEM key of --cert")
	fl.StringVar(&f.sni, "server-name", "", "the name the UCS's certificate must be valid for, when it is not the URL's host")
}

// config is the TLSConfig the flags describe, nil when none is set.
func (f tlsFlags) config() *reverseproxy.TLSConfig {
	if len(f.ca) == 0 && f.cert == "" && f.key == "" && f.sni == "" {
		return nil
	}
	t := &reverseproxy.TLSConfig{ClientCertificateFile: f.cert, ClientCertificateKeyFile: f.key, ServerName: f.sni}
	if len(f.ca) > 0 {
		t.CARaw = trustedCAFiles(f.ca)
	}
	return t
}

// build is the client TLS config of the flags for a command sending to url; nil when no flag is set.
func (f tlsFlags) build(url string) (*tls.Config, error) {
	t := f.config()
	if t == nil {
		return nil, nil
	}
	if needsHTTPS(t, "", url) != nil {
		return nil, fmt.Errorf("--ca, --cert, --key and --server-name need an https:// URL, got %q", url)
	}
	cfg, err := loadClientTLS(t)
	if err != nil {
		return nil, fmt.Errorf("--ca, --cert, --key: %w", err)
	}
	return cfg, nil
}
