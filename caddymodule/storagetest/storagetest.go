// Package storagetest provides an in-memory stand-in for Caddy's storage
// (the subset of certmagic.Storage that oauthgate uses), for tests.
package storagetest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
)

// Storage is an in-memory storage. Values are copied in and out, missing
// keys are fs.ErrNotExist, and locks are real, one mutex per name, as in
// Caddy's storages.
type Storage struct {
	mu    sync.Mutex
	data  map[string][]byte
	locks map[string]*sync.Mutex
}

// New returns an empty Storage.
func New() *Storage {
	return &Storage{data: map[string][]byte{}, locks: map[string]*sync.Mutex{}}
}

// Load returns the value stored under key.
func (s *Storage) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	if !ok {
		return nil, fmt.Errorf("load %s: %w", key, fs.ErrNotExist)
	}
	return bytes.Clone(v), nil
}

// Store stores value under key.
func (s *Storage) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = bytes.Clone(value)
	return nil
}

// Delete removes key; a missing key is fs.ErrNotExist.
func (s *Storage) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.data[key]; !ok {
		return fmt.Errorf("delete %s: %w", key, fs.ErrNotExist)
	}
	delete(s.data, key)
	return nil
}

// List returns the keys directly below dir (or at any depth if
// recursive), sorted; an empty directory is fs.ErrNotExist, as for
// Caddy's file storage.
func (s *Storage) List(_ context.Context, dir string, recursive bool) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := strings.TrimSuffix(dir, "/") + "/"
	var keys []string
	for k := range s.data {
		rest, ok := strings.CutPrefix(k, prefix)
		if ok && (recursive || !strings.Contains(rest, "/")) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("list %s: %w", dir, fs.ErrNotExist)
	}
	sort.Strings(keys)
	return keys, nil
}

// Lock takes the named lock, waiting for it.
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

// Unlock releases the named lock.
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

// Len is the number of stored keys.
func (s *Storage) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.data)
}

// Keys returns every stored key, sorted.
func (s *Storage) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.data))
	for k := range s.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
