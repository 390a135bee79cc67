package integration

import (
	"net/http"
	"testing"
)

func TestKeys_SelectedAlgorithmSignsTokensTheGuardAccepts(t *testing.T) {
	for _, alg := range []string{"EdDSA", "RS256", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			e := newEnvConfig(t, envConfig{oauthOptions: "signing_algorithm " + alg})
			tok := e.token(t, e.A)
			if h := parseJWS(t, tok).header; h["alg"] != alg || h["typ"] != "at+jwt" {
				t.Errorf("token header = %v, want alg %s, typ at+jwt", h, alg)
			}
			e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)
			keys := e.jwks(t)
			if len(keys) != 1 || keys[0]["alg"] != alg {
				t.Errorf("JWKS = %v, want one %s key", keys, alg)
			}
		})
	}
}

type adminKey struct {
	ID      string `json:"kid"`
	Signing bool   `json:"signing"`
}

func (e *env) adminKeys(t *testing.T, method, path string) []adminKey {
	t.Helper()
	r := send(t, e.http, newRequest(t, method, "http://"+e.admin+path, ""))
	r.wantStatus(t, http.StatusOK)
	var ks []adminKey
	r.decode(t, &ks)
	return ks
}

func TestKeys_RotationOnDemandKeepsIssuedTokensValid(t *testing.T) {
	e := newEnvConfig(t, envConfig{admin: true})
	before := e.token(t, e.A)
	oldKid := parseJWS(t, before).header["kid"]

	ks := e.adminKeys(t, http.MethodGet, "/oauth/keys")
	if len(ks) != 1 || !ks[0].Signing || ks[0].ID != oldKid {
		t.Fatalf("GET /oauth/keys = %+v, want the one signing key %v", ks, oldKid)
	}
	ks = e.adminKeys(t, http.MethodPost, "/oauth/keys/rotate?now=1")
	if len(ks) != 2 {
		t.Fatalf("after rotation: %+v, want two keys", ks)
	}

	after := e.token(t, e.A)
	newKid := parseJWS(t, after).header["kid"]
	if newKid == oldKid {
		t.Fatal("tokens are still signed by the replaced key")
	}
	published := map[any]bool{}
	for _, k := range e.jwks(t) {
		published[k["kid"]] = true
	}
	if !published[oldKid] || !published[newKid] {
		t.Errorf("JWKS kids = %v, want both %v and %v", published, oldKid, newKid)
	}
	for name, tok := range map[string]string{"token of the replaced key": before, "token of the new key": after} {
		if r := e.call(t, http.MethodGet, "/http/flow", tok, ""); r.status != http.StatusOK {
			t.Errorf("%s: %d, want 200", name, r.status)
		}
	}

	// A restart reads the same keys from storage.
	e.restartGateway(t)
	e.call(t, http.MethodGet, "/http/flow", before, "").wantStatus(t, http.StatusOK)
	if kid := parseJWS(t, e.token(t, e.A)).header["kid"]; kid != newKid {
		t.Errorf("after restart tokens are signed by %v, want %v", kid, newKid)
	}
}
