// Package tokenstate keeps the state of issued tokens that a signature
// cannot carry: revoked token IDs, opaque (reference) tokens, and, for
// clients whose tokens live "until the next one" (SAP's lifetime 0), which
// token is the latest.
//
// Each instance holds the state in memory, so the guard never waits on
// storage for a JWT. Changes are written to Caddy's storage at once and
// read back by every instance sharing it on the next Sync, so a change
// made on one instance applies there from the next request on and on the
// others within one sync interval.
package tokenstate

import (
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
	"path"
	"sync"
	"time"
)

// Storage is the part of Caddy's certmagic.Storage the state needs. Load
// must return an error wrapping fs.ErrNotExist for a missing key.
type Storage interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, path string, recursive bool) ([]string, error)
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

const prefix = "oauthgate/tokens"

// The three kinds of entries, each a directory of small JSON files named
// by a hash (revoked, opaque) or a client ID (latest).
const (
	macKeyName = prefix + "/opaque_mac_key"
	dirRevoked = prefix + "/revoked"
	dirOpaque  = prefix + "/opaque"
	dirLatest  = prefix + "/latest"
)

// Opaque is what an opaque token stands for.
type Opaque struct {
	ClientID string    `json:"client_id"`
	Subject  string    `json:"sub"`
	Audience []string  `json:"aud"`
	Scope    []string  `json:"scope"`
	IssuedAt time.Time `json:"iat"`
	Expiry   time.Time `json:"exp"`
	ID       string    `json:"jti"`
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
	st  Storage
	now func() time.Time
	// macKey authenticates opaque tokens, so junk is refused before it
	// costs a storage read; it is shared through storage like the
	// signing keys.
	macKey []byte

	mu      sync.RWMutex
	revoked map[string]time.Time // hashed jti → expiry of the token
	opaque  map[string]*Opaque   // hashed token → record
	latest  map[string]latest    // client ID → latest token
}

// Open loads the state from storage. Like Sync, it skips corrupt entries:
// it then returns a usable Store together with the error that names them.
func Open(ctx context.Context, st Storage, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{st: st, now: now,
		revoked: map[string]time.Time{}, opaque: map[string]*Opaque{}, latest: map[string]latest{}}
	var err error
	if s.macKey, err = loadOrCreateMACKey(ctx, st); err != nil {
		return nil, err
	}
	if err := s.Sync(ctx); err != nil {
		var corrupt *CorruptError
		if errors.As(err, &corrupt) {
			return s, err
		}
		return nil, err
	}
	return s, nil
}

// CorruptError lists entries Sync skipped because they did not decode. The
// rest of the state was applied: one bad file must not stop every other
// instance's revocations from arriving.
type CorruptError struct{ Errs []error }

func (e *CorruptError) Error() string {
	return fmt.Sprintf("skipped %d corrupt token state entries: %v", len(e.Errs), errors.Join(e.Errs...))
}

