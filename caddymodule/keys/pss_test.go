package keys

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"testing"
)

// pssEncode is EMSA-PSS-ENCODE (RFC 8017 §9.1.1) of hashed for k, open to
// every change a test wants: M' = zeros || hashed || salt, DB = PS ||
// 0x01 || salt, and change is applied to DB before it is masked. With 8
// zero bytes and no change it is a true encoding. EM is returned as long
// as the modulus, so with a leading zero byte where emLen is shorter.
func pssEncode(k *rsa.PrivateKey, h crypto.Hash, hashed, salt, zeros []byte, change func(db []byte)) []byte {
	emBits := k.N.BitLen() - 1
	emLen := (emBits + 7) / 8
	hh := h.New()
	hh.Write(zeros)
	hh.Write(hashed)
	hh.Write(salt)
	mh := hh.Sum(nil)
	db := make([]byte, emLen-len(mh)-1)
	db[len(db)-len(salt)-1] = 0x01
	copy(db[len(db)-len(salt):], salt)
	if change != nil {
		change(db)
	}
	mgf1XOR(db, h.New(), mh)
	db[0] &= 0xff >> (8*emLen - emBits)
	em := make([]byte, k.Size())
	copy(em[k.Size()-emLen:], db)
	copy(em[k.Size()-len(mh)-1:], mh)
	em[len(em)-1] = 0xbc
	return em
}

// pssHighBit returns a raw signature of a true encoding of hashed with
// one more bit set, the one just left of emBits: the only bit there that
// a number below the modulus can have. The salt is chosen so that it is
// below; so step 6 of RFC 8017 §9.1.2 (and at 2049 bits, the byte before
// EM) is what refuses it.
func pssHighBit(t *testing.T, k *rsa.PrivateKey, h crypto.Hash, hashed []byte) []byte {
	t.Helper()
	for i := range 1000 {
		em := pssEncode(k, h, hashed, digest(h, []byte{byte(i), byte(i >> 8)}), make([]byte, 8), nil)
		m := new(big.Int).SetBytes(em)
		m.SetBit(m, k.N.BitLen()-1, 1)
		if m.Cmp(k.N) < 0 {
			return rawSign(k, m.Bytes())
		}
	}
	t.Fatalf("%d-bit key: no salt gave an EM below the modulus", k.N.BitLen())
	return nil
}

func TestPSS_AgreesWithCryptoRSA(t *testing.T) {
	testAgreement(t, pss, func(k *rsa.PrivateKey, h, _ crypto.Hash, hashed []byte) []rsaCase {
		signed := func(saltLength int) []byte {
			sig, err := rsa.SignPSS(rand.Reader, k, h, hashed, &rsa.PSSOptions{SaltLength: saltLength})
			if err != nil {
				t.Fatal(err)
			}
			return sig
		}
		salt, zeros := digest(h, []byte("salt")), make([]byte, 8)
		encoded := func(salt, zeros []byte, change func(db []byte)) []byte {
			return rawSign(k, pssEncode(k, h, hashed, salt, zeros, change))
		}
		psLen := (k.N.BitLen()-1+7)/8 - 2*h.Size() - 2
		return []rsaCase{
			{"a salt one byte longer than the hash", hashed, signed(h.Size() + 1), false},
			{"a salt one byte shorter than the hash", hashed, signed(h.Size() - 1), false},
			{"the longest salt the key allows", hashed, signed(rsa.PSSSaltLengthAuto), false},
			{"no salt", hashed, encoded(nil, zeros, nil), false},
			{"the same EM, signed raw", hashed, encoded(salt, zeros, nil), true},
			{"a trailer other than 0xbc", hashed, rawSign(k, flip(pssEncode(k, h, hashed, salt, zeros, nil), k.Size()-1)), false},
			{"a bit set left of emBits", hashed, pssHighBit(t, k, h, hashed), false},
			{"a nonzero byte in PS", hashed, encoded(salt, zeros, func(db []byte) { db[psLen/2] = 0x80 }), false},
			{"a 0x01 at the end of PS", hashed, encoded(salt, zeros, func(db []byte) { db[psLen-1] = 0x01 }), false},
			{"a separator of 0x00", hashed, encoded(salt, zeros, func(db []byte) { db[psLen] = 0x00 }), false},
			{"a separator of 0x02", hashed, encoded(salt, zeros, func(db []byte) { db[psLen] = 0x02 }), false},
			{"a salt changed after hashing", hashed, encoded(salt, zeros, func(db []byte) { db[len(db)-1] ^= 0x01 }), false},
			{"M' without its 8 zero bytes", hashed, encoded(salt, nil, nil), false},
			{"M' with a nonzero byte among its 8 zero bytes", hashed, encoded(salt, []byte{0, 0, 0, 0, 0, 0, 0, 1}, nil), false},
		}
	})
}

// FuzzPSS holds the prepared check's verdict to crypto/rsa's on every
// input (see fuzzAgreement). Its encoded messages are encodings of the
// message with a salt of a length the input gives: the first kind then
// has the bytes changed that the input names, which reaches the trailer
// and the bits left of emBits; the second has them changed in DB before
// it is masked, which reaches PS, the separator, the salt and H.
func FuzzPSS(f *testing.F) {
	f.Add(byte(0), byte(0), byte(0), []byte("header.payload"), []byte{})
	f.Add(byte(1), byte(1), byte(1), []byte("header.payload"), []byte{})
	f.Add(byte(2), byte(2), byte(1), []byte("m"), []byte{0x07, 0xff, 0xff})
	f.Add(byte(3), byte(0), byte(2), []byte("m"), []byte{0x20, 0x00, 0x00, 0x80})
	f.Add(byte(0), byte(1), byte(2), []byte("m"), []byte{0x30, 0xff, 0xff, 0xbd})
	f.Add(byte(0), byte(2), byte(3), []byte("m"), []byte{0x40, 0x00, 0x00, 0x01})
	f.Add(byte(1), byte(0), byte(3), []byte("m"), []byte{0x21})
	fuzzAgreement(f, pss, 2, func(k *rsa.PrivateKey, h crypto.Hash, hashed []byte, kind int, msg, data []byte) []byte {
		// The first byte of data is the salt's length, up to twice the
		// hash's; the rest, the changes.
		salt := make([]byte, 0, 2*h.Size())
		if len(data) > 0 {
			salt = salt[:int(data[0])%(cap(salt)+1)]
			data = data[1:]
		}
		copy(salt, msg)
		if kind == 1 {
			return pssEncode(k, h, hashed, salt, make([]byte, 8), func(db []byte) { edit(db, data) })
		}
		em := pssEncode(k, h, hashed, salt, make([]byte, 8), nil)
		edit(em, data)
		return em
	})
}

func BenchmarkPSS(b *testing.B) { benchRSA(b, pss) }
