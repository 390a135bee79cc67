package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"math/big"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

func TestECDSADER_IsTheDEROfTheTwoIntegers(t *testing.T) {
	n := func(b ...byte) []byte { return b }
	long := bytes.Repeat([]byte{0xff}, 66)
	for name, tc := range map[string]struct{ r, s []byte }{
		"small":                        {n(1), n(2)},
		"high bits":                    {n(0x80), n(0xff, 0x01)},
		"leading zeros":                {n(0, 0, 0x7f), n(0, 0x80, 0)},
		"P-256 size":                   {bytes.Repeat([]byte{0x9a}, 32), bytes.Repeat([]byte{0x11}, 32)},
		"P-521 size, long-form length": {append(n(0x01), long[:65]...), long},
	} {
		got, ok := ecdsaDER(nil, tc.r, tc.s)
		want, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(tc.r), new(big.Int).SetBytes(tc.s)})
		if err != nil {
			t.Fatal(err)
		}
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("%s: %x, %v; want %x", name, got, ok, want)
		}
		if len(got) > maxECDSADER {
			t.Errorf("%s: %d bytes, more than maxECDSADER", name, len(got))
		}
	}
	for name, tc := range map[string]struct{ r, s []byte }{
		"r zero":     {n(0, 0), n(1)},
		"s zero":     {n(1), n(0)},
		"s empty":    {n(1), nil},
		"r too long": {append(n(1), long...), n(1)},
	} {
		if der, ok := ecdsaDER(nil, tc.r, tc.s); ok {
			t.Errorf("%s: %x, want refused", name, der)
		}
	}
}

// ecdsaKeys are one key of each ECDSA algorithm.
var ecdsaKeys = sync.OnceValue(func() (out []*ecdsa.PrivateKey) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			panic(err)
		}
		out = append(out, k)
	}
	return out
})

var ecdsaAlgorithms = []jwa.SignatureAlgorithm{jwa.ES256(), jwa.ES384(), jwa.ES512()}

// FuzzECDSA holds the verdict of an ES256/384/512 check, which builds the
// DER of R || S itself, to ecdsa.Verify's on the same two integers: on
// signatures as given, real ones damaged, and ones whose R or S is set to
// a value at an edge (zero, one, the order, past it).
func FuzzECDSA(f *testing.F) {
	f.Add(byte(0), byte(0), []byte("header.payload"), []byte{})
	f.Add(byte(1), byte(1), []byte("header.payload"), []byte{})
	f.Add(byte(2), byte(1), []byte("m"), []byte{3, 7})
	for edge := range byte(6) {
		f.Add(byte(0), byte(2), []byte("m"), []byte{edge})
		f.Add(byte(2), byte(2), []byte("m"), []byte{edge | 0x80})
	}
	f.Fuzz(func(t *testing.T, keyIdx, mode byte, msg, data []byte) {
		i := int(keyIdx) % len(ecdsaKeys())
		k, alg := ecdsaKeys()[i], ecdsaAlgorithms[i]
		size := (k.Curve.Params().BitSize + 7) / 8
		hashed := digest(hashOf(alg), msg)
		sig := make([]byte, 2*size)
		switch mode % 3 {
		case 0: // as given, of any length
			sig = data
		case 1, 2:
			r, s, err := ecdsa.Sign(rand.Reader, k, hashed)
			if err != nil {
				t.Fatal(err)
			}
			r.FillBytes(sig[:size])
			s.FillBytes(sig[size:])
			if mode%3 == 1 && len(data) > 0 { // damage it where data says
				sig[int(data[0])%len(sig)] ^= 1 << (data[len(data)-1] % 8)
			}
			if mode%3 == 2 && len(data) > 0 { // R or S at an edge
				order := k.Curve.Params().N
				edge := [...]*big.Int{big.NewInt(0), big.NewInt(1), new(big.Int).Sub(order, big.NewInt(1)), order,
					new(big.Int).Add(order, big.NewInt(1)), new(big.Int).Lsh(big.NewInt(1), uint(8*size-1))}[int(data[0]&0x7f)%6]
				half := sig[:size]
				if data[0]&0x80 != 0 {
					half = sig[size:]
				}
				edge.FillBytes(half)
			}
		}
		verify, err := newVerify(alg, &k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		want := len(sig) == 2*size &&
			ecdsa.Verify(&k.PublicKey, hashed, new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:]))
		if got := verify(msg, sig); got != want {
			t.Fatalf("%s: verdict %v on %x, ecdsa.Verify's %v", alg, got, sig, want)
		}
	})
}
