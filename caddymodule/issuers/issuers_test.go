package issuers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

func TestNew_ValidatesTheConfig(t *testing.T) {
	valid := func(edit func(*Config)) Config {
		c := Config{Issuer: "https://idp.example", JWKSURL: "https://idp.example/jwks", Audience: "api"}
		edit(&c)
		return c
	}
	cases := []struct {
		name   string
		cfg    Config
		reason string // empty: valid
	}{
		{"https JWKS URL", valid(func(*Config) {}), ""},
		{"http on 127.0.0.1", valid(func(c *Config) { c.JWKSURL = "http://127.0.0.1:8080/jwks" }), ""},
		{"http on ::1", valid(func(c *Config) { c.JWKSURL = "http://[::1]:8080/jwks" }), ""},
		{"http on another address of 127.0.0.0/8", valid(func(c *Config) { c.JWKSURL = "http://127.0.0.2:8080/jwks" }), ""},
		{"http on localhost", valid(func(c *Config) { c.JWKSURL = "http://localhost/jwks" }), ""},
		{"discovery", valid(func(c *Config) { c.JWKSURL, c.Discovery = "", true }), ""},
		{"every allowed algorithm", valid(func(c *Config) {
			c.Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
		}), ""},
		{"no issuer", valid(func(c *Config) { c.Issuer = "" }), "issuer is required"},
		{"no audience", valid(func(c *Config) { c.Audience = "" }), "audience is required"},
		{"neither JWKS URL nor discovery", valid(func(c *Config) { c.JWKSURL = "" }), "exactly one"},
		{"both JWKS URL and discovery", valid(func(c *Config) { c.Discovery = true }), "exactly one"},
		{"http on another host", valid(func(c *Config) { c.JWKSURL = "http://idp.example/jwks" }), "must be https"},
		{"http on a private address", valid(func(c *Config) { c.JWKSURL = "http://10.0.0.1/jwks" }), "must be https"},
		{"another scheme", valid(func(c *Config) { c.JWKSURL = "file:///etc/jwks" }), "not an absolute URL"},
		{"a relative URL", valid(func(c *Config) { c.JWKSURL = "/jwks" }), "not an absolute URL"},
		{"credentials in the URL", valid(func(c *Config) { c.JWKSURL = "https://u:p@idp.example/jwks" }), "credentials"},
		{"discovery of an issuer that is no URL", valid(func(c *Config) { c.JWKSURL, c.Discovery, c.Issuer = "", true, "acme" }), "not an absolute URL"},
		{"discovery of an http issuer", valid(func(c *Config) { c.JWKSURL, c.Discovery, c.Issuer = "", true, "http://idp.example" }), "must be https"},
		{"discovery of an issuer with a query", valid(func(c *Config) { c.JWKSURL, c.Discovery, c.Issuer = "", true, "https://idp.example/?x=1" }), "query"},
		{"HS256", valid(func(c *Config) { c.Algorithms = []string{"RS256", "HS256"} }), `"HS256" is not allowed`},
		{"none", valid(func(c *Config) { c.Algorithms = []string{"none"} }), `"none" is not allowed`},
		{"an unknown algorithm", valid(func(c *Config) { c.Algorithms = []string{"RS257"} }), "not allowed"},
		{"an empty algorithm list", valid(func(c *Config) { c.Algorithms = []string{} }), "no algorithm"},
		{"negative leeway", valid(func(c *Config) { c.Leeway = -time.Second }), "negative"},
		{"minimum refetch interval above the refresh interval", valid(func(c *Config) { c.MinRefetchInterval = 2 * time.Hour }), "minimum refetch"},
		{"roles claim with an empty name", valid(func(c *Config) { c.RolesClaim = "realm_access..roles" }), "empty name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			wantErr(t, "New", err, tc.reason)
		})
	}
}

