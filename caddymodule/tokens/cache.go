package tokens

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCacheSize is the number of tokens a cache holds when New is given no
// size. An entry costs about 1.6 KB of the process's memory (its claims,
// the key, the map slot, and the garbage collector's headroom for them,
// as measured by make bench), and about 430 B more once the guard keeps
// what it derived from a token sent again (Claims.SetDerived), so the
// default bounds the cache to about 60 MB.
const DefaultCacheSize = 30_000

const shards = 64 // a power of two; spreads lock contention over cores

// Cache remembers tokens whose signature and claims a Verifier has
// checked, so that a client that sends the same token on every request
// (the normal case for client credentials) pays for the signature check
// once per token, not once per request.
//
// It holds only what a full verification proved, and never for longer
// than it stays true: an entry ends when its token expires (plus the
// leeway the verification allowed), and it names the key that verified
// it, so that it stops counting once that key is gone. What can change
// while a token is valid (revocation, a disabled client, the policy) is
// not cached at all; callers check it on every request.
//
// A Cache belongs to one Verifier: an entry proves the checks of that
// verifier (its issuer, its audience), no other.
//
// It is a bounded map from a token's SHA-256 digest to its verified
// claims. Keys are digests, not the tokens: a memory dump of the cache
// holds no usable token, and a forged token cannot hit another token's
// entry without a SHA-256 collision. It is safe for concurrent use.
type Cache struct {
	shards   [shards]shard
	perShard int

	hits, misses atomic.Uint64

	// seen holds a tag of each token verified once and not admitted yet
	// (see admit); nil in a refused cache.
	seen []atomic.Uint64

	// refused remembers tokens whose refusal is final, apart from the
	// tokens that passed, so that a flood of bad tokens cannot evict good
	// ones. nil in a refused cache itself.
	refused *Cache
}

type shard struct {
	mu   sync.RWMutex
	m    map[digest]*cacheEntry
	keys []digest // m's keys, in no order: eviction picks one at random
}

// digest is a token as the caches know it: its SHA-256, computed once
// per Verify.
type digest = [sha256.Size]byte

// headers remembers how the header segments of tokens whose signature
// verified were decoded, by the segment's exact text: the header is the
// same on every token a key signs, and its decoding (base64url, the strict
// JSON walk) is a function of that text alone, so a token signed before
// with the same header need not be decoded again. Only a signed header
// goes in, so the entries are as few as the headers issuers use; when
// full, it starts again. It is shared by every Verifier: the checks of the
// decoded header (type, key, algorithm) are each verifier's own, made on
// every token.
var headers headerCache

const maxHeaders = 32

type headerCache struct {
	mu sync.Mutex // held to add
	m  atomic.Pointer[map[string]header]
}

// get returns the decoded header of the segment seg, if it is known.
func (c *headerCache) get(seg string) (header, bool) {
	if m := c.m.Load(); m != nil {
		h, ok := (*m)[seg]
		return h, ok
	}
	return header{}, false
}

// put remembers h as the decoding of seg. The map is replaced, never
// changed, so get takes no lock.
func (c *headerCache) put(seg string, h header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]header{}
	if old := c.m.Load(); old != nil && len(*old) < maxHeaders {
		m = maps.Clone(*old)
	}
	// A copy: seg is part of the token, which the key must not keep in
	// memory (see Cache).
	m[strings.Clone(seg)] = h
	c.m.Store(&m)
}

// digestOf is token's digest. A token of the usual size is copied to the
// stack to be hashed: []byte(token) would put a copy on the heap for
// every request the cache answers.
func digestOf(token string) digest {
	var buf [2 << 10]byte
	if len(token) > len(buf) {
		return sha256.Sum256([]byte(token))
	}
	return sha256.Sum256(buf[:copy(buf[:], token)])
}

// cacheEntry is one verified token.
type cacheEntry struct {
	// Claims are shared by every request that presents the token: read
	// them, never change them.
	Claims *Claims
	// KeyID names the key that verified (or refused) the token, and
	// KeyPrint is what that key was: the entry is good only while the
	// kid still names the same key. An external issuer may put a new key
	// under an old kid.
	KeyID, KeyPrint string
	// Until is when the entry ends: the token's expiry plus the leeway
	// its verification allowed.
	Until time.Time
	// Err, in a refused cache, is the refusal.
	Err error

	slot int // index of the key in its shard's keys, under the shard's lock
}

