package keys

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"hash"
)

// pssVerify reports whether em, a signature's encoded message as long as
// the modulus, is an EMSA-PSS encoding of hashed with MGF1 and a salt as
// long as the hash, both with p's hash (RFC 8017 §8.1.2 step 3, §9.1.2
// with sLen = hLen; RFC 7518 §3.5). The steps are numbered as in §9.1.2;
// steps 1 and 2 (the hash of the message) are the caller's, and em is
// overwritten.
func (p *preparedRSA) pssVerify(mHash, em []byte) bool {
	hLen, sLen := p.hash.Size(), p.hash.Size()
	// EM is emLen = ⌈emBits/8⌉ bytes, emBits = modBits - 1 (§8.1.2 step
	// 2c): a byte shorter than the modulus when modBits is one more than
	// a multiple of 8, and then s^e mod n must begin with a zero byte.
	emBits := p.bits - 1
	if emLen := (emBits + 7) / 8; len(em) > emLen {
		if em[0] != 0 {
			return false
		}
		em = em[1:]
	}
	emLen := len(em)
	// 3, 4: EM = maskedDB || H || 0xbc.
	if emLen < hLen+sLen+2 || em[emLen-1] != 0xbc {
		return false
	}
	// 5: maskedDB is the leftmost emLen - hLen - 1 bytes, H the next hLen.
	db, h := em[:emLen-hLen-1], em[emLen-hLen-1:emLen-1]
	// 6: the leftmost 8·emLen - emBits bits of maskedDB are zero.
	var bitMask byte = 0xff >> (8*emLen - emBits)
	if db[0]&^bitMask != 0 {
		return false
	}
	// 7, 8, 9: DB = maskedDB xor MGF1(H), those leftmost bits zeroed.
	hh := p.hash.New()
	mgf1XOR(db, hh, h)
	db[0] &= bitMask
	// 10: DB = PS || 0x01 || salt, PS the emLen - hLen - sLen - 2 zero
	// bytes.
	psLen := emLen - hLen - sLen - 2
	for _, b := range db[:psLen] {
		if b != 0 {
			return false
		}
	}
	if db[psLen] != 0x01 {
		return false
	}
	// 11, 12, 13: H' = Hash(M'), M' = 8 zero bytes || mHash || salt.
	salt := db[len(db)-sLen:]
	var zeros [8]byte
	hh.Reset()
	hh.Write(zeros[:])
	hh.Write(mHash)
	hh.Write(salt)
	// 14: H = H'.
	return bytes.Equal(hh.Sum(nil), h)
}

// mgf1XOR xors out with MGF1(seed, len(out)) of RFC 8017 §B.2.1: the
// hashes of seed || C for the 4-byte big-endian counters C = 0, 1, …,
// one after the other.
func mgf1XOR(out []byte, h hash.Hash, seed []byte) {
	var counter [4]byte
	var sum []byte
	for c, done := uint32(0), 0; done < len(out); c++ {
		binary.BigEndian.PutUint32(counter[:], c)
		h.Reset()
		h.Write(seed)
		h.Write(counter[:])
		sum = h.Sum(sum[:0])
		done += subtle.XORBytes(out[done:], out[done:], sum)
	}
}
