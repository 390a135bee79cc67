package clients

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"sync/atomic"
)

// DefaultCacheSize is the number of verifications a Cache holds when
// NewCache is given no size: at 10,000, about 1 MB.
const DefaultCacheSize = 10000

// Cache remembers successful argon2id verifications, so that a client with
// a person-chosen secret pays for argon2id once, not on every token
// request, and argon2id does not cap the gateway's throughput.
//
// An entry is HMAC-SHA256(k, client ID ‖ 0x00 ‖ secret ‖ 0x00 ‖ stored
// hash) under a random key k that never leaves the process: the cache
// holds nothing that helps guess a secret, and the split is unambiguous
// because neither a client ID nor a stored hash contains 0x00. Because the
// stored hash is part of the entry, an entry stops matching as soon as its
// secret is retired or replaced, even by the same secret under a new salt.
// Only successes are added; a failure is never remembered. When full, the
// oldest entry is dropped.
//
// A Cache outlives the Registry it is given to: when the clients file
// changes, the new Registry gets the same Cache. It is safe for concurrent
// use.
type Cache struct {
	key [32]byte

	mu   sync.Mutex
	set  map[[32]byte]struct{}
	ring [][32]byte // insertion order, for eviction
	next int        // ring index of the oldest entry, once full

	hits, misses atomic.Uint64
}

// NewCache returns an empty cache of at most size entries (DefaultCacheSize
// if size ≤ 0) with a fresh random key.
func NewCache(size int) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	c := &Cache{set: make(map[[32]byte]struct{}), ring: make([][32]byte, 0, size)}
	_, _ = rand.Read(c.key[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return c
}

// entry is the cache key of one verification.
func (c *Cache) entry(id, secret, hash string) [32]byte {
	m := hmac.New(sha256.New, c.key[:])
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(secret))
	m.Write([]byte{0})
	m.Write([]byte(hash))
	var e [32]byte
	m.Sum(e[:0])
	return e
}

func (c *Cache) contains(e [32]byte) bool {
	c.mu.Lock()
	_, ok := c.set[e]
	c.mu.Unlock()
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return ok
}

// Stats reports how many lookups found their verification cached and how
// many had to run argon2id, since the cache was made.
func (c *Cache) Stats() (hits, misses uint64) {
	return c.hits.Load(), c.misses.Load()
}

func (c *Cache) add(e [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.set[e]; ok {
		return
	}
	if len(c.ring) < cap(c.ring) {
		c.ring = append(c.ring, e)
	} else {
		delete(c.set, c.ring[c.next])
		c.ring[c.next] = e
		c.next = (c.next + 1) % len(c.ring)
	}
	c.set[e] = struct{}{}
}

// Len is the number of entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.set)
}