func TestVerify_XSUAATokenGivesItsScopesAsRoles(t *testing.T) {
	k := testKeys()
	p := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "key-id-1", "alg": "RS256", "use": "sig"}))
	iss, _ := newIssuer(t, p, keystest.NewClock(start), nil)
	mustFetch(t, iss)

	// XSUAA names its key URL in "jku"; keys come only from the configured JWKS.
	tok := sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": "key-id-1", "typ": "JWT", "jku": p.URL + "/evil"},
		xsuaaClaims(p.URL, start))
	c, err := iss.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := []string{xsappname + ".ESBMessaging.send", xsappname + ".Orders.send", "uaa.resource"}
	if !slices.Equal(c.Roles, want) || !slices.Equal(c.Scope, want) {
		t.Errorf("roles %q, scope %q; want both %q", c.Roles, c.Scope, want)
	}
	if c.ClientID != "sb-sender!b1234|"+xsappname || c.Subject != "sb-sender!b1234|"+xsappname || c.Issuer != p.URL {
		t.Errorf("client %q, subject %q, issuer %q", c.ClientID, c.Subject, c.Issuer)
	}
	if n := p.hitsOf("/evil"); n != 0 {
		t.Errorf("the jku URL was fetched %d times", n)
	}

	// The claim roles come from is configurable.
	p2 := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "key-id-1", "alg": "RS256"}))
	kc, _ := newIssuer(t, p2, keystest.NewClock(start), func(c *Config) { c.RolesClaim = "realm_access.roles" })
	mustFetch(t, kc)
	claims := xsuaaClaims(p2.URL, start)
	claims["realm_access"] = map[string]any{"roles": []string{"Orders.send"}}
	c, err = kc.Verify(context.Background(), sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": "key-id-1", "typ": "JWT"}, claims))
	if err != nil || !slices.Equal(c.Roles, []string{"Orders.send"}) {
		t.Errorf("Verify = %v, %v; want roles [Orders.send]", c, err)
	}
}

