package clients

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// The client authentication methods by certificate (RFC 8705 §2), as
// token_endpoint_auth_method names them.
const (
	MethodTLSClientAuth           = "tls_client_auth"
	MethodSelfSignedTLSClientAuth = "self_signed_tls_client_auth"
)

// ErrCertificate is the one error for a certificate that does not
// authenticate a client: unknown client, disabled client, a chain to no
// trusted CA, another subject, another key. The endpoint tells the client
// no more than it does for a wrong secret.
var ErrCertificate = errors.New("client authentication by certificate failed")

// maxCertificates bounds a client's registered self-signed certificates:
// two during a rotation, a few more for several machines.
const maxCertificates = 8

// CertificateMethod is how the client authenticates by certificate:
// MethodTLSClientAuth when it names a subject, MethodSelfSignedTLSClientAuth
// when it registered certificates, "" when it does not.
func (c *Client) CertificateMethod() string {
	switch {
	case c.tlsSubject != nil:
		return MethodTLSClientAuth
	case len(c.certKeys) > 0:
		return MethodSelfSignedTLSClientAuth
	}
	return ""
}

// tlsSubject is the one RFC 8705 §2.1.2 name a client registered.
type tlsSubject struct {
	kind  string // the metadata name, e.g. tls_client_auth_san_dns
	value string // normalized for kind
	ip    net.IP
}

// validateCertificates checks the certificate fields and fills the
// derived ones.
func (c *Client) validateCertificates() error {
	c.tlsSubject, c.certKeys = nil, nil
	names := []struct{ kind, value string }{
		{"tls_client_auth_subject_dn", c.TLSSubjectDN},
		{"tls_client_auth_san_dns", c.TLSSANDNS},
		{"tls_client_auth_san_uri", c.TLSSANURI},
		{"tls_client_auth_san_ip", c.TLSSANIP},
		{"tls_client_auth_san_email", c.TLSSANEmail},
	}
	for _, n := range names {
		if n.value == "" {
			continue
		}
		if c.tlsSubject != nil {
			// RFC 8705 §2.1.2: exactly one, so that which name
			// authenticates is never in doubt.
			return fmt.Errorf("%s and %s: register one name of the certificate", c.tlsSubject.kind, n.kind)
		}
		s := &tlsSubject{kind: n.kind, value: n.value}
		switch n.kind {
		case "tls_client_auth_subject_dn":
			s.value = NormalizeDN(n.value)
			if s.value == "" {
				return fmt.Errorf("tls_client_auth_subject_dn %q: not a distinguished name like CN=sender,O=Example,C=DE", n.value)
			}
		case "tls_client_auth_san_ip":
			if s.ip = net.ParseIP(n.value); s.ip == nil {
				return fmt.Errorf("tls_client_auth_san_ip %q: not an IP address", n.value)
			}
		}
		c.tlsSubject = s
	}
	if len(c.Certificates) > maxCertificates {
		return fmt.Errorf("tls_client_certificates: %d certificates, at most %d are allowed", len(c.Certificates), maxCertificates)
	}
	if len(c.Certificates) > 0 && c.tlsSubject != nil {
		return fmt.Errorf("tls_client_certificates and %s: a client authenticates by its own certificates (self_signed_tls_client_auth) or by a CA's (tls_client_auth), not both", c.tlsSubject.kind)
	}
	for i, p := range c.Certificates {
		cert, err := ParseCertificatePEM([]byte(p))
		if err != nil {
			return fmt.Errorf("tls_client_certificates: entry %d: %w", i+1, err)
		}
		c.certKeys = append(c.certKeys, cert.RawSubjectPublicKeyInfo)
	}
	if c.BoundTokens && c.CertificateMethod() == "" && len(c.Secrets) == 0 {
		return errors.New("tls_client_certificate_bound_access_tokens: the client has no way to authenticate")
	}
	return nil
}

// ParseCertificatePEM reads the one CERTIFICATE block of data.
func ParseCertificatePEM(data []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate (-----BEGIN CERTIFICATE-----)")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("more than one PEM block; give the client's certificate alone")
	}
	return x509.ParseCertificate(block.Bytes)
}

// CertificateCheck is what AuthenticateCertificate needs besides the
// certificate.
type CertificateCheck struct {
	// Roots are the CAs a tls_client_auth certificate must chain to; nil
	// means none, so no such client can authenticate.
	Roots *x509.CertPool
	// Now is when the chain must be valid; zero means time.Now().
	Now time.Time
}

