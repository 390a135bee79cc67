package assertion

import (
	"context"
	"testing"
)

// FuzzParse feeds the assertion parser anything: it must refuse or
// accept without panicking, and what it accepts must have what Verify
// relies on.
func FuzzParse(f *testing.F) {
	s := newSigner(f, "k1")
	f.Add(s.sign(goodHeader("k1"), goodClaims()))
	f.Add(`eyJhbGciOiJub25lIn0.eyJpc3MiOiJjMSJ9.`)
	f.Add(`e30.e30.AAAA`)
	f.Add(`eyJhbGciOiJFUzI1NiIsImNyaXQiOlsiYiJdfQ.eyJhdWQiOltbW1tbXV1dXV1dfQ.AA`)
	f.Fuzz(func(t *testing.T, raw string) {
		a, err := Parse(raw)
		if err != nil {
			return
		}
		if a.Alg == "" || a.Issuer == "" || a.Subject == "" || a.ID == "" || a.Expiry.IsZero() || len(raw) > MaxLength {
			t.Fatalf("accepted an assertion without what Verify needs: %+v", a)
		}
		_ = verifier().Verify(context.Background(), a, a.Issuer, s)
	})
}