func TestVerify_RefusesTokensNotMeantForUs(t *testing.T) {
	k := testKeys()
	p := newIDP(t,
		publicJWK(t, k.rsa1, map[string]any{"kid": "rsa", "alg": "RS256"}),
		publicJWK(t, k.ec, map[string]any{"kid": "ec", "alg": "ES256"}))
	iss, _ := newIssuer(t, p, keystest.NewClock(start), func(c *Config) { c.Algorithms = []string{"RS256", "ES256"} })
	mustFetch(t, iss)
	atJWT, _ := newIssuer(t, p, keystest.NewClock(start), func(c *Config) { c.Types = nil })
	mustFetch(t, atJWT)

	rsaHdr := map[string]any{"kid": "rsa", "typ": "JWT"}
	claims := func(edit func(map[string]any)) map[string]any {
		c := xsuaaClaims(p.URL, start)
		edit(c)
		return c
	}
	good := claims(func(map[string]any) {})
	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	jwkJSON, _ := json.Marshal(publicJWK(t, k.rsa1, map[string]any{"kid": "rsa", "alg": "RS256"}))
	unsigned := func(hdr string) string {
		payload, _ := json.Marshal(good)
		return b64(hdr) + "." + b64(string(payload)) + "."
	}

	cases := []struct {
		name   string
		iss    *Issuer
		token  string
		reason string
	}{
		{"typ JWT where at+jwt is required (the default)", atJWT, sign(t, jwa.RS256(), k.rsa1, rsaHdr, good), "token type"},
		{"typ missing", iss, sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": "rsa"}, good), "token type"},
		{"another audience", iss, sign(t, jwa.RS256(), k.rsa1, rsaHdr, claims(func(c map[string]any) { c["aud"] = []string{"uaa", "other!t1"} })), "audience"},
		{"another issuer", iss, sign(t, jwa.RS256(), k.rsa1, rsaHdr, claims(func(c map[string]any) { c["iss"] = "https://evil.example" })), "issuer"},
		{"expired", iss, sign(t, jwa.RS256(), k.rsa1, rsaHdr, claims(func(c map[string]any) { c["exp"] = start.Add(-time.Hour).Unix() })), "expired"},
		{"no sub", iss, sign(t, jwa.RS256(), k.rsa1, rsaHdr, claims(func(c map[string]any) { delete(c, "sub") })), `no "sub"`},
		{"HS256 with the RSA public key (PEM) as secret", iss, sign(t, jwa.HS256(), pubPEM, rsaHdr, good), "algorithm"},
		{"HS256 with the RSA public key (JWK) as secret", iss, sign(t, jwa.HS256(), jwkJSON, rsaHdr, good), "algorithm"},
		{"RS512 header on an RS256 key", iss, sign(t, jwa.RS512(), k.rsa1, rsaHdr, good), "algorithm"},
		{"PS256 header on an RS256 key", iss, sign(t, jwa.PS256(), k.rsa1, rsaHdr, good), "algorithm"},
		{"RS256 header on an ES256 key", iss, sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": "ec", "typ": "JWT"}, good), "algorithm"},
		{"alg none", iss, unsigned(`{"alg":"none","kid":"rsa","typ":"JWT"}`), "not a compact JWS"},
		{"alg none with a signature", iss, unsigned(`{"alg":"none","kid":"rsa","typ":"JWT"}`) + "AA", "algorithm"},
		{"signed by another key under a known kid", iss, sign(t, jwa.RS256(), k.rsa2, rsaHdr, good), "signature is invalid"},
		{"ES256 signed by another key under a known kid", iss, sign(t, jwa.ES256(), otherEC(t), map[string]any{"kid": "ec", "typ": "JWT"}, good), "signature is invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.iss.Verify(context.Background(), tc.token)
			var te *tokens.Error
			if !errors.As(err, &te) || !strings.Contains(te.Reason, tc.reason) {
				t.Errorf("Verify = %v, want a *tokens.Error mentioning %q", err, tc.reason)
			}
		})
	}

	// The ES256 key verifies its own tokens: the refusals above are not
	// because nothing verifies.
	for _, tok := range []string{
		sign(t, jwa.RS256(), k.rsa1, rsaHdr, good),
		sign(t, jwa.ES256(), k.ec, map[string]any{"kid": "ec", "typ": "JWT"}, good),
	} {
		if _, err := iss.Verify(context.Background(), tok); err != nil {
			t.Errorf("a good token: %v", err)
		}
	}
}

func TestFetch_SkipsKeysItMustNotUse(t *testing.T) {
	k := testKeys()
	good := publicJWK(t, k.rsa1, map[string]any{"kid": "good", "alg": "RS256"})
	cases := []struct {
		name   string
		entry  map[string]any
		reason string
		algs   []string // nil: RS256, ES256
	}{
		{"a symmetric key", map[string]any{"kty": "oct", "kid": "hmac", "alg": "HS256", "k": b64("a shared secret")}, "symmetric", nil},
		{"a private RSA key", privateJWK(t, k.rsa2, map[string]any{"kid": "private", "alg": "RS256"}), "private key members", nil},
		{"a private EC key", privateJWK(t, k.ec, map[string]any{"kid": "private-ec", "alg": "ES256"}), "private key members", nil},
		{"an RSA key of 1024 bits", map[string]any{"kty": "RSA", "kid": "weak", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(k.rsaWeak.N.Bytes()), "e": "AQAB"}, "1024 bits", nil},
		{"an RSA key for HS256", publicJWK(t, k.rsa2, map[string]any{"kid": "hs", "alg": "HS256"}), `"HS256" is not allowed`, nil},
		{"an RSA key for an algorithm not configured", publicJWK(t, k.rsa2, map[string]any{"kid": "rs512", "alg": "RS512"}), `"RS512" is not allowed`, nil},
		{"an RSA key for ES256", publicJWK(t, k.rsa2, map[string]any{"kid": "mislabelled", "alg": "ES256"}), "not a key for ES256", nil},
		{"an EC key without alg when only RSA is allowed", publicJWK(t, k.ec, map[string]any{"kid": "ec"}), "no allowed algorithm fits", []string{"RS256"}},
		{"an encryption key", publicJWK(t, k.rsa2, map[string]any{"kid": "enc", "use": "enc"}), "use", nil},
		{"a key whose key_ops exclude verify", publicJWK(t, k.rsa2, map[string]any{"kid": "ops", "key_ops": []string{"encrypt"}}), "key_ops", nil},
		{"a key without kid", publicJWK(t, k.rsa2, nil), "no \"kid\"", nil},
		{"a second key under a kid in use", publicJWK(t, k.rsa2, map[string]any{"kid": "good", "alg": "RS256"}), "published 2 times", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newIDP(t, good, tc.entry, publicJWK(t, k.rsa2, map[string]any{"kid": "other", "alg": "RS256"}))
			iss, rep := newIssuer(t, p, keystest.NewClock(start), func(c *Config) {
				c.Algorithms = []string{"RS256", "ES256"}
				if tc.algs != nil {
					c.Algorithms = tc.algs
				}
			})
			mustFetch(t, iss)
			errs := rep.list()
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.reason) {
				t.Fatalf("reports = %v, want one mentioning %q", errs, tc.reason)
			}
			kid, _ := tc.entry["kid"].(string)
			if k := (*iss.keys.Load())[kid]; kid != "" && k != nil {
				t.Errorf("key %q is in use", kid)
			}
			if (*iss.keys.Load())["other"] == nil {
				t.Errorf("the usable key next to it was dropped too")
			}
		})
	}

	t.Run("a set without a usable key fails and is reported", func(t *testing.T) {
		p := newIDP(t, map[string]any{"kty": "oct", "kid": "hmac", "k": b64("secret")})
		iss, rep := newIssuer(t, p, keystest.NewClock(start), nil)
		if err := iss.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "no usable key") {
			t.Errorf("Fetch = %v, want no usable key", err)
		}
		if len(rep.list()) != 1 {
			t.Errorf("reports = %v, want the skipped key", rep.list())
		}
	})
}

