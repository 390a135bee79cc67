package caddymodule

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/clientcert"
	"github.com/oauthgate/oauthgate/caddymodule/guard"
)

// ClientCertificates turns on TLS client certificates (RFC 8705): clients
// that authenticate at the token endpoint by certificate
// (tls_client_auth, self_signed_tls_client_auth) and tokens bound to a
// certificate, which the guards accept only over a connection with that
// certificate.
//
// The gateway reads the certificate of the TLS connection: the site's
// `tls { client_auth { mode request } }` (or require) asks clients for
// one. Caddy need not verify it (with a trust_pool it would refuse
// self-signed certificates): for tls_client_auth, the gateway verifies
// the chain to TrustedCAFiles itself. Behind a TLS-terminating proxy,
// Header names the request header the proxy puts the certificate in.
type ClientCertificates struct {
	// TrustedCAFiles are PEM files of the CAs a tls_client_auth client's
	// certificate must chain to (with the ClientAuth extended key usage,
	// valid now). Without them only self_signed_tls_client_auth clients
	// authenticate by certificate.
	TrustedCAFiles []string `json:"trusted_ca_files,omitempty"`

	// Header names the request header in which a TLS-terminating proxy
	// passes the client's certificate, as URL-encoded PEM (nginx:
	// `proxy_set_header X-Client-Cert $ssl_client_escaped_cert;`). It is
	// read only from an address in the server's trusted_proxies, and then
	// instead of the connection's certificate; from anyone else it is
	// ignored. At most 16 KiB; a longer or unreadable one is 400.
	Header string `json:"header,omitempty"`
}

// provisionCertificates reads the CA files and makes the certificate
// source the handlers share.
func (a *App) provisionCertificates() error {
	cc := a.ClientCertificates
	if cc == nil {
		return nil
	}
	if cc.Header != "" && http.CanonicalHeaderKey(cc.Header) == "Authorization" {
		return errors.New("oauth: client_certificates: header must not be Authorization")
	}
	if len(cc.TrustedCAFiles) > 0 {
		a.clientCAs = x509.NewCertPool()
		for _, f := range cc.TrustedCAFiles {
			data, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("oauth: client_certificates: %w", err)
			}
			if !a.clientCAs.AppendCertsFromPEM(data) {
				return fmt.Errorf("oauth: client_certificates: %s holds no PEM certificate", f)
			}
		}
	}
	a.certs = &clientcert.Source{Header: cc.Header, Trusted: fromTrustedProxy}
	return nil
}

// fromTrustedProxy reports whether Caddy found the request's peer in the
// server's trusted_proxies.
func fromTrustedProxy(r *http.Request) bool {
	t, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return t
}

// serverCertificates and guardCertificates are the certificate source as
// the handlers take it: a nil interface when client certificates are off.
func (a *App) serverCertificates() authserver.CertificateSource {
	if a.certs == nil {
		return nil
	}
	return a.certs
}

func (a *App) guardCertificates() guard.CertificateSource {
	if a.certs == nil {
		return nil
	}
	return a.certs
}

// certificateHeader is the header a trusted proxy puts the client's
// certificate in; "" when none is configured.
func (a *App) certificateHeader() string {
	if a.certs == nil {
		return ""
	}
	return a.certs.Header
}
