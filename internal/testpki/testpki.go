// Package testpki makes the throwaway private CA a test of TLS to a UCS needs: a CA, a server
// certificate for 127.0.0.1 and localhost, and a client certificate, written as PEM files.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a private CA and the certificates it signed, on disk in a test's temporary directory.
type PKI struct {
	CAFile         string // the CA certificate (PEM): what tls_trusted_ca_certs names
	ClientCertFile string // a client certificate signed by the CA (PEM)
	ClientKeyFile  string // its key (PEM)
	Pool           *x509.CertPool
	server         tls.Certificate
	expired        tls.Certificate // the server's, but no longer valid
}

// New makes a CA named name and its certificates in a new temporary directory.
func New(t testing.TB, name string) *PKI {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER := sign(t, caTmpl, caTmpl, caKey, caKey)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{Pool: x509.NewCertPool()}
	p.Pool.AddCert(ca)
	p.CAFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)

	serverKey := newKey(t)
	serverCert := func(serial int64, notAfter time.Time) tls.Certificate {
		der := sign(t, &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: "ucs.test"},
			NotBefore:    notAfter.Add(-25 * time.Hour),
			NotAfter:     notAfter,
			DNSNames:     []string{"localhost", "ucs.test"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}, ca, serverKey, caKey)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: serverKey}
	}
	p.server = serverCert(2, time.Now().Add(24*time.Hour))
	p.expired = serverCert(4, time.Now().Add(-time.Minute))

	clientKey := newKey(t)
	clientDER := sign(t, &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "gateway"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, clientKey, caKey)
	p.ClientCertFile = writePEM(t, dir, "client.pem", "CERTIFICATE", clientDER)
	keyDER, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ClientKeyFile = writePEM(t, dir, "client-key.pem", "EC PRIVATE KEY", keyDER)
	return p
}

// ServerTLS is a server config presenting the CA's certificate for 127.0.0.1 and localhost; with
// requireClientCert the server refuses a client without a certificate signed by the CA.
func (p *PKI) ServerTLS(requireClientCert bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.server}}
	if requireClientCert {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, p.Pool
	}
	return c
}

// Server starts an https httptest.Server with ServerTLS(requireClientCert), closed with the test.
func (p *PKI) Server(t testing.TB, h http.Handler, requireClientCert bool) *httptest.Server {
	return start(t, h, p.ServerTLS(requireClientCert))
}

// ExpiredServer is Server with a server certificate of the CA that expired a minute ago.
func (p *PKI) ExpiredServer(t testing.TB, h http.Handler) *httptest.Server {
	return start(t, h, &tls.Config{Certificates: []tls.Certificate{p.expired}})
}

func start(t testing.TB, h http.Handler, config *tls.Config) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = config
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the test's point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) []byte {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t testing.TB, dir, name, kind string, der []byte) string {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
