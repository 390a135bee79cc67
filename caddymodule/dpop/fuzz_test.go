package dpop_test

import (
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/dpop"
	"github.com/oauthgate/oauthgate/caddymodule/dpop/dpoptest"
)

// FuzzParse feeds the proof parser arbitrary input: it must refuse
// without a panic, and accept only what verifies.
func FuzzParse(f *testing.F) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		k := dpoptest.NewKey(alg)
		f.Add(k.Proof(dpoptest.Options{Method: "GET", URL: target, AccessToken: "t"}))
		f.Add(k.Proof(dpoptest.Options{Method: "GET", URL: target, Header: map[string]any{"alg": "none"}}))
	}
	f.Add("e30.e30.")
	f.Add("..")
	algs, _ := dpop.ParseAlgorithms(nil)
	f.Fuzz(func(t *testing.T, proof string) {
		p, err := dpop.Parse(proof, algs)
		if err == nil && (p.JKT == "" || p.ID == "" || p.Method == "" || p.URL == "") {
			t.Errorf("accepted a proof without jti, htm or htu: %+v", p)
		}
		dpop.NormalizeURL(proof)
	})
}
