package tokens_test

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// jwxMint is how Mint made tokens before it built the JWS itself:
// encoding/json over the claims' wire form, and jws.Sign with the key's
// JWK and the protected headers typ and kid.
func jwxMint(t *testing.T, k *keys.Key, c *tokens.Claims) string {
	t.Helper()
	w := struct {
		Issuer    string `json:"iss"`
		Subject   string `json:"sub"`
		ClientID  string `json:"client_id"`
		Audience  any    `json:"aud"`
		IssuedAt  int64  `json:"iat"`
		NotBefore *int64 `json:"nbf,omitempty"`
		Expiry    int64  `json:"exp"`
		ID        string `json:"jti"`
		Scope     string `json:"scope"`
	}{c.Issuer, c.Subject, c.ClientID, c.Audience, c.IssuedAt.Unix(), nil, c.Expiry.Unix(), c.ID, strings.Join(c.Scope, " ")}
	if len(c.Audience) == 1 {
		w.Audience = c.Audience[0]
	}
	if !c.NotBefore.IsZero() {
		nbf := c.NotBefore.Unix()
		w.NotBefore = &nbf
	}
	payload, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	h := jws.NewHeaders()
	if err := h.Set(jws.TypeKey, tokens.Type); err != nil {
		t.Fatal(err)
	}
	if err := h.Set(jws.KeyIDKey, k.ID); err != nil {
		t.Fatal(err)
	}
	tok, err := jws.Sign(payload, jws.WithKey(k.Algorithm, k.Private, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

// Mint writes the JWS itself rather than through jws.Sign: its header
// and claims must be what jwx and encoding/json made, byte for byte, and
// its tokens must pass jwx's check with the public key as well as ours,
// for every algorithm a gateway may sign with.
func TestMint_MakesWhatJWXMakes(t *testing.T) {
	usual := benchClaims()
	claims := map[string]*tokens.Claims{
		"usual token": usual,
		"with nbf":    func() *tokens.Claims { c := *usual; c.NotBefore = c.IssuedAt; return &c }(),
		"two audiences, no scope": func() *tokens.Claims {
			c := *usual
			c.Audience, c.Scope = []string{"https://other.example", benchIssuer}, nil
			return &c
		}(),
		"escapes in scope and audience": func() *tokens.Claims {
			c := *usual
			c.Audience = []string{benchIssuer, "https://other.example/?a=1&b=2"}
			c.Scope = []string{"Orders.send", "ünïcode"}
			return &c
		}(),
	}
	// encoding/json's own escapes, one at a time: quotes, HTML
	// characters, the JavaScript line separators, control characters,
	// invalid UTF-8; and characters it leaves alone.
	for _, s := range []string{`"`, `\`, "<", ">", "&", "\u2028", "\u2029", "\x00", "\x01", "\t", "\n", "\x1f", "\x7f", "é", "\xff", "\xe2\x80"} {
		c := *usual
		c.Subject = "oauth_client_" + s + "x"
		claims["subject with "+strconv.Quote(s)] = &c
	}
	for _, alg := range benchAlgorithms {
		t.Run(alg.String(), func(t *testing.T) {
			set := benchKeys(t, alg)
			k := set.Signing()
			for name, c := range claims {
				tok, err := tokens.Mint(k, c)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				got, want := strings.Split(tok, "."), strings.Split(jwxMint(t, k, c), ".")
				for i, part := range []string{"header", "claims"} {
					if got[i] != want[i] {
						t.Errorf("%s: %s\n got %s\nwant %s", name, part, decode(t, got[i]), decode(t, want[i]))
					}
				}
				sig, err := base64.RawURLEncoding.Strict().DecodeString(got[2])
				if err != nil || len(sig) != sigSize[alg] {
					t.Errorf("%s: signature of %d bytes (%v), want %d", name, len(sig), err, sigSize[alg])
				}
				payload, err := jws.Verify([]byte(tok), jws.WithKey(alg, k.Public))
				if err != nil {
					t.Errorf("%s: jwx refuses the token: %v", name, err)
				} else if string(payload) != decode(t, got[1]) {
					t.Errorf("%s: jwx read claims %s", name, payload)
				}
				if _, err := benchVerifier(set).Verify(tok); err != nil {
					t.Errorf("%s: Verify: %v", name, err)
				}
			}
		})
	}
}

// sigSize is the size of a signature by a key a gateway makes.
var sigSize = map[jwa.SignatureAlgorithm]int{
	jwa.ES256(): 64, jwa.EdDSA(): 64, jwa.RS256(): keys.RSABits / 8, jwa.PS256(): keys.RSABits / 8,
}

func decode(t *testing.T, seg string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		t.Fatalf("segment %q: %v", seg, err)
	}
	return string(b)
}