func TestFetch_KeyWithoutAlgGetsTheFirstAllowedAlgorithmThatFits(t *testing.T) {
	k := testKeys()
	p := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "rsa"}), publicJWK(t, k.ec, map[string]any{"kid": "ec"}))
	cases := []struct {
		algs []string
		want map[string]string // kid → algorithm
	}{
		{[]string{"RS256", "ES256"}, map[string]string{"rsa": "RS256", "ec": "ES256"}},
		{[]string{"ES256", "PS384", "RS256"}, map[string]string{"rsa": "PS384", "ec": "ES256"}},
		{[]string{"ES384", "RS512"}, map[string]string{"rsa": "RS512"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.algs, ","), func(t *testing.T) {
			iss, _ := newIssuer(t, p, keystest.NewClock(start), func(c *Config) { c.Algorithms = tc.algs })
			mustFetch(t, iss)
			got := map[string]string{}
			for kid, key := range *iss.keys.Load() {
				got[kid] = key.Algorithm.String()
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("algorithms %v, want %v", got, tc.want)
			}
			// The pinned algorithm is the only one its tokens may use.
			tok := sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": "rsa", "typ": "JWT"}, xsuaaClaims(p.URL, start))
			if _, err := iss.Verify(context.Background(), tok); (err == nil) != (tc.want["rsa"] == "RS256") {
				t.Errorf("an RS256 token: %v", err)
			}
		})
	}
}

func TestVerify_UnknownKidFetchesTheRotatedKeysOnce(t *testing.T) {
	k := testKeys()
	p := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "old", "alg": "RS256"}))
	clock := keystest.NewClock(start)
	iss, _ := newIssuer(t, p, clock, nil)
	mustFetch(t, iss)
	clock.Advance(DefaultMinRefetchInterval)

	p.setKeys(t, publicJWK(t, k.rsa2, map[string]any{"kid": "new", "alg": "RS256"}))
	tok := sign(t, jwa.RS256(), k.rsa2, map[string]any{"kid": "new", "typ": "JWT"}, xsuaaClaims(p.URL, clock.Now()))
	if _, err := iss.Verify(context.Background(), tok); err != nil {
		t.Fatalf("a token of the new key: %v", err)
	}
	if _, err := iss.Verify(context.Background(), tok); err != nil {
		t.Fatalf("the same token again: %v", err)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (start, rotation)", n)
	}
	old := sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": "old", "typ": "JWT"}, xsuaaClaims(p.URL, clock.Now()))
	if _, err := iss.Verify(context.Background(), old); err == nil || !strings.Contains(err.Error(), "unknown key") {
		t.Errorf("a token of the retired key: %v, want unknown key", err)
	}
}

func TestVerify_RequestsDuringARefetchWaitForIt(t *testing.T) {
	k := testKeys()
	p := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "old", "alg": "RS256"}))
	clock := keystest.NewClock(start)
	iss, _ := newIssuer(t, p, clock, nil)
	mustFetch(t, iss)
	clock.Advance(time.Hour)

	// The issuer rotates, and answers the refetch only once every request
	// with the new kid has started.
	p.setKeys(t, publicJWK(t, k.rsa2, map[string]any{"kid": "new", "alg": "RS256"}))
	hit, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	p.gate = func() {
		once.Do(func() { close(hit) })
		<-release
	}
	tok := sign(t, jwa.RS256(), k.rsa2, map[string]any{"kid": "new", "typ": "JWT"}, xsuaaClaims(p.URL, start))
	var started, done sync.WaitGroup
	for range 20 {
		started.Add(1)
		done.Go(func() {
			started.Done()
			if _, err := iss.Verify(context.Background(), tok); err != nil {
				t.Errorf("a token of the new key: %v", err)
			}
		})
	}
	started.Wait()
	<-hit
	close(release)
	done.Wait()
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2", n)
	}
}

