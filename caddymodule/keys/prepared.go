package keys

import (
	"crypto"
	"crypto/fips140"
	"crypto/rsa"
	"math"

	"filippo.io/bigmod"
)

// preparedRSA verifies the RSA signatures of one public key, in one
// scheme over one hash, against the key's modulus prepared once.
// crypto/rsa rebuilds the modulus's Montgomery form on every call, about
// a third of an RS256 or PS256 check; a guard checks against the same
// few keys all day. The arithmetic is filippo.io/bigmod, the standalone
// copy of the standard library's own; only the encoding checks are
// written here (pkcs1.go, pss.go), and FuzzPKCS1 and FuzzPSS hold their
// verdicts to crypto/rsa's.
type preparedRSA struct {
	n      *bigmod.Modulus
	e      uint
	bits   int // of the modulus
	size   int // of the modulus, in bytes: a signature is exactly this long
	scheme rsaScheme
	hash   crypto.Hash
	prefix []byte // PKCS #1 v1.5 only: DER of the DigestInfo before the hash (RFC 8017 §9.2, note 1)
}

// rsaScheme is how an RSA signature encodes the hash it signs.
type rsaScheme int

const (
	pkcs1v15 rsaScheme = iota // RSASSA-PKCS1-v1_5: RS256, RS384, RS512 (RFC 7518 §3.3)
	pss                       // RSASSA-PSS, MGF1 and a salt as long as the hash: PS256, PS384, PS512 (RFC 7518 §3.5)
)

// prepareRSA prepares pub for signatures in scheme over h (SHA-256, -384
// or -512), or returns nil for a key that crypto/rsa is left to judge
// (and refuse): one shorter than 2048 bits, or with an even or
// out-of-range exponent or modulus; and every key in FIPS 140-3 mode,
// whose stricter key rules are crypto/rsa's. Any size from 2048 bits up
// is prepared, odd ones too: PSS's encoding is sized by the modulus's
// bits, not its bytes, and the tests hold 2049 and 2051 bits to
// crypto/rsa's verdicts.
func prepareRSA(pub *rsa.PublicKey, scheme rsaScheme, h crypto.Hash) *preparedRSA {
	prefix, ok := digestInfo[h] // the hashes of both schemes
	if !ok || fips140.Enabled() || pub.N == nil || pub.N.BitLen() < 2048 || pub.N.Bit(0) == 0 ||
		pub.E < 3 || pub.E&1 == 0 || pub.E > math.MaxInt32 {
		return nil
	}
	n, err := bigmod.NewModulus(pub.N.Bytes())
	if err != nil {
		return nil
	}
	p := &preparedRSA{n: n, e: uint(pub.E), bits: pub.N.BitLen(), size: pub.Size(), scheme: scheme, hash: h}
	if scheme == pkcs1v15 {
		p.prefix = prefix
	}
	return p
}

// verify reports whether sig is a signature of hashed, a digest made with
// p's hash.
func (p *preparedRSA) verify(hashed, sig []byte) bool {
	if len(hashed) != p.hash.Size() {
		return false
	}
	em := p.encoded(sig)
	if em == nil {
		return false
	}
	if p.scheme == pss {
		return p.pssVerify(hashed, em)
	}
	return p.pkcs1Verify(hashed, em)
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
