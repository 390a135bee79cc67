package guard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/issuers"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

const xsuaa = "https://tenant.authentication.eu10.hana.ondemand.com/oauth/token"

// verifierFunc adapts a function to guard.Verifier.
type verifierFunc func(ctx context.Context, token string) (*tokens.Claims, error)

func (f verifierFunc) Verify(ctx context.Context, token string) (*tokens.Claims, error) {
	return f(ctx, token)
}

// testIssuer is a guard.Issuer of a verifier and a role prefix.
type testIssuer struct {
	verifierFunc
	prefix string
}

func (i testIssuer) RolePrefix() string { return i.prefix }

// withXSUAA trusts a second issuer shaped like SAP XSUAA: typ JWT, scope
// an array of "<xsappname>.<role>". It returns a signer of its tokens.
func (f *fixture) withXSUAA(t *testing.T, suffix bool) func(sub string, scope ...string) string {
	t.Helper()
	ks := keystest.NewSet(t)
	v := &tokens.Verifier{Keys: ks, Issuer: xsuaa, Audience: "it-rt-tenant!b196", Leeway: leeway,
		Now: func() time.Time { return f.now }, External: true, Types: []string{"JWT"}, RolesClaim: "scope"}
	f.guard.Issuers = map[string]guard.Issuer{xsuaa: testIssuer{
		verifierFunc: func(_ context.Context, tok string) (*tokens.Claims, error) { return v.Verify(tok) },
		prefix:       map[bool]string{true: "it-rt-tenant!b196"}[suffix],
	}}
	return func(sub string, scope ...string) string {
		payload, err := json.Marshal(map[string]any{
			"iss": xsuaa, "sub": sub, "cid": "sb-sender!b196", "aud": []string{"it-rt-tenant!b196"},
			"iat": start.Unix(), "exp": start.Add(time.Hour).Unix(), "scope": scope,
		})
		if err != nil {
			t.Fatal(err)
		}
		k := ks.Signing()
		return sign(t, k.Algorithm, k.Private, map[string]any{"typ": "JWT", "kid": k.ID}, payload)
	}
}

func TestCheck_ExternalIssuerTokensCarryTheirRoles(t *testing.T) {
	cases := []struct {
		name      string
		suffix    bool
		sub       string
		scope     []string
		method    string
		path      string
		wantRoles []string // nil: 403
	}{
		{"an XSUAA scope grants its role by suffix", true, "sb-sender", []string{"it-rt-tenant!b196.Orders.send", "uaa.resource"},
			"POST", "/http/orders/1", []string{"Orders.send"}},
		{"a scope without the role's suffix grants nothing", true, "sb-sender", []string{"it-rt-tenant!b196.Orders.sendx"},
			"POST", "/http/orders/1", nil},
		{"without suffix matching the prefixed scope is no role", false, "sb-sender", []string{"it-rt-tenant!b196.Orders.send"},
			"POST", "/http/orders/1", nil},
		{"an exact claim value is a role either way", false, "sb-sender", []string{"Orders.send"},
			"POST", "/http/orders/1", []string{"Orders.send"}},
		{"the policy's subjects add their roles, under the issuer's name", true, "sb-reader", []string{"it-rt-tenant!b196.Invoices.send"},
			"GET", "/http/reports", []string{"Orders.read", "Invoices.send"}},
		{"another app's scope in the same token grants nothing", true, "sb-sender", []string{"otherapp!t5.Orders.send"},
			"POST", "/http/orders/1", nil},
		{"a sub named like a local client gets none of its roles", true, sender, nil,
			"POST", "/http/orders/1", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.state.policy = mustPolicy(t, strings.Replace(testPolicy, "subjects:\n",
				"subjects:\n  \""+xsuaa+"#sb-reader\": [Orders.read]\n", 1))
			mint := f.withXSUAA(t, tc.suffix)
			o := f.check(tc.method, tc.path, "Bearer "+mint(tc.sub, tc.scope...))
			if tc.wantRoles == nil {
				wantErr(t, o, 403, "insufficient_scope")
				return
			}
			d := wantAllowed(t, o)
			if !slices.Equal(d.Roles, tc.wantRoles) {
				t.Errorf("Roles = %q, want %q", d.Roles, tc.wantRoles)
			}
			if d.Claims.ClientID != "sb-sender!b196" || d.Claims.Issuer != xsuaa {
				t.Errorf("claims = %+v, want the XSUAA client", d.Claims)
			}
		})
	}
}

