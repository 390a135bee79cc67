// Package dpoptest makes DPoP proofs for tests and benchmarks: well-formed
// ones, and with Header and Claims overridden, every malformed kind.
package dpoptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Key is a client's DPoP key.
type Key struct {
	Alg     string
	Private crypto.Signer
	// JWK is the public key as a proof carries it, and JKT its RFC 7638
	// thumbprint.
	JWK map[string]any
	JKT string
}

// NewKey makes a key for alg: ES256, EdDSA, RS256 or PS256.
func NewKey(alg string) *Key {
	var priv crypto.Signer
	var err error
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "RS256", "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		panic("dpoptest: no key for " + alg)
	}
	if err != nil {
		panic(err)
	}
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		panic(err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		panic(err)
	}
	raw, _ := json.Marshal(pub)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return &Key{Alg: alg, Private: priv, JWK: m, JKT: base64.RawURLEncoding.EncodeToString(tp)}
}

// Options say what a proof claims; Header and Claims members override
// (nil deletes) those Proof writes.
type Options struct {
	Method, URL, AccessToken, Nonce string
	IssuedAt                        time.Time // zero: now
	Header, Claims                  map[string]any
}

// Proof returns a proof signed by k.
func (k *Key) Proof(o Options) string {
	iat := o.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	hdr := map[string]any{"typ": "dpop+jwt", "alg": k.Alg, "jwk": k.JWK}
	claims := map[string]any{"jti": rand.Text(), "htm": o.Method, "htu": o.URL, "iat": iat.Unix()}
	if o.AccessToken != "" {
		claims["ath"] = ATH(o.AccessToken)
	}
	if o.Nonce != "" {
		claims["nonce"] = o.Nonce
	}
	merge(hdr, o.Header)
	merge(claims, o.Claims)
	return k.Sign(hdr, claims)
}

func merge(dst, src map[string]any) {
	for n, v := range src {
		if v == nil {
			delete(dst, n)
		} else {
			dst[n] = v
		}
	}
}

// Sign signs header and claims as they are with k's algorithm.
func (k *Key) Sign(header, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(k.SignInput([]byte(input)))
}

// SignInput is k's JWS signature over input (header "." claims).
func (k *Key) SignInput(input []byte) []byte {
	sum := sha256.Sum256(input)
	var sig []byte
	var err error
	switch p := k.Private.(type) {
	case *ecdsa.PrivateKey:
		var der []byte
		if der, err = ecdsa.SignASN1(rand.Reader, p, sum[:]); err == nil {
			sig, err = rawECDSA(der)
		}
	case ed25519.PrivateKey:
		sig = ed25519.Sign(p, input)
	case *rsa.PrivateKey:
		if k.Alg == "PS256" {
			sig, err = rsa.SignPSS(rand.Reader, p, crypto.SHA256, sum[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, p, crypto.SHA256, sum[:])
		}
	}
	if err != nil {
		panic(err)
	}
	return sig
}

// rawECDSA turns an ASN.1 P-256 signature into JWS's r || s.
func rawECDSA(der []byte) ([]byte, error) {
	var v struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &v); err != nil {
		return nil, err
	}
	out := make([]byte, 64)
	v.R.FillBytes(out[:32])
	v.S.FillBytes(out[32:])
	return out, nil
}

// ATH is the "ath" of a proof for token: base64url(SHA-256(token)).
func ATH(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
