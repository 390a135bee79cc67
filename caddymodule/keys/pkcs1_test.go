package keys

import (
	"crypto"
	"crypto/rsa"
	"testing"
)

// encode is EM for hashed with the given number of 0xff padding bytes,
// prefix and the block type (1 for signatures), with the rest as given.
func encode(k *rsa.PrivateKey, h crypto.Hash, hashed []byte, blockType byte, prefix []byte) []byte {
	em := make([]byte, k.Size())
	em[1] = blockType
	t := len(prefix) + len(hashed)
	for i := 2; i < len(em)-t-1; i++ {
		em[i] = 0xff
	}
	copy(em[len(em)-t:], prefix)
	copy(em[len(em)-len(hashed):], hashed)
	return em
}

func TestPKCS1_AgreesWithCryptoRSA(t *testing.T) {
	testAgreement(t, pkcs1v15, func(k *rsa.PrivateKey, h, wrongHash crypto.Hash, hashed []byte) []rsaCase {
		sepAt := k.Size() - len(hashed) - len(digestInfo[h]) - 1
		return []rsaCase{
			{"block type 2", hashed, rawSign(k, encode(k, h, hashed, 2, digestInfo[h])), false},
			{"no DigestInfo", hashed, rawSign(k, encode(k, h, hashed, 1, nil)), false},
			{"another hash's DigestInfo", hashed, rawSign(k, encode(k, h, hashed, 1, digestInfo[wrongHash])), false},
			{"a padding byte other than 0xff", hashed, rawSign(k, flip(encode(k, h, hashed, 1, digestInfo[h]), 5)), false},
			{"a nonzero separator", hashed, rawSign(k, flip(encode(k, h, hashed, 1, digestInfo[h]), sepAt)), false},
			{"the same EM, signed raw", hashed, rawSign(k, encode(k, h, hashed, 1, digestInfo[h])), true},
		}
	})
}

// FuzzPKCS1 holds the prepared check's verdict to crypto/rsa's on every
// input (see fuzzAgreement); its one kind of encoded message is a true
// encoding of the message with the bytes changed that the input names.
func FuzzPKCS1(f *testing.F) {
	f.Add(byte(0), byte(0), byte(0), []byte("header.payload"), []byte{})
	f.Add(byte(1), byte(1), byte(1), []byte("header.payload"), []byte{})
	f.Add(byte(2), byte(2), byte(2), []byte("m"), []byte{0x00, 0x01, 0x02})
	// A padding byte of 0xfe, which a rune-wise trim of "\xff" passed.
	f.Add(byte(0), byte(0), byte(2), []byte("m"), []byte{0x00, 0x05, 0xfe})
	fuzzAgreement(f, pkcs1v15, 1, func(k *rsa.PrivateKey, h crypto.Hash, hashed []byte, _ int, _, data []byte) []byte {
		em := encode(k, h, hashed, 1, digestInfo[h])
		edit(em, data)
		return em
	})
}

func BenchmarkPKCS1(b *testing.B) { benchRSA(b, pkcs1v15) }
