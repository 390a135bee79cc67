package keys_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/oauthgate/caddymodule/cputime"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// Verify is the guard's signature check: it must accept exactly the
// signatures a standard JWS implementation (jwx) makes with the key's
// algorithm, and nothing else.
func TestVerify_AcceptsWhatJWXSignsAndNothingElse(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, keys.RSABits)
	if err != nil {
		t.Fatal(err)
	}
	ecKey := func(c elliptic.Curve) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p256 := ecKey(elliptic.P256())
	for _, tc := range []struct {
		alg  jwa.SignatureAlgorithm
		priv crypto.Signer
	}{
		{jwa.RS256(), rsaKey}, {jwa.RS384(), rsaKey}, {jwa.RS512(), rsaKey},
		{jwa.PS256(), rsaKey}, {jwa.PS384(), rsaKey}, {jwa.PS512(), rsaKey},
		{jwa.ES256(), p256}, {jwa.ES384(), ecKey(elliptic.P384())}, {jwa.ES512(), ecKey(elliptic.P521())},
		{jwa.EdDSA(), edKey},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			k := publicKey(t, tc.alg, tc.priv.Public())
			tok, err := jws.Sign([]byte(`{"sub":"x"}`), jws.WithKey(tc.alg, tc.priv))
			if err != nil {
				t.Fatal(err)
			}
			input, sig := split(t, string(tok))
			if !k.Verify(input, sig) {
				t.Fatal("refused jwx's signature")
			}
			tampered := append([]byte(nil), input...)
			tampered[len(tampered)-1] ^= 1
			flipped := append([]byte(nil), sig...)
			flipped[len(flipped)/2] ^= 1
			for name, bad := range map[string][2][]byte{
				"other input":           {tampered, sig},
				"changed signature":     {input, flipped},
				"signature cut short":   {input, sig[:len(sig)-1]},
				"signature with a byte": {input, append(append([]byte(nil), sig...), 0)},
				"empty signature":       {input, nil},
			} {
				if k.Verify(bad[0], bad[1]) {
					t.Errorf("%s: accepted", name)
				}
			}
		})
	}

	t.Run("ES256 signature in ASN.1 form", func(t *testing.T) {
		k := publicKey(t, jwa.ES256(), p256.Public())
		input := []byte("eyJhbGciOiJFUzI1NiJ9.e30")
		d := sha256.Sum256(input)
		der, err := ecdsa.SignASN1(rand.Reader, p256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		if k.Verify(input, der) {
			t.Error("accepted an X.509-style signature; RFC 7518 §3.4 allows only R || S")
		}
	})

	t.Run("key that does not fit its algorithm", func(t *testing.T) {
		for name, tc := range map[string]struct {
			alg jwa.SignatureAlgorithm
			pub crypto.PublicKey
		}{
			"ES256 with a P-384 key": {jwa.ES256(), ecKey(elliptic.P384()).Public()},
			"ES384 with a P-256 key": {jwa.ES384(), p256.Public()},
			"RS256 with an EC key":   {jwa.RS256(), p256.Public()},
			"EdDSA with an RSA key":  {jwa.EdDSA(), rsaKey.Public()},
		} {
			jk, err := jwk.Import(tc.pub)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := keys.NewPublic("k", tc.alg, jk); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})
}

func publicKey(t *testing.T, alg jwa.SignatureAlgorithm, pub crypto.PublicKey) *keys.Key {
	t.Helper()
	jk, err := jwk.Import(pub)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.NewPublic("k", alg, jk)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// split returns a compact JWS's signing input and its decoded signature.
func split(t testing.TB, tok string) (input, sig []byte) {
	t.Helper()
	dot := strings.LastIndexByte(tok, '.')
	m, err := jws.Parse([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(tok[:dot]), m.Signatures()[0].Signature()
}

// BenchmarkKeyVerify is the signature check alone, hashing of the
// signing input included, on a token as the gateway issues it: what the
// guard cannot do without for a token it has not seen. The handler's
// BenchmarkGuardHandler/DistinctToken less this is the guard's own work.
// The ES256 and EdDSA cases also time the standard library's call alone,
// ecdsa.VerifyASN1 and ed25519.Verify, the curve arithmetic that is left
// once everything else is taken out.
func BenchmarkKeyVerify(b *testing.B) {
	for _, alg := range []jwa.SignatureAlgorithm{jwa.ES256(), jwa.EdDSA(), jwa.RS256(), jwa.PS256()} {
		k := keystest.NewSetOf(b, alg).Signing()
		now := time.Now()
		tok, err := tokens.Mint(k, &tokens.Claims{
			Issuer: "https://gw.example", Subject: "oauth_client_3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6",
			ClientID: "3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6", Audience: []string{"https://gw.example"},
			IssuedAt: now, Expiry: now.Add(time.Hour), ID: tokens.NewID(),
			Scope: []string{"ESBMessaging.send", "Orders.send"},
		})
		if err != nil {
			b.Fatal(err)
		}
		input, sig := split(b, tok)
		b.Run(alg.String(), func(b *testing.B) {
			b.ReportAllocs()
			defer cputime.Start(b)()
			for b.Loop() {
				if !k.Verify(input, sig) {
					b.Fatal("refused its own signature")
				}
			}
		})
		var pub any
		if err := jwk.Export(k.Public, &pub); err != nil {
			b.Fatal(err)
		}
		var check func() bool
		switch pub := pub.(type) {
		case *ecdsa.PublicKey:
			d := sha256.Sum256(input)
			der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
			if err != nil {
				b.Fatal(err)
			}
			check = func() bool { return ecdsa.VerifyASN1(pub, d[:], der) }
		case ed25519.PublicKey:
			check = func() bool { return ed25519.Verify(pub, input, sig) }
		default:
			continue
		}
		b.Run(alg.String()+"/StandardLibraryAlone", func(b *testing.B) {
			b.ReportAllocs()
			defer cputime.Start(b)()
			for b.Loop() {
				if !check() {
					b.Fatal("refused its own signature")
				}
			}
		})
	}
}
