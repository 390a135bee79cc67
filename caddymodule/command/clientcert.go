package command

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

// Help of the certificate flags of "client add".
const clientCertHelp = `
Client certificates (RFC 8705; the gateway needs client_certificates in its
oauth block). --tls-subject registers the subject DN of a certificate that a
CA of trusted_ca_file issues (tls_client_auth), RFC 4514 order, most specific
first ("CN=erp,O=Example,C=DE", as openssl x509 -noout -subject -nameopt
RFC2253 prints it); --tls-san dns:NAME, uri:URI, ip:ADDRESS or email:ADDRESS
registers a subject alternative name instead. --certificate FILE registers
the client's own certificate, PEM (self_signed_tls_client_auth; repeatable,
for a rotation): its key authenticates the client, whoever signed it. Such a
client gets no generated secret: it sends its client_id and presents its
certificate. Its tokens are bound to the certificate (cnf x5t#S256).
--bound-tokens binds the tokens of a client with a secret to the certificate
it presents at the token endpoint.
`

// certFlags adds the certificate flags to the client add command.
func certFlags(c *cobra.Command) {
	c.Flags().String("tls-subject", "", "the subject DN of the client's CA-issued certificate (tls_client_auth)")
	c.Flags().String("tls-san", "", "a subject alternative name of the client's CA-issued certificate: dns:NAME, uri:URI, ip:ADDRESS or email:ADDRESS (tls_client_auth)")
	c.Flags().StringArray("certificate", nil, "a PEM file with the client's own certificate (self_signed_tls_client_auth; repeatable)")
	c.Flags().Bool("bound-tokens", false, "bind the client's tokens to the TLS client certificate it presents (RFC 8705 §3)")
}

// applyCertFlags sets the certificate fields of client from the flags,
// and reports whether the client authenticates by certificate.
func applyCertFlags(cmd *cobra.Command, client *clients.Client) (bool, error) {
	subject, _ := cmd.Flags().GetString("tls-subject")
	san, _ := cmd.Flags().GetString("tls-san")
	files, _ := cmd.Flags().GetStringArray("certificate")
	client.BoundTokens, _ = cmd.Flags().GetBool("bound-tokens")
	if n := btoi(subject != "") + btoi(san != "") + btoi(len(files) > 0); n > 1 {
		return false, usagef("--tls-subject, --tls-san and --certificate: give one")
	}
	client.TLSSubjectDN = subject
	if san != "" {
		kind, value, _ := strings.Cut(san, ":")
		switch kind {
		case "dns":
			client.TLSSANDNS = value
		case "uri":
			client.TLSSANURI = value
		case "ip":
			client.TLSSANIP = value
		case "email":
			client.TLSSANEmail = value
		default:
			return false, usagef("--tls-san %q: want dns:NAME, uri:URI, ip:ADDRESS or email:ADDRESS", san)
		}
		if value == "" {
			return false, usagef("--tls-san %q: the name is empty", san)
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return false, fmt.Errorf("--certificate: %w", err)
		}
		if _, err := clients.ParseCertificatePEM(data); err != nil {
			return false, fmt.Errorf("--certificate %s: %w", f, err)
		}
		client.Certificates = append(client.Certificates, string(data))
	}
	return subject != "" || san != "" || len(files) > 0, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// certificateText says how c authenticates by certificate, and whether
// its tokens are bound: "" for neither.
func certificateText(c *clients.Client) string {
	var s string
	switch c.CertificateMethod() {
	case clients.MethodTLSClientAuth:
		for _, n := range []struct{ kind, v string }{
			{"subject DN", c.TLSSubjectDN}, {"SAN dns", c.TLSSANDNS}, {"SAN uri", c.TLSSANURI},
			{"SAN ip", c.TLSSANIP}, {"SAN email", c.TLSSANEmail},
		} {
			if n.v != "" {
				s = fmt.Sprintf("tls_client_auth by %s %s", n.kind, printable(n.v))
			}
		}
	case clients.MethodSelfSignedTLSClientAuth:
		s = fmt.Sprintf("self_signed_tls_client_auth by %d registered certificate(s)", len(c.Certificates))
	}
	switch {
	case s != "":
		return s + "; its tokens are bound to the certificate"
	case c.BoundTokens:
		return "its tokens are bound to the certificate it presents at the token endpoint"
	}
	return ""
}
