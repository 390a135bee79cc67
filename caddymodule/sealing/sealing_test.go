package sealing_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/sealing"
)

var signingName = []byte("oauthgate:keys:signing")

// entries returns a new key entry (as Generate writes it) for each ID.
func entries(t *testing.T, ids ...string) map[string]string {
	t.Helper()
	m := make(map[string]string, len(ids))
	for _, id := range ids {
		e, err := sealing.Generate(id)
		if err != nil {
			t.Fatal(err)
		}
		m[id] = e
	}
	return m
}

// ring parses the entries of ids, in that order.
func ring(t *testing.T, e map[string]string, ids ...string) *sealing.Ring {
	t.Helper()
	var lines []string
	for _, id := range ids {
		lines = append(lines, e[id])
	}
	r, err := sealing.Parse(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSeal_OpenGivesBackThePlaintext(t *testing.T) {
	r := ring(t, entries(t, "k1"), "k1")
	largest := sealing.MaxSealedLen - (2 + len("k1") + 12 + 16)
	cases := []struct {
		name      string
		plaintext []byte
	}{
		{"nothing", nil},
		{"one byte", []byte{0}},
		{"a MAC key", bytes.Repeat([]byte{0xa5}, 32)},
		{"a JSON key set", []byte(`{"keys":[{"kty":"EC","crv":"P-256","d":"..."}]}`)},
		{"the largest plaintext a sealed value holds", bytes.Repeat([]byte{'x'}, largest)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sealed, err := r.Seal(tc.plaintext, signingName)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Open(sealed, signingName)
			if err != nil || !bytes.Equal(got, tc.plaintext) {
				t.Fatalf("Open = %.40q, %v; want the plaintext back", got, err)
			}
			if r.NeedsReseal(sealed) {
				t.Error("NeedsReseal = true for a value of the sealing key")
			}
		})
	}
	if _, err := r.Seal(make([]byte, largest+1), signingName); err == nil {
		t.Error("Seal of one byte more than a sealed value holds succeeded; Open would refuse the result")
	}
}

// The header names the key, so that Open finds it without trying every
// key, and nothing of the plaintext shows.
func TestSeal_WritesVersionKeyIDNonceCiphertextAndTag(t *testing.T) {
	r := ring(t, entries(t, "key-2025_a"), "key-2025_a")
	plaintext := []byte("a signing key, in clear")
	sealed, err := r.Seal(plaintext, signingName)
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := append([]byte{1, byte(len("key-2025_a"))}, "key-2025_a"...)
	if !bytes.HasPrefix(sealed, wantHeader) {
		t.Errorf("sealed value starts % x, want the header % x", sealed[:len(wantHeader)], wantHeader)
	}
	if want := len(wantHeader) + 12 + len(plaintext) + 16; len(sealed) != want {
		t.Errorf("sealed value is %d bytes, want %d (header, nonce, ciphertext, tag)", len(sealed), want)
	}
	if bytes.Contains(sealed, plaintext[:8]) {
		t.Error("the sealed value contains the plaintext")
	}
}

func TestSeal_UsesAFreshNonceEachTime(t *testing.T) {
	r := ring(t, entries(t, "k1"), "k1")
	const n = 100
	seen := make(map[string]bool, n)
	for range n {
		sealed, err := r.Seal([]byte("same plaintext"), signingName)
		if err != nil {
			t.Fatal(err)
		}
		nonce := string(sealed[2+len("k1") : 2+len("k1")+12])
		if seen[nonce] {
			t.Fatalf("nonce % x used twice", nonce)
		}
		seen[nonce] = true
	}
}

func TestOpen_EachKeyOfTheRingOpensWhatItSealed(t *testing.T) {
	e := entries(t, "a", "b", "c")
	all := ring(t, e, "a", "b", "c")
	for _, id := range []string{"a", "b", "c"} {
		t.Run("sealed by "+id, func(t *testing.T) {
			sealed, err := ring(t, e, id).Seal([]byte("secret of "+id), signingName)
			if err != nil {
				t.Fatal(err)
			}
			got, err := all.Open(sealed, signingName)
			if err != nil || string(got) != "secret of "+id {
				t.Fatalf("Open = %q, %v; want %q", got, err, "secret of "+id)
			}
			if want := id != "a"; all.NeedsReseal(sealed) != want {
				t.Errorf("NeedsReseal = %v, want %v: the ring seals with a", !want, want)
			}
		})
	}
}

func TestRotation_TheNewRingOpensOldValuesAndReportsThemForResealing(t *testing.T) {
	e := entries(t, "old", "new")
	before := ring(t, e, "old")
	during := ring(t, e, "new", "old")
	after := ring(t, e, "new")

	old, err := before.Seal([]byte("MAC key"), signingName)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := during.Open(old, signingName); err != nil || string(got) != "MAC key" {
		t.Fatalf("the ring with the old key second: Open = %q, %v", got, err)
	}
	if !during.NeedsReseal(old) {
		t.Error("NeedsReseal = false for a value of the old key, after the new key went first")
	}

	resealed, err := during.Seal([]byte("MAC key"), signingName)
	if err != nil {
		t.Fatal(err)
	}
	if during.NeedsReseal(resealed) {
		t.Error("NeedsReseal = true for a value just re-sealed")
	}
	if got, err := after.Open(resealed, signingName); err != nil || string(got) != "MAC key" {
		t.Errorf("the ring without the old key: Open of the re-sealed value = %q, %v", got, err)
	}
	// A gateway not yet reloaded (still on the old ring) cannot open it:
	// hence the new key goes second everywhere before it goes first.
	if _, err := before.Open(resealed, signingName); !errors.Is(err, sealing.ErrUnknownKey) {
		t.Errorf("the old ring: Open of a value of the new key = %v, want ErrUnknownKey", err)
	}
}

func TestOpen_AValueOfARemovedKeyFailsNamingTheKeyID(t *testing.T) {
	e := entries(t, "retired-2024", "current")
	sealed, err := ring(t, e, "retired-2024").Seal([]byte("x"), signingName)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ring(t, e, "current").Open(sealed, signingName)
	if !errors.Is(err, sealing.ErrUnknownKey) || !strings.Contains(err.Error(), `"retired-2024"`) {
		t.Fatalf("Open = %v, want ErrUnknownKey naming \"retired-2024\"", err)
	}
	assertNoKeyMaterial(t, err.Error(), e)
}

func TestOpen_RefusesAnotherContext(t *testing.T) {
	r := ring(t, entries(t, "k1"), "k1")
	sealed, err := r.Seal([]byte("x"), signingName)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, context string
	}{
		{"another name", "oauthgate:keys:mac"},
		{"a prefix of the name", "oauthgate:keys:signin"},
		{"the name and more", "oauthgate:keys:signing:old"},
		{"the name in other case", "OAUTHGATE:KEYS:SIGNING"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.Open(sealed, []byte(tc.context)); !errors.Is(err, sealing.ErrInvalid) {
				t.Errorf("Open under %q = %v, want ErrInvalid", tc.context, err)
			}
		})
	}
	t.Run("no context", func(t *testing.T) {
		if _, err := r.Open(sealed, nil); err == nil {
			t.Error("Open without a context succeeded")
		}
		if _, err := r.Seal([]byte("x"), nil); err == nil {
			t.Error("Seal without a context succeeded")
		}
	})
}

