package redisstate

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// gcmSealer is AES-256-GCM with a random nonce before the ciphertext: a
// real AEAD, so that the tests of context binding mean something.
type gcmSealer struct{ aead cipher.AEAD }

func newSealer(t testing.TB) *gcmSealer {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return &gcmSealer{aead}
}

func (s *gcmSealer) Seal(plaintext, context []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plaintext, context), nil
}

func (s *gcmSealer) Open(sealed, context []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], context)
}

// clock is the engines' clock, moving miniredis's along with it.
type clock struct {
	*keystest.Clock
	m *miniredis.Miniredis
}

// advance moves the engines' clock and miniredis's, expiring keys.
func (c *clock) advance(d time.Duration) {
	c.Advance(d)
	c.m.SetTime(c.Now())
	c.m.FastForward(d)
}

// miniFleet is a miniredis and a clock that engines on it share.
type miniFleet struct {
	m      *miniredis.Miniredis
	clock  *clock
	sealer Sealer
}

func newMiniFleet(t *testing.T) *miniFleet {
	t.Helper()
	m := miniredis.RunT(t)
	m.SetTime(t0)
	return &miniFleet{m: m, clock: &clock{keystest.NewClock(t0), m}, sealer: newSealer(t)}
}

// engine connects one more instance to the fleet's Redis.
func (f *miniFleet) engine(t *testing.T, edit ...func(*Config)) *Engine {
	t.Helper()
	cfg := Config{URL: "redis://" + f.m.Addr(), Sealer: f.sealer, Now: f.clock.Now}
	for _, e := range edit {
		e(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}
