package issuers

import (
	"context"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
)

// BenchmarkVerify_ExternalRS256 is the guard's cost per request for an
// XSUAA-shaped token of a known key: no fetch, no lock.
func BenchmarkVerify_ExternalRS256(b *testing.B) {
	k := testKeys()
	p := newIDP(b, publicJWK(b, k.rsa1, map[string]any{"kid": "key-id-1", "alg": "RS256"}))
	iss, _ := newIssuer(b, p, keystest.NewClock(start), nil)
	mustFetch(b, iss)
	tok := sign(b, jwa.RS256(), k.rsa1, map[string]any{"kid": "key-id-1", "typ": "JWT"}, xsuaaClaims(p.URL, start))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := iss.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
