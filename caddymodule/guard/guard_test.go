package guard_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

func TestCheck_PublicRuleAllowsWithoutLookingAtAToken(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name          string
		authorization []string
	}{
		{"no Authorization header", nil},
		{"a garbage Bearer token", []string{"Bearer garbage"}},
		{"an expired token", []string{"Bearer " + f.token(t, sender, func(c *tokens.Claims) { c.Expiry = start.Add(-time.Hour) })}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := wantAllowed(t, f.check(http.MethodGet, "/health", tc.authorization...))
			if id.Claims != nil {
				t.Errorf("Claims = %+v, want nil for a public rule", id.Claims)
			}
			if id.Rule == nil || !id.Rule.Public || !slices.Equal(id.Rule.Paths, []string{"/health"}) {
				t.Errorf("Rule = %+v, want the public /health rule", id.Rule)
			}
			if len(id.Roles) != 0 {
				t.Errorf("Roles = %q, want none", id.Roles)
			}
		})
	}
	if n := f.state.verifier.calls; n != 0 {
		t.Errorf("verifier called %d times on a public path, want 0", n)
	}
}

func TestCheck_MissingOrForeignCredentialsGetABareChallenge(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name          string
		authorization []string
	}{
		{"no Authorization header", nil},
		{"Basic credentials", []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("sender:secret"))}},
		{"a scheme without credentials", []string{"Negotiate"}},
		{"a token without a scheme", []string{f.token(t, sender, nil)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oerr := wantErr(t, f.check(http.MethodPost, "/http/orders/1", tc.authorization...), http.StatusUnauthorized, "")
			if oerr.Description != "" || len(oerr.Scope) != 0 {
				t.Errorf("bare challenge carries description %q, scope %q", oerr.Description, oerr.Scope)
			}
		})
	}
	if n := f.state.verifier.calls; n != 0 {
		t.Errorf("verifier called %d times, want 0", n)
	}
}

func TestCheck_BearerSchemeIsCaseInsensitive(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, sender, nil)
	for _, header := range []string{
		"Bearer " + tok,
		"bearer " + tok,
		"BEARER " + tok,
		"bEaReR " + tok,
		"Bearer   " + tok, // RFC 6750 §2.1: 1*SP
	} {
		t.Run(header[:strings.IndexByte(header, ' ')+1], func(t *testing.T) {
			id := wantAllowed(t, f.check(http.MethodPost, "/http/orders/1", header))
			if id.Claims == nil || id.Claims.Subject != sender {
				t.Errorf("Claims = %+v, want subject %q", id.Claims, sender)
			}
		})
	}
}

func TestCheck_RefusesMalformedRequestsBeforeVerifying(t *testing.T) {
	f := newFixture(t)
	f.guard.MaxTokenSize = 2048
	tok := f.token(t, sender, nil)
	if len(tok) >= 2048 {
		t.Fatalf("test token is %d bytes; raise MaxTokenSize", len(tok))
	}
	cases := []struct {
		name          string
		path          string
		authorization []string
	}{
		{"two Authorization headers", "/http/orders/1", []string{"Bearer " + tok, "Bearer " + tok}},
		{"a Bearer token and Basic credentials", "/http/orders/1", []string{"Bearer " + tok, "Basic c2VuZGVyOnNlY3JldA=="}},
		{"Bearer with no token", "/http/orders/1", []string{"Bearer"}},
		{"Bearer with only spaces", "/http/orders/1", []string{"Bearer    "}},
		{"token over MaxTokenSize", "/http/orders/1", []string{"Bearer " + tok + "." + strings.Repeat("A", 2048)}},
		{"dot-dot segment", "/http/a/../b", []string{"Bearer " + tok}},
		{"dot-dot escaping to a public path", "/health/../http/orders/1", nil},
		{"dot segment", "/http/./orders/1", []string{"Bearer " + tok}},
		{"leading double slash", "//http/orders/1", []string{"Bearer " + tok}},
		{"inner double slash", "/http//orders/1", []string{"Bearer " + tok}},
		{"backslash", `/http\orders\1`, []string{"Bearer " + tok}},
		{"relative path", "http/orders/1", []string{"Bearer " + tok}},
		{"empty path", "", []string{"Bearer " + tok}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, f.check(http.MethodPost, tc.path, tc.authorization...), http.StatusBadRequest, "invalid_request")
		})
	}
	if n := f.state.verifier.calls; n != 0 {
		t.Errorf("verifier called %d times, want 0: these requests must be refused before verification", n)
	}
}