func TestVerify_JunkKidsCannotFloodTheIssuer(t *testing.T) {
	k := testKeys()
	p := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "good", "alg": "RS256"}))
	clock := keystest.NewClock(start)
	iss, _ := newIssuer(t, p, clock, func(c *Config) { c.MinRefetchInterval = time.Minute })
	mustFetch(t, iss)

	var junkTokens []string
	for j := range 100 {
		junkTokens = append(junkTokens, sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": fmt.Sprint("junk-", j), "typ": "JWT"}, xsuaaClaims(p.URL, start)))
	}
	junk := func() {
		var wg sync.WaitGroup
		for _, tok := range junkTokens {
			wg.Go(func() {
				_, err := iss.Verify(context.Background(), tok)
				var te *tokens.Error
				if !errors.As(err, &te) || !strings.Contains(te.Reason, "unknown key") {
					t.Errorf("a junk kid: %v, want unknown key", err)
				}
			})
		}
		wg.Wait()
	}
	steps := []struct {
		advance time.Duration
		want    int32 // JWKS fetches so far
	}{
		{0, 1},                // just fetched: no refetch
		{59 * time.Second, 1}, // still within the minute
		{time.Second, 2},      // a minute on: one refetch for all 100
		{30 * time.Second, 2},
		{time.Hour, 3},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		junk()
		if n := p.fetches.Load(); n != s.want {
			t.Fatalf("after %v more: JWKS fetched %d times, want %d", s.advance, n, s.want)
		}
	}
}

func TestVerify_KnownKeysKeepWorkingWhileTheIssuerIsDown(t *testing.T) {
	k := testKeys()
	p := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "good", "alg": "RS256"}))
	clock := keystest.NewClock(start)
	iss, rep := newIssuer(t, p, clock, nil)
	mustFetch(t, iss)

	p.setStatus(http.StatusServiceUnavailable)
	if err := iss.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Fetch = %v, want the 503", err)
	}
	tok := sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": "good", "typ": "JWT"}, xsuaaClaims(p.URL, start))
	if _, err := iss.Verify(context.Background(), tok); err != nil {
		t.Errorf("a token of a known key: %v", err)
	}

	clock.Advance(time.Hour)
	unknown := sign(t, jwa.RS256(), k.rsa2, map[string]any{"kid": "new", "typ": "JWT"}, xsuaaClaims(p.URL, start))
	_, err := iss.Verify(context.Background(), unknown)
	var te *tokens.Error
	if !errors.As(err, &te) || !strings.Contains(te.Reason, "unknown key") {
		t.Errorf("an unknown kid: %v, want unknown key (401), not unavailable", err)
	}
	if errs := rep.list(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "503") {
		t.Errorf("reports = %v, want the failed refetch", errs)
	}
}

func TestVerify_IssuerNeverReachedIsUnavailable(t *testing.T) {
	k := testKeys()
	p := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "good", "alg": "RS256"}))
	p.setStatus(http.StatusBadGateway)
	clock := keystest.NewClock(start)
	iss, _ := newIssuer(t, p, clock, nil)
	if err := iss.Fetch(context.Background()); err == nil {
		t.Fatal("Fetch succeeded")
	}

	tok := sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": "good", "typ": "JWT"}, xsuaaClaims(p.URL, start))
	_, err := iss.Verify(context.Background(), tok)
	var te *tokens.Error
	if !errors.Is(err, ErrUnavailable) || errors.As(err, &te) {
		t.Errorf("Verify = %v, want ErrUnavailable and no *tokens.Error", err)
	}
	if _, err := iss.Verify(context.Background(), "not.a.token!"); !errors.As(err, &te) {
		t.Errorf("a malformed token: %v, want a *tokens.Error: it is bad whatever the keys", err)
	}

	// The issuer comes back: the next token past the minimum interval
	// fetches the keys itself.
	p.setStatus(0)
	clock.Advance(DefaultMinRefetchInterval)
	if _, err := iss.Verify(context.Background(), tok); err != nil {
		t.Errorf("Verify after the issuer came back: %v", err)
	}

	// Never reachable at all: a closed port.
	p2 := newIDP(t)
	p2.Close()
	down, _ := newIssuer(t, p2, keystest.NewClock(start), nil)
	if _, err := down.Verify(context.Background(), tok); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Verify with the issuer's port closed = %v, want ErrUnavailable", err)
	}
}

