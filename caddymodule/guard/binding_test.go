package guard_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/clientcert"
	"github.com/oauthgate/oauthgate/caddymodule/clientcert/certtest"
	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

const bindingPolicy = testPolicy + `  - path: /http/payments/*
    roles: [Orders.send]
    binding: [mtls]
  - path: /http/dpop/*
    roles: [Orders.send]
    binding: [dpop]
  - path: /http/either/*
    roles: [Orders.send]
    binding: [dpop, mtls]
`

// checkTLS is check over a TLS connection with the client certificate
// cert (nil: none).
func (f *fixture) checkTLS(path string, cert *certtest.Cert, authorization ...string) outcome {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.URL.Path = path
	for _, a := range authorization {
		r.Header.Add("Authorization", a)
	}
	r.TLS = &tls.ConnectionState{}
	if cert != nil {
		r.TLS.PeerCertificates = []*x509.Certificate{cert.Leaf}
	}
	d := f.guard.Check(r)
	if d.Err != nil {
		return outcome{nil, d.Err}
	}
	return outcome{d, nil}
}

func TestCheck_ACertificateBoundTokenNeedsItsCertificate(t *testing.T) {
	mine := certtest.SelfSigned(t, certtest.Options{Subject: pkix.Name{CommonName: "sender"}})
	other := certtest.SelfSigned(t, certtest.Options{Subject: pkix.Name{CommonName: "sender"}})
	bound := func(c *tokens.Claims) { c.Confirmation.X5tS256 = clientcert.Thumbprint(mine.Leaf) }
	cases := []struct {
		name       string
		noSource   bool
		cert       *certtest.Cert
		edit       func(*tokens.Claims)
		path       string
		wantDesc   string // "" means allowed
		wantDPoP   bool   // a DPoP challenge is added
		wantReason string
	}{
		{name: "with its certificate it is allowed", cert: mine, edit: bound, path: "/http/orders/1"},
		{name: "with no certificate it is refused", edit: bound, path: "/http/orders/1", wantDesc: "presents none"},
		{name: "with another certificate of the same subject it is refused", cert: other, edit: bound, path: "/http/orders/1", wantDesc: "presents another one"},
		{name: "a guard that reads no certificates refuses it", noSource: true, cert: mine, edit: bound, path: "/http/orders/1", wantDesc: "presents none"},
		{name: "a DPoP-bound token is refused without a DPoP checker", cert: mine, path: "/http/orders/1",
			edit: func(c *tokens.Claims) { c.Confirmation.JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" }, wantDesc: "does not check DPoP proofs"},
		{name: "a bearer token with a certificate is still a bearer token", cert: mine, path: "/http/orders/1"},
		{name: "a rule demanding mtls refuses a bearer token", cert: mine, path: "/http/payments/1", wantDesc: "requires a sender-constrained token", wantReason: guard.ReasonBindingRequired},
		{name: "a rule demanding mtls takes a certificate-bound token", cert: mine, edit: bound, path: "/http/payments/1"},
		{name: "a rule demanding dpop refuses a certificate-bound token, with a DPoP challenge", cert: mine, edit: bound, path: "/http/dpop/1", wantDesc: "DPoP-bound", wantDPoP: true, wantReason: guard.ReasonBindingRequired},
		{name: "a rule taking either takes a certificate-bound token", cert: mine, edit: bound, path: "/http/either/1"},
		{name: "a rule taking either refuses a bearer token naming both", cert: mine, path: "/http/either/1", wantDesc: "a DPoP-bound one (RFC 9449), sent as Authorization: DPoP with a DPoP proof, or one bound to the TLS client certificate", wantDPoP: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.state.policy = mustPolicy(t, bindingPolicy)
			if !tc.noSource {
				f.guard.Certificates = new(clientcert.Source)
			}
			o := f.checkTLS(tc.path, tc.cert, "Bearer "+f.token(t, sender, tc.edit))
			if tc.wantDesc == "" {
				wantAllowed(t, o)
				return
			}
			e := wantErr(t, o, http.StatusUnauthorized, oautherr.CodeInvalidToken)
			if !strings.Contains(e.Description, tc.wantDesc) {
				t.Errorf("description %q does not say %q", e.Description, tc.wantDesc)
			}
			if tc.wantDPoP != (len(e.DPoPAlgs) > 0) {
				t.Errorf("DPoP challenge algs %q, want one: %v", e.DPoPAlgs, tc.wantDPoP)
			}
			if tc.wantReason != "" && e.Reason != tc.wantReason {
				t.Errorf("reason %q, want %q", e.Reason, tc.wantReason)
			}
		})
	}
}

func TestCheck_NoTokenOnARuleTakingDPoPGetsADPoPChallenge(t *testing.T) {
	f := newFixture(t)
	f.state.policy = mustPolicy(t, bindingPolicy)
	o := f.checkTLS("/http/either/1", nil)
	if o.err == nil || o.err.Code != "" || !slices.Equal(o.err.DPoPAlgs, guard.DefaultDPoPAlgs) {
		t.Fatalf("got %+v, want the bare challenge with DPoP algs", o.err)
	}
	o = f.checkTLS("/http/payments/1", nil)
	if o.err == nil || len(o.err.DPoPAlgs) != 0 {
		t.Fatalf("got %+v, want the bare challenge without DPoP on an mtls-only rule", o.err)
	}
}

// BenchmarkCheck_CertificateBoundToken is a cached, certificate-bound
// token over the connection's certificate, beside the same request with
// a bearer token: the difference is what the binding costs.
func BenchmarkCheck_CertificateBoundToken(b *testing.B) {
	cert := certtest.SelfSigned(b, certtest.Options{Subject: pkix.Name{CommonName: "sender"}})
	for _, bc := range []struct {
		name  string
		bound bool
	}{{"bearer", false}, {"certificate-bound", true}} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b)
			f.state.verifier.v.(*tokenstate.Verifier).JWT.Cache = tokens.NewCache(0)
			f.guard.Certificates = new(clientcert.Source)
			tok := f.token(b, sender, func(c *tokens.Claims) {
				if bc.bound {
					c.Confirmation.X5tS256 = clientcert.Thumbprint(cert.Leaf)
				}
			})
			r := httptest.NewRequest(http.MethodPost, "/http/orders/1", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}}
			var d guard.Decision
			b.ReportAllocs()
			for b.Loop() {
				f.guard.Decide(r, &d)
				if d.Err != nil {
					b.Fatal(d.Err)
				}
			}
		})
	}
}
