package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/state"
)

const (
	issuer   = "https://gw.example"
	endpoint = "https://gw.example/oauth2/api/v1/token"
)

var now = time.Unix(1_800_000_000, 0)

// signer is a client's key pair.
type signer struct {
	priv *ecdsa.PrivateKey
	pub  *keys.Key
}

func newSigner(t testing.TB, kid string) *signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	j, err := jwk.Import(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.NewPublic(kid, jwa.ES256(), j)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{priv, k}
}

func (s *signer) Key(_ context.Context, kid string) (*keys.Key, error) {
	if kid == "" || kid == s.pub.ID {
		return s.pub, nil
	}
	return nil, nil
}

func seg(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sign makes a compact JWS of header and claims with ES256.
func (s *signer) sign(header, claims map[string]any) string {
	input := seg(header) + "." + seg(claims)
	d := sha256.Sum256([]byte(input))
	r, sv, _ := ecdsa.Sign(rand.Reader, s.priv, d[:])
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func goodClaims() map[string]any {
	return map[string]any{"iss": "c1", "sub": "c1", "aud": endpoint, "jti": "j-1",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
}

func goodHeader(kid string) map[string]any { return map[string]any{"alg": "ES256", "kid": kid} }

func verifier() *Verifier {
	return &Verifier{Audiences: []string{issuer, endpoint}, Once: state.NewMemoryOnce(0, func() time.Time { return now }),
		Now: func() time.Time { return now }}
}

func TestVerify(t *testing.T) {
	client, other := newSigner(t, "k1"), newSigner(t, "k2")
	with := func(change func(h, c map[string]any)) string {
		h, c := goodHeader("k1"), goodClaims()
		change(h, c)
		return client.sign(h, c)
	}
	hmacWithPublicKey := func() string {
		input := seg(map[string]any{"alg": "HS256", "kid": "k1"}) + "." + seg(goodClaims())
		pub, _ := json.Marshal(client.pub.Public)
		m := hmac.New(sha256.New, pub)
		m.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	tests := map[string]struct {
		assertion, wantReason string // "" = accepted
	}{
		"a good assertion for the token endpoint": {with(func(h, c map[string]any) {}), ""},
		"a good assertion for the issuer":         {with(func(h, c map[string]any) { c["aud"] = issuer }), ""},
		"aud as an array of one":                  {with(func(h, c map[string]any) { c["aud"] = []string{issuer} }), ""},
		"no kid, the client's only key":           {with(func(h, c map[string]any) { delete(h, "kid") }), ""},
		"fractional dates":                        {with(func(h, c map[string]any) { c["exp"] = float64(now.Unix()) + 30.5 }), ""},
		"alg none": {seg(map[string]any{"alg": "none"}) + "." + seg(goodClaims()) + ".",
			"not a compact JWS"},
		"alg none with a signature": {seg(map[string]any{"alg": "none", "kid": "k1"}) + "." + seg(goodClaims()) + ".AAAA",
			`algorithm "none" is not allowed`},
		"HMAC keyed with the client's public key": {hmacWithPublicKey(), `algorithm "HS256" is not allowed`},
		"another algorithm than the key's":        {with(func(h, c map[string]any) { h["alg"] = "ES384" }), "is for ES256"},
		"signed by another client's key":          {other.sign(goodHeader("k1"), goodClaims()), "signature is invalid"},
		"a kid the client has not registered":     {with(func(h, c map[string]any) { h["kid"] = "k9" }), "no registered key"},
		"another audience":                        {with(func(h, c map[string]any) { c["aud"] = "https://other.example" }), "aud is not"},
		"the introspection endpoint as audience": {with(func(h, c map[string]any) { c["aud"] = issuer + "/oauth2/api/v1/introspect" }),
			"aud is not"},
		"two audiences":        {with(func(h, c map[string]any) { c["aud"] = []string{issuer, "https://other.example"} }), "aud is not one string"},
		"no audience":          {with(func(h, c map[string]any) { delete(c, "aud") }), "aud is missing"},
		"expired":              {with(func(h, c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), "expired"},
		"exp too far ahead":    {with(func(h, c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() }), "more than 5m0s ahead"},
		"no exp":               {with(func(h, c map[string]any) { delete(c, "exp") }), "exp is missing"},
		"exp as a string":      {with(func(h, c map[string]any) { c["exp"] = "soon" }), "exp is not a date"},
		"iat in the future":    {with(func(h, c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }), "iat is in the future"},
		"iat long before exp":  {with(func(h, c map[string]any) { c["iat"] = now.Add(-time.Hour).Unix() }), "after iat"},
		"nbf in the future":    {with(func(h, c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }), "nbf"},
		"iss is not sub":       {with(func(h, c map[string]any) { c["sub"] = "c2" }), "iss and sub"},
		"another client's ID":  {with(func(h, c map[string]any) { c["iss"], c["sub"] = "c2", "c2" }), "iss and sub"},
		"no jti":               {with(func(h, c map[string]any) { delete(c, "jti") }), "jti is missing"},
		"a jti too long":       {with(func(h, c map[string]any) { c["jti"] = strings.Repeat("j", 257) }), "jti is longer"},
		"a critical extension": {with(func(h, c map[string]any) { h["crit"] = []string{"exp"} }), "crit"},
		"typed as a DPoP proof": {with(func(h, c map[string]any) { h["typ"] = "dpop+jwt" }),
			"not a client assertion"},
		"typed as an access token": {with(func(h, c map[string]any) { h["typ"] = "application/at+jwt" }),
			"not a client assertion"},
		"duplicate claims": {seg(goodHeader("k1")) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"c1","iss":"c2"}`)) + ".AAAA",
			"duplicate"},
		"oversized": {with(func(h, c map[string]any) { c["pad"] = strings.Repeat("x", MaxLength) }), "longer than"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a, err := Parse(tc.assertion)
			if err == nil {
				err = verifier().Verify(context.Background(), a, "c1", client)
			}
			var e *Error
			switch {
			case tc.wantReason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantReason != "" && err == nil:
				t.Fatalf("accepted, want a refusal with %q", tc.wantReason)
			case tc.wantReason != "" && !errors.As(err, &e):
				t.Fatalf("error %v is not an *Error", err)
			case tc.wantReason != "" && !strings.Contains(e.Reason, tc.wantReason):
				t.Fatalf("reason = %q, want it to contain %q", e.Reason, tc.wantReason)
			}
		})
	}
}

func TestVerify_ReplayIsRefused(t *testing.T) {
	client := newSigner(t, "k1")
	v := verifier()
	raw := client.sign(goodHeader("k1"), goodClaims())
	for i, want := range []bool{true, false} {
		a, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		err = v.Verify(context.Background(), a, "c1", client)
		if (err == nil) != want {
			t.Fatalf("use %d: err = %v, want accepted %v", i+1, err, want)
		}
	}
	// The same jti of another client is not a replay of this one's.
	c2 := goodClaims()
	c2["iss"], c2["sub"] = "c2", "c2"
	a, _ := Parse(client.sign(goodHeader("k1"), c2))
	if err := v.Verify(context.Background(), a, "c2", client); err != nil {
		t.Errorf("another client's jti: %v", err)
	}
}

type failingOnce struct{}

func (failingOnce) First(context.Context, string, string, time.Time) (bool, error) {
	return false, errors.New("redis is away")
}

type failingKeys struct{}

func (failingKeys) Key(context.Context, string) (*keys.Key, error) {
	return nil, errors.New("unreachable")
}

func TestVerify_WhatTheGatewayCannotCheckIsUnavailable(t *testing.T) {
	client := newSigner(t, "k1")
	raw := client.sign(goodHeader("k1"), goodClaims())
	tests := map[string]struct {
		v  *Verifier
		ks Keys
	}{
		"the replay table fails": {&Verifier{Audiences: []string{endpoint}, Once: failingOnce{}, Now: func() time.Time { return now }}, client},
		"the keys cannot be had": {verifier(), failingKeys{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.v.Verify(context.Background(), a, "c1", tc.ks); !errors.Is(err, ErrUnavailable) {
				t.Errorf("err = %v, want ErrUnavailable", err)
			}
		})
	}
}
