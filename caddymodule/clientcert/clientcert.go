// Package clientcert finds the TLS client certificate of a request (RFC
// 8705): the one of the TLS connection, or behind a TLS-terminating proxy
// the one a trusted proxy put in a request header; and computes the
// thumbprint that binds a token to it (x5t#S256, RFC 8705 §3.1).
package clientcert

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"sync"
)

// MaxHeaderSize bounds the certificate header from a proxy: a client
// certificate is one to two KiB of DER, 3 KiB of PEM, and three times
// that URL-encoded at worst.
const MaxHeaderSize = 16 << 10

// ErrHeader is a certificate header that is too long or holds no
// certificate: the request is malformed, not unauthenticated.
var ErrHeader = errors.New("the client certificate header is too long or holds no PEM certificate")

// Thumbprint is the x5t#S256 of cert: base64url (no padding) of the
// SHA-256 of its DER encoding (RFC 8705 §3.1).
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Matches reports whether thumbprint is cert's, in constant time.
func Matches(thumbprint string, cert *Cert) bool {
	return cert != nil && subtle.ConstantTimeCompare([]byte(thumbprint), []byte(cert.Thumbprint)) == 1
}

// Cert is a request's client certificate and its thumbprint.
type Cert struct {
	// Leaf is the client's certificate.
	Leaf *x509.Certificate
	// Intermediates are the other certificates the client sent, for
	// chain verification; none from a proxy header.
	Intermediates []*x509.Certificate
	// Thumbprint is Thumbprint(Leaf).
	Thumbprint string
}

// Source finds requests' client certificates. The zero Source reads the
// TLS connection's only. Safe for concurrent use.
type Source struct {
	// Header, if not "", names the request header in which a
	// TLS-terminating proxy passes the client's certificate: PEM,
	// URL-encoded (nginx's $ssl_client_escaped_cert; the Cert= value of
	// Envoy's x-forwarded-client-cert, put in a header of its own). It is
	// read only from a trusted
	// proxy, and then instead of the TLS connection's certificate, which
	// is the proxy's.
	Header string
	// Trusted reports whether the request comes from a trusted proxy;
	// nil means from none, so the header is never read.
	Trusted func(*http.Request) bool

	once  sync.Once
	mu    sync.Mutex
	byTLS map[*x509.Certificate]*Cert // the TLS connection's leaf: the same pointer for every request of a connection
	byHdr map[string]*Cert            // a proxy's header, as sent
}

// tlsCacheSize and headerCacheSize bound the two caches; when full, one
// starts over. Connections and distinct clients in flight at once are
// far fewer. A header is kept only if it held a certificate, at most 16
// KiB: the header cache holds at most 16 MiB.
const (
	tlsCacheSize    = 4096
	headerCacheSize = 1024
)

// Certificate returns the request's client certificate, nil if it has
// none. The error is ErrHeader for a bad header from a trusted proxy.
// A header from anyone else is ignored, whatever it holds: a client could
// otherwise claim any certificate it has seen.
func (s *Source) Certificate(r *http.Request) (*Cert, error) {
	if s.Header != "" && s.Trusted != nil && s.Trusted(r) {
		vals := r.Header.Values(s.Header)
		switch {
		case len(vals) == 1:
			return s.fromHeader(vals[0])
		case len(vals) > 1:
			return nil, ErrHeader
		}
		// A trusted proxy that sends no header saw no certificate; the
		// proxy's own TLS certificate is not the client's.
		return nil, nil
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, nil
	}
	return s.fromTLS(r.TLS.PeerCertificates), nil
}

func (s *Source) init() {
	s.byTLS = make(map[*x509.Certificate]*Cert)
	s.byHdr = make(map[string]*Cert)
}

// fromTLS returns the connection's certificate, its thumbprint computed
// once per connection: a hash of a KiB on every request would be most of
// what checking a bound token costs.
func (s *Source) fromTLS(chain []*x509.Certificate) *Cert {
	s.once.Do(s.init)
	leaf := chain[0]
	s.mu.Lock()
	c := s.byTLS[leaf]
	s.mu.Unlock()
	if c != nil {
		return c
	}
	c = &Cert{Leaf: leaf, Intermediates: chain[1:], Thumbprint: Thumbprint(leaf)}
	s.mu.Lock()
	if len(s.byTLS) >= tlsCacheSize {
		clear(s.byTLS)
	}
	s.byTLS[leaf] = c
	s.mu.Unlock()
	return c
}

func (s *Source) fromHeader(v string) (*Cert, error) {
	if len(v) > MaxHeaderSize {
		return nil, ErrHeader
	}
	s.once.Do(s.init)
	s.mu.Lock()
	c := s.byHdr[v]
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	leaf, err := ParseHeader(v)
	if err != nil {
		return nil, err
	}
	c = &Cert{Leaf: leaf, Thumbprint: Thumbprint(leaf)}
	s.mu.Lock()
	if len(s.byHdr) >= headerCacheSize {
		clear(s.byHdr)
	}
	s.byHdr[v] = c
	s.mu.Unlock()
	return c, nil
}

// ParseHeader reads a certificate header's value: one PEM CERTIFICATE
// block, URL-encoded as nginx ($ssl_client_escaped_cert) and Envoy
// (x-forwarded-client-cert's Cert=) send it.
func ParseHeader(v string) (*x509.Certificate, error) {
	if len(v) > MaxHeaderSize {
		return nil, ErrHeader
	}
	// PathUnescape first: a "+" of the base64 that a proxy left
	// unescaped is a "+", not a space. A value escaped as a query (the
	// space of "BEGIN CERTIFICATE" as "+", a "+" as %2B) decodes only the
	// other way.
	block := decodePEM(v, url.PathUnescape)
	if block == nil {
		block = decodePEM(v, url.QueryUnescape)
	}
	if block == nil {
		return nil, ErrHeader
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, ErrHeader
	}
	return cert, nil
}

// decodePEM unescapes v and returns its first PEM block if that is a
// CERTIFICATE.
func decodePEM(v string, unescape func(string) (string, error)) *pem.Block {
	dec, err := unescape(v)
	if err != nil {
		return nil
	}
	block, _ := pem.Decode([]byte(dec))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil
	}
	return block
}
