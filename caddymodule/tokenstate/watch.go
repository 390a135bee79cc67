package tokenstate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
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
		if d, ok := digestOf(id); ok && value == nil {
			s.opaque.remove(d)
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

// WatchFailed passes on why the engine's announcements stopped coming;
// the watch resyncs by itself once they come again.
func (w *watcher) WatchFailed(err error) {
	if w.OnError != nil {
		w.OnError(fmt.Errorf("watching the state for changes of other instances (retrying): %w", err))
	}
}

// BlobsChanged passes on that some instance stored a blob ("" for any):
// the signing keys are not the Store's to read.
func (w *watcher) BlobsChanged(name string) {
	if w.OnBlobs != nil {
		w.OnBlobs(name)
	}
}

// opaqueCacheSize bounds the opaque tokens an instance remembers: about
// 320 bytes of live heap each (318 measured in make bench's scale case),
// so 100,000 hold about 32 MB. A token pushed out costs one lookup in the
// engine the next time it is presented.
const opaqueCacheSize = 100_000

// opaqueCache is a bounded map of the opaque tokens looked up, by hash.
// When full, a random entry makes room (the one a map iteration starts
// at, which the runtime picks at random): an attacker who floods it with
// valid tokens of its own pushes out others' entries at random, not all
// of them in order. It is most of what an instance holds per token, so it
// is keyed by the hash's 32 bytes, not its hex form, and its records
// share the strings and lists that many tokens have in common.
type opaqueCache struct {
	mu  sync.Mutex
	max int
	m   map[digest]*Opaque
	// strs and lists hold one copy of each client, subject, audience and
	// scope of the records; they start again when either holds maxShared,
	// which only a registry of thousands of clients with tokens in the
	// cache reaches.
	strs  map[string]string
	lists map[string][]string
}

const maxShared = 4096

type digest [sha256.Size]byte

// digestOf decodes an id made by hash; ok is false for anything else
// (an id announced by a foreign or broken writer).
func digestOf(h string) (d digest, ok bool) {
	if hex.DecodedLen(len(h)) != len(d) {
		return d, false
	}
	_, err := hex.Decode(d[:], []byte(h))
	return d, err == nil
}

func newOpaqueCache(max int) *opaqueCache {
	return &opaqueCache{max: max, m: map[digest]*Opaque{}, strs: map[string]string{}, lists: map[string][]string{}}
}

func (c *opaqueCache) get(d digest) *Opaque {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[d]
}

// put caches rec, which is not to be changed afterwards: the records
// handed out, and the lists in them, are shared.
func (c *opaqueCache) put(d digest, rec *Opaque) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[d]; !ok && len(c.m) >= c.max {
		for victim := range c.m {
			delete(c.m, victim)
			break
		}
	}
	c.m[d] = c.shared(rec)
}

func (c *opaqueCache) remove(d digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, d)
}

// drain empties the cache and returns what it held.
func (c *opaqueCache) drain() map[digest]*Opaque {
	c.mu.Lock()
	defer c.mu.Unlock()
	held := c.m
	c.m = map[digest]*Opaque{}
	return held
}

// shared returns a copy of o whose client, subject, audiences and scopes
// are the cache's copies.
func (c *opaqueCache) shared(o *Opaque) *Opaque {
	if len(c.strs) >= maxShared || len(c.lists) >= maxShared {
		clear(c.strs)
		clear(c.lists)
	}
	cp := *o
	cp.ClientID, cp.Subject = c.str(cp.ClientID), c.str(cp.Subject)
	cp.Audience, cp.Scope = c.list(cp.Audience), c.list(cp.Scope)
	return &cp
}

func (c *opaqueCache) str(s string) string {
	if v, ok := c.strs[s]; ok {
		return v
	}
	c.strs[s] = s
	return s
}

func (c *opaqueCache) list(ss []string) []string {
	if len(ss) == 0 {
		return ss
	}
	key := strings.Join(ss, "\x00")
	if v, ok := c.lists[key]; ok && slices.Equal(v, ss) {
		return v
	}
	v := make([]string, len(ss))
	for i, s := range ss {
		v[i] = c.str(s)
	}
	c.lists[key] = v
	return v
}