func TestCheck_EachIssuerVerifiesOnlyWithItsOwnKeys(t *testing.T) {
	f := newFixture(t)
	mint := f.withXSUAA(t, true)
	local := f.token(t, sender, nil)

	// A token of the external issuer that claims to be ours goes to our
	// verifier; one of ours that claims the external issuer goes to the
	// external verifier. Neither knows the other's keys.
	ext := mint("sb-sender", "it-rt-tenant!b196.Orders.send")
	forgedAsLocal := relabel(t, ext, issuer)
	forgedAsExternal := relabel(t, local, xsuaa)

	// Each is refused by the verifier its "iss" names, on that issuer's
	// own rules: ours wants at+jwt, XSUAA's JWT.
	for _, tc := range []struct{ name, token, want string }{
		{"external token relabelled as local", forgedAsLocal, `token type must be "at+jwt"`},
		{"local token relabelled as external", forgedAsExternal, `token type must be "JWT"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := wantErr(t, f.check("POST", "/http/orders/1", "Bearer "+tc.token), 401, "invalid_token")
			if e.Description != tc.want {
				t.Errorf("description = %q, want %q", e.Description, tc.want)
			}
		})
	}
	wantAllowed(t, f.check("POST", "/http/orders/1", "Bearer "+local))
	wantAllowed(t, f.check("POST", "/http/orders/1", "Bearer "+ext))
}

func TestCheck_IssuerWithoutKeysIs503NotABadToken(t *testing.T) {
	f := newFixture(t)
	mint := f.withXSUAA(t, true)
	f.guard.Issuers[xsuaa] = testIssuer{verifierFunc: func(context.Context, string) (*tokens.Claims, error) {
		return nil, issuers.ErrUnavailable
	}}
	err := wantErr(t, f.check("POST", "/http/orders/1", "Bearer "+mint("sb-sender", "x.Orders.send")), 503, "temporarily_unavailable")
	if err.RetryAfter <= 0 {
		t.Errorf("RetryAfter = %v, want a positive wait", err.RetryAfter)
	}
}

func TestCheck_TokenTheStateCannotBeAskedAboutIs503NotABadToken(t *testing.T) {
	f := newFixture(t)
	f.guard.Verifier = verifierFunc(func(context.Context, string) (*tokens.Claims, error) {
		return nil, fmt.Errorf("%w: dial tcp 127.0.0.1:6379: connection refused", tokenstate.ErrUnavailable)
	})
	err := wantErr(t, f.check("GET", "/http/flow", "Bearer "+strings.Repeat("o", 64)), 503, "temporarily_unavailable")
	if err.RetryAfter <= 0 {
		t.Errorf("RetryAfter = %v, want a positive wait", err.RetryAfter)
	}
	if strings.Contains(err.Description, "6379") {
		t.Errorf("description %q tells the client about the gateway's insides", err.Description)
	}
}

func TestCheck_SubjectDisabledInThePolicyIsRefused(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, sender, nil)
	wantAllowed(t, f.check("POST", "/http/orders/1", "Bearer "+tok))
	f.state.policy = mustPolicy(t, `
subjects:
  oauth_client_sender: {roles: [Orders.send, Invoices.send], disabled: true}
rules:
  - path: /http/orders/*
    roles: [Orders.send]
`)
	e := wantErr(t, f.check("POST", "/http/orders/1", "Bearer "+tok), 401, "invalid_token")
	if e.Description != "the token's subject is disabled in the policy" {
		t.Errorf("description = %q", e.Description)
	}
}

// relabel changes a token's "iss", keeping its header and signature.
func relabel(t *testing.T, tok, iss string) string {
	t.Helper()
	h, _, sig := segments(t, tok)
	var claims map[string]any
	if err := json.Unmarshal(payloadOf(t, tok), &claims); err != nil {
		t.Fatal(err)
	}
	claims["iss"] = iss
	return h + "." + b64JSON(t, claims) + "." + sig
}
