package authserver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/dpop"
	"github.com/oauthgate/oauthgate/caddymodule/dpop/dpoptest"
	statepkg "github.com/oauthgate/oauthgate/caddymodule/state"
)

func withDPoP(f *fixture) *fixture {
	algs, _ := dpop.ParseAlgorithms([]string{"ES256", "EdDSA"})
	f.srv.DPoP = &dpop.Verifier{Algorithms: algs, MaxAge: time.Minute, Future: 5 * time.Second,
		Once: statepkg.NewMemoryOnce(100, nil), Now: func() time.Time { return now }}
	return f
}

func proofHeader(f *fixture, p string) http.Header {
	h := basic(senderID, f.senderSecret)
	h["Dpop"] = []string{p}
	return h
}

func TestToken_DPoPProofBindsTheTokenToItsKey(t *testing.T) {
	for _, format := range []string{"jwt", "opaque"} {
		t.Run(format, func(t *testing.T) {
			f := withDPoP(newFixture(t))
			k := dpoptest.NewKey("ES256")
			p := k.Proof(dpoptest.Options{Method: "POST", URL: issuer + authserver.TokenPath, IssuedAt: now})
			rec := f.do(t, request{body: "grant_type=client_credentials&token_format=" + format, header: proofHeader(f, p)})
			var resp tokenResponse
			if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &resp) != nil {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			if resp.TokenType != "DPoP" {
				t.Errorf("token_type = %q, want DPoP", resp.TokenType)
			}
			c, err := f.srv.Verifier.Verify(t.Context(), resp.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			if c.Confirmation.JKT != k.JKT {
				t.Errorf("cnf.jkt = %q, want %q", c.Confirmation.JKT, k.JKT)
			}
			// Introspection tells the binding too (RFC 9449 §6.2).
			in := f.do(t, request{target: authserver.IntrospectPath, body: "token=" + resp.AccessToken, header: basic(senderID, f.senderSecret)})
			if !strings.Contains(in.Body.String(), `"cnf":{"jkt":"`+k.JKT+`"}`) || !strings.Contains(in.Body.String(), `"token_type":"DPoP"`) {
				t.Errorf("introspection: %s", in.Body)
			}
		})
	}
}

func TestToken_RefusesBadDPoPProofs(t *testing.T) {
	k := dpoptest.NewKey("ES256")
	good := dpoptest.Options{Method: "POST", URL: issuer + authserver.TokenPath, IssuedAt: now}
	with := func(edit func(*dpoptest.Options)) string {
		o := good
		edit(&o)
		return k.Proof(o)
	}
	cases := []struct {
		name   string
		header http.Header
		desc   string
	}{
		{"a proof for another URL", http.Header{"Dpop": {with(func(o *dpoptest.Options) { o.URL = issuer + "/other" })}}, "htu"},
		{"a proof for GET", http.Header{"Dpop": {with(func(o *dpoptest.Options) { o.Method = "GET" })}}, "htm"},
		{"a stale proof", http.Header{"Dpop": {with(func(o *dpoptest.Options) { o.IssuedAt = now.Add(-time.Hour) })}}, "ago"},
		{"an HS256 proof", http.Header{"Dpop": {with(func(o *dpoptest.Options) { o.Header = map[string]any{"alg": "HS256"} })}}, "not allowed"},
		{"two proofs", http.Header{"Dpop": {k.Proof(good), k.Proof(good)}}, "more than one"},
		{"garbage", http.Header{"Dpop": {"x.y.z"}}, "DPoP proof"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := withDPoP(newFixture(t))
			h := basic(senderID, f.senderSecret)
			for n, v := range c.header {
				h[n] = v
			}
			rec := f.do(t, request{body: "grant_type=client_credentials", header: h})
			e := tokenError(t, rec, http.StatusBadRequest, "invalid_dpop_proof")
			if !strings.Contains(e.Description, c.desc) {
				t.Errorf("description %q lacks %q", e.Description, c.desc)
			}
		})
	}
}

func TestToken_ReplayedDPoPProofIsRefused(t *testing.T) {
	f := withDPoP(newFixture(t))
	p := dpoptest.NewKey("EdDSA").Proof(dpoptest.Options{Method: "POST", URL: issuer + authserver.TokenPath, IssuedAt: now})
	if rec := f.do(t, request{body: "grant_type=client_credentials", header: proofHeader(f, p)}); rec.Code != 200 {
		t.Fatalf("first: %d %s", rec.Code, rec.Body)
	}
	tokenError(t, f.do(t, request{body: "grant_type=client_credentials", header: proofHeader(f, p)}), http.StatusBadRequest, "invalid_dpop_proof")
}

func TestMetadata_NamesTheDPoPAlgorithms(t *testing.T) {
	f := withDPoP(newFixture(t))
	rec := f.do(t, request{method: http.MethodGet, target: authserver.MetadataPath})
	if !strings.Contains(rec.Body.String(), `"dpop_signing_alg_values_supported":["ES256","EdDSA"]`) {
		t.Errorf("metadata: %s", rec.Body)
	}
}
