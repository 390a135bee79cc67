package authserver_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/bruteforce"
	"github.com/oauthgate/oauthgate/caddymodule/clientcert"
	"github.com/oauthgate/oauthgate/caddymodule/clientcert/certtest"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

// certFixture is the token endpoint with client certificates on: a
// tls_client_auth client "erp" (SAN DNS erp.example, by the test CA), a
// self_signed_tls_client_auth client "edge", and "sender" (a secret)
// made to want bound tokens.
type certFixture struct {
	*fixture
	ca, erp, edge, stranger *certtest.Cert
	limiter                 *countingLimiter
}

func newCertFixture(t *testing.T) *certFixture {
	f := &certFixture{fixture: newFixture(t)}
	f.ca = certtest.NewCA(t, "client CA")
	f.erp = f.ca.Issue(t, certtest.Options{Subject: pkix.Name{CommonName: "erp"}, DNS: []string{"erp.example"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}) // the fixture's clock
	f.edge = certtest.SelfSigned(t, certtest.Options{Subject: pkix.Name{CommonName: "edge"}})
	f.stranger = certtest.NewCA(t, "stranger CA").Issue(t, certtest.Options{Subject: pkix.Name{CommonName: "erp"}, DNS: []string{"erp.example"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	senderSecret, senderStored := clients.NewSecret()
	f.senderSecret = senderSecret
	f.srv.State.(*state).clients = registry(t, nil,
		clients.Client{ID: senderID, Name: "Sender", Secrets: []clients.Secret{senderStored}, BoundTokens: true},
		clients.Client{ID: "erp", Name: "ERP", TLSSANDNS: "erp.example"},
		clients.Client{ID: "edge", Name: "Edge", Certificates: []string{string(f.edge.CertPEM)}},
	)
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.Leaf)
	f.srv.Certificates, f.srv.ClientCAs = new(clientcert.Source), roots
	f.limiter = &countingLimiter{Limiter: bruteforce.New(bruteforce.Config{PerAddress: bruteforce.Rate{Failures: 100, Per: time.Minute}})}
	f.srv.Limiter = f.limiter
	return f
}

// doTLS sends a form POST to path over TLS with cert (nil: none).
func (f *certFixture) doTLS(path string, form url.Values, cert *certtest.Cert, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		r.Header[k] = v
	}
	r.TLS = &tls.ConnectionState{}
	if cert != nil {
		r.TLS.PeerCertificates = []*x509.Certificate{cert.Leaf}
	}
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, r)
	return rec
}

func TestToken_AClientAuthenticatesByCertificateAndItsTokenIsBoundToIt(t *testing.T) {
	f := newCertFixture(t)
	cc := url.Values{"grant_type": {"client_credentials"}}
	for _, tc := range []struct {
		name       string
		id         string
		cert       *certtest.Cert
		header     http.Header
		status     int
		code       string
		wantX5t    *certtest.Cert
		wantTakens int
	}{
		{name: "tls_client_auth: a certificate of the CA with the registered name", id: "erp", cert: f.erp, status: 200, wantX5t: f.erp},
		{name: "self_signed_tls_client_auth: the registered certificate", id: "edge", cert: f.edge, status: 200, wantX5t: f.edge},
		{name: "the same name from another CA is refused and counted", id: "erp", cert: f.stranger, status: 401, code: "invalid_client", wantTakens: 1},
		{name: "no certificate is refused and counted", id: "erp", status: 401, code: "invalid_client", wantTakens: 1},
		{name: "another client's certificate is refused", id: "edge", cert: f.erp, status: 401, code: "invalid_client", wantTakens: 1},
		{name: "a secret client without its secret is refused", id: senderID, cert: f.erp, status: 401, code: "invalid_client", wantTakens: 1},
		{name: "a client wanting bound tokens gets one bound to the certificate it presents", id: senderID, cert: f.edge,
			header: basic(senderID, f.senderSecret), status: 200, wantX5t: f.edge},
		{name: "a client wanting bound tokens without a certificate is refused", id: senderID,
			header: basic(senderID, f.senderSecret), status: 400, code: "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.limiter.takes = 0
			form := cc
			if tc.header == nil {
				form = url.Values{"grant_type": {"client_credentials"}, "client_id": {tc.id}}
			}
			rec := f.doTLS(authserver.TokenPath+"?token_format=jwt", form, tc.cert, tc.header)
			if tc.status != 200 {
				tokenError(t, rec, tc.status, tc.code)
				if f.limiter.takes != tc.wantTakens {
					t.Errorf("the limiter took %d failures, want %d", f.limiter.takes, tc.wantTakens)
				}
				return
			}
			tok := okToken(t, rec)
			if tok.TokenType != "Bearer" {
				t.Errorf("token_type %q, want Bearer (RFC 8705 §3)", tok.TokenType)
			}
			c := f.verify(t, tok.AccessToken)
			if want := clientcert.Thumbprint(tc.wantX5t.Leaf); c.Confirmation.X5tS256 != want {
				t.Errorf("cnf x5t#S256 %q, want %q", c.Confirmation.X5tS256, want)
			}
			if f.limiter.takes != 0 {
				t.Errorf("a success asked the limiter %d times", f.limiter.takes)
			}
		})
	}
}

func TestIntrospect_AnOpaqueCertificateBoundTokenCarriesItsBinding(t *testing.T) {
	f := newCertFixture(t)
	rec := f.doTLS(authserver.TokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {"erp"}, "token_format": {"opaque"}}, f.erp, nil)
	tok := okToken(t, rec)
	// The resource server introspects as a client of its own: here erp.
	rec = f.doTLS(authserver.IntrospectPath, url.Values{"client_id": {"erp"}, "token": {tok.AccessToken}}, f.erp, nil)
	var got struct {
		Active bool `json:"active"`
		Cnf    struct {
			X5t string `json:"x5t#S256"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || !got.Active {
		t.Fatalf("introspection %d %s", rec.Code, rec.Body)
	}
	if want := clientcert.Thumbprint(f.erp.Leaf); got.Cnf.X5t != want {
		t.Errorf("cnf x5t#S256 %q, want %q", got.Cnf.X5t, want)
	}
}

func TestMetadata_NamesTheCertificateMethodsWhenCertificatesAreOn(t *testing.T) {
	for _, tc := range []struct {
		name      string
		certs     bool
		cas       bool
		want      []string
		wantBound bool
	}{
		{"off", false, false, []string{"client_secret_basic", "client_secret_post", "private_key_jwt"}, false},
		{"on without CAs: self-signed only", true, false, []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "self_signed_tls_client_auth"}, true},
		{"on with CAs", true, true, []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.certs {
				f.srv.Certificates = new(clientcert.Source)
			}
			if tc.cas {
				f.srv.ClientCAs = x509.NewCertPool()
			}
			rec := f.do(t, request{method: http.MethodGet, target: authserver.MetadataPath})
			var m struct {
				Methods []string `json:"token_endpoint_auth_methods_supported"`
				Bound   bool     `json:"tls_client_certificate_bound_access_tokens"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			if strings.Join(m.Methods, " ") != strings.Join(tc.want, " ") || m.Bound != tc.wantBound {
				t.Errorf("got %q bound=%v, want %q bound=%v", m.Methods, m.Bound, tc.want, tc.wantBound)
			}
		})
	}
}