// loadOrCreateMACKey returns the opaque-token MAC key, creating it under a
// storage lock on first start (and re-checking after taking the lock, as
// another instance may have created it meanwhile).
func loadOrCreateMACKey(ctx context.Context, st Storage) ([]byte, error) {
	load := func() ([]byte, error) {
		key, err := st.Load(ctx, macKeyName)
		if err == nil && len(key) != macKeyLen {
			return nil, fmt.Errorf("%s: want %d bytes, found %d", macKeyName, macKeyLen, len(key))
		}
		return key, err
	}
	if key, err := load(); !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := st.Lock(ctx, macKeyName); err != nil {
		return nil, fmt.Errorf("locking %s: %w", macKeyName, err)
	}
	defer func() { _ = st.Unlock(context.WithoutCancel(ctx), macKeyName) }()
	if key, err := load(); !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key := make([]byte, macKeyLen)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go ≥ 1.24)
	if err := st.Store(ctx, macKeyName, key); err != nil {
		return nil, fmt.Errorf("storing %s: %w", macKeyName, err)
	}
	return key, nil
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Revoke refuses the JWT with this jti until it expires.
func (s *Store) Revoke(ctx context.Context, jti string, exp time.Time) error {
	h := hash(jti)
	if err := s.put(ctx, path.Join(dirRevoked, h), exp); err != nil {
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
	h := hash(token)
	if err := s.put(ctx, path.Join(dirOpaque, h), rec); err != nil {
		return err
	}
	s.mu.Lock()
	s.opaque[h] = rec
	s.mu.Unlock()
	return nil
}

// LookupOpaque returns the record of an unexpired opaque token, or nil.
// A token issued by another instance since the last Sync is read from
// storage.
func (s *Store) LookupOpaque(ctx context.Context, token string) *Opaque {
	h := hash(token)
	s.mu.RLock()
	rec := s.opaque[h]
	s.mu.RUnlock()
	if rec == nil {
		var fromStorage Opaque
		if err := s.get(ctx, path.Join(dirOpaque, h), &fromStorage); err != nil {
			return nil
		}
		rec = &fromStorage
		s.mu.Lock()
		s.opaque[h] = rec
		s.mu.Unlock()
	}
	if !s.now().Before(rec.Expiry) {
		return nil
	}
	return rec
}

// RevokeOpaque forgets an opaque token.
func (s *Store) RevokeOpaque(ctx context.Context, token string) error {
	h := hash(token)
	if err := s.st.Delete(ctx, path.Join(dirOpaque, h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("revoking opaque token: %w", err)
	}
	s.mu.Lock()
	delete(s.opaque, h)
	s.mu.Unlock()
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
	if err := s.put(ctx, path.Join(dirLatest, clientID), rec); err != nil {
		return err
	}
	s.mu.Lock()
	s.latest[clientID] = rec
	s.mu.Unlock()
	return nil
}

// Superseded reports whether a later token of the same client has ended
// this one.
func (s *Store) Superseded(clientID, jti string, iat time.Time) bool {
	s.mu.RLock()
	rec, ok := s.latest[clientID]
	s.mu.RUnlock()
	switch {
	case !ok || jti == rec.ID:
		return false
	case iat.Before(rec.IssuedAt):
		return true
	default:
		// Same second: only a lifetime-0 record ends its neighbours.
		return rec.Zero && iat.Equal(rec.IssuedAt)
	}
}

func (s *Store) put(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := s.st.Store(ctx, key, data); err != nil {
		return fmt.Errorf("storing token state: %w", err)
	}
	return nil
}

func (s *Store) get(ctx context.Context, key string, v any) error {
	data, err := s.st.Load(ctx, key)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// Sync reads every instance's changes from storage and drops entries whose
// tokens have expired, from memory and from storage. What this instance
// wrote while Sync ran is merged in, not overwritten: a revocation must
// never be forgotten for an interval. A storage failure leaves the state
// as it was; corrupt entries are skipped and returned as a *CorruptError
// after the rest is applied.
func (s *Store) Sync(ctx context.Context) error {
	now := s.now()
	revoked := map[string]time.Time{}
	opaque := map[string]*Opaque{}
	lat := map[string]latest{}
	corrupt := &CorruptError{}
	err := errors.Join(
		syncDir(ctx, s, dirRevoked, revoked, corrupt, func(exp time.Time) time.Time { return exp }),
		syncDir(ctx, s, dirOpaque, opaque, corrupt, func(r *Opaque) time.Time { return r.Expiry }),
		syncDir(ctx, s, dirLatest, lat, corrupt, func(r latest) time.Time { return r.Expiry }),
	)
	if err != nil {
		return err
	}

	s.mu.RLock()
	var unconfirmed []string // opaque tokens known here but not (yet?) listed
	for h := range s.opaque {
		if _, ok := opaque[h]; !ok {
			unconfirmed = append(unconfirmed, h)
		}
	}
	s.mu.RUnlock()
	// An opaque token missing from the listing was either revoked by
	// another instance or issued here during the listing: storage tells.
	for _, h := range unconfirmed {
		var rec Opaque
		if s.get(ctx, path.Join(dirOpaque, h), &rec) == nil {
			opaque[h] = &rec
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for h, exp := range s.revoked {
		revoked[h] = exp // revocations are only ever added
	}
	for id, rec := range s.latest {
		if cur, ok := lat[id]; !ok || rec.IssuedAt.After(cur.IssuedAt) {
			lat[id] = rec
		}
	}
	dropExpired(revoked, now, func(exp time.Time) time.Time { return exp })
	dropExpired(opaque, now, func(r *Opaque) time.Time { return r.Expiry })
	dropExpired(lat, now, func(r latest) time.Time { return r.Expiry })
	s.revoked, s.opaque, s.latest = revoked, opaque, lat
	if len(corrupt.Errs) > 0 {
		return corrupt
	}
	return nil
}

func dropExpired[V any](m map[string]V, now time.Time, expiry func(V) time.Time) {
	for k, v := range m {
		if !now.Before(expiry(v)) {
			delete(m, k)
		}
	}
}

// syncDir loads every entry of dir into into, deleting expired ones from
// storage. An entry that vanished between List and Load (another instance
// deleted it) is skipped; a corrupt one is skipped and reported in
// corrupt, never silently dropped or deleted.
func syncDir[V any](ctx context.Context, s *Store, dir string, into map[string]V, corrupt *CorruptError, expiry func(V) time.Time) error {
	keys, err := s.st.List(ctx, dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing token state: %w", err)
	}
	now := s.now()
	for _, key := range keys {
		data, err := s.st.Load(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("loading token state %s: %w", key, err)
		}
		var v V
		if err := json.Unmarshal(data, &v); err != nil {
			corrupt.Errs = append(corrupt.Errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		switch {
		case !now.Before(expiry(v)):
			if err := s.st.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("deleting expired token state: %w", err)
			}
		default:
			into[path.Base(key)] = v
		}
	}
	return nil
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
