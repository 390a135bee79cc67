package guard_test

import (
	"net/http/httptest"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// BenchmarkCheck is the guard's whole decision for one request with a
// valid token: the normal case with the token cache (a sender repeats its
// token), and without it (every request a new token).
func BenchmarkCheck(b *testing.B) {
	for _, tc := range []struct {
		name  string
		cache bool
	}{{"RepeatedTokenCached", true}, {"SignatureCheckedEveryTime", false}} {
		b.Run(tc.name, func(b *testing.B) {
			f := newFixture(b)
			if tc.cache {
				f.state.verifier.v.(*tokenstate.Verifier).JWT.Cache = tokens.NewCache(0)
			}
			tok := f.token(b, sender, nil)
			r := httptest.NewRequest("POST", "/http/orders/1", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if d := f.guard.Check(r); d.Err != nil {
					b.Fatal(d.Err)
				}
			}
		})
	}
}
