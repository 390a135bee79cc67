package keys

import (
	"crypto"
	"crypto/fips140"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"sync"
	"testing"
)

// rsaKeys are one RSA key of each size the tests use; made once, as a
// 4096-bit key takes a while. Besides the usual sizes, two that are not a
// whole number of bytes, both prepared: 2049 bits, whose PSS encoded
// message is a byte shorter than the modulus, and 2051 bits, whose first
// byte of it has six bits that must be zero (RFC 8017 §9.1, emBits).
var rsaKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	var ks []*rsa.PrivateKey
	for _, bits := range []int{2048, 3072, 4096, 2049, 2051} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		ks = append(ks, k)
	}
	return ks
})

var rsaHashes = []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}

// rawSign returns em^d mod n: a "signature" of any encoded message, so
// that the encoding checks can be tried with every kind of wrong EM.
func rawSign(k *rsa.PrivateKey, em []byte) []byte {
	m := new(big.Int).SetBytes(em)
	m.Mod(m, k.N)
	return new(big.Int).Exp(m, k.D, k.N).FillBytes(make([]byte, k.Size()))
}

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

// agree fails the test unless the prepared check and crypto/rsa give the
// same verdict, and returns it.
func agree(t *testing.T, k *rsa.PrivateKey, h crypto.Hash, hashed, sig []byte) bool {
	t.Helper()
	if fips140.Enabled() {
		t.Skip("in FIPS 140-3 mode every RSA key is left to crypto/rsa")
	}
	p := prepareRSA(&k.PublicKey, h)
	if p == nil {
		t.Fatalf("a %d-bit key was not prepared", k.N.BitLen())
	}
	got, want := p.verify(hashed, sig), rsa.VerifyPKCS1v15(&k.PublicKey, h, hashed, sig) == nil
	if got != want {
		t.Fatalf("%d-bit key, %v: prepared check says %v, crypto/rsa %v (sig %x)", k.N.BitLen(), h, got, want, sig)
	}
	return got
}

func TestPKCS1_AgreesWithCryptoRSA(t *testing.T) {
	for _, k := range rsaKeys() {
		for i, h := range rsaHashes {
			hashed := digest(h, []byte("header.payload"))
			good, err := rsa.SignPKCS1v15(rand.Reader, k, h, hashed)
			if err != nil {
				t.Fatal(err)
			}
			other := digest(h, []byte("header.other"))
			wrongHash := rsaHashes[(i+1)%len(rsaHashes)]
			n := k.N.FillBytes(make([]byte, k.Size()))
			for _, tc := range []struct {
				name   string
				hashed []byte
				sig    []byte
				want   bool
			}{
				{"a good signature", hashed, good, true},
				{"another message", other, good, false},
				{"a flipped bit", hashed, flip(good, len(good)-1), false},
				{"one byte short", hashed, good[1:], false},
				{"one byte long", hashed, append([]byte{0}, good...), false},
				{"the modulus itself", hashed, n, false},
				{"zero", hashed, make([]byte, k.Size()), false},
				{"the digest of another hash", digest(wrongHash, []byte("header.payload")), good, false},
				{"block type 2", hashed, rawSign(k, encode(k, h, hashed, 2, digestInfo[h])), false},
				{"no DigestInfo", hashed, rawSign(k, encode(k, h, hashed, 1, nil)), false},
				{"another hash's DigestInfo", hashed, rawSign(k, encode(k, h, hashed, 1, digestInfo[wrongHash])), false},
				{"a padding byte other than 0xff", hashed, rawSign(k, flip(encode(k, h, hashed, 1, digestInfo[h]), 5)), false},
				{"a nonzero separator", hashed, rawSign(k, flip(encode(k, h, hashed, 1, digestInfo[h]), k.Size()-len(hashed)-len(digestInfo[h])-1)), false},
				{"the same EM, signed raw", hashed, rawSign(k, encode(k, h, hashed, 1, digestInfo[h])), true},
			} {
				if got := agree(t, k, h, tc.hashed, tc.sig); got != tc.want {
					t.Errorf("%d-bit key, %v, %s: %v, want %v", k.N.BitLen(), h, tc.name, got, tc.want)
				}
			}
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x01
	return c
}

func TestPKCS1_KeysCryptoRSAMustJudgeAreNotPrepared(t *testing.T) {
	k := rsaKeys()[0]
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	short, err := rsa.GenerateKey(rand.Reader, 2047)
	if err != nil {
		t.Fatal(err)
	}
	for name, pub := range map[string]*rsa.PublicKey{
		"1024 bits":     &small.PublicKey,
		"2047 bits":     &short.PublicKey,
		"exponent 1":    {N: k.N, E: 1},
		"even exponent": {N: k.N, E: 65536},
		"even modulus":  {N: new(big.Int).Add(k.N, big.NewInt(1)), E: 65537},
	} {
		if prepareRSA(pub, crypto.SHA256) != nil {
			t.Errorf("%s: prepared", name)
		}
	}
}

// FuzzPKCS1 holds the prepared check's verdict to crypto/rsa's on every
// input: a signature as given; a good signature of the message; or an
// encoded message made from the input and signed raw, so that the
// encoding checks meet every kind of EM.
func FuzzPKCS1(f *testing.F) {
	f.Add(byte(0), byte(0), byte(0), []byte("header.payload"), []byte{})
	f.Add(byte(1), byte(1), byte(1), []byte("header.payload"), []byte{})
	f.Add(byte(2), byte(2), byte(2), []byte("m"), []byte{0x00, 0x01, 0x02})
	// A padding byte of 0xfe, which a rune-wise trim of "\xff" passed.
	f.Add(byte(0), byte(0), byte(2), []byte("m"), []byte{0x00, 0x05, 0xfe})
	f.Fuzz(func(t *testing.T, keyIdx, hashIdx, mode byte, msg, data []byte) {
		k := rsaKeys()[int(keyIdx)%len(rsaKeys())]
		h := rsaHashes[int(hashIdx)%len(rsaHashes)]
		hashed := digest(h, msg)
		var sig []byte
		switch mode % 3 {
		case 0:
			sig = data
		case 1:
			var err error
			if sig, err = rsa.SignPKCS1v15(rand.Reader, k, h, hashed); err != nil {
				t.Fatal(err)
			}
			if len(data) > 0 { // damage it where data says
				sig[int(data[0])%len(sig)] ^= 1 << (data[len(data)-1] % 8)
			}
		case 2:
			em := encode(k, h, hashed, 1, digestInfo[h])
			for i := 0; i+2 < len(data); i += 3 { // (2-byte position, value) triples
				em[(int(data[i])<<8|int(data[i+1]))%len(em)] = data[i+2]
			}
			sig = rawSign(k, em)
		}
		agree(t, k, h, hashed, sig)
	})
}

func BenchmarkPKCS1(b *testing.B) {
	k := rsaKeys()[0]
	hashed := digest(crypto.SHA256, []byte("header.payload"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, hashed)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("prepared", func(b *testing.B) {
		p := prepareRSA(&k.PublicKey, crypto.SHA256)
		for b.Loop() {
			if !p.verify(hashed, sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("crypto/rsa", func(b *testing.B) {
		for b.Loop() {
			if rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, hashed, sig) != nil {
				b.Fatal("refused")
			}
		}
	})
}
