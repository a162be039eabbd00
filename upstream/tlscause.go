package upstream

import (
	"crypto/x509"
	"errors"
	"net"
	"strings"

	"go.uber.org/zap"
)

// The TLS failures an operator fixes in the config, as TLSCause names them.
const (
	TLSUnknownAuthority = "unknown authority: the UCS's certificate is not signed by a trusted CA"
	TLSWrongName        = "wrong name: the UCS's certificate is not valid for the name dialled"
	TLSInvalidCert      = "invalid certificate: the UCS's certificate is expired or not valid yet"
	TLSClientCertRefuse = "client certificate refused: the UCS did not accept the client certificate (or its absence)"
)

// TLSCause names why a TLS connection to an upstream failed, one of the TLS* constants, or ""
// when err is not such a failure. Go's own text ("x509: certificate signed by unknown
// authority", "remote error: tls: certificate required") stays in err; this is the short
// verdict for the log line and the error message.
func TLSCause(err error) string {
	if err == nil {
		return ""
	}
	var unknown x509.UnknownAuthorityError
	var name x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return TLSUnknownAuthority
	case errors.As(err, &name):
		return TLSWrongName
	case errors.As(err, &invalid):
		return TLSInvalidCert
	case clientCertRefused(err):
		return TLSClientCertRefuse
	}
	return ""
}

// clientCertRefused recognises the alert a server sends about the client's certificate. crypto/tls
// keeps its alert type unexported, so the alert is recognised by its text; under TLS 1.3 it comes
// after the client's side of the handshake, when the answer is read.
func clientCertRefused(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return false
	}
	switch strings.TrimPrefix(op.Err.Error(), "tls: ") {
	case "certificate required", "bad certificate", "unknown certificate authority", "unknown certificate",
		"unsupported certificate", "revoked certificate", "expired certificate", "access denied":
		return true
	}
	return false
}

// TLSField is a log field "tls" holding TLSCause(err), or no field when err is not a TLS failure.
func TLSField(err error) zap.Field {
	if c := TLSCause(err); c != "" {
		return zap.String("tls", c)
	}
	return zap.Skip()
}
