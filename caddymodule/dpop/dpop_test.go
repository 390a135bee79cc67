package dpop_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/dpop"
	"github.com/oauthgate/oauthgate/caddymodule/dpop/dpoptest"
	"github.com/oauthgate/oauthgate/caddymodule/state"
)

const target = "https://gw.example.com/http/orders"

func verifier(t *testing.T) *dpop.Verifier {
	t.Helper()
	algs, err := dpop.ParseAlgorithms(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &dpop.Verifier{Algorithms: algs, MaxAge: time.Minute, Future: 5 * time.Second, Once: state.NewMemoryOnce(100, nil)}
}

func TestVerify_AcceptsAProofOfEveryKeyTypeOnce(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			v := verifier(t)
			k := dpoptest.NewKey(alg)
			proof := k.Proof(dpoptest.Options{Method: "POST", URL: target, AccessToken: "tok"})
			req := dpop.Request{Method: "POST", URLs: []string{target}, AccessToken: "tok"}
			p, err := v.Verify(context.Background(), proof, req)
			if err != nil {
				t.Fatal(err)
			}
			if p.JKT != k.JKT {
				t.Errorf("JKT = %s, want %s", p.JKT, k.JKT)
			}
			if _, err := v.Verify(context.Background(), proof, req); err == nil || !strings.Contains(err.Error(), "used before") {
				t.Errorf("replayed proof: got %v, want a refusal as used before", err)
			}
		})
	}
}

