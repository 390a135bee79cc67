package state

import (
	"container/heap"
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
type MemoryOnce struct {
	mu   sync.Mutex
	max  int
	now  func() time.Time
	seen map[digest]time.Time
	ends ends // the same identifiers, soonest to expire first
}

type digest = [sha256.Size]byte

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
	return &MemoryOnce{max: size, now: now, seen: map[digest]time.Time{}}
}

// First implements Once. Identifiers that have expired are dropped as
// new ones come, the soonest first, so that no call pays for a sweep of
// the whole table.
func (m *MemoryOnce) First(_ context.Context, kind, id string, exp time.Time) (bool, error) {
	k := onceDigest(kind, id)
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.ends) > 0 && !now.Before(m.ends[0].exp) {
		e := heap.Pop(&m.ends).(end)
		if until, ok := m.seen[e.k]; ok && !until.After(e.exp) {
			delete(m.seen, e.k)
		}
	}
	if until, ok := m.seen[k]; ok && now.Before(until) {
		return false, nil
	}
	if !now.Before(exp) {
		return true, nil // already over: nothing to remember
	}
	if len(m.seen) >= m.max {
		return false, ErrOnceFull
	}
	m.seen[k] = exp
	heap.Push(&m.ends, end{exp, k})
	return true, nil
}

// Len is the number of identifiers held.
func (m *MemoryOnce) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.seen)
}

type end struct {
	exp time.Time
	k   digest
}

// ends is a min-heap of expiries (container/heap).
type ends []end

func (h ends) Len() int           { return len(h) }
func (h ends) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h ends) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *ends) Push(x any)        { *h = append(*h, x.(end)) }
func (h *ends) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// onceDigest names id of kind: the kind's length first, so that no two
// (kind, id) pairs read alike.
func onceDigest(kind, id string) digest {
	h := sha256.New()
	h.Write([]byte{byte(len(kind))})
	h.Write([]byte(kind))
	h.Write([]byte(id))
	var d digest
	h.Sum(d[:0])
	return d
}