func TestCheck_TokenSizeLimitIsInclusive(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, sender, nil)

	f.guard.MaxTokenSize = len(tok)
	wantAllowed(t, f.check(http.MethodPost, "/http/orders/1", "Bearer "+tok))

	f.guard.MaxTokenSize = len(tok) - 1
	wantErr(t, f.check(http.MethodPost, "/http/orders/1", "Bearer "+tok), http.StatusBadRequest, "invalid_request")

	f.guard.MaxTokenSize = 0 // the default applies
	wantErr(t, f.check(http.MethodPost, "/http/orders/1", "Bearer "+strings.Repeat("A", guard.DefaultMaxTokenSize+1)), http.StatusBadRequest, "invalid_request")

	if n := f.state.verifier.calls; n != 1 {
		t.Errorf("verifier called %d times, want 1 (the token within the limit)", n)
	}
}

func TestCheck_InvalidTokenIs401NamingTheFailedCheck(t *testing.T) {
	cases := []struct {
		name    string
		token   func(t *testing.T, f *fixture) string
		advance time.Duration // moves the verifier's clock
		want    string        // in the description
	}{
		{"garbage", func(*testing.T, *fixture) string { return "garbage" }, 0, "compact JWS"},
		{"three segments of garbage", func(*testing.T, *fixture) string { return "a.b.c" }, 0, "header is malformed"},
		{"JWE-like five segments", func(t *testing.T, f *fixture) string { return f.token(t, sender, nil) + ".a.b" }, 0, "compact JWS"},
		{"tampered payload", func(t *testing.T, f *fixture) string {
			// A reader's token with a sender's claims spliced in.
			h, _, s := segments(t, f.token(t, reader, nil))
			_, p, _ := segments(t, f.token(t, sender, nil))
			return h + "." + p + "." + s
		}, 0, "signature is invalid"},
		{"signature of another token", func(t *testing.T, f *fixture) string {
			h, p, _ := segments(t, f.token(t, sender, nil))
			_, _, s := segments(t, f.token(t, sender, nil))
			return h + "." + p + "." + s
		}, 0, "signature is invalid"},
		{"signed by another key under our kid", func(t *testing.T, f *fixture) string {
			other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return sign(t, jwa.ES256(), other,
				map[string]any{"typ": "at+jwt", "kid": f.keys.Signing().ID},
				payloadOf(t, f.token(t, sender, nil)))
		}, 0, "signature is invalid"},
		{"signed by another key set", func(t *testing.T, f *fixture) string {
			tok, err := tokens.Mint(keystest.NewSet(t).Signing(), claims(sender))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, 0, "unknown key"},
		{"no kid", func(t *testing.T, f *fixture) string {
			// Signed with the raw key: a jwk.Key would add its own kid.
			var raw ecdsa.PrivateKey
			if err := jwk.Export(f.keys.Signing().Private, &raw); err != nil {
				t.Fatal(err)
			}
			return sign(t, jwa.ES256(), &raw,
				map[string]any{"typ": "at+jwt"},
				payloadOf(t, f.token(t, sender, nil)))
		}, 0, "unknown key"},
		{"expired by the clock", func(t *testing.T, f *fixture) string {
			return f.token(t, sender, nil) // expires at start+1h
		}, time.Hour + leeway, "expired"},
		{"issued in the future", func(t *testing.T, f *fixture) string {
			return f.token(t, sender, func(c *tokens.Claims) { c.IssuedAt = start.Add(leeway + time.Second) })
		}, 0, "future"},
		{"not valid yet", func(t *testing.T, f *fixture) string {
			return f.token(t, sender, func(c *tokens.Claims) { c.NotBefore = start.Add(leeway + time.Second) })
		}, 0, "not valid yet"},
		{"wrong issuer", func(t *testing.T, f *fixture) string {
			return f.token(t, sender, func(c *tokens.Claims) { c.Issuer = "https://evil.example" })
		}, 0, "issuer"},
		{"wrong audience", func(t *testing.T, f *fixture) string {
			return f.token(t, sender, func(c *tokens.Claims) { c.Audience = []string{"https://other.example"} })
		}, 0, "audience"},
		{"no subject", func(t *testing.T, f *fixture) string {
			return f.token(t, sender, func(c *tokens.Claims) { c.Subject = "" })
		}, 0, `"sub"`},
		{"typ JWT instead of at+jwt", func(t *testing.T, f *fixture) string {
			return sign(t, jwa.ES256(), f.keys.Signing().Private,
				map[string]any{"typ": "JWT", "kid": f.keys.Signing().ID},
				payloadOf(t, f.token(t, sender, nil)))
		}, 0, "type"},
		{"no typ", func(t *testing.T, f *fixture) string {
			return sign(t, jwa.ES256(), f.keys.Signing().Private,
				map[string]any{"kid": f.keys.Signing().ID},
				payloadOf(t, f.token(t, sender, nil)))
		}, 0, "type"},
		{"alg HS256 keyed with the public key", func(t *testing.T, f *fixture) string {
			pub, err := json.Marshal(f.keys.Signing().Public)
			if err != nil {
				t.Fatal(err)
			}
			_, p, _ := segments(t, f.token(t, sender, nil))
			h := b64JSON(t, map[string]string{"alg": "HS256", "typ": "at+jwt", "kid": f.keys.Signing().ID})
			mac := hmac.New(sha256.New, pub)
			mac.Write([]byte(h + "." + p))
			return h + "." + p + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		}, 0, "algorithm"},
		{"alg none with an empty signature", func(t *testing.T, f *fixture) string {
			_, p, _ := segments(t, f.token(t, sender, nil))
			h := b64JSON(t, map[string]string{"alg": "none", "typ": "at+jwt", "kid": f.keys.Signing().ID})
			return h + "." + p + "."
		}, 0, "compact JWS"},
		{"alg none keeping the original signature", func(t *testing.T, f *fixture) string {
			_, p, s := segments(t, f.token(t, sender, nil))
			h := b64JSON(t, map[string]string{"alg": "none", "typ": "at+jwt", "kid": f.keys.Signing().ID})
			return h + "." + p + "." + s
		}, 0, "algorithm"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tok := tc.token(t, f)
			f.now = f.now.Add(tc.advance)
			oerr := wantErr(t, f.check(http.MethodPost, "/http/orders/1", "Bearer "+tok), http.StatusUnauthorized, "invalid_token")
			if !strings.Contains(oerr.Description, tc.want) {
				t.Errorf("description = %q, want it to name %q", oerr.Description, tc.want)
			}
			if strings.Contains(oerr.Description, tok) {
				t.Errorf("description echoes the token")
			}
		})
	}
}

