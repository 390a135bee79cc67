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

// pssOptions are RFC 7518 §3.5's: the salt is as long as the hash.
var pssOptions = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}

// rawSign returns em^d mod n: a "signature" of any encoded message, so
// that the encoding checks can be tried with every kind of wrong EM. It
// computes modulo p and q and joins the two (the CRT, RFC 8017 §5.1.2),
// a third of the time of em^d mod n, so that the fuzz targets try more.
func rawSign(k *rsa.PrivateKey, em []byte) []byte {
	m := new(big.Int).SetBytes(em)
	m.Mod(m, k.N)
	p, q := k.Primes[0], k.Primes[1]
	m1 := new(big.Int).Exp(m, k.Precomputed.Dp, p)
	m2 := new(big.Int).Exp(m, k.Precomputed.Dq, q)
	h := m1.Sub(m1, m2)
	h.Mul(h, k.Precomputed.Qinv).Mod(h, p) // Mod is Euclidean: h ≥ 0
	return h.Mul(h, q).Add(h, m2).FillBytes(make([]byte, k.Size()))
}

// sign is crypto/rsa's signature of hashed in scheme.
func sign(tb testing.TB, k *rsa.PrivateKey, scheme rsaScheme, h crypto.Hash, hashed []byte) []byte {
	tb.Helper()
	var sig []byte
	var err error
	if scheme == pss {
		sig, err = rsa.SignPSS(rand.Reader, k, h, hashed, pssOptions)
	} else {
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, h, hashed)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return sig
}

// cryptoRSAVerify is crypto/rsa's verdict on sig in scheme.
func cryptoRSAVerify(pub *rsa.PublicKey, scheme rsaScheme, h crypto.Hash, hashed, sig []byte) bool {
	if scheme == pss {
		return rsa.VerifyPSS(pub, h, hashed, sig, pssOptions) == nil
	}
	return rsa.VerifyPKCS1v15(pub, h, hashed, sig) == nil
}

// agree fails the test unless the prepared check and crypto/rsa give the
// same verdict, and returns it.
func agree(t *testing.T, scheme rsaScheme, k *rsa.PrivateKey, h crypto.Hash, hashed, sig []byte) bool {
	t.Helper()
	if fips140.Enabled() {
		t.Skip("in FIPS 140-3 mode every RSA key is left to crypto/rsa")
	}
	p := prepareRSA(&k.PublicKey, scheme, h)
	if p == nil {
		t.Fatalf("a %d-bit key was not prepared", k.N.BitLen())
	}
	got, want := p.verify(hashed, sig), cryptoRSAVerify(&k.PublicKey, scheme, h, hashed, sig)
	if got != want {
		t.Errorf("%d-bit key, %v, scheme %d: prepared check says %v, crypto/rsa %v (sig %x)", k.N.BitLen(), h, scheme, got, want, sig)
	}
	return got
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x01
	return c
}

// edit sets the bytes of b that data's (2-byte position, value) triples
// name.
func edit(b, data []byte) {
	for i := 0; i+2 < len(data); i += 3 {
		b[(int(data[i])<<8|int(data[i+1]))%len(b)] = data[i+2]
	}
}

// rsaCase is a signature and the digest it is checked against, with the
// verdict both checks must give.
type rsaCase struct {
	name   string
	hashed []byte
	sig    []byte
	want   bool
}

