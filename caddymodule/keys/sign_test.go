package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"math/big"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Sign is our own signer, not jwx's: every signature it makes must pass
// jwx's check with the public key, and our own.
func TestSign_JWXAndVerifyAcceptEverySignature(t *testing.T) {
	for _, tc := range []struct {
		alg     jwa.SignatureAlgorithm
		size    int // of a signature, in bytes
		samples int
	}{
		// A P-256 R or S is shorter than 32 bytes once in 256 draws:
		// enough samples that some signature must be left-padded.
		{jwa.ES256(), 64, 512},
		{jwa.EdDSA(), 64, 4},
		{jwa.RS256(), RSABits / 8, 2},
		{jwa.PS256(), RSABits / 8, 2},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			k, err := generate(tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			enc := base64.RawURLEncoding
			input := []byte(enc.EncodeToString([]byte(`{"alg":"`+tc.alg.String()+`"}`)) + "." + enc.EncodeToString([]byte(`{"sub":"x"}`)))
			padded := false
			for range tc.samples {
				sig, err := k.Sign(input)
				if err != nil {
					t.Fatal(err)
				}
				if len(sig) != tc.size {
					t.Fatalf("signature is %d bytes, want %d", len(sig), tc.size)
				}
				padded = padded || sig[0] == 0 || sig[len(sig)/2] == 0
				if !k.Verify(input, sig) {
					t.Fatalf("Verify refuses the signature %x", sig)
				}
				tok := append(append(bytes.Clone(input), '.'), enc.EncodeToString(sig)...)
				if _, err := jws.Verify(tok, jws.WithKey(tc.alg, k.Public)); err != nil {
					t.Fatalf("jwx refuses the signature %x: %v", sig, err)
				}
			}
			if tc.alg == jwa.ES256() && !padded {
				t.Logf("no R or S began with a zero byte in %d signatures (a 1 in 10^3 chance); TestFixedRS covers the padding", tc.samples)
			}
		})
	}

	t.Run("verification-only key", func(t *testing.T) {
		k, err := generate(jwa.EdDSA())
		if err != nil {
			t.Fatal(err)
		}
		pub, err := NewPublic(k.ID, k.Algorithm, k.Public)
		if err != nil {
			t.Fatal(err)
		}
		if sig, err := pub.Sign([]byte("x")); err == nil {
			t.Errorf("a key without its private half signed: %x", sig)
		}
	})
}

// asn1Sig is an ECDSA signature in ASN.1 with the integers given (R and
// S, normally): their encodings need not be minimal, or even valid.
func asn1Sig(ints ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, n := range ints {
			b.AddASN1(asn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(n) })
		}
	})
	return b.BytesOrPanic()
}

func TestFixedRS_LeftPadsAndRefusesWhatIsNotASignature(t *testing.T) {
	full := bytes.Repeat([]byte{0x7f}, 32)
	high := bytes.Repeat([]byte{0x80}, 32) // needs a 0x00 before it in DER
	withZero := func(b []byte) []byte { return append([]byte{0}, b...) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	zeros := func(n int) []byte { return make([]byte, n) }

	for name, tc := range map[string]struct {
		der  []byte
		want []byte // nil: refused
	}{
		"full-size R and S":               {asn1Sig(full, full), cat(full, full)},
		"high bit set after a zero byte":  {asn1Sig(withZero(high), withZero(high)), cat(high, high)},
		"short R is left-padded":          {asn1Sig(full[:31], withZero(high[:1])), cat(zeros(1), full[:31], zeros(31), []byte{0x80})},
		"one-byte S is left-padded":       {asn1Sig(full, []byte{5}), cat(full, zeros(31), []byte{5})},
		"S of zero":                       {asn1Sig(full, []byte{0}), cat(full, zeros(32))},
		"R of 33 significant bytes":       {asn1Sig(append([]byte{1}, full...), full), nil},
		"negative R":                      {asn1Sig(high, full), nil},
		"empty integer":                   {asn1Sig(nil, full), nil},
		"one integer":                     {asn1Sig(full), nil},
		"cut short":                       {asn1Sig(full, full)[:2+2+32], nil},
		"three integers":                  {asn1Sig(full, full, full), nil},
		"bytes after the sequence":        {append(asn1Sig(full, full), 0), nil},
		"not a sequence":                  {append([]byte{0x31}, asn1Sig(full, full)[1:]...), nil},
		"nothing":                         {nil, nil},
		"raw R || S instead of ASN.1 DER": {cat(full, full), nil},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := fixedRS(tc.der, 32)
			switch {
			case tc.want == nil && err == nil:
				t.Errorf("accepted: %x", got)
			case tc.want != nil && err != nil:
				t.Errorf("refused: %v", err)
			case !bytes.Equal(got, tc.want):
				t.Errorf("got  %x\nwant %x", got, tc.want)
			}
		})
	}

	t.Run("agrees with crypto/ecdsa's reading", func(t *testing.T) {
		k, err := generate(jwa.ES256())
		if err != nil {
			t.Fatal(err)
		}
		var priv ecdsa.PrivateKey
		if err := jwk.Export(k.Private, &priv); err != nil {
			t.Fatal(err)
		}
		d := digest(hashOf(jwa.ES256()), []byte("x"))
		for range 256 {
			der, err := ecdsa.SignASN1(rand.Reader, &priv, d)
			if err != nil {
				t.Fatal(err)
			}
			var r, s big.Int
			var seq cryptobyte.String
			in := cryptobyte.String(der)
			if !in.ReadASN1(&seq, asn1.SEQUENCE) || !seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) {
				t.Fatalf("crypto/ecdsa made %x", der)
			}
			raw, err := fixedRS(der, 32)
			if err != nil {
				t.Fatal(err)
			}
			if new(big.Int).SetBytes(raw[:32]).Cmp(&r) != 0 || new(big.Int).SetBytes(raw[32:]).Cmp(&s) != 0 {
				t.Fatalf("R || S = %x, want R %x, S %x", raw, &r, &s)
			}
		}
	})
}
