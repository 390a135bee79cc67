package csrf

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/storagetest"
)

var t0 = time.Unix(1_800_000_000, 0)

func signer(t testing.TB, fill byte) *Signer {
	t.Helper()
	s, err := NewSigner(bytes.Repeat([]byte{fill}, KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// flip returns token with the character at i changed to another
// base64url character.
func flip(token string, i int) string {
	b := []byte(token)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestVerify(t *testing.T) {
	s := signer(t, 1)
	tok := s.Issue("client-a", t0, DefaultLifetime)
	if len(tok) != Length {
		t.Fatalf("token has %d characters, want %d", len(tok), Length)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	raw[0] = 2
	otherVersion := base64.RawURLEncoding.EncodeToString(raw)

	tests := []struct {
		name     string
		signer   *Signer
		token    string
		clientID string
		now      time.Time
		want     error
	}{
		{"a fresh token of the client passes", s, tok, "client-a", t0, nil},
		{"a token passes until a second before it expires", s, tok, "client-a", t0.Add(DefaultLifetime - time.Second), nil},
		{"a token is expired at its lifetime", s, tok, "client-a", t0.Add(DefaultLifetime), ErrExpired},
		{"a token of another client is refused", s, tok, "client-b", t0, ErrInvalid},
		{"a client ID that only extends the token's is refused", s, tok, "client-ab", t0, ErrInvalid},
		{"an empty client ID is refused", s, tok, "", t0, ErrInvalid},
		{"a token under another key is refused", signer(t, 2), tok, "client-a", t0, ErrInvalid},
		{"a changed expiry is refused", s, flip(tok, 5), "client-a", t0, ErrInvalid},
		{"a changed nonce is refused", s, flip(tok, 20), "client-a", t0, ErrInvalid},
		{"a changed MAC is refused", s, flip(tok, Length-3), "client-a", t0, ErrInvalid},
		{"another version is malformed", s, otherVersion, "client-a", t0, ErrMalformed},
		{"an empty token is malformed", s, "", "client-a", t0, ErrMalformed},
		{"the word Fetch is malformed", s, "Fetch", "client-a", t0, ErrMalformed},
		{"a token cut short is malformed", s, tok[:Length-1], "client-a", t0, ErrMalformed},
		{"a token with a character more is malformed", s, tok + "A", "client-a", t0, ErrMalformed},
		{"a very long value is malformed", s, strings.Repeat("A", 1<<20), "client-a", t0, ErrMalformed},
		{"standard base64 is malformed", s, strings.NewReplacer("-", "+", "_", "/").Replace(tok[:Length-1]) + "+", "client-a", t0, ErrMalformed},
		{"padding is malformed", s, tok[:Length-1] + "=", "client-a", t0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.signer.Verify(tt.token, tt.clientID, tt.now); !errors.Is(err, tt.want) {
				t.Errorf("Verify: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestIssueMakesADifferentTokenEachTime(t *testing.T) {
	s := signer(t, 1)
	if a, b := s.Issue("c", t0, time.Minute), s.Issue("c", t0, time.Minute); a == b {
		t.Errorf("two fetches in the same second got the same token %q", a)
	}
}

func TestNewSignerRefusesAKeyOfTheWrongSize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewSigner(make([]byte, n)); err == nil {
			t.Errorf("a key of %d bytes was accepted", n)
		}
	}
}

func TestKeeper(t *testing.T) {
	ctx := context.Background()

	t.Run("instances sharing a storage sign with one key", func(t *testing.T) {
		st := storagetest.New()
		var ks [8]*Keeper
		var wg sync.WaitGroup
		for i := range ks {
			wg.Go(func() {
				k, err := OpenKeeper(ctx, st)
				if err != nil {
					t.Error(err)
				}
				ks[i] = k
			})
		}
		wg.Wait()
		tok := ks[0].Signer().Issue("c", t0, time.Minute)
		for i, k := range ks {
			if err := k.Signer().Verify(tok, "c", t0); err != nil {
				t.Errorf("instance %d refuses instance 0's token: %v", i, err)
			}
		}
	})

	t.Run("a key lost by the storage is written back from memory", func(t *testing.T) {
		st := storagetest.New()
		a, err := OpenKeeper(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		tok := a.Signer().Issue("c", t0, time.Minute)
		if err := st.Delete(ctx, KeyName); err != nil {
			t.Fatal(err)
		}
		if err := a.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		b, err := OpenKeeper(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Signer().Verify(tok, "c", t0); err != nil {
			t.Errorf("a token of before the loss is refused by a new instance: %v", err)
		}
	})

	t.Run("a key another instance stored is taken up at the next sync", func(t *testing.T) {
		st := storagetest.New()
		a, err := OpenKeeper(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		newKey := bytes.Repeat([]byte{7}, KeyLen)
		if err := st.Store(ctx, KeyName, newKey); err != nil {
			t.Fatal(err)
		}
		if err := a.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		tok := signer(t, 7).Issue("c", t0, time.Minute)
		if err := a.Signer().Verify(tok, "c", t0); err != nil {
			t.Errorf("the stored key is not in use after Sync: %v", err)
		}
	})

	t.Run("a stored key of the wrong size fails the open", func(t *testing.T) {
		st := storagetest.New()
		if err := st.Store(ctx, KeyName, []byte("short")); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenKeeper(ctx, st); err == nil || !strings.Contains(err.Error(), KeyName) {
			t.Errorf("OpenKeeper: %v, want an error naming %s", err, KeyName)
		}
	})
}

// FuzzVerify holds the parser to its promises over any header value: no
// panic, and nothing but a token issued for the client passes.
func FuzzVerify(f *testing.F) {
	s := signer(f, 1)
	// Issue's nonce is random, and each fuzz worker would see another
	// token: this one has a nonce of zeros.
	var raw [rawLen]byte
	raw[0] = version
	binary.BigEndian.PutUint64(raw[1:9], uint64(t0.Add(DefaultLifetime).Unix()))
	s.mac(raw[:bodyLen], "client-a", raw[bodyLen:bodyLen])
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	for _, seed := range []string{tok, "", "Fetch", "Required", tok[:Length-1], tok + "=", flip(tok, 0), strings.Repeat("_", Length)} {
		f.Add(seed, "client-a")
	}
	f.Fuzz(func(t *testing.T, token, clientID string) {
		err := s.Verify(token, clientID, t0)
		if err == nil && (token != tok || clientID != "client-a") {
			t.Fatalf("Verify(%q, %q) passed", token, clientID)
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
			t.Fatalf("Verify: unexpected error %v", err)
		}
	})
}

func TestFor_ATokenOfOnePurposeIsNotValidForAnother(t *testing.T) {
	s, err := NewSigner(make([]byte, KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	nonces := s.For("dpop-nonce")
	if err := nonces.Verify(s.Issue("", now, time.Minute), "", now); !errors.Is(err, ErrInvalid) {
		t.Errorf("a CSRF token verified as a nonce: %v", err)
	}
	if err := s.Verify(nonces.Issue("", now, time.Minute), "", now); !errors.Is(err, ErrInvalid) {
		t.Errorf("a nonce verified as a CSRF token: %v", err)
	}
	if err := nonces.Verify(nonces.Issue("", now, time.Minute), "", now); err != nil {
		t.Errorf("a nonce did not verify as one: %v", err)
	}
}