// testAgreement holds the prepared check in scheme to crypto/rsa's
// verdicts, and to the wanted ones, with every test key and hash: on the
// cases every scheme has (a good signature, and signatures that are
// wrong whatever they encode) and those that encoding makes of the
// scheme's own encoding, given another hash to mix in.
func testAgreement(t *testing.T, scheme rsaScheme, encoding func(k *rsa.PrivateKey, h, wrongHash crypto.Hash, hashed []byte) []rsaCase) {
	for _, k := range rsaKeys() {
		for i, h := range rsaHashes {
			hashed := digest(h, []byte("header.payload"))
			good := sign(t, k, scheme, h, hashed)
			wrongHash := rsaHashes[(i+1)%len(rsaHashes)]
			n := new(big.Int).Set(k.N)
			cases := []rsaCase{
				{"a good signature", hashed, good, true},
				{"another message", digest(h, []byte("header.other")), good, false},
				{"a flipped bit", hashed, flip(good, len(good)-1), false},
				{"one byte short", hashed, good[1:], false},
				{"one byte long", hashed, append([]byte{0}, good...), false},
				{"the modulus itself", hashed, n.FillBytes(make([]byte, k.Size())), false},
				{"the modulus minus one", hashed, new(big.Int).Sub(n, big.NewInt(1)).FillBytes(make([]byte, k.Size())), false},
				{"zero", hashed, make([]byte, k.Size()), false},
				{"the digest of another hash", digest(wrongHash, []byte("header.payload")), good, false},
				{"signed with another hash", hashed, sign(t, k, scheme, wrongHash, digest(wrongHash, []byte("header.payload"))), false},
			}
			for _, tc := range append(cases, encoding(k, h, wrongHash, hashed)...) {
				if got := agree(t, scheme, k, h, tc.hashed, tc.sig); got != tc.want {
					t.Errorf("%d-bit key, %v, %s: %v, want %v", k.N.BitLen(), h, tc.name, got, tc.want)
				}
			}
		}
	}
}

// fuzzAgreement holds the prepared check in scheme to crypto/rsa's
// verdict on every input. The input picks a key, a hash and a mode: 0,
// data is the signature; 1, a good signature of msg, with the bit flipped
// that data names; from 2 on, an encoded message that encode makes from
// the input, one of encodings kinds, signed raw, so that the encoding
// checks meet every kind of EM.
func fuzzAgreement(f *testing.F, scheme rsaScheme, encodings int, encode func(k *rsa.PrivateKey, h crypto.Hash, hashed []byte, kind int, msg, data []byte) []byte) {
	f.Fuzz(func(t *testing.T, keyIdx, hashIdx, mode byte, msg, data []byte) {
		k := rsaKeys()[int(keyIdx)%len(rsaKeys())]
		h := rsaHashes[int(hashIdx)%len(rsaHashes)]
		hashed := digest(h, msg)
		var sig []byte
		switch m := int(mode) % (2 + encodings); m {
		case 0:
			sig = data
		case 1:
			sig = sign(t, k, scheme, h, hashed)
			if len(data) > 0 {
				sig[int(data[0])%len(sig)] ^= 1 << (data[len(data)-1] % 8)
			}
		default:
			sig = rawSign(k, encode(k, h, hashed, m-2, msg, data))
		}
		agree(t, scheme, k, h, hashed, sig)
	})
}

func TestPrepareRSA_KeysCryptoRSAMustJudgeAreNotPrepared(t *testing.T) {
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
		for _, scheme := range []rsaScheme{pkcs1v15, pss} {
			if prepareRSA(pub, scheme, crypto.SHA256) != nil {
				t.Errorf("%s, scheme %d: prepared", name, scheme)
			}
		}
	}
}

// benchRSA times an RSA check with the SHA-256 of a 2048-bit key (RS256 or
// PS256), prepared and by crypto/rsa.
func benchRSA(b *testing.B, scheme rsaScheme) {
	k := rsaKeys()[0]
	hashed := digest(crypto.SHA256, []byte("header.payload"))
	sig := sign(b, k, scheme, crypto.SHA256, hashed)
	b.Run("prepared", func(b *testing.B) {
		p := prepareRSA(&k.PublicKey, scheme, crypto.SHA256)
		b.ReportAllocs()
		for b.Loop() {
			if !p.verify(hashed, sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("crypto/rsa", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !cryptoRSAVerify(&k.PublicKey, scheme, crypto.SHA256, hashed, sig) {
				b.Fatal("refused")
			}
		}
	})
}
