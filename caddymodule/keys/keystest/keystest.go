// Package keystest provides in-memory key storage for tests of the
// packages that sign or verify with keys.
package keystest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/oauthgate/oauthgate/caddymodule/storagetest"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
)

// Storage is the in-memory storage of package storagetest.
type Storage = storagetest.Storage

// NewStorage returns an empty Storage.
func NewStorage() *Storage { return storagetest.New() }

// NewSet returns a freshly generated key set, as on a gateway's first
// start.
func NewSet(t testing.TB) *keys.Set {
	t.Helper()
	set, err := keys.LoadOrCreate(context.Background(), NewStorage())
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// NewSetOf returns a freshly generated key set of one key of alg, as a
// gateway has after its first start with that signing algorithm.
func NewSetOf(t testing.TB, alg jwa.SignatureAlgorithm) *keys.Set {
	t.Helper()
	m, err := keys.NewManager(NewStorage(), keys.Options{Algorithm: alg, RetainFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	set, err := m.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// Clock is a settable clock for keys.Options.Now and the like. It is safe
// for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
