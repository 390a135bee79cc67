package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Sign returns this key's signature over input (the first two segments
// of a compact JWS and their dot) with the key's own algorithm, in the
// form the third segment carries (RFC 7518 §3).
//
// It calls crypto/* directly rather than through jws.Sign: the token
// endpoint signs a token per request, and jwx would build a header
// object, marshal it with reflection and convert the signature's form
// on every call, about a third of the cost of an ES256 token.
func (k *Key) Sign(input []byte) ([]byte, error) {
	if k.sign == nil {
		return nil, errors.New("key cannot sign: it has no private half")
	}
	return k.sign(input)
}

// newSign returns the signer of alg with priv, the crypto/* form of a
// private key that fits alg (see fits).
func newSign(alg jwa.SignatureAlgorithm, priv any) (func(input []byte) ([]byte, error), error) {
	h := hashOf(alg)
	switch alg {
	case jwa.ES256():
		ek, ok := priv.(*ecdsa.PrivateKey)
		if !ok || ek.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%s needs an EC key on P-256", alg)
		}
		return func(input []byte) ([]byte, error) {
			der, err := ecdsa.SignASN1(rand.Reader, ek, digest(h, input))
			if err != nil {
				return nil, err
			}
			return fixedRS(der, 32)
		}, nil
	case jwa.EdDSA():
		ed, ok := priv.(ed25519.PrivateKey)
		if !ok || len(ed) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("%s needs an Ed25519 key, not %T", alg, priv)
		}
		return func(input []byte) ([]byte, error) { return ed25519.Sign(ed, input), nil }, nil
	case jwa.RS256(), jwa.PS256():
		rk, ok := priv.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s needs an RSA key, not %T", alg, priv)
		}
		rk.Precompute()
		var opts crypto.SignerOpts = h
		if alg == jwa.PS256() {
			// RFC 7518 §3.5: the salt is as long as the hash.
			opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
		}
		return func(input []byte) ([]byte, error) { return rk.Sign(rand.Reader, digest(h, input), opts) }, nil
	}
	return nil, fmt.Errorf("algorithm %q is not supported for signing keys", alg)
}

// fixedRS converts an ASN.1 ECDSA signature (what crypto/ecdsa makes)
// into the JWS form of RFC 7518 §3.4: R and S as big-endian integers of
// exactly size bytes each, left-padded with zeros, concatenated.
func fixedRS(der []byte, size int) ([]byte, error) {
	out := make([]byte, 2*size)
	input, seq := cryptobyte.String(der), cryptobyte.String(nil)
	if !input.ReadASN1(&seq, asn1.SEQUENCE) || !input.Empty() {
		return nil, errors.New("ecdsa: malformed signature")
	}
	for i := range 2 {
		var n cryptobyte.String
		if !seq.ReadASN1(&n, asn1.INTEGER) || len(n) == 0 || n[0]&0x80 != 0 {
			return nil, errors.New("ecdsa: malformed signature")
		}
		for len(n) > 0 && n[0] == 0 {
			n = n[1:]
		}
		if len(n) > size {
			return nil, errors.New("ecdsa: signature integer too large")
		}
		copy(out[(i+1)*size-len(n):(i+1)*size], n)
	}
	if !seq.Empty() {
		return nil, errors.New("ecdsa: malformed signature")
	}
	return out, nil
}