func TestVerify_RefusesEveryMalformedOrMismatchedProof(t *testing.T) {
	k := dpoptest.NewKey("ES256")
	other := dpoptest.NewKey("ES256")
	rsa := dpoptest.NewKey("RS256")
	ed := dpoptest.NewKey("EdDSA")
	now := time.Now()
	priv := map[string]any{}
	for n, v := range k.JWK {
		priv[n] = v
	}
	priv["d"] = "AAAA"
	signed := func(hdr, claims map[string]any) string {
		return k.Proof(dpoptest.Options{Method: "POST", URL: target, AccessToken: "tok", Header: hdr, Claims: claims})
	}
	cases := []struct {
		name, proof, want string
	}{
		{"not a JWS", "abc", "not a compact JWS"},
		{"four segments", signed(nil, nil) + ".x", "not a compact JWS"},
		{"too long", strings.Repeat("a", dpop.MaxLength+1), "longer than"},
		{"typ JWT", signed(map[string]any{"typ": "JWT"}, nil), `"typ"`},
		{"typ missing", signed(map[string]any{"typ": nil}, nil), `"typ"`},
		{"alg none", noneProof(k), "not allowed"},
		{"alg HS256", signed(map[string]any{"alg": "HS256"}, nil), "not allowed"},
		{"alg of another key type", signed(map[string]any{"alg": "RS256"}, nil), "not a key for RS256"},
		{"EdDSA key sent as ES256", ed.Proof(dpoptest.Options{Method: "POST", URL: target, Header: map[string]any{"alg": "ES256"}}), "not a key for ES256"},
		{"no jwk", signed(map[string]any{"jwk": nil}, nil), `no "jwk"`},
		{"jwk a string", signed(map[string]any{"jwk": "x"}, nil), `no "jwk"`},
		{"private key in jwk", signed(map[string]any{"jwk": priv}, nil), `private or symmetric`},
		{"symmetric jwk", signed(map[string]any{"jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0"}}, nil), `private or symmetric`},
		{"another key in jwk", signed(map[string]any{"jwk": other.JWK}, nil), "does not verify"},
		{"crit", signed(map[string]any{"crit": []string{"exp"}}, nil), "crit"},
		{"kid beside jwk", signed(map[string]any{"kid": "k1"}, nil), "besides jwk"},
		{"tampered claims", tamper(signed(nil, nil)), "does not verify"},
		{"no jti", signed(nil, map[string]any{"jti": nil}), `no "jti"`},
		{"long jti", signed(nil, map[string]any{"jti": strings.Repeat("j", 257)}), "longer than 256"},
		{"jti a number", signed(nil, map[string]any{"jti": 7}), "wrong type"},
		{"no htm", signed(nil, map[string]any{"htm": nil}), `no "htm"`},
		{"another method", signed(nil, map[string]any{"htm": "GET"}), "htm"},
		{"no htu", signed(nil, map[string]any{"htu": nil}), `no "htu"`},
		{"another URL", signed(nil, map[string]any{"htu": "https://gw.example.com/http/other"}), "htu"},
		{"another host", signed(nil, map[string]any{"htu": "https://evil.example.com/http/orders"}), "htu"},
		{"http for https", signed(nil, map[string]any{"htu": "http://gw.example.com/http/orders"}), "htu"},
		{"no iat", signed(nil, map[string]any{"iat": nil}), `no "iat"`},
		{"iat a string", signed(nil, map[string]any{"iat": "1700000000"}), "JSON numbers"},
		{"stale iat", signed(nil, map[string]any{"iat": now.Add(-2 * time.Minute).Unix()}), "ago"},
		{"future iat", signed(nil, map[string]any{"iat": now.Add(time.Minute).Unix()}), "future"},
		{"no ath", signed(nil, map[string]any{"ath": nil}), `no "ath"`},
		{"ath of another token", signed(nil, map[string]any{"ath": dpoptest.ATH("other")}), "not the hash"},
		{"duplicate claim", dupClaim(k), "duplicate"},
		{"small RSA key", smallRSA(rsa), `"jwk"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := verifier(t)
			_, err := v.Verify(context.Background(), c.proof, dpop.Request{Method: "POST", URLs: []string{target}, AccessToken: "tok"})
			var de *dpop.Error
			if !errors.As(err, &de) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want a *dpop.Error containing %q", err, c.want)
			}
		})
	}
}

func noneProof(k *dpoptest.Key) string {
	p := k.Proof(dpoptest.Options{Method: "POST", URL: target, AccessToken: "tok", Header: map[string]any{"alg": "none"}})
	return p[:strings.LastIndexByte(p, '.')+1]
}

func tamper(p string) string {
	parts := strings.Split(p, ".")
	b := []byte(parts[1])
	b[3] ^= 1
	parts[1] = string(b)
	return strings.Join(parts, ".")
}

func dupClaim(k *dpoptest.Key) string {
	p := k.Proof(dpoptest.Options{Method: "POST", URL: target, AccessToken: "tok"})
	_ = p
	// Signed over claims with "htm" twice: encoding/json would read the
	// last one.
	hdr := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.JWK}
	return signRawClaims(k, hdr, `{"jti":"x","htm":"GET","htm":"POST","htu":"`+target+`","iat":`+itoa(time.Now().Unix())+`,"ath":"`+dpoptest.ATH("tok")+`"}`)
}

func smallRSA(k *dpoptest.Key) string {
	// The size is checked before the signature, so a 1024-bit modulus
	// that is not the signing key's stands in for a small key.
	jwk := map[string]any{}
	for n, v := range k.JWK {
		jwk[n] = v
	}
	jwk["n"] = base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 128))
	return k.Proof(dpoptest.Options{Method: "POST", URL: target, AccessToken: "tok", Header: map[string]any{"jwk": jwk}})
}

func TestVerify_RefusesAProofWhenTheReplayStoreCannotAnswer(t *testing.T) {
	v := verifier(t)
	v.Once = failingOnce{}
	k := dpoptest.NewKey("ES256")
	_, err := v.Verify(context.Background(), k.Proof(dpoptest.Options{Method: "GET", URL: target}), dpop.Request{Method: "GET", URLs: []string{target}})
	if !dpop.IsUnavailable(err) {
		t.Errorf("got %v, want an unavailable refusal", err)
	}
}

type failingOnce struct{}

func (failingOnce) First(context.Context, string, string, time.Time) (bool, error) {
	return false, errors.New("redis is away")
}

type fixedNonce string

func (n fixedNonce) Issue(time.Time) string           { return string(n) }
func (n fixedNonce) Valid(s string, _ time.Time) bool { return s == string(n) }

func TestVerify_AsksForANonceWhenOneIsRequired(t *testing.T) {
	v := verifier(t)
	v.Nonces = fixedNonce("n-1")
	k := dpoptest.NewKey("ES256")
	req := dpop.Request{Method: "GET", URLs: []string{target}}
	for _, n := range []string{"", "n-0"} {
		if _, err := v.Verify(context.Background(), k.Proof(dpoptest.Options{Method: "GET", URL: target, Nonce: n}), req); !dpop.NeedsNonce(err) {
			t.Errorf("nonce %q: got %v, want a request for a nonce", n, err)
		}
	}
	if _, err := v.Verify(context.Background(), k.Proof(dpoptest.Options{Method: "GET", URL: target, Nonce: "n-1"}), req); err != nil {
		t.Errorf("with the nonce: %v", err)
	}
}

func TestNormalizeURL_ComparesAsRFC9449Says(t *testing.T) {
	cases := []struct{ in, want string }{
		{"https://GW.Example.com/a", "https://gw.example.com/a"},
		{"HTTPS://gw.example.com:443/a", "https://gw.example.com/a"},
		{"http://gw.example.com:80/a", "http://gw.example.com/a"},
		{"https://gw.example.com:8443/a?x=1#f", "https://gw.example.com:8443/a"},
		{"https://gw.example.com", "https://gw.example.com/"},
		{"https://[::1]:443/a", "https://[::1]/a"},
		{"https://127.0.0.1:9443/a", "https://127.0.0.1:9443/a"},
		{"ftp://gw.example.com/a", ""},
		{"/a", ""},
		{"https://user@gw.example.com/a", ""},
	}
	for _, c := range cases {
		got, ok := dpop.NormalizeURL(c.in)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
}

func TestParseAlgorithms_RefusesSymmetricAndNone(t *testing.T) {
	for _, n := range []string{"HS256", "none", "ES256K", ""} {
		if _, err := dpop.ParseAlgorithms([]string{n}); err == nil {
			t.Errorf("%q accepted", n)
		}
	}
	if algs, err := dpop.ParseAlgorithms([]string{"ES256", "EdDSA"}); err != nil || len(algs) != 2 {
		t.Errorf("ES256, EdDSA: %v %v", algs, err)
	}
}

func TestVerify_AKeyParsedBeforeIsHeldToEachProofsAlgorithmAndSignature(t *testing.T) {
	v := verifier(t)
	k := dpoptest.NewKey("ES256")
	req := dpop.Request{Method: "GET", URLs: []string{target}}
	if _, err := v.Verify(context.Background(), k.Proof(dpoptest.Options{Method: "GET", URL: target}), req); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ proof, want string }{
		"another alg":     {k.Proof(dpoptest.Options{Method: "GET", URL: target, Header: map[string]any{"alg": "ES384"}}), "not a key for ES384"},
		"a tampered body": {tamper(k.Proof(dpoptest.Options{Method: "GET", URL: target})), "does not verify"},
	} {
		if _, err := v.Verify(context.Background(), c.proof, req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", name, err, c.want)
		}
	}
	if _, err := v.Verify(context.Background(), k.Proof(dpoptest.Options{Method: "GET", URL: target}), req); err != nil {
		t.Errorf("the same key again: %v", err)
	}
}

func TestVerify_AthIsHeldToTheTokensHashWhetherTheCallerKnowsItOrNot(t *testing.T) {
	k := dpoptest.NewKey("ES256")
	for _, c := range []struct {
		name, ath string
		known     bool
		ok        bool
	}{
		{"the token's hash, computed here", dpoptest.ATH("tok"), false, true},
		{"the token's hash, known to the caller", dpoptest.ATH("tok"), true, true},
		{"another token's hash, computed here", dpoptest.ATH("other"), false, false},
		{"another token's hash, known to the caller", dpoptest.ATH("other"), true, false},
		{"the hash with one more character", dpoptest.ATH("tok") + "A", true, false},
		{"the hash with one character less", dpoptest.ATH("tok")[1:], true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			proof := k.Proof(dpoptest.Options{Method: "POST", URL: target, Claims: map[string]any{"ath": c.ath}})
			req := dpop.Request{Method: "POST", URLs: []string{target}, AccessToken: "tok"}
			if c.known {
				req.AccessTokenHash = sha256.Sum256([]byte("tok"))
			}
			_, err := verifier(t).Verify(context.Background(), proof, req)
			if (err == nil) != c.ok {
				t.Errorf("Verify = %v, want accepted %v", err, c.ok)
			}
		})
	}
}
