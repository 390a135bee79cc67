package bruteforce

import (
	"strings"
	"sync"
)

// table is the buckets of one dimension: a map for lookup and a min-heap
// on full-again time for eviction. One mutex: the critical sections are a
// map lookup and O(log n) heap work, far cheaper than anything else the
// token endpoint does (see BenchmarkCheckFail).
type table struct {
	interval int64 // ns per recovered failure: Per / Failures
	burst    int64 // ns of debt of an empty bucket: Failures * interval
	max      int

	mu      sync.Mutex
	entries map[key]*entry
	heap    []*entry // by full; heap[0] is the first to recover
}

type entry struct {
	k key
	// full is when the bucket is full again (UnixNano): the debt at now
	// is full-now, clamped to [0, burst]. full <= now: fully recovered.
	full int64
	i    int // index in heap
}

// pruneAtMost is how many recovered entries a fail drops in passing, so
// the table shrinks back to the live keys after a burst of traffic.
const pruneAtMost = 2

func newTable(r Rate, maxTracked int) *table {
	interval := max(int64(r.Per)/int64(r.Failures), 1)
	return &table{
		interval: interval,
		burst:    interval * int64(r.Failures),
		max:      maxTracked,
		entries:  make(map[key]*entry),
	}
}

// debt is the clamped debt of a bucket full again at full. The clamp
// keeps a wall clock stepped back from inflating waits beyond one interval.
func (t *table) debt(full, now int64) int64 {
	return min(max(full-now, 0), t.burst)
}

// wait returns how long (ns) until k may fail once more.
func (t *table) wait(k key, now int64) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.waitLocked(k, now)
}

func (t *table) waitLocked(k key, now int64) int64 {
	e := t.entries[k]
	if e == nil {
		return 0
	}
	// One more failure is allowed while the debt is at most burst-interval.
	return max(t.debt(e.full, now)-(t.burst-t.interval), 0)
}

// fail takes one failure from k's bucket.
func (t *table) fail(k key, now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failLocked(k, now)
}

// refund gives back one failure taken from k's bucket.
func (t *table) refund(k key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[k]; e != nil {
		e.full -= t.interval
		t.fix(e.i)
	}
}

func (t *table) failLocked(k key, now int64) {
	// Recovered entries sit at the top of the heap and hold nothing:
	// drop them first, so eviction below only happens when none is left.
	for n := 0; n < pruneAtMost && len(t.heap) > 0 && t.heap[0].full <= now; n++ {
		t.remove(t.heap[0])
	}
	e := t.entries[k]
	if e == nil {
		if len(t.entries) >= t.max {
			// Evict the entry nearest to recovering: its loss forgets
			// the least, and a key an attacker has driven into the
			// limit is the last to go, so spraying single failures
			// over fresh keys cannot flush it.
			t.remove(t.heap[0])
		}
		// Clone: a client ID may be a slice of the request's
		// "id:secret", which must not outlive the request.
		k.s = strings.Clone(k.s)
		e = &entry{k: k, full: now, i: len(t.heap)}
		t.entries[k] = e
		t.heap = append(t.heap, e)
	}
	e.full = now + min(t.debt(e.full, now)+t.interval, t.burst)
	t.fix(e.i)
}

func (t *table) remove(e *entry) {
	delete(t.entries, e.k)
	i, last := e.i, len(t.heap)-1
	if i != last {
		t.swap(i, last)
	}
	t.heap[last] = nil
	t.heap = t.heap[:last]
	if i < last {
		t.fix(i)
	}
}

func (t *table) fix(i int) {
	if !t.up(i) {
		t.down(i)
	}
}

func (t *table) up(i int) bool {
	moved := false
	for i > 0 {
		parent := (i - 1) / 2
		if t.heap[parent].full <= t.heap[i].full {
			break
		}
		t.swap(i, parent)
		i, moved = parent, true
	}
	return moved
}

func (t *table) down(i int) {
	n := len(t.heap)
	for {
		least := i
		if l := 2*i + 1; l < n && t.heap[l].full < t.heap[least].full {
			least = l
		}
		if r := 2*i + 2; r < n && t.heap[r].full < t.heap[least].full {
			least = r
		}
		if least == i {
			return
		}
		t.swap(i, least)
		i = least
	}
}

func (t *table) swap(i, j int) {
	t.heap[i], t.heap[j] = t.heap[j], t.heap[i]
	t.heap[i].i = i
	t.heap[j].i = j
}