func TestFetch_Discovery(t *testing.T) {
	k := testKeys()
	jwk := publicJWK(t, k.rsa1, map[string]any{"kid": "good", "alg": "RS256"})
	cases := []struct {
		name   string
		path   string                                // the issuer's path
		docs   func(iss, keys string) map[string]any // path → document
		reason string                                // empty: the keys are found
	}{
		{"OpenID configuration", "", func(iss, keys string) map[string]any {
			return map[string]any{"/.well-known/openid-configuration": map[string]any{"issuer": iss, "jwks_uri": keys}}
		}, ""},
		{"RFC 8414 metadata when there is no OpenID configuration", "", func(iss, keys string) map[string]any {
			return map[string]any{"/.well-known/oauth-authorization-server": map[string]any{"issuer": iss, "jwks_uri": keys}}
		}, ""},
		{"OpenID configuration under the issuer's path", "/realms/acme", func(iss, keys string) map[string]any {
			return map[string]any{"/realms/acme/.well-known/openid-configuration": map[string]any{"issuer": iss, "jwks_uri": keys}}
		}, ""},
		{"RFC 8414 metadata with the path after the well-known part", "/tenant/v2", func(iss, keys string) map[string]any {
			return map[string]any{"/.well-known/oauth-authorization-server/tenant/v2": map[string]any{"issuer": iss, "jwks_uri": keys}}
		}, ""},
		{"a document naming another issuer", "", func(iss, keys string) map[string]any {
			return map[string]any{
				"/.well-known/openid-configuration":       map[string]any{"issuer": "https://evil.example", "jwks_uri": keys},
				"/.well-known/oauth-authorization-server": map[string]any{"issuer": iss, "jwks_uri": keys},
			}
		}, `names the issuer "https://evil.example"`},
		{"a document naming the issuer with a trailing slash", "", func(iss, keys string) map[string]any {
			return map[string]any{"/.well-known/openid-configuration": map[string]any{"issuer": iss + "/", "jwks_uri": keys}}
		}, "names the issuer"},
		{"a jwks_uri in clear text off this host", "", func(iss, keys string) map[string]any {
			return map[string]any{"/.well-known/openid-configuration": map[string]any{"issuer": iss, "jwks_uri": "http://idp.example/keys"}}
		}, "must be https"},
		{"no jwks_uri", "", func(iss, keys string) map[string]any {
			return map[string]any{"/.well-known/openid-configuration": map[string]any{"issuer": iss}}
		}, "jwks_uri"},
		{"no metadata", "", func(string, string) map[string]any { return nil }, "404"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newIDP(t)
			p.setDoc(t, "/keys", map[string]any{"keys": []any{jwk}})
			issuer := p.URL + tc.path
			for path, doc := range tc.docs(issuer, p.URL+"/keys") {
				p.setDoc(t, path, doc)
			}
			iss, _ := newIssuer(t, p, keystest.NewClock(start), func(c *Config) { c.Issuer, c.JWKSURL, c.Discovery = issuer, "", true })
			if !wantErr(t, "Fetch", iss.Fetch(context.Background()), tc.reason) {
				return
			}
			switch {
			case tc.reason == "" && (*iss.keys.Load())["good"] == nil:
				t.Errorf("the key was not installed")
			case tc.reason != "" && p.hitsOf("/keys") != 0:
				t.Errorf("the JWKS was fetched although discovery failed")
			}
		})
	}

	t.Run("an unknown kid refetches the keys, not the metadata", func(t *testing.T) {
		p := newIDP(t)
		p.setDoc(t, "/keys", map[string]any{"keys": []any{jwk}})
		p.setDoc(t, "/.well-known/openid-configuration", map[string]any{"issuer": p.URL, "jwks_uri": p.URL + "/keys"})
		clock := keystest.NewClock(start)
		iss, _ := newIssuer(t, p, clock, func(c *Config) { c.JWKSURL, c.Discovery = "", true })
		mustFetch(t, iss)
		clock.Advance(time.Hour)
		_, _ = iss.Verify(context.Background(), sign(t, jwa.RS256(), k.rsa2, map[string]any{"kid": "new", "typ": "JWT"}, xsuaaClaims(p.URL, start)))
		if d, j := p.hitsOf("/.well-known/openid-configuration"), p.hitsOf("/keys"); d != 1 || j != 2 {
			t.Errorf("metadata fetched %d times, keys %d times; want 1 and 2", d, j)
		}
	})
}

