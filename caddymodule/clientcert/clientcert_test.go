package clientcert_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/clientcert"
	"github.com/oauthgate/oauthgate/caddymodule/clientcert/certtest"
)

func TestCertificate_FromTheConnectionOrATrustedProxysHeader(t *testing.T) {
	conn := certtest.SelfSigned(t, certtest.Options{Subject: pkix.Name{CommonName: "conn"}})
	hdr := certtest.SelfSigned(t, certtest.Options{Subject: pkix.Name{CommonName: "header"}})
	escaped := url.QueryEscape(string(hdr.CertPEM)) // nginx's $ssl_client_escaped_cert
	cases := []struct {
		name      string
		tls       *certtest.Cert
		header    []string
		trusted   bool
		noHeader  bool // the source names no header
		want      *certtest.Cert
		wantError bool
	}{
		{name: "the connection's certificate", tls: conn, want: conn},
		{name: "no certificate at all", want: nil},
		{name: "the header from a trusted proxy, URL-encoded", header: []string{escaped}, trusted: true, want: hdr},
		{name: "the header from a trusted proxy, as PEM with only the newlines escaped", header: []string{strings.ReplaceAll(string(hdr.CertPEM), "\n", "%0A")}, trusted: true, want: hdr},
		{name: "the header from a trusted proxy wins over the proxy's own certificate", tls: conn, header: []string{escaped}, trusted: true, want: hdr},
		{name: "a trusted proxy without the header means no certificate", tls: conn, trusted: true, want: nil},
		{name: "the header from anyone else is ignored", tls: conn, header: []string{escaped}, want: conn},
		{name: "the header from anyone else is ignored also without a connection certificate", header: []string{escaped}, want: nil},
		{name: "a header the source does not name is ignored", noHeader: true, header: []string{escaped}, trusted: true, want: nil},
		{name: "an oversized header is an error", header: []string{strings.Repeat("A", clientcert.MaxHeaderSize+1)}, trusted: true, wantError: true},
		{name: "two headers are an error", header: []string{escaped, escaped}, trusted: true, wantError: true},
		{name: "a header without PEM is an error", header: []string{"MIIBkTCB"}, trusted: true, wantError: true},
		{name: "a header with a key instead of a certificate is an error", header: []string{url.QueryEscape(string(hdr.KeyPEM))}, trusted: true, wantError: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &clientcert.Source{Header: "X-Client-Cert", Trusted: func(*http.Request) bool { return tc.trusted }}
			if tc.noHeader {
				src.Header = ""
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.tls != nil {
				r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.tls.Leaf}}
			}
			for _, h := range tc.header {
				r.Header.Add("X-Client-Cert", h)
			}
			for range 2 { // the second time from the cache
				got, err := src.Certificate(r)
				switch {
				case tc.wantError:
					if !errors.Is(err, clientcert.ErrHeader) {
						t.Fatalf("got %v, %v; want ErrHeader", got, err)
					}
				case err != nil:
					t.Fatal(err)
				case tc.want == nil && got != nil:
					t.Fatalf("got the certificate of %q, want none", got.Leaf.Subject.CommonName)
				case tc.want != nil && (got == nil || !got.Leaf.Equal(tc.want.Leaf) || got.Thumbprint != clientcert.Thumbprint(tc.want.Leaf)):
					t.Fatalf("got %+v, want the certificate of %q", got, tc.want.Leaf.Subject.CommonName)
				}
			}
		})
	}
}

func TestMatches_OnlyTheSameThumbprint(t *testing.T) {
	a := certtest.SelfSigned(t, certtest.Options{})
	b := certtest.SelfSigned(t, certtest.Options{})
	ca := &clientcert.Cert{Leaf: a.Leaf, Thumbprint: clientcert.Thumbprint(a.Leaf)}
	switch {
	case !clientcert.Matches(clientcert.Thumbprint(a.Leaf), ca):
		t.Error("a certificate does not match its own thumbprint")
	case clientcert.Matches(clientcert.Thumbprint(b.Leaf), ca):
		t.Error("a certificate matches another's thumbprint")
	case clientcert.Matches("", ca), clientcert.Matches(clientcert.Thumbprint(a.Leaf), nil):
		t.Error("an empty thumbprint or no certificate matches")
	}
}

// FuzzParseHeader: whatever a proxy (or an attacker behind a
// misconfigured one) sends, the header parser returns a certificate or
// ErrHeader, never panics.
func FuzzParseHeader(f *testing.F) {
	c := certtest.SelfSigned(f, certtest.Options{})
	f.Add(url.QueryEscape(string(c.CertPEM)))
	f.Add(string(c.CertPEM))
	f.Add("%")
	f.Add("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	f.Fuzz(func(t *testing.T, v string) {
		cert, err := clientcert.ParseHeader(v)
		if (cert == nil) == (err == nil) {
			t.Fatalf("got %v and %v", cert, err)
		}
		if err != nil && !errors.Is(err, clientcert.ErrHeader) {
			t.Fatalf("error %v is not ErrHeader", err)
		}
	})
}