// AuthenticateCertificate returns the client with ID id if it is enabled,
// registered for certificate authentication, and leaf (sent with
// intermediates) authenticates it: for tls_client_auth, a chain to one
// of opt.Roots for client authentication, valid now, and the registered
// name; for self_signed_tls_client_auth, the public key of one of the
// registered certificates (its dates are not checked: the key is what
// was registered). Every failure is ErrCertificate.
func (r *Registry) AuthenticateCertificate(id string, leaf *x509.Certificate, intermediates []*x509.Certificate, opt CertificateCheck) (*Client, error) {
	if leaf == nil {
		return nil, ErrCertificate
	}
	// The chain is verified whatever the client, so that the time to
	// refuse does not tell whether a tls_client_auth client of that ID
	// exists.
	chained := false
	if opt.Roots != nil {
		inter := x509.NewCertPool()
		for _, ic := range intermediates {
			inter.AddCert(ic)
		}
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots: opt.Roots, Intermediates: inter, CurrentTime: opt.Now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		chained = err == nil
	}
	c := r.byID[id]
	if c == nil || c.Disabled {
		return nil, ErrCertificate
	}
	switch c.CertificateMethod() {
	case MethodSelfSignedTLSClientAuth:
		for _, k := range c.certKeys {
			if bytes.Equal(k, leaf.RawSubjectPublicKeyInfo) {
				return c, nil
			}
		}
	case MethodTLSClientAuth:
		if chained && c.tlsSubject.matches(leaf) {
			return c, nil
		}
	}
	return nil, ErrCertificate
}

// matches reports whether cert carries the registered name.
func (s *tlsSubject) matches(cert *x509.Certificate) bool {
	switch s.kind {
	case "tls_client_auth_subject_dn":
		return strings.EqualFold(NormalizeDN(subjectDN(cert)), s.value)
	case "tls_client_auth_san_dns":
		for _, n := range cert.DNSNames {
			if strings.EqualFold(strings.TrimSuffix(n, "."), strings.TrimSuffix(s.value, ".")) {
				return true
			}
		}
	case "tls_client_auth_san_uri":
		for _, u := range cert.URIs {
			if u.String() == s.value {
				return true
			}
		}
	case "tls_client_auth_san_ip":
		for _, ip := range cert.IPAddresses {
			if ip.Equal(s.ip) {
				return true
			}
		}
	case "tls_client_auth_san_email":
		for _, e := range cert.EmailAddresses {
			if e == s.value {
				return true
			}
		}
	}
	return false
}

// NormalizeDN puts an RFC 4514 distinguished name into the form in
// which two writings of the same name are equal but for letter case:
// spaces around "," "+" and "=" dropped, attribute types upper-cased
// ("cn=a, o=B" is "CN=a,O=B"). The order of the RDNs counts: RFC 4514
// writes the most specific first, as Go and `openssl x509 -nameopt
// RFC2253` do (OpenSSL's default "/C=DE/O=…" is the reverse). "" when s
// is not of the form type=value,….
func NormalizeDN(s string) string {
	var rdns []string
	for _, rdn := range splitUnescaped(s, ',') {
		var avas []string
		for _, ava := range splitUnescaped(rdn, '+') {
			typ, val, ok := strings.Cut(ava, "=")
			typ, val = strings.TrimSpace(typ), trimUnescaped(val)
			if !ok || typ == "" || val == "" {
				return ""
			}
			avas = append(avas, strings.ToUpper(typ)+"="+val)
		}
		rdns = append(rdns, strings.Join(avas, "+"))
	}
	return strings.Join(rdns, ",")
}

// subjectDN is cert's subject in RFC 4514 form, its RDNs in the
// certificate's own order (reversed, as RFC 4514 writes them) and each
// attribute where the certificate has it: what openssl -nameopt RFC2253
// prints, and what an operator copies. pkix.Name.String would reorder
// the attributes and merge repeated ones (two OUs, as SAP's client
// certificates have) into one RDN, so a DN copied from the certificate
// would never match.
func subjectDN(cert *x509.Certificate) string {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(cert.RawSubject, &seq); err != nil || len(rest) > 0 {
		return ""
	}
	return seq.String()
}

// splitUnescaped splits s at each sep not escaped with a backslash.
func splitUnescaped(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// trimUnescaped trims spaces, except an escaped trailing one ("a\ ").
func trimUnescaped(s string) string {
	s = strings.TrimLeft(s, " ")
	for strings.HasSuffix(s, " ") && !strings.HasSuffix(s, `\ `) {
		s = s[:len(s)-1]
	}
	return s
}
