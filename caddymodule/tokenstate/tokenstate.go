// Package tokenstate keeps the state of issued tokens that a signature
// cannot carry: revoked token IDs, opaque (reference) tokens, and, for
// clients whose tokens live "until the next one" (SAP's lifetime 0), which
// token is the latest.
//
// Each instance holds the revocations and the latest-token records in
// memory, so the guard never waits on the state engine for a JWT, and
// keeps the opaque tokens it has looked up in a bounded cache. Changes are
// written to the engine (package state) at once and reach the other
// instances as the engine tells them: at once on Redis, within a sync
// interval on Caddy's storage.
package tokenstate

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// MACKeyName is where the opaque-token MAC key lives among the blobs.
const MACKeyName = state.StorageDir + "/opaque_mac_key"

// epochName is where a random value lives that is made anew, under the
// MAC key's lock, whenever the MAC key had to be written: on first start,
// and by the first instance to find that the engine lost everything. An
// instance that then finds another epoch than the one it saw last knows
// the engine was wiped meanwhile, although the MAC key is back already,
// and writes back the opaque tokens it holds.
const epochName = state.StorageDir + "/epoch"

const epochLen = 16

// Opaque is what an opaque token stands for.
type Opaque struct {
	ClientID string    `json:"client_id"`
	Subject  string    `json:"sub"`
	Audience []string  `json:"aud"`
	Scope    []string  `json:"scope"`
	IssuedAt time.Time `json:"iat"`
	Expiry   time.Time `json:"exp"`
	ID       string    `json:"jti"`
	// Cnf is the token's binding to a key (RFC 8705, RFC 9449).
	Cnf tokens.Confirmation `json:"cnf,omitzero"`
}

// latest marks, for one client, the token that supersedes all earlier
// ones.
type latest struct {
	ID       string    `json:"jti"`
	IssuedAt time.Time `json:"iat"`
	// Zero is set when the record was written for a lifetime-0 token:
	// then even a token of the same second is superseded unless it is
	// this one.
	Zero bool `json:"zero"`
	// Expiry is when every token the record can supersede has expired;
	// the record is dropped then.
	Expiry time.Time `json:"exp"`
}

// Store is the token state of one instance.
type Store struct {
	blobs   state.Blobs
	entries state.Entries
	now     func() time.Time
	// macKey authenticates opaque tokens, so junk is refused before it
	// costs a lookup; it is shared through the blobs like the signing
	// keys.
	macKey []byte
	// OnError, if set, is told of failures in the background (a resync
	// that failed; the state in memory stays as it was).
	OnError func(error)
	// OnBlobs, if set, is told when the engine says a blob was stored
	// (its name), or may have been ("" after a resync), so that the
	// signing keys are read again at once.
	OnBlobs func(name string)

	mu      sync.RWMutex
	epoch   []byte               // the epoch seen at the last Sync (epochName)
	revoked map[string]time.Time // hashed jti → expiry of the token
	latest  map[string]latest    // client ID → latest token
	older   map[string]struct{}  // jti → older than a record of its second (Superseded)
	opaque  *opaqueCache         // hashed token → record, those looked up
}

// Open loads the MAC key (making it on first start) and the revocations
// and latest-token records. Corrupt entries are skipped: it then returns
// a usable Store together with the *state.CorruptError that names them.
// now is the clock; nil means time.Now.
func Open(ctx context.Context, blobs state.Blobs, entries state.Entries, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{blobs: blobs, entries: entries, now: now,
		revoked: map[string]time.Time{}, latest: map[string]latest{}, older: map[string]struct{}{}, opaque: newOpaqueCache(opaqueCacheSize)}
	var err error
	if s.macKey, s.epoch, _, err = loadOrCreateMACKey(ctx, blobs, nil); err != nil {
		return nil, err
	}
	if err := s.Sync(ctx); err != nil {
		var corrupt *state.CorruptError
		if errors.As(err, &corrupt) {
			return s, err
		}
		return nil, err
	}
	return s, nil
}

// Run keeps the state current with the changes of every instance until
// ctx ends.
func (s *Store) Run(ctx context.Context) { s.entries.Watch(ctx, (*watcher)(s)) }