func TestFetch_BoundsWhatItReads(t *testing.T) {
	k := testKeys()
	jwks := map[string]any{"keys": []any{publicJWK(t, k.rsa1, map[string]any{"kid": "good", "alg": "RS256"})}}
	padded := func(doc any) []byte {
		b, _ := json.Marshal(doc)
		return append(b, make([]byte, MaxDocumentSize+1-len(b))...) // trailing NULs: one byte too many
	}
	cases := []struct {
		name   string
		setup  func(p *idp) Config
		reason string
	}{
		{"a JWKS of exactly 1 MiB", func(p *idp) Config {
			b, _ := json.Marshal(jwks)
			p.setDoc(t, "/jwks", append(b, []byte(strings.Repeat(" ", MaxDocumentSize-len(b)))...))
			return Config{JWKSURL: p.URL + "/jwks"}
		}, ""},
		{"a JWKS over 1 MiB", func(p *idp) Config {
			p.setDoc(t, "/jwks", padded(jwks))
			return Config{JWKSURL: p.URL + "/jwks"}
		}, "larger than"},
		{"a JWKS of more than 100 keys", func(p *idp) Config {
			many := []any{publicJWK(t, k.rsa1, map[string]any{"kid": "good", "alg": "RS256"})}
			for range 100 {
				many = append(many, map[string]any{})
			}
			b, _ := json.Marshal(map[string]any{"keys": many})
			p.setDoc(t, "/jwks", b)
			return Config{JWKSURL: p.URL + "/jwks"}
		}, "more than 100"},
		{"metadata over 1 MiB", func(p *idp) Config {
			p.setDoc(t, "/.well-known/openid-configuration", padded(map[string]any{"issuer": p.URL, "jwks_uri": p.URL + "/jwks"}))
			return Config{Discovery: true}
		}, "larger than"},
		{"three redirects", func(p *idp) Config {
			p.setRedirects(3)
			return Config{JWKSURL: p.URL + "/r0"}
		}, ""},
		{"four redirects", func(p *idp) Config {
			p.setRedirects(4)
			return Config{JWKSURL: p.URL + "/r0"}
		}, "more than 3 redirects"},
		{"a redirect to http off this host", func(p *idp) Config {
			p.redirect("/r0", "http://idp.example/jwks")
			return Config{JWKSURL: p.URL + "/r0"}
		}, "must be https"},
		{"a JWKS that is not JSON", func(p *idp) Config {
			p.setDoc(t, "/jwks", []byte("<html>"))
			return Config{JWKSURL: p.URL + "/jwks"}
		}, "not a JWK Set"},
		{"a JWKS without keys", func(p *idp) Config {
			p.setDoc(t, "/jwks", []byte(`{"kids":[]}`))
			return Config{JWKSURL: p.URL + "/jwks"}
		}, "not a JWK Set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newIDP(t, jwks["keys"].([]any)[0].(map[string]any))
			cfg := tc.setup(p)
			iss, _ := newIssuer(t, p, keystest.NewClock(start), func(c *Config) { c.JWKSURL, c.Discovery = cfg.JWKSURL, cfg.Discovery })
			wantErr(t, "Fetch", iss.Fetch(context.Background()), tc.reason)
		})
	}
}

func TestVerify_ConcurrentWithRefetches(t *testing.T) {
	k := testKeys()
	p := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "a", "alg": "RS256"}))
	clock := keystest.NewClock(start)
	iss, _ := newIssuer(t, p, clock, func(c *Config) { c.MinRefetchInterval = time.Nanosecond })
	mustFetch(t, iss)
	good := sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": "a", "typ": "JWT"}, xsuaaClaims(p.URL, start))
	junk := sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": "junk", "typ": "JWT"}, xsuaaClaims(p.URL, start))

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := iss.Verify(context.Background(), good); err != nil {
					t.Errorf("a good token: %v", err)
				}
				clock.Advance(time.Second)
				if _, err := iss.Verify(context.Background(), junk); err == nil {
					t.Error("a junk kid verified")
				}
			}
		})
	}
	wg.Go(func() {
		for n := range 20 {
			p.setKeys(t, publicJWK(t, k.rsa1, map[string]any{"kid": "a", "alg": "RS256"}),
				publicJWK(t, k.rsa2, map[string]any{"kid": fmt.Sprint("b", n), "alg": "RS256"}))
			if err := iss.Fetch(context.Background()); err != nil {
				t.Errorf("Fetch: %v", err)
			}
		}
	})
	wg.Wait()
}

