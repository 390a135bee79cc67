package keys

import (
	"bytes"
	"crypto"
	"crypto/fips140"
	"crypto/rsa"
	"math"

	"filippo.io/bigmod"
)

// pkcs1 verifies RSASSA-PKCS1-v1_5 signatures (RS256, RS384, RS512; RFC
// 8017 §8.2.2) against one public key whose modulus is prepared once.
// crypto/rsa rebuilds the modulus's Montgomery form on every call, about
// a third of an RS256 check; a guard checks against the same few keys
// all day. The arithmetic is filippo.io/bigmod, the standalone copy of
// the standard library's own; only the encoding check is written here,
// and FuzzPKCS1 holds its verdicts to crypto/rsa's.
type pkcs1 struct {
	n      *bigmod.Modulus
	e      uint
	size   int    // of the modulus, in bytes: a signature is exactly this long
	prefix []byte // DER of the DigestInfo before the hash (RFC 8017 §9.2, note 1)
	hash   crypto.Hash
}

// digestInfo are the DER prefixes of RFC 8017 §9.2, note 1.
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// newPKCS1 prepares pub for signatures over h, or returns nil for a key
// that crypto/rsa is left to judge (and refuse): one shorter than 2048
// bits, or with an even or out-of-range exponent or modulus; and every
// key in FIPS 140-3 mode, whose stricter key rules are crypto/rsa's.
func newPKCS1(pub *rsa.PublicKey, h crypto.Hash) *pkcs1 {
	prefix, ok := digestInfo[h]
	if !ok || fips140.Enabled() || pub.N == nil || pub.N.BitLen() < 2048 || pub.N.Bit(0) == 0 ||
		pub.E < 3 || pub.E&1 == 0 || pub.E > math.MaxInt32 {
		return nil
	}
	n, err := bigmod.NewModulus(pub.N.Bytes())
	if err != nil {
		return nil
	}
	return &pkcs1{n: n, e: uint(pub.E), size: pub.Size(), prefix: prefix, hash: h}
}

// verify reports whether sig is a signature of hashed, a digest made with
// p's hash.
func (p *pkcs1) verify(hashed, sig []byte) bool {
	if len(sig) != p.size || len(hashed) != p.hash.Size() {
		return false
	}
	s, err := bigmod.NewNat().SetBytes(sig, p.n) // refuses s ≥ n
	if err != nil {
		return false
	}
	em := bigmod.NewNat().ExpShortVarTime(s, p.e, p.n).Bytes(p.n)
	// EM = 0x00 || 0x01 || PS || 0x00 || DigestInfo || hash, where PS is
	// 0xff bytes filling the rest, at least 8 of them (RFC 8017 §9.2).
	t := len(p.prefix) + len(hashed)
	if p.size < t+11 {
		return false
	}
	for _, b := range em[2 : p.size-t-1] {
		if b != 0xff {
			return false
		}
	}
	return em[0] == 0 && em[1] == 1 && em[p.size-t-1] == 0 &&
		bytes.Equal(em[p.size-t:p.size-len(hashed)], p.prefix) && bytes.Equal(em[p.size-len(hashed):], hashed)
}
