package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// Verify reports whether sig (the decoded third segment of a compact JWS)
// is this key's signature over input (the first two segments and their
// dot), with the key's own algorithm (RFC 7518 §3).
//
// It calls crypto/* directly rather than through jws.Verify: the guard
// verifies a token per request, and jwx would parse the header and
// decode the token once more (the caller has done both), a third of the
// cost of an RS256 check.
func (k *Key) Verify(input, sig []byte) bool {
	return k.verify != nil && k.verify(input, sig) // nil: a Key not made by this package
}

// newVerify returns the check of alg's signatures with pub, or an error
// if pub is not a key alg is defined for.
func newVerify(alg jwa.SignatureAlgorithm, pub any) (func(input, sig []byte) bool, error) {
	switch alg {
	case jwa.RS256(), jwa.RS384(), jwa.RS512(), jwa.PS256(), jwa.PS384(), jwa.PS512():
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s needs an RSA key, not %T", alg, pub)
		}
		h, scheme := hashOf(alg), pkcs1v15
		if alg == jwa.PS256() || alg == jwa.PS384() || alg == jwa.PS512() {
			scheme = pss
		}
		if p := prepareRSA(rk, scheme, h); p != nil {
			return func(input, sig []byte) bool { return p.verify(digest(h, input), sig) }, nil
		}
		if scheme == pss {
			// RFC 7518 §3.5: the salt is as long as the hash.
			opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
			return func(input, sig []byte) bool {
				return rsa.VerifyPSS(rk, h, digest(h, input), sig, opts) == nil
			}, nil
		}
		return func(input, sig []byte) bool {
			return rsa.VerifyPKCS1v15(rk, h, digest(h, input), sig) == nil
		}, nil
	case jwa.ES256(), jwa.ES384(), jwa.ES512():
		ek, ok := pub.(*ecdsa.PublicKey)
		curve := map[jwa.SignatureAlgorithm]elliptic.Curve{
			jwa.ES256(): elliptic.P256(), jwa.ES384(): elliptic.P384(), jwa.ES512(): elliptic.P521(),
		}[alg]
		if !ok || ek.Curve != curve {
			return nil, fmt.Errorf("%s needs an EC key on %s", alg, curve.Params().Name)
		}
		h, size := hashOf(alg), (curve.Params().BitSize+7)/8
		return func(input, sig []byte) bool {
			// RFC 7518 §3.4: R and S as fixed-size big-endian integers,
			// nothing else (not the ASN.1 of X.509 signatures).
			if len(sig) != 2*size {
				return false
			}
			// VerifyASN1 keeps its argument past the stack, so this is one
			// allocation; ecdsa.Verify made ten for the same DER.
			der, ok := ecdsaDER(make([]byte, 0, maxECDSADER), sig[:size], sig[size:])
			return ok && ecdsa.VerifyASN1(ek, digest(h, input), der)
		}, nil
	case jwa.EdDSA():
		ed, ok := pub.(ed25519.PublicKey)
		if !ok || len(ed) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s needs an Ed25519 key, not %T", alg, pub)
		}
		return func(input, sig []byte) bool { return ed25519.Verify(ed, input, sig) }, nil
	}
	return nil, fmt.Errorf("algorithm %q is not supported", alg)
}

// maxECDSADER is the length of the longest DER signature ecdsaDER makes:
// a SEQUENCE of two INTEGERs of P-521, 66 bytes each and a zero before a
// high bit (a long-form length, as the content is over 127 bytes).
const maxECDSADER = 3 + 2*(2+1+66)

// ecdsaDER appends to dst the DER form of the signature (r, s), two
// big-endian integers, as crypto/ecdsa.VerifyASN1 takes it (SEC 1,
// ECDSA-Sig-Value): what ecdsa.Verify builds from two big.Ints before it
// calls VerifyASN1 itself, here without them. ok is false where
// ecdsa.Verify refuses before that: r or s zero. Integers longer than
// P-521's are not for this function.
func ecdsaDER(dst, r, s []byte) (der []byte, ok bool) {
	r, s = bytes.TrimLeft(r, "\x00"), bytes.TrimLeft(s, "\x00")
	if len(r) == 0 || len(s) == 0 || len(r) > 66 || len(s) > 66 {
		return nil, false
	}
	n := 2 + len(r) + int(r[0]>>7) + 2 + len(s) + int(s[0]>>7)
	dst = append(dst, 0x30) // SEQUENCE
	if n > 127 {
		dst = append(dst, 0x81)
	}
	dst = append(dst, byte(n))
	for _, v := range [2][]byte{r, s} {
		dst = append(dst, 0x02, byte(len(v)+int(v[0]>>7))) // INTEGER
		if v[0]&0x80 != 0 {
			dst = append(dst, 0) // positive
		}
		dst = append(dst, v...)
	}
	return dst, true
}

func hashOf(alg jwa.SignatureAlgorithm) crypto.Hash {
	switch alg {
	case jwa.RS384(), jwa.PS384(), jwa.ES384():
		return crypto.SHA384
	case jwa.RS512(), jwa.PS512(), jwa.ES512():
		return crypto.SHA512
	}
	return crypto.SHA256
}

func digest(h crypto.Hash, input []byte) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384(input)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(input)
		return d[:]
	}
	d := sha256.Sum256(input)
	return d[:]
}