func TestOpen_RefusesEverySingleByteFlip(t *testing.T) {
	r := ring(t, entries(t, "k1", "k2"), "k1", "k2")
	sealed, err := r.Seal([]byte("sixteen bytes..."), signingName)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		for _, mask := range []byte{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff} {
			changed := bytes.Clone(sealed)
			changed[i] ^= mask
			got, err := r.Open(changed, signingName)
			if err == nil {
				t.Fatalf("byte %d ^ %#02x: Open = %q, want an error", i, mask, got)
			}
			if !errors.Is(err, sealing.ErrInvalid) && !errors.Is(err, sealing.ErrUnknownKey) {
				t.Errorf("byte %d ^ %#02x: Open = %v, want ErrInvalid or ErrUnknownKey", i, mask, err)
			}
		}
	}
}

func TestOpen_RefusesEveryTruncationAndAnAppendedByte(t *testing.T) {
	r := ring(t, entries(t, "k1"), "k1")
	sealed, err := r.Seal([]byte("sixteen bytes..."), signingName)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(sealed) {
		if got, err := r.Open(sealed[:n], signingName); !errors.Is(err, sealing.ErrInvalid) {
			t.Errorf("the first %d of %d bytes: Open = %q, %v; want ErrInvalid", n, len(sealed), got, err)
		}
	}
	if _, err := r.Open(append(bytes.Clone(sealed), 0), signingName); !errors.Is(err, sealing.ErrInvalid) {
		t.Errorf("a byte appended: Open = %v, want ErrInvalid", err)
	}
}

