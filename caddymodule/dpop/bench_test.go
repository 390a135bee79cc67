package dpop_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/oauthgate/caddymodule/dpop"
	"github.com/oauthgate/oauthgate/caddymodule/dpop/dpoptest"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/state"
)

// BenchmarkVerify is what a DPoP proof costs the guard (RFC 9449 §7.1:
// a fresh ES256 proof per request for a bound token), beside the one
// signature check in it (Signature: keys.Key.Verify on the same proofs).
// Issue 14 asks that a proof cost that check and nothing else
// measurable: the difference is everything else (decoding, htu, ath, the
// token's jkt, the replay table).
func BenchmarkVerify(b *testing.B) {
	const token = "an access token as long as the gateway's ES256 ones: " +
		"eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0"
	tok := strings.Repeat(token, 6)
	k := dpoptest.NewKey("ES256")
	const n = 1 << 14
	proofs := make([]string, n)
	for i := range proofs {
		proofs[i] = k.Proof(dpoptest.Options{Method: "POST", URL: target, AccessToken: tok})
	}
	b.Run("Proof", func(b *testing.B) {
		algs, _ := dpop.ParseAlgorithms(nil)
		v := &dpop.Verifier{Algorithms: algs, MaxAge: time.Hour, Once: state.NewMemoryOnce(0, nil)}
		req := dpop.Request{Method: "POST", URLs: []string{target}, AccessToken: tok, JKT: k.JKT}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i == n {
				b.StopTimer()
				v.Once = state.NewMemoryOnce(0, nil) // the proofs are new again
				i = 0
				b.StartTimer()
			}
			if _, err := v.Verify(context.Background(), proofs[i], req); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Signature", func(b *testing.B) {
		pub, err := jwk.Import(k.Private.Public())
		if err != nil {
			b.Fatal(err)
		}
		key, err := keys.NewPublic("", jwa.ES256(), pub)
		if err != nil {
			b.Fatal(err)
		}
		inputs, sigs := make([][]byte, n), make([][]byte, n)
		for i, p := range proofs {
			j := strings.LastIndexByte(p, '.')
			inputs[i] = []byte(p[:j])
			sigs[i], _ = base64.RawURLEncoding.DecodeString(p[j+1:])
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if !key.Verify(inputs[i%n], sigs[i%n]) {
				b.Fatal("a proof's signature does not verify")
			}
			i++
		}
	})
}
