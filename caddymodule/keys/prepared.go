package keys

import (
	"crypto"
	"crypto/fips140"
	"crypto/rsa"
	"math"

	"filippo.io/bigmod"
)

// preparedRSA verifies the RSA signatures of one public key, over one
// hash, against the key's modulus prepared once. crypto/rsa rebuilds the
// modulus's Montgomery form on every call, about a third of an RS256
// check; a guard checks against the same few keys all day. The
// arithmetic is filippo.io/bigmod, the standalone copy of the standard
// library's own; only the encoding check is written here (pkcs1.go), and
// FuzzPKCS1 holds its verdicts to crypto/rsa's.
type preparedRSA struct {
	n      *bigmod.Modulus
	e      uint
	size   int // of the modulus, in bytes: a signature is exactly this long
	hash   crypto.Hash
	prefix []byte // DER of the DigestInfo before the hash (RFC 8017 §9.2, note 1)
}

// prepareRSA prepares pub for RSASSA-PKCS1-v1_5 signatures (RS256,
// RS384, RS512) over h, or returns nil for a key that crypto/rsa is left
// to judge (and refuse): one shorter than 2048 bits, or with an even or
// out-of-range exponent or modulus; and every key in FIPS 140-3 mode,
// whose stricter key rules are crypto/rsa's.
func prepareRSA(pub *rsa.PublicKey, h crypto.Hash) *preparedRSA {
	prefix, ok := digestInfo[h]
	if !ok || fips140.Enabled() || pub.N == nil || pub.N.BitLen() < 2048 || pub.N.Bit(0) == 0 ||
		pub.E < 3 || pub.E&1 == 0 || pub.E > math.MaxInt32 {
		return nil
	}
	n, err := bigmod.NewModulus(pub.N.Bytes())
	if err != nil {
		return nil
	}
	return &preparedRSA{n: n, e: uint(pub.E), size: pub.Size(), hash: h, prefix: prefix}
}

// verify reports whether sig is a signature of hashed, a digest made with
// p's hash.
func (p *preparedRSA) verify(hashed, sig []byte) bool {
	if len(hashed) != p.hash.Size() {
		return false
	}
	em := p.encoded(sig)
	return em != nil && p.pkcs1Verify(hashed, em)
}

// encoded returns the encoded message EM = s^e mod n that the signature
// sig carries, as long as the modulus (RFC 8017 §8.1.2 and §8.2.2, step
// 2: RSAVP1, then I2OSP), or nil for a signature that is not exactly that
// long or not below n. The bytes are the caller's to change.
func (p *preparedRSA) encoded(sig []byte) []byte {
	if len(sig) != p.size {
		return nil
	}
	s, err := bigmod.NewNat().SetBytes(sig, p.n) // refuses s ≥ n
	if err != nil {
		return nil
	}
	return bigmod.NewNat().ExpShortVarTime(s, p.e, p.n).Bytes(p.n)
}
