package guard_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/dpop"
	"github.com/oauthgate/oauthgate/caddymodule/dpop/dpoptest"
	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	statepkg "github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

const dpopURL = "https://gw.example/http/orders/1"

func dpopFixture(t *testing.T, once statepkg.Once) *fixture {
	t.Helper()
	f := newFixture(t)
	algs, _ := dpop.ParseAlgorithms([]string{"ES256", "EdDSA"})
	if once == nil {
		once = statepkg.NewMemoryOnce(100, nil)
	}
	f.guard.DPoP = guard.NewDPoPProofs(&dpop.Verifier{Algorithms: algs, MaxAge: time.Minute, Future: 5 * time.Second,
		Once: once, Now: func() time.Time { return f.now }}, "")
	return f
}

// dpopCheck runs the guard on POST dpopURL with these headers.
func (f *fixture) dpopCheck(authorization string, proofs ...string) (outcome, *http.Request) {
	r := httptest.NewRequest(http.MethodPost, dpopURL, nil)
	r.TLS = nil
	r.Header.Set("Authorization", authorization)
	for _, p := range proofs {
		r.Header.Add("DPoP", p)
	}
	d := f.guard.Check(r)
	if d.Err != nil {
		return outcome{nil, d.Err}, r
	}
	return outcome{d, nil}, r
}

func TestCheck_DPoP(t *testing.T) {
	key, other := dpoptest.NewKey("ES256"), dpoptest.NewKey("ES256")
	type tc struct {
		name          string
		bound         bool   // the token is bound to key
		scheme        string // of Authorization
		proofs        func(tok string, f *fixture) []string
		status        int
		code, inDesc  string
		wantChallenge bool
	}
	good := func(o dpoptest.Options) func(string, *fixture) []string {
		return func(tok string, f *fixture) []string {
			o.AccessToken, o.IssuedAt = tok, f.now
			if o.Method == "" {
				o.Method = "POST"
			}
			if o.URL == "" {
				o.URL = strings.Replace(dpopURL, "https:", "http:", 1)
			}
			return []string{key.Proof(o)}
		}
	}
	cases := []tc{
		{name: "a bound token with a valid proof is allowed", bound: true, scheme: "DPoP", proofs: good(dpoptest.Options{})},
		{name: "an unbound token as Bearer without proof is allowed", scheme: "Bearer"},
		{name: "a bound token as Bearer is refused", bound: true, scheme: "Bearer", proofs: good(dpoptest.Options{}),
			status: 401, code: "invalid_token", inDesc: "DPoP scheme", wantChallenge: true},
		{name: "an unbound token with the DPoP scheme is refused", scheme: "DPoP", proofs: good(dpoptest.Options{}),
			status: 401, code: "invalid_token", inDesc: "not DPoP-bound", wantChallenge: true},
		{name: "a bound token without a proof is refused", bound: true, scheme: "DPoP",
			status: 401, code: "invalid_dpop_proof", inDesc: "no DPoP proof", wantChallenge: true},
		{name: "two proofs are refused", bound: true, scheme: "DPoP", proofs: func(tok string, f *fixture) []string {
			return append(good(dpoptest.Options{})(tok, f), good(dpoptest.Options{})(tok, f)...)
		}, status: 401, code: "invalid_dpop_proof", inDesc: "more than one", wantChallenge: true},
		{name: "a proof for another method is refused", bound: true, scheme: "DPoP", proofs: good(dpoptest.Options{Method: "GET"}),
			status: 401, code: "invalid_dpop_proof", inDesc: "htm", wantChallenge: true},
		{name: "a proof for another URL is refused", bound: true, scheme: "DPoP", proofs: good(dpoptest.Options{URL: "http://gw.example/http/orders/2"}),
			status: 401, code: "invalid_dpop_proof", inDesc: "htu", wantChallenge: true},
		{name: "a proof without ath is refused", bound: true, scheme: "DPoP", proofs: good(dpoptest.Options{Claims: map[string]any{"ath": nil}}),
			status: 401, code: "invalid_dpop_proof", inDesc: "ath", wantChallenge: true},
		{name: "a proof for another token is refused", bound: true, scheme: "DPoP", proofs: good(dpoptest.Options{Claims: map[string]any{"ath": dpoptest.ATH("x")}}),
			status: 401, code: "invalid_dpop_proof", inDesc: "ath", wantChallenge: true},
		{name: "a proof by another key is refused as the token's fault", bound: true, scheme: "DPoP", proofs: func(tok string, f *fixture) []string {
			return []string{other.Proof(dpoptest.Options{Method: "POST", URL: "http://gw.example/http/orders/1", AccessToken: tok, IssuedAt: f.now})}
		}, status: 401, code: "invalid_token", inDesc: "another key", wantChallenge: true},
		{name: "a stale proof is refused", bound: true, scheme: "DPoP", proofs: func(tok string, f *fixture) []string {
			return []string{key.Proof(dpoptest.Options{Method: "POST", URL: "http://gw.example/http/orders/1", AccessToken: tok, IssuedAt: f.now.Add(-2 * time.Minute)})}
		}, status: 401, code: "invalid_dpop_proof", inDesc: "ago", wantChallenge: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := dpopFixture(t, nil)
			tok := f.token(t, sender, func(cl *tokens.Claims) {
				if c.bound {
					cl.Confirmation.JKT = key.JKT
				}
			})
			var proofs []string
			if c.proofs != nil {
				proofs = c.proofs(tok, f)
			}
			o, _ := f.dpopCheck(c.scheme+" "+tok, proofs...)
			if c.status == 0 {
				wantAllowed(t, o)
				return
			}
			e := wantErr(t, o, c.status, c.code)
			if !strings.Contains(e.Description, c.inDesc) {
				t.Errorf("description %q does not mention %q", e.Description, c.inDesc)
			}
			if got := strings.Join(e.DPoPAlgs, " ") == "ES256 EdDSA"; got != c.wantChallenge {
				t.Errorf("DPoP challenge algs %q, want one: %v", e.DPoPAlgs, c.wantChallenge)
			}
		})
	}
}