func TestCheck_ExpiryFollowsTheInjectedClock(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, sender, nil) // expires at start+1h

	f.now = start.Add(time.Hour + leeway - time.Second)
	wantAllowed(t, f.check(http.MethodPost, "/http/orders/1", "Bearer "+tok))

	f.now = start.Add(time.Hour + leeway)
	wantErr(t, f.check(http.MethodPost, "/http/orders/1", "Bearer "+tok), http.StatusUnauthorized, "invalid_token")
}

func TestCheck_ValidTokenWithoutAllowingRuleIs403(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name      string
		method    string
		path      string
		token     string
		wantScope []string
	}{
		{"subject lacks the role", http.MethodPost, "/http/orders/1", f.token(t, reader, nil), []string{"Orders.send"}},
		{"subject unknown to the policy", http.MethodPost, "/http/orders/1",
			f.token(t, "oauth_client_stranger", func(c *tokens.Claims) { c.Scope = []string{"Orders.send"} }), []string{"Orders.send"}},
		{"upper-case path hits the same rule", http.MethodPost, "/HTTP/ORDERS/1", f.token(t, reader, nil), []string{"Orders.send"}},
		{"any of several roles is missing", http.MethodGet, "/http/reports", f.token(t, sender, nil), []string{"Orders.read", "Reports.read"}},
		{"no rule matches the path", http.MethodGet, "/other", f.token(t, sender, nil), nil},
		{"no rule matches the method", http.MethodPost, "/http/reports", f.token(t, reader, nil), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oerr := wantErr(t, f.check(tc.method, tc.path, "Bearer "+tc.token), http.StatusForbidden, "insufficient_scope")
			if !slices.Equal(oerr.Scope, tc.wantScope) {
				t.Errorf("Scope = %q, want %q", oerr.Scope, tc.wantScope)
			}
		})
	}
}

