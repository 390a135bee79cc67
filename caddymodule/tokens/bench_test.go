package tokens_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// The guard verifies a token on every request and the token endpoint
// mints one per request: these are the two costs a gateway adds that a
// plain reverse proxy does not have. `make bench` runs them; see
// BENCHMARKS.md for the numbers and the targets they serve.

const benchIssuer = "https://gw.example"

var benchNow = time.Unix(1_800_000_000, 0)

// benchAlgorithms are the algorithms a gateway may sign with.
var benchAlgorithms = []jwa.SignatureAlgorithm{jwa.ES256(), jwa.RS256(), jwa.PS256(), jwa.EdDSA()}

// benchKeys is a key set of one key of alg, as a gateway has after its
// first start with signing_algorithm alg.
func benchKeys(b testing.TB, alg jwa.SignatureAlgorithm) *keys.Set {
	b.Helper()
	m, err := keys.NewManager(keystest.NewStorage(), keys.Options{Algorithm: alg, RetainFor: time.Hour, Now: func() time.Time { return benchNow }})
	if err != nil {
		b.Fatal(err)
	}
	set, err := m.Sync(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return set
}

// benchClaims are the claims of a token the endpoint issues: every claim
// present, two roles in scope.
func benchClaims() *tokens.Claims {
	return &tokens.Claims{
		Issuer:   benchIssuer,
		Subject:  "oauth_client_3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6",
		ClientID: "3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6",
		Audience: []string{benchIssuer},
		IssuedAt: benchNow,
		Expiry:   benchNow.Add(time.Hour),
		ID:       tokens.NewID(),
		Scope:    []string{"ESBMessaging.send", "Orders.send"},
	}
}

func benchVerifier(set *keys.Set) *tokens.Verifier {
	return &tokens.Verifier{Keys: set, Issuer: benchIssuer, Audience: benchIssuer, Leeway: time.Second,
		MaxLength: 8192, Now: func() time.Time { return benchNow }}
}

func benchMint(b *testing.B, set *keys.Set) string {
	b.Helper()
	tok, err := tokens.Mint(set.Signing(), benchClaims())
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// BenchmarkVerify is the guard's cost per request without a cache of
// verified tokens: a valid token, verified from scratch.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(alg.String(), func(b *testing.B) {
			set := benchKeys(b, alg)
			v, tok := benchVerifier(set), benchMint(b, set)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify_Refused is the cost of refusing a token: what an
// attacker can make the guard spend per request. A forged signature costs
// a full verification; a token that is not even a JWS should cost next to
// nothing.
func BenchmarkVerify_Refused(b *testing.B) {
	set := benchKeys(b, jwa.RS256())
	v, tok := benchVerifier(set), benchMint(b, set)
	// Change one character inside the signature: the header and claims
	// still parse, the signature check fails.
	i := strings.LastIndexByte(tok, '.') + 5
	c := byte('A')
	if tok[i] == c {
		c = 'B'
	}
	forged := tok[:i] + string(c) + tok[i+1:]
	for _, tc := range []struct{ name, token string }{
		{"RS256_bad_signature", forged},
		{"unknown_kid", benchMint(b, benchKeys(b, jwa.RS256()))},
		{"not_a_JWS", "not-a-token"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if _, err := v.Verify(tc.token); err == nil {
				b.Fatal("the token verified; the benchmark would measure the wrong path")
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = v.Verify(tc.token)
			}
		})
	}
}

// BenchmarkMint is the signing part of the token endpoint's cost.
func BenchmarkMint(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(alg.String(), func(b *testing.B) {
			k := benchKeys(b, alg).Signing()
			c := benchClaims()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tokens.Mint(k, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
