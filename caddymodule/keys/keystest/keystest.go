// Package keystest provides in-memory key storage for tests of the
// packages that sign or verify with keys.
package keystest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
)

// Storage is an in-memory keys.Storage. Values are copied in and out, and
// locks are real, one mutex per name, as in Caddy's storages.
type Storage struct {
	mu    sync.Mutex
	data  map[string][]byte
	locks map[string]*sync.Mutex
}

// NewStorage returns an empty Storage.
func NewStorage() *Storage {
	return &Storage{data: map[string][]byte{}, locks: map[string]*sync.Mutex{}}
}

// Load implements keys.Storage.
func (s *Storage) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	if !ok {
		return nil, fmt.Errorf("load %s: %w", key, fs.ErrNotExist)
	}
	return bytes.Clone(v), nil
}

// Store implements keys.Storage.
func (s *Storage) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = bytes.Clone(value)
	return nil
}

// Lock implements keys.Storage.
func (s *Storage) Lock(_ context.Context, name string) error {
	s.mu.Lock()
	m := s.locks[name]
	if m == nil {
		m = new(sync.Mutex)
		s.locks[name] = m
	}
	s.mu.Unlock()
	m.Lock()
	return nil
}

// Unlock implements keys.Storage.
func (s *Storage) Unlock(_ context.Context, name string) error {
	s.mu.Lock()
	m := s.locks[name]
	s.mu.Unlock()
	if m == nil {
		return fmt.Errorf("unlock %s: not locked", name)
	}
	m.Unlock()
	return nil
}

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