func TestOpen_RefusesMalformedInputWithAnErrorThatSaysWhy(t *testing.T) {
	r := ring(t, entries(t, "k1"), "k1")
	valid, err := r.Seal(nil, signingName)
	if err != nil {
		t.Fatal(err)
	}
	body := valid[2+len("k1"):]
	cases := []struct {
		name   string
		sealed []byte
		want   string
	}{
		{"nothing", nil, "too short"},
		{"a version byte alone", []byte{1}, "too short"},
		{"format version 0", append([]byte{0, 2, 'k', '1'}, body...), "format version 0 is unknown"},
		{"format version 2, from a newer gateway", append([]byte{2, 2, 'k', '1'}, body...), "format version 2 is unknown"},
		{"an empty key ID", append([]byte{1, 0}, body...), "no valid key ID"},
		{"a key ID longer than the value", []byte{1, 200, 'k', '1'}, "header is truncated"},
		{"a key ID with a newline", append([]byte{1, 3, 'k', '\n', '1'}, body...), "no valid key ID"},
		{"a key ID longer than 32", append(append([]byte{1, 33}, strings.Repeat("k", 33)...), body...), "no valid key ID"},
		{"a header without nonce and tag", []byte{1, 2, 'k', '1'}, "too short"},
		{"more than 1 MiB", append([]byte{1, 2, 'k', '1'}, make([]byte, sealing.MaxSealedLen)...), "more than a sealed value may have"},
		{"plaintext in place of a sealed value", []byte(`{"keys":[]}`), "format version 123 is unknown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Open(tc.sealed, signingName)
			if !errors.Is(err, sealing.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open = %v, want ErrInvalid saying %q", err, tc.want)
			}
			if r.NeedsReseal(tc.sealed) {
				t.Error("NeedsReseal = true for a value that cannot be opened")
			}
		})
	}
}

func TestNeedsReseal_OnlyForAValueOfAnotherKeyOfTheRing(t *testing.T) {
	e := entries(t, "k1", "k2")
	r := ring(t, e, "k2", "k1")
	ofK1, _ := ring(t, e, "k1").Seal([]byte("x"), signingName)
	ofK2, _ := r.Seal([]byte("x"), signingName)
	cases := []struct {
		name   string
		sealed []byte
		want   bool
	}{
		{"a value of the sealing key", ofK2, false},
		{"a value of the second key", ofK1, true},
		{"a value of a key not in the ring", append([]byte{1, 2, 'k', '9'}, ofK2[4:]...), false},
		{"a truncated header", ofK1[:3], false},
		{"nothing", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.NeedsReseal(tc.sealed); got != tc.want {
				t.Errorf("NeedsReseal = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRing_PrintsKeyIDsNeverKeys(t *testing.T) {
	e := entries(t, "k2", "k1")
	r := ring(t, e, "k2", "k1")
	if got, want := r.IDs(), []string{"k2", "k1"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("IDs = %v, want %v", got, want)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		for _, v := range []any{r, *r} {
			out := fmt.Sprintf(verb, v)
			assertNoKeyMaterial(t, out, e)
		}
	}
	if got, want := r.String(), "sealing key ring [k2 k1]"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestRing_TheZeroRingRefusesEverything(t *testing.T) {
	var r sealing.Ring
	if _, err := r.Seal([]byte("x"), signingName); err == nil {
		t.Error("Seal succeeded with no key")
	}
	sealed, _ := ring(t, entries(t, "k1"), "k1").Seal([]byte("x"), signingName)
	if _, err := r.Open(sealed, signingName); !errors.Is(err, sealing.ErrUnknownKey) {
		t.Errorf("Open = %v, want ErrUnknownKey", err)
	}
	if r.NeedsReseal(sealed) {
		t.Error("NeedsReseal = true with no key to reseal under")
	}
}

func TestRing_IsSafeForConcurrentUse(t *testing.T) {
	e := entries(t, "k1", "k2")
	r := ring(t, e, "k1", "k2")
	old, _ := ring(t, e, "k2").Seal([]byte("old"), signingName)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				sealed, err := r.Seal([]byte("new"), signingName)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := r.Open(sealed, signingName); err != nil {
					t.Error(err)
				}
				if _, err := r.Open(old, signingName); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

// assertNoKeyMaterial fails if s holds eight or more characters in a row
// of any key entry's base64, in either alphabet.
func assertNoKeyMaterial(t *testing.T, s string, e map[string]string) {
	t.Helper()
	for id, entry := range e {
		key := strings.TrimPrefix(entry, id+":")
		for _, spelling := range []string{key, strings.NewReplacer("+", "-", "/", "_").Replace(key)} {
			for i := 0; i+8 <= len(spelling); i++ {
				if strings.Contains(s, spelling[i:i+8]) {
					t.Fatalf("%q contains part of the key %q", s, id)
				}
			}
		}
	}
}
