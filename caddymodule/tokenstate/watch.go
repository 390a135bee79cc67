package tokenstate

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/state"
)

// watcher applies the changes the engine announces to the Store.
type watcher Store

// Changed applies a change of any instance, this one's included (which is
// then a no-op).
func (w *watcher) Changed(kind state.Kind, id string, value []byte, exp time.Time) {
	s := (*Store)(w)
	switch kind {
	case state.Revoked:
		if value != nil {
			s.mu.Lock()
			s.revoked[id] = exp
			s.mu.Unlock()
		}
	case state.Latest:
		var rec latest
		if value != nil && json.Unmarshal(value, &rec) == nil {
			s.mu.Lock()
			s.setLatest(id, rec)
			s.mu.Unlock()
		}
	case state.Opaque:
		// Only a revocation matters: a token issued elsewhere is looked up
		// when it is first presented here.
		if value == nil {
			s.opaque.remove(id)
		}
	}
}

// Resync reads the state again; the blobs may have changed unannounced
// too.
func (w *watcher) Resync(ctx context.Context) {
	s := (*Store)(w)
	if err := s.Sync(ctx); err != nil && ctx.Err() == nil && s.OnError != nil {
		s.OnError(err)
	}
	w.BlobsChanged("")
}

// BlobsChanged passes on that some instance stored a blob ("" for any):
// the signing keys are not the Store's to read.
func (w *watcher) BlobsChanged(name string) {
	if w.OnBlobs != nil {
		w.OnBlobs(name)
	}
}

// opaqueCacheSize bounds the opaque tokens an instance remembers: about
// 300 bytes each, so 100,000 hold about 30 MB. A token pushed out costs
// one lookup in the engine the next time it is presented.
const opaqueCacheSize = 100_000

// opaqueCache is a bounded map of the opaque tokens looked up, by hash.
// When full, a random entry makes room: an attacker who floods it with
// valid tokens of its own pushes out others' entries at random, not all
// of them in order.
type opaqueCache struct {
	mu   sync.Mutex
	max  int
	m    map[string]*opaqueEntry
	keys []string // m's keys, in no order
}

type opaqueEntry struct {
	rec  *Opaque
	slot int // index in keys
}

func newOpaqueCache(max int) *opaqueCache {
	return &opaqueCache{max: max, m: map[string]*opaqueEntry{}}
}

func (c *opaqueCache) get(h string) *Opaque {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[h]; e != nil {
		return e.rec
	}
	return nil
}

func (c *opaqueCache) put(h string, rec *Opaque) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[h]; e != nil {
		e.rec = rec
		return
	}
	if len(c.keys) >= c.max {
		c.removeLocked(c.keys[rand.IntN(len(c.keys))])
	}
	c.m[h] = &opaqueEntry{rec: rec, slot: len(c.keys)}
	c.keys = append(c.keys, h)
}

func (c *opaqueCache) remove(h string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(h)
}

func (c *opaqueCache) removeLocked(h string) {
	e := c.m[h]
	if e == nil {
		return
	}
	last := c.keys[len(c.keys)-1]
	c.keys[e.slot] = last
	c.m[last].slot = e.slot
	c.keys = c.keys[:len(c.keys)-1]
	delete(c.m, h)
}

// drain empties the cache and returns what it held.
func (c *opaqueCache) drain() map[string]*Opaque {
	c.mu.Lock()
	defer c.mu.Unlock()
	held := make(map[string]*Opaque, len(c.m))
	for h, e := range c.m {
		held[h] = e.rec
	}
	c.m, c.keys = map[string]*opaqueEntry{}, nil
	return held
}