func TestRun_RefreshesAndBacksOffAfterFailures(t *testing.T) {
	k := testKeys()
	p := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "a", "alg": "RS256"}))
	iss, rep := newIssuer(t, p, keystest.NewClock(start), func(c *Config) {
		c.RefreshInterval, c.MinRefetchInterval = 10*time.Minute, time.Minute
	})
	waits := make(chan time.Duration)
	fire := make(chan time.Time)
	iss.after = func(d time.Duration) <-chan time.Time {
		waits <- d
		return fire
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	mustFetch(t, iss)
	go func() { iss.Run(ctx); close(done) }()

	// Each step: what Run waits for, then what the issuer answers when it
	// fetches after that wait.
	steps := []struct {
		wait   time.Duration
		status int
	}{
		{10 * time.Minute, http.StatusInternalServerError},
		{time.Minute, http.StatusInternalServerError},
		{2 * time.Minute, http.StatusInternalServerError},
		{4 * time.Minute, http.StatusInternalServerError},
		{8 * time.Minute, http.StatusInternalServerError},
		{10 * time.Minute, 0}, // capped at the refresh interval
		{10 * time.Minute, 0},
	}
	for n, s := range steps {
		if d := <-waits; d != s.wait {
			t.Fatalf("wait %d = %v, want %v", n, d, s.wait)
		}
		p.setStatus(s.status)
		fire <- time.Time{}
	}
	<-waits
	cancel()
	<-done
	if n := p.fetches.Load(); n != 1+int32(len(steps)) {
		t.Errorf("JWKS fetched %d times, want %d", n, 1+len(steps))
	}
	if errs := rep.list(); len(errs) != 5 || !strings.Contains(errs[0].Error(), "last keys stay in use") {
		t.Errorf("reports = %v, want the 5 failures", errs)
	}
	if iss.keys.Load() == nil || (*iss.keys.Load())["a"] == nil {
		t.Error("the key was lost")
	}
}

func otherEC(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestFetched_IsToldEveryFetchAndItsOutcome(t *testing.T) {
	k := testKeys()
	p := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "good", "alg": "RS256"}))
	var outcomes reports
	iss, _ := newIssuer(t, p, keystest.NewClock(start), func(c *Config) {
		c.Fetched = func(err error) { outcomes.add(err) }
	})
	mustFetch(t, iss)
	p.setStatus(http.StatusServiceUnavailable)
	_ = iss.Fetch(context.Background())
	got := outcomes.list()
	if len(got) != 2 || got[0] != nil || got[1] == nil {
		t.Errorf("Fetched saw %v, want a success, then a failure", got)
	}
}

func TestVerify_ANewKeyUnderAnOldKidIsFetchedAndTheOldOneForgotten(t *testing.T) {
	k := testKeys()
	p := newIDP(t, publicJWK(t, k.rsa1, map[string]any{"kid": "main", "alg": "RS256"}))
	clock := keystest.NewClock(start)
	iss, _ := newIssuer(t, p, clock, func(c *Config) { c.Cache = tokens.NewCache(0) })
	mustFetch(t, iss)
	old := sign(t, jwa.RS256(), k.rsa1, map[string]any{"kid": "main", "typ": "JWT"}, xsuaaClaims(p.URL, clock.Now()))
	if _, err := iss.Verify(context.Background(), old); err != nil {
		t.Fatal(err)
	}

	// The issuer replaces its key (say, after a compromise) and keeps the kid.
	clock.Advance(DefaultMinRefetchInterval)
	p.setKeys(t, publicJWK(t, k.rsa2, map[string]any{"kid": "main", "alg": "RS256"}))
	fresh := sign(t, jwa.RS256(), k.rsa2, map[string]any{"kid": "main", "typ": "JWT"}, xsuaaClaims(p.URL, clock.Now()))
	if _, err := iss.Verify(context.Background(), fresh); err != nil {
		t.Fatalf("a token of the new key: %v, want the keys fetched again", err)
	}
	if _, err := iss.Verify(context.Background(), old); err == nil || err.Error() != tokens.ReasonBadSignature {
		t.Errorf("a cached token of the replaced key: %v, want refused", err)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2", n)
	}
}