// loadOrCreateMACKey returns the opaque-token MAC key and the epoch, and
// whether the key was missing. A missing key is made on first start, or,
// by an instance that holds one (held), written back: the blobs were
// wiped, and the opaque tokens issued before must stay authentic. Either
// way a new epoch is written with it; a missing epoch alone (a store of
// an earlier release) is made too. Both are written under the MAC key's
// lock, re-checked after taking it, as another instance may have written
// them meanwhile.
func loadOrCreateMACKey(ctx context.Context, blobs state.Blobs, held []byte) (key, epoch []byte, missing bool, err error) {
	if key, epoch, err = loadMACKey(ctx, blobs); !errors.Is(err, fs.ErrNotExist) {
		return key, epoch, false, err
	}
	if err := blobs.Lock(ctx, MACKeyName); err != nil {
		return nil, nil, true, fmt.Errorf("locking %s: %w", MACKeyName, err)
	}
	defer func() { _ = blobs.Unlock(context.WithoutCancel(ctx), MACKeyName) }()
	key, epoch, err = loadMACKey(ctx, blobs)
	switch {
	case !errors.Is(err, fs.ErrNotExist):
		return key, epoch, false, err
	case key == nil:
		missing, key = true, held
		if key == nil {
			key = make([]byte, macKeyLen)
			_, _ = rand.Read(key) // crypto/rand.Read never fails (Go ≥ 1.24)
		}
		if err := blobs.Store(ctx, MACKeyName, key); err != nil {
			return nil, nil, true, fmt.Errorf("storing %s: %w", MACKeyName, err)
		}
	}
	epoch = make([]byte, epochLen)
	_, _ = rand.Read(epoch)
	if err := blobs.Store(ctx, epochName, epoch); err != nil {
		return nil, nil, missing, fmt.Errorf("storing %s: %w", epochName, err)
	}
	return key, epoch, missing, nil
}

// loadMACKey loads the MAC key, then the epoch. With the key but no
// epoch, it returns the key and an error wrapping fs.ErrNotExist.
func loadMACKey(ctx context.Context, blobs state.Blobs) (key, epoch []byte, err error) {
	load := func(name string, size int) ([]byte, error) {
		b, err := blobs.Load(ctx, name)
		if err == nil && len(b) != size {
			return nil, fmt.Errorf("%s: want %d bytes, found %d", name, size, len(b))
		}
		return b, err
	}
	if key, err = load(MACKeyName, macKeyLen); err != nil {
		return nil, nil, err
	}
	epoch, err = load(epochName, epochLen)
	return key, epoch, err
}

func hash(s string) string { return digestOfToken(s).id() }

// digestOfToken is the SHA-256 of an opaque token (or a jti): the cache
// keys on it, the engine on its hex form (id).
func digestOfToken(s string) digest { return sha256.Sum256([]byte(s)) }

func (d digest) id() string { return hex.EncodeToString(d[:]) }

// Revoke refuses the JWT with this jti until it expires.
func (s *Store) Revoke(ctx context.Context, jti string, exp time.Time) error {
	h := hash(jti)
	if err := s.entries.Put(ctx, state.Revoked, h, nil, exp); err != nil {
		return err
	}
	s.mu.Lock()
	s.revoked[h] = exp
	s.mu.Unlock()
	return nil
}

// Revoked reports whether the JWT with this jti was revoked.
func (s *Store) Revoked(jti string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.revoked) == 0 { // the usual case: spare every request a hash
		return false
	}
	_, ok := s.revoked[hash(jti)]
	return ok
}

// PutOpaque records an opaque token. Only its hash is stored.
func (s *Store) PutOpaque(ctx context.Context, token string, rec *Opaque) error {
	d := digestOfToken(token)
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := s.entries.Put(ctx, state.Opaque, d.id(), data, rec.Expiry); err != nil {
		return err
	}
	s.opaque.put(d, rec)
	return nil
}

// ErrUnavailable is the state engine failing to answer: a token that
// needs it can be neither accepted nor refused, so the caller answers
// 503 and the client retries.
var ErrUnavailable = errors.New("the token state is unavailable")

// RetryAfter is what a 503 for an unavailable state tells the client:
// long enough not to hammer a recovering engine, short enough for a
// restart or a failover.
const RetryAfter = 5 * time.Second

