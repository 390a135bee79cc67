package state

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// Once remembers identifiers that may be used one time only, such as the
// jti of a DPoP proof (RFC 9449 §11.1) or of a client assertion (RFC 7523
// §3), until they expire: a second use is a replay.
//
// Redis (package redisstate) answers for the whole fleet at once, with
// one atomic SET NX. MemoryOnce answers for one instance: what the
// gateway uses with Caddy's storage, whose instances share no memory; a
// fleet on a shared disk catches a replay sent to another instance only
// with state on Redis.
type Once interface {
	// First records id (of a kind: "dpop", "assertion") until exp and
	// reports whether it was not recorded before. An error means the
	// engine cannot tell, and the caller must refuse: never a replay let
	// through because the engine was away.
	First(ctx context.Context, kind, id string, exp time.Time) (bool, error)
}

// ErrOnceFull is MemoryOnce's answer when it holds as many live
// identifiers as it may: refusing is the only safe answer, and only
// callers whose keys are trusted (a bound token, a registered client)
// can fill it.
var ErrOnceFull = errors.New("the one-time identifier table is full")

// MemoryOnce is a Once kept in this process's memory, bounded: it holds
// at most max live identifiers (about 100 bytes each), as SHA-256
// digests, so that a long identifier costs no more than a short one.
//
// Nothing in it holds a pointer (expiries are Unix nanoseconds, not
// time.Time, whose location is one), so the garbage collector never
// scans it: a DPoP proof per request fills it with hundreds of thousands
// of entries, which the collector would otherwise mark on every cycle.
type MemoryOnce struct {
	mu   sync.Mutex
	max  int
	now  func() time.Time
	seen map[digest]int64 // identifier → expiry
	ends []end            // the same identifiers, a min-heap by expiry
}

type digest = [sha256.Size]byte

type end struct {
	exp int64 // Unix nanoseconds
	k   digest
}

// DefaultOnceSize bounds a MemoryOnce made with size 0: a million
// identifiers (about 100 MB), 16,000 a second over a minute's window.
const DefaultOnceSize = 1 << 20

// NewMemoryOnce returns an empty MemoryOnce of at most size identifiers
// (DefaultOnceSize if size ≤ 0); now is the clock (nil: time.Now).
func NewMemoryOnce(size int, now func() time.Time) *MemoryOnce {
	if size <= 0 {
		size = DefaultOnceSize
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryOnce{max: size, now: now, seen: map[digest]int64{}}
}

// First implements Once. Identifiers that have expired are dropped as
// new ones come, the soonest first, so that no call pays for a sweep of
// the whole table.
func (m *MemoryOnce) First(_ context.Context, kind, id string, exp time.Time) (bool, error) {
	k := onceDigest(kind, id)
	now, until := m.now().UnixNano(), exp.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.ends) > 0 && now >= m.ends[0].exp {
		e := m.pop()
		if u, ok := m.seen[e.k]; ok && u <= e.exp {
			delete(m.seen, e.k)
		}
	}
	if u, ok := m.seen[k]; ok && now < u {
		return false, nil
	}
	if now >= until {
		return true, nil // already over: nothing to remember
	}
	if len(m.seen) >= m.max {
		return false, ErrOnceFull
	}
	m.seen[k] = until
	m.push(end{until, k})
	return true, nil
}

// Len is the number of identifiers held.
func (m *MemoryOnce) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.seen)
}

// push and pop keep ends a binary min-heap. They are written out rather
// than container/heap's, whose interface boxes every entry in an
// allocation of its own.
func (m *MemoryOnce) push(e end) {
	h := append(m.ends, e)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].exp <= h[i].exp {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	m.ends = h
}

func (m *MemoryOnce) pop() end {
	h := m.ends
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && h[c+1].exp < h[c].exp {
			c++
		}
		if h[i].exp <= h[c].exp {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	m.ends = h
	return top
}

// onceDigest names id of kind: the kind's length first, so that no two
// (kind, id) pairs read alike. An identifier of the usual size is
// hashed from the stack.
func onceDigest(kind, id string) digest {
	var buf [320]byte
	return sha256.Sum256(append(append(append(buf[:0], byte(len(kind))), kind...), id...))
}
