package sealing_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/sealing"
)

// FuzzOpen feeds Open arbitrary values and contexts, seeded with values
// the ring sealed. It must never panic, must fail with ErrInvalid or
// ErrUnknownKey (or for want of a context) without a trace of a key that
// the input did not hold itself (a key ID is echoed, and the fuzzer may
// spell one like a piece of a key), and
// must agree with referenceOpen, which reads the format as the package
// doc describes it, with crypto/cipher's plain GCM: what opens is what the
// ring's keys sealed, and nothing else.
func FuzzOpen(f *testing.F) {
	r, err := sealing.Parse("key2:" + std(key2) + ",key1:" + std(key1))
	if err != nil {
		f.Fatal(err)
	}
	old, err := sealing.Parse("key1:" + std(key1))
	if err != nil {
		f.Fatal(err)
	}
	// Seeds are sealed afresh in each process, with fresh nonces; the
	// keys are fixed, so every one of them opens in every process.
	for _, s := range []struct {
		ring      *sealing.Ring
		plaintext string
		context   []byte
	}{
		{r, "", signingName},
		{r, `{"keys":[{"kty":"EC"}]}`, signingName},
		{old, "a MAC key, 32 bytes long........", []byte("oauthgate:keys:mac")},
	} {
		sealed, err := s.ring.Seal([]byte(s.plaintext), s.context)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed, s.context)
		f.Add(sealed[:len(sealed)-1], s.context)
		f.Add(sealed, []byte("oauthgate:keys:other"))
	}
	f.Add([]byte{1, 2, 'k', '9'}, signingName)
	f.Add([]byte{2, 4, 'k', 'e', 'y', '1'}, signingName)
	f.Add([]byte{1, 255}, signingName)
	f.Add([]byte(`{"keys":[]}`), signingName)
	f.Add([]byte(nil), []byte(nil))

	f.Fuzz(func(t *testing.T, sealed, context []byte) {
		reseal := r.NeedsReseal(sealed)
		plaintext, err := r.Open(sealed, context)
		want, ok := referenceOpen(sealed, context)
		switch {
		case err != nil && ok:
			t.Fatalf("Open = %v, but the value opens under the format as documented", err)
		case err != nil:
			if len(context) > 0 && !errors.Is(err, sealing.ErrInvalid) && !errors.Is(err, sealing.ErrUnknownKey) {
				t.Fatalf("Open = %v, want ErrInvalid or ErrUnknownKey", err)
			}
			assertNoKeyFromOutsideTheInput(t, err.Error(), sealed)
		case !ok:
			t.Fatalf("Open accepted a value the ring's keys did not seal: % x under %q", sealed, context)
		case !bytes.Equal(plaintext, want):
			t.Fatalf("Open = %q, want %q", plaintext, want)
		case reseal != (string(sealed[2:2+sealed[1]]) == "key1"):
			t.Fatalf("NeedsReseal = %v for a value of %q, whereas key2 seals", reseal, sealed[2:2+sealed[1]])
		}
	})
}

// referenceOpen opens a sealed value of key1 or key2 as the format is
// documented: version 1 | ID length | ID | nonce | ciphertext | tag, the
// header and the context being the additional data.
func referenceOpen(sealed, context []byte) ([]byte, bool) {
	if len(context) == 0 || len(sealed) > sealing.MaxSealedLen || len(sealed) < 2 || sealed[0] != 1 {
		return nil, false
	}
	n := int(sealed[1])
	if len(sealed) < 2+n+12+16 {
		return nil, false
	}
	key := map[string][]byte{"key1": key1, "key2": key2}[string(sealed[2:2+n])]
	if key == nil {
		return nil, false
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	header, nonce, body := sealed[:2+n], sealed[2+n:2+n+12], sealed[2+n+12:]
	plaintext, err := gcm.Open(nil, nonce, body, append(bytes.Clone(header), context...))
	return plaintext, err == nil
}

// assertNoKeyFromOutsideTheInput fails if msg holds eight characters in a
// row of key1 or key2, raw or in base64, that the input does not hold.
func assertNoKeyFromOutsideTheInput(t *testing.T, msg string, input []byte) {
	t.Helper()
	for _, key := range [][]byte{key1, key2} {
		for _, spelling := range []string{string(key), std(key), base64.RawURLEncoding.EncodeToString(key)} {
			for i := 0; i+8 <= len(spelling); i++ {
				w := spelling[i : i+8]
				if strings.Contains(msg, w) && !bytes.Contains(input, []byte(w)) {
					t.Fatalf("%q contains part of a key", msg)
				}
			}
		}
	}
}