func TestCheck_ValidTokenWithRoleYieldsIdentity(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name      string
		method    string
		path      string
		subject   string
		wantRule  string
		wantRoles []string
	}{
		{"sender posts an order", http.MethodPost, "/http/orders/1", sender, "/http/orders/*", []string{"Orders.send", "Invoices.send"}},
		{"sender posts an invoice", http.MethodPut, "/http/invoices/7", sender, "/http/invoices/*", []string{"Orders.send", "Invoices.send"}},
		{"reader gets reports with one of two roles", http.MethodGet, "/http/reports", reader, "/http/reports", []string{"Orders.read"}},
		{"trailing slash is canonical", http.MethodPost, "/http/orders/", sender, "/http/orders/*", []string{"Orders.send", "Invoices.send"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := f.token(t, tc.subject, nil)
			id := wantAllowed(t, f.check(tc.method, tc.path, "Bearer "+tok))
			if id.Claims == nil {
				t.Fatal("Claims = nil, want the token's claims")
			}
			if id.Claims.Subject != tc.subject || id.Claims.Issuer != issuer {
				t.Errorf("Claims = %+v, want subject %q from %q", id.Claims, tc.subject, issuer)
			}
			if !slices.Equal(id.Roles, tc.wantRoles) {
				t.Errorf("Roles = %q, want %q", id.Roles, tc.wantRoles)
			}
			if id.Rule == nil || !slices.Equal(id.Rule.Paths, []string{tc.wantRule}) {
				t.Errorf("Rule = %+v, want %s", id.Rule, tc.wantRule)
			}
		})
	}
}

func TestCheck_TokenScopeNarrowsTheSubjectsRoles(t *testing.T) {
	f := newFixture(t)
	// The sender holds Orders.send and Invoices.send; this token was
	// issued for Orders.send only.
	tok := f.token(t, sender, func(c *tokens.Claims) { c.Scope = []string{"Orders.send"} })

	id := wantAllowed(t, f.check(http.MethodPost, "/http/orders/1", "Bearer "+tok))
	if !slices.Equal(id.Roles, []string{"Orders.send"}) {
		t.Errorf("Roles = %q, want [Orders.send]", id.Roles)
	}

	wantErr(t, f.check(http.MethodPost, "/http/invoices/1", "Bearer "+tok), http.StatusForbidden, "insufficient_scope")

	// A scope naming roles the policy does not grant the subject adds
	// nothing: the reader holds only Orders.read.
	tok = f.token(t, reader, func(c *tokens.Claims) { c.Scope = []string{"Reports.read", "Orders.send"} })
	wantErr(t, f.check(http.MethodGet, "/http/reports", "Bearer "+tok), http.StatusForbidden, "insufficient_scope")
	wantErr(t, f.check(http.MethodPost, "/http/orders/1", "Bearer "+tok), http.StatusForbidden, "insufficient_scope")

	// An empty scope carries no roles at all.
	tok = f.token(t, sender, func(c *tokens.Claims) { c.Scope = nil })
	wantErr(t, f.check(http.MethodPost, "/http/orders/1", "Bearer "+tok), http.StatusForbidden, "insufficient_scope")
}

func TestCheck_RevokedRoleTakesEffectForAnIssuedToken(t *testing.T) {
	// With the token cache, the guard keeps what it derived from a token
	// sent before; a new policy must still decide the next request.
	for _, tc := range []struct {
		name  string
		cache bool
		sends int
	}{{"no token cache", false, 1}, {"token cache, token sent once before", true, 1}, {"token cache, token sent three times before", true, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.cache {
				f.state.verifier.v.(*tokenstate.Verifier).JWT.Cache = tokens.NewCache(0)
			}
			tok := f.token(t, sender, nil) // scope Orders.send Invoices.send
			for range tc.sends {
				id := wantAllowed(t, f.check(http.MethodPost, "/http/orders/1", "Bearer "+tok))
				if !slices.Equal(id.Roles, []string{"Orders.send", "Invoices.send"}) {
					t.Fatalf("Roles = %q before the revocation", id.Roles)
				}
			}

			f.state.policy = mustPolicy(t, strings.Replace(testPolicy,
				"oauth_client_sender: [Orders.send, Invoices.send]",
				"oauth_client_sender: [Invoices.send]", 1))

			wantErr(t, f.check(http.MethodPost, "/http/orders/1", "Bearer "+tok), http.StatusForbidden, "insufficient_scope")

			id := wantAllowed(t, f.check(http.MethodPost, "/http/invoices/1", "Bearer "+tok))
			if !slices.Equal(id.Roles, []string{"Invoices.send"}) {
				t.Errorf("Roles = %q, want [Invoices.send] after the revocation", id.Roles)
			}
		})
	}
}