func TestCheck_DPoPProofWorksOnce(t *testing.T) {
	f := dpopFixture(t, nil)
	key := dpoptest.NewKey("EdDSA")
	tok := f.token(t, sender, func(c *tokens.Claims) { c.Confirmation.JKT = key.JKT })
	proof := key.Proof(dpoptest.Options{Method: "POST", URL: "http://gw.example/http/orders/1", AccessToken: tok, IssuedAt: f.now})
	o, _ := f.dpopCheck("DPoP "+tok, proof)
	wantAllowed(t, o)
	o, _ = f.dpopCheck("DPoP "+tok, proof)
	if e := wantErr(t, o, 401, "invalid_dpop_proof"); !strings.Contains(e.Description, "used before") {
		t.Errorf("replay: %q", e.Description)
	}
}

type downOnce struct{}

func (downOnce) First(context.Context, string, string, time.Time) (bool, error) {
	return false, errors.New("down")
}

func TestCheck_DPoPProofIsRefusedWith503WhenReplaysCannotBeChecked(t *testing.T) {
	f := dpopFixture(t, downOnce{})
	key := dpoptest.NewKey("ES256")
	tok := f.token(t, sender, func(c *tokens.Claims) { c.Confirmation.JKT = key.JKT })
	o, _ := f.dpopCheck("DPoP "+tok, key.Proof(dpoptest.Options{Method: "POST", URL: "http://gw.example/http/orders/1", AccessToken: tok, IssuedAt: f.now}))
	if e := wantErr(t, o, 503, oautherr.CodeUnavailable); e.RetryAfter == 0 {
		t.Error("no Retry-After")
	}
}

type nonceOf string

func (n nonceOf) Issue(time.Time) string           { return string(n) }
func (n nonceOf) Valid(s string, _ time.Time) bool { return s == string(n) }

func TestCheck_DPoPNonceIsAskedForThenAccepted(t *testing.T) {
	f := dpopFixture(t, nil)
	f.guard.DPoP.(*guard.DPoPProofs).Verifier.Nonces = nonceOf("fresh")
	key := dpoptest.NewKey("ES256")
	tok := f.token(t, sender, func(c *tokens.Claims) { c.Confirmation.JKT = key.JKT })
	o, _ := f.dpopCheck("DPoP "+tok, key.Proof(dpoptest.Options{Method: "POST", URL: "http://gw.example/http/orders/1", AccessToken: tok, IssuedAt: f.now}))
	if e := wantErr(t, o, 401, oautherr.CodeUseDPoPNonce); e.DPoPNonce != "fresh" {
		t.Errorf("DPoP-Nonce %q", e.DPoPNonce)
	}
	o, _ = f.dpopCheck("DPoP "+tok, key.Proof(dpoptest.Options{Method: "POST", URL: "http://gw.example/http/orders/1", AccessToken: tok, IssuedAt: f.now, Nonce: "fresh"}))
	wantAllowed(t, o)
}

func TestCheck_DPoPProofNamesTheExternalURLBehindAProxy(t *testing.T) {
	f := dpopFixture(t, nil)
	f.guard.DPoP.(*guard.DPoPProofs).ExternalURL = "https://api.example.com:8443"
	key := dpoptest.NewKey("ES256")
	tok := f.token(t, sender, func(c *tokens.Claims) { c.Confirmation.JKT = key.JKT })
	o, _ := f.dpopCheck("DPoP "+tok, key.Proof(dpoptest.Options{Method: "POST", URL: "https://API.example.com:8443/http/orders/1", AccessToken: tok, IssuedAt: f.now}))
	wantAllowed(t, o)
	o, _ = f.dpopCheck("DPoP "+tok, key.Proof(dpoptest.Options{Method: "POST", URL: "http://gw.example/http/orders/1", AccessToken: tok, IssuedAt: f.now}))
	wantErr(t, o, 401, "invalid_dpop_proof")
}

func TestCheck_WithoutATokenOffersBothSchemes(t *testing.T) {
	f := dpopFixture(t, nil)
	r := httptest.NewRequest(http.MethodPost, dpopURL, nil)
	d := f.guard.Check(r)
	if d.Err == nil || d.Err.Code != "" || len(d.Err.DPoPAlgs) == 0 {
		t.Fatalf("got %+v, want a bare challenge offering DPoP", d.Err)
	}
	w := httptest.NewRecorder()
	oautherr.WriteChallenge(w, "oauthgate", "", d.Err)
	got := w.Header().Values("WWW-Authenticate")
	if len(got) != 2 || !strings.HasPrefix(got[0], "Bearer ") || got[1] != `DPoP realm="oauthgate", algs="ES256 EdDSA"` {
		t.Errorf("WWW-Authenticate = %q", got)
	}
}