// LookupOpaque returns the record of an unexpired opaque token, or nil.
// A token this instance has not seen yet costs one lookup in the engine;
// if that fails, the error wraps ErrUnavailable.
func (s *Store) LookupOpaque(ctx context.Context, token string) (*Opaque, error) {
	d := digestOfToken(token)
	rec := s.opaque.get(d)
	if rec == nil {
		data, err := s.entries.Get(ctx, state.Opaque, d.id())
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		rec = new(Opaque)
		if json.Unmarshal(data, rec) != nil {
			return nil, nil
		}
		s.opaque.put(d, rec)
	}
	if !s.now().Before(rec.Expiry) {
		return nil, nil
	}
	return rec, nil
}

// RevokeOpaque forgets an opaque token.
func (s *Store) RevokeOpaque(ctx context.Context, token string) error {
	d := digestOfToken(token)
	if err := s.entries.Delete(ctx, state.Opaque, d.id()); err != nil {
		return fmt.Errorf("revoking opaque token: %w", err)
	}
	s.opaque.remove(d)
	return nil
}

// Issued records a new token of a client whose tokens are superseded by
// the next one: when zero is set (lifetime 0), or when the client had
// such tokens before (so that its change of lifetime ends them too). exp
// is the new token's expiry.
func (s *Store) Issued(ctx context.Context, clientID, jti string, iat, exp time.Time, zero bool) error {
	s.mu.RLock()
	prev, had := s.latest[clientID]
	s.mu.RUnlock()
	if !zero && !had {
		return nil
	}
	rec := latest{ID: jti, IssuedAt: iat, Zero: zero, Expiry: exp}
	if had && prev.Expiry.After(exp) {
		rec.Expiry = prev.Expiry
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := s.entries.Put(ctx, state.Latest, clientID, data, rec.Expiry); err != nil {
		return err
	}
	s.mu.Lock()
	s.setLatest(clientID, rec)
	s.mu.Unlock()
	return nil
}

// setLatest keeps rec unless a later token of the client is known: the
// announcements of two instances may arrive in either order. Called with
// mu held.
func (s *Store) setLatest(clientID string, rec latest) {
	if cur, ok := s.latest[clientID]; !ok || !cur.IssuedAt.After(rec.IssuedAt) {
		s.latest[clientID] = rec
	}
}

// Superseded reports whether a later token of the same client has ended
// this one. A JWT's iat is in whole seconds, so a token of the same
// second as a lifetime-0 record held here, and not the record's own, may
// be older than the record's token or newer: issued at another instance
// a moment ago, its announcement not yet here. Only then is the engine's
// record read (once per such token: one found older is remembered); if
// the engine cannot answer, the error wraps ErrUnavailable.
func (s *Store) Superseded(ctx context.Context, clientID, jti string, iat time.Time) (bool, error) {
	s.mu.RLock()
	rec, ok := s.latest[clientID]
	s.mu.RUnlock()
	switch {
	case !ok || jti == rec.ID:
		return false, nil
	case iat.Before(rec.IssuedAt):
		return true, nil
	case !rec.Zero || !iat.Equal(rec.IssuedAt):
		return false, nil
	}
	s.mu.RLock()
	_, older := s.older[jti]
	s.mu.RUnlock()
	if older {
		return true, nil
	}
	data, err := s.entries.Get(ctx, state.Latest, clientID)
	if err != nil {
		return true, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var cur latest
	if err := json.Unmarshal(data, &cur); err != nil {
		return true, fmt.Errorf("%w: latest-token record of %s: %w", ErrUnavailable, clientID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.latest[clientID]
	// A record written here while the engine was read may be newer than
	// what the engine said: it is kept.
	if held.ID == rec.ID {
		s.setLatest(clientID, cur)
		held = s.latest[clientID]
	}
	if cur.ID != jti {
		if len(s.older) >= maxOlder {
			clear(s.older)
		}
		s.older[jti] = struct{}{}
		return true, nil
	}
	// The engine's latest token is this one, unless a token recorded here
	// meanwhile is newer: refused then, though not remembered as older.
	return held.ID != jti, nil
}

// maxOlder bounds the tokens remembered as older than a lifetime-0 record
// of their second. Only tokens this gateway signed get there, so it fills
// only with a client that fetches thousands of tokens a second.
const maxOlder = 10_000

// Sync reads the revocations and latest-token records of every instance
// again, forgets the opaque tokens looked up so far, and drops what has
// expired. What this instance holds is merged in, never
// overwritten: a revocation must never be forgotten for an interval. What
// it holds that the engine has lost (an engine restarted empty) is
// written back. A failure of the engine leaves the state as it was;
// corrupt entries are skipped and returned as a *state.CorruptError after
// the rest is applied.
func (s *Store) Sync(ctx context.Context) error {
	now := s.now()
	revoked := map[string]time.Time{}
	lat := map[string]latest{}
	var corrupt *state.CorruptError
	loaded := errors.Join(
		s.entries.Each(ctx, state.Revoked, func(id string, _ []byte, exp time.Time) { revoked[id] = exp }),
		s.entries.Each(ctx, state.Latest, func(id string, v []byte, _ time.Time) {
			var rec latest
			if json.Unmarshal(v, &rec) == nil {
				lat[id] = rec
			}
		}),
	)
	if loaded != nil && !errors.As(loaded, &corrupt) {
		return loaded
	}
	// The opaque tokens looked up so far are forgotten, to be looked up
	// again: one of them may have been revoked at an instance whose
	// announcement this one missed. If the engine has lost the MAC key,
	// it has lost everything: what is held here is written back first,
	// since these tokens were not revoked. So it is if the epoch changed:
	// another instance found the engine wiped and wrote the key back
	// before this one looked.
	_, epoch, wiped, err := loadOrCreateMACKey(ctx, s.blobs, s.macKey)
	if err != nil {
		return err
	}
	s.mu.Lock()
	wiped = wiped || !bytes.Equal(epoch, s.epoch)
	s.epoch = epoch
	s.mu.Unlock()
	var restore []func() error
	for d, rec := range s.opaque.drain() {
		if wiped && now.Before(rec.Expiry) {
			data, _ := json.Marshal(rec)
			restore = append(restore, func() error { return s.entries.Put(ctx, state.Opaque, d.id(), data, rec.Expiry) })
		}
	}

	s.mu.Lock()
	for h, exp := range s.revoked {
		if _, ok := revoked[h]; !ok && now.Before(exp) {
			restore = append(restore, func() error { return s.entries.Put(ctx, state.Revoked, h, nil, exp) })
		}
		revoked[h] = exp // revocations are only ever added
	}
	for id, rec := range s.latest {
		if cur, ok := lat[id]; !ok || rec.IssuedAt.After(cur.IssuedAt) {
			lat[id] = rec
			if now.Before(rec.Expiry) {
				data, _ := json.Marshal(rec)
				restore = append(restore, func() error { return s.entries.Put(ctx, state.Latest, id, data, rec.Expiry) })
			}
		}
	}
	dropExpired(revoked, now, func(exp time.Time) time.Time { return exp })
	dropExpired(lat, now, func(r latest) time.Time { return r.Expiry })
	s.revoked, s.latest = revoked, lat
	s.mu.Unlock()

	for _, put := range restore {
		err = errors.Join(err, put())
	}
	return errors.Join(loaded, err)
}

func dropExpired[V any](m map[string]V, now time.Time, expiry func(V) time.Time) {
	for k, v := range m {
		if !now.Before(expiry(v)) {
			delete(m, k)
		}
	}
}

// An opaque token is 32 random bytes (256 bits) and a 16-byte MAC of
// them, base64url: 64 characters.
const (
	macKeyLen     = 32
	opaqueRandLen = 32
	opaqueMACLen  = 16
	opaqueLen     = 64
)

// NewOpaque returns a fresh opaque token.
func (s *Store) NewOpaque() string {
	b := make([]byte, opaqueRandLen, opaqueRandLen+opaqueMACLen)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(append(b, s.mac(b)...))
}

// Authentic reports whether token is an opaque token this gateway made.
// It costs one HMAC and no storage access.
func (s *Store) Authentic(token string) bool {
	if len(token) != opaqueLen {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(b) != opaqueRandLen+opaqueMACLen {
		return false
	}
	return hmac.Equal(b[opaqueRandLen:], s.mac(b[:opaqueRandLen]))
}

func (s *Store) mac(random []byte) []byte {
	m := hmac.New(sha256.New, s.macKey)
	m.Write(random)
	return m.Sum(nil)[:opaqueMACLen]
}