// NewCache returns an empty cache of at most size entries (DefaultCacheSize if
// size ≤ 0).
func NewCache(size int) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	c := newCache(size)
	c.refused = newCache(max(shards, size/4))
	c.seen = make([]atomic.Uint64, seenSlots(size))
	return c
}

func newCache(size int) *Cache {
	c := &Cache{perShard: max(1, size/shards)}
	for i := range c.shards {
		c.shards[i].m = make(map[digest]*cacheEntry)
	}
	return c
}

// seenSlots is the size of the seen-once table of a cache of size
// entries: a power of two, twice the entries, so that a token sent again
// within about that many new tokens is still known. 8 bytes a slot: 0.5 MB
// for the default size.
func seenSlots(size int) int {
	n := 1
	for n < 2*size {
		n <<= 1
	}
	return n
}

// admit reports whether a token that has just been verified should be
// kept, and marks it seen if not: a token is kept from its second
// verification on. A client that fetches a token per request, or a
// flood of distinct valid tokens, would otherwise fill the cache with
// entries that are never read, evict the tokens that are sent again, and
// give the garbage collector a large live heap to mark. The table is
// direct-mapped and lossy: a slot holds the last token that fell in it,
// so a token may need a third verification, and a tag collision (64 bits)
// may keep a token on its first; neither changes a decision, since only
// verified tokens are ever kept.
func (c *Cache) admit(k digest) bool {
	slot := &c.seen[c.seenSlot(k)]
	tag := binary.LittleEndian.Uint64(k[8:16]) | 1 // never 0, an empty slot
	if slot.Load() == tag {
		return true
	}
	slot.Store(tag)
	return false
}

func (c *Cache) seenSlot(k digest) uint64 {
	return binary.LittleEndian.Uint64(k[0:8]) & uint64(len(c.seen)-1)
}

// get returns the entry for token if there is one that has not ended at
// now.
func (c *Cache) get(k digest, now time.Time) (*cacheEntry, bool) {
	s := &c.shards[k[0]&(shards-1)]
	s.mu.RLock()
	e := s.m[k]
	s.mu.RUnlock()
	if e == nil || !now.Before(e.Until) {
		if e != nil {
			s.mu.Lock()
			if s.m[k] == e {
				s.delete(k, e)
			}
			s.mu.Unlock()
		}
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return e, true
}

// put remembers a token that has just been verified. When the token's
// shard is full, an entry chosen at random makes room: random eviction
// costs nothing to track and cannot be steered by the order in which
// tokens arrive.
func (c *Cache) put(k digest, e *cacheEntry) {
	s := &c.shards[k[0]&(shards-1)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[k]; ok {
		e.slot = old.slot
	} else if len(s.keys) >= c.perShard {
		e.slot = rand.IntN(len(s.keys))
		delete(s.m, s.keys[e.slot])
		s.keys[e.slot] = k
	} else {
		e.slot = len(s.keys)
		s.keys = append(s.keys, k)
	}
	s.m[k] = e
}

// remove forgets token, whose entry turned out to be no longer good (its
// key is gone).
func (c *Cache) remove(k digest) {
	s := &c.shards[k[0]&(shards-1)]
	s.mu.Lock()
	if e := s.m[k]; e != nil {
		s.delete(k, e)
	}
	s.mu.Unlock()
}

// delete removes k, whose entry is e; the caller holds the lock.
func (s *shard) delete(k digest, e *cacheEntry) {
	last := len(s.keys) - 1
	if moved := s.keys[last]; e.slot != last {
		s.keys[e.slot] = moved
		s.m[moved].slot = e.slot
	}
	s.keys = s.keys[:last]
	delete(s.m, k)
}

// Len is the number of entries.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// Stats reports the lookups that found a good entry and those that did
// not, since the cache was made.
func (c *Cache) Stats() (hits, misses uint64) {
	return c.hits.Load(), c.misses.Load()
}
