// Package keys owns the signing keys of the token endpoint: it generates
// them on first start, keeps them in shared storage so that every instance
// and every restart signs and verifies with the same keys, rotates them on
// a schedule or on demand, and publishes their public halves as a JWK Set
// (RFC 7517).
//
// # Rotation
//
// Every key has a schedule, kept with it in storage: when it was created,
// when it starts signing (activates), when it stops signing (retires: when
// its successor activates) and when it leaves the JWK Set (expires: at
// least RetainFor after it retired, so every token it signed has expired by
// then). A scheduled rotation publishes the next key PublishAhead before it
// signs, so verifiers that cache the JWK Set already know it when the first
// token it signed reaches them.
//
// Every decision is a function of the stored schedule and the clock: which
// key signs at a given instant, which keys are published. Changes to the
// schedule (a new key, a dropped key) are made under a storage lock after
// re-reading storage, so instances sharing storage never create two keys
// for one rotation and always agree on the keys.
package keys

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	shared "github.com/oauthgate/oauthgate/caddymodule/state"
)

// Storage is where the key set lives: Caddy's storage, or the fleet's
// state engine. Load must return an error wrapping fs.ErrNotExist for a
// missing key. Lock and Unlock serialize changes to the key set across
// instances.
type Storage = shared.Blobs

// StorageKey is where the key set lives in storage. The value holds
// private keys; storage is trusted like the TLS private keys Caddy keeps
// beside it.
const StorageKey = "oauthgate/signing_keys.json"

const lockName = "oauthgate_signing_keys"

// DefaultPublishAhead is how long a scheduled key is published before it
// signs, unless Options say otherwise.
const DefaultPublishAhead = time.Hour

// MinPublishAhead is the shortest PublishAhead accepted: twice the
// max-age (300s) with which the JWK Set is served, so a verifier that
// cached the set just before the new key appeared has refreshed it before
// the key signs.
const MinPublishAhead = 10 * time.Minute

// Options configure a Manager.
type Options struct {
	// Algorithm new keys are made for: ES256 (ECDSA P-256, the default),
	// EdDSA (Ed25519), RS256 or PS256 (RSA 2048). Changing it rotates: a
	// key of the new algorithm is published ahead and then signs; the old
	// keys keep verifying until their tokens have expired.
	Algorithm jwa.SignatureAlgorithm
	// RotateEvery is the age at which the newest key's successor is
	// created and published; it signs PublishAhead later, so every key
	// signs for RotateEvery (the very first for PublishAhead longer). 0
	// disables automatic rotation. Otherwise at least PublishAhead.
	RotateEvery time.Duration
	// PublishAhead is how long a new key is in the JWK Set before it
	// signs. Default DefaultPublishAhead; at least MinPublishAhead.
	PublishAhead time.Duration
	// RetainFor is how long a key stays published after it stopped
	// signing: the longest lifetime of a token, plus the verifiers'
	// leeway for "exp", plus the interval between Syncs (after an
	// immediate Rotate, other instances sign with the old key until their
	// next Sync). A longer RetainFor than before extends the publication
	// of retired keys, a shorter one never shortens it. The JWK Set holds
	// about 2 + RetainFor/RotateEvery keys. Required.
	RetainFor time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Manager keeps the key set in storage up to date. It holds no state of
// its own: everything it decides follows from storage and the clock, so
// any number of Managers (in one process or in instances sharing storage)
// can work on the same storage. Its methods are safe for concurrent use.
type Manager struct {
	st   Storage
	opts Options
}

// NewManager validates opts and returns a Manager of the key set in st.
func NewManager(st Storage, opts Options) (*Manager, error) {
	if st == nil {
		return nil, errors.New("keys: no storage")
	}
	if opts.Algorithm.String() == "" {
		opts.Algorithm = jwa.ES256()
	}
	if !allowed(opts.Algorithm) {
		return nil, fmt.Errorf("keys: algorithm %q is not supported (want one of %s)", opts.Algorithm, algorithmNames)
	}
	if opts.PublishAhead == 0 {
		opts.PublishAhead = DefaultPublishAhead
	}
	switch {
	case opts.PublishAhead < MinPublishAhead:
		return nil, fmt.Errorf("keys: publish ahead %v is too short: verifiers cache the JWK Set for up to 5m, so at least %v", opts.PublishAhead, MinPublishAhead)
	case opts.RotateEvery < 0:
		return nil, errors.New("keys: rotation interval must not be negative")
	case opts.RotateEvery > 0 && opts.RotateEvery < opts.PublishAhead:
		return nil, fmt.Errorf("keys: rotation interval %v is shorter than publish ahead %v", opts.RotateEvery, opts.PublishAhead)
	case opts.RetainFor <= 0:
		return nil, errors.New("keys: retention (the longest token lifetime) must be positive")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Manager{st: st, opts: opts}, nil
}

// ParseAlgorithm returns the signing algorithm named name ("ES256",
// "EdDSA", "RS256", "PS256"), for configuration parsing.
func ParseAlgorithm(name string) (jwa.SignatureAlgorithm, error) {
	alg, ok := jwa.LookupSignatureAlgorithm(name)
	if !ok || !allowed(alg) {
		return jwa.SignatureAlgorithm{}, fmt.Errorf("signing algorithm %q is not supported (want one of %s)", name, algorithmNames)
	}
	return alg, nil
}

// op is what a caller of update asks for.
type op int

const (
	opLoad      op = iota // load, create if missing; no maintenance
	opSync                // load and do what the schedule says is due
	opRotate              // publish a new key that signs after PublishAhead
	opRotateNow           // publish a new key that signs at once
)

// Sync loads the key set from storage, creating it if missing, and does
// the maintenance that is due: unless a key is already waiting to sign, it
// publishes the next key when the newest key has reached RotateEvery or
// was made for another Algorithm; it drops keys whose retention has ended.
// It returns the set as of now.
//
// If maintenance fails after the keys were loaded (the storage lock or a
// write failed), Sync returns the keys in storage together with the error:
// they are usable, and the next Sync tries the maintenance again. The set
// is nil only when there are no usable keys.
func (m *Manager) Sync(ctx context.Context) (*Set, error) {
	set, _, err := m.update(ctx, opSync, nil)
	return set, err
}

// Rotate publishes a new key now, of the configured Algorithm, and then
// does what Sync does. If immediate is false, the new key signs after
// PublishAhead, which is safe: verifiers that cache the JWK Set learn it
// first. If a key is already waiting to sign, Rotate(false) adds nothing
// and returns the set with that key.
//
// If immediate is true (for a compromised key), the new key signs at once,
// the signing key retires now, and a key that was waiting to sign is
// dropped. Verifiers that cached the JWK Set refuse the new key's tokens
// until they fetch it again. Other instances sharing the storage sign
// with the old key (or the dropped one, whose tokens are then refused)
// until their next Sync; a Keeper among them reads storage on the first
// token of the new key, and accepts it.
func (m *Manager) Rotate(ctx context.Context, immediate bool) (*Set, error) {
	o := opRotate
	if immediate {
		o = opRotateNow
	}
	set, _, err := m.update(ctx, o, nil)
	if err != nil {
		return nil, err
	}
	return set, nil
}

// LoadOrCreate returns the key set in storage, generating and storing a
// new ES256 key if there is none. It never rotates or drops keys (keys of
// any supported algorithm in storage are used as they are). Instances
// sharing storage agree on the keys: generation happens under a storage
// lock and re-checks storage after taking it.
func LoadOrCreate(ctx context.Context, st Storage) (*Set, error) {
	m := &Manager{st: st, opts: Options{Algorithm: jwa.ES256(), PublishAhead: DefaultPublishAhead, Now: time.Now}}
	set, _, err := m.update(ctx, opLoad, nil)
	if err != nil {
		return nil, err
	}
	return set, nil
}

// update loads the key set and, if o makes a change due, makes it under
// the storage lock.
//
// held is the set the caller signs and verifies with, or nil. If storage
// has no key set and held is not nil, held is written back instead of a
// new key being made, and restored is true: the storage was wiped or is a
// new one, and a new key would leave every token held's keys signed
// refused by the instances that read it, and this instance with keys no
// other knows.
func (m *Manager) update(ctx context.Context, o op, held *Set) (set *Set, restored bool, err error) {
	// Decide without the lock first: almost every call finds nothing due.
	cur, err := m.load(ctx)
	if err != nil {
		return nil, false, err
	}
	cur, restore := orHeld(cur, held)
	now := m.opts.Now()
	_, changed, needKey := m.next(cur, now, o, nil)
	if !changed && !restore {
		set, err = cur.snapshot(now, m.opts.Now)
		return set, false, err
	}
	// A key is generated before taking the lock (RSA takes a while) and
	// thrown away if another instance did the work meanwhile.
	var fresh *Key
	if needKey {
		if fresh, err = generate(m.opts.Algorithm); err != nil {
			return m.failed(cur, now, fmt.Errorf("generating a signing key: %w", err))
		}
	}

	if err := m.st.Lock(ctx, lockName); err != nil {
		return m.failed(cur, now, fmt.Errorf("locking signing keys in storage: %w", err))
	}
	defer func() { _ = m.st.Unlock(context.WithoutCancel(ctx), lockName) }()

	// Another instance may have changed the set since, or written its own
	// back: decide again on what storage holds now.
	loaded := cur
	if cur, err = m.load(ctx); err != nil {
		return m.failed(loaded, now, err)
	}
	cur, restore = orHeld(cur, held)
	now = m.opts.Now()
	next, changed, needKey := m.next(cur, now, o, fresh)
	if !changed && !restore {
		set, err = cur.snapshot(now, m.opts.Now)
		return set, false, err
	}
	if needKey { // became due while we waited for the lock
		if fresh, err = generate(m.opts.Algorithm); err != nil {
			return m.failed(cur, now, fmt.Errorf("generating a signing key: %w", err))
		}
		next, _, _ = m.next(cur, now, o, fresh)
	}
	data, err := next.marshal()
	if err != nil {
		return m.failed(cur, now, err)
	}
	if err := m.st.Store(ctx, StorageKey, data); err != nil {
		return m.failed(cur, now, fmt.Errorf("storing signing keys: %w", err))
	}
	set, err = next.snapshot(now, m.opts.Now)
	return set, restore && err == nil, err
}

// orHeld is cur, the key set in storage, or if there is none, held's keys
// to write back (restore).
func orHeld(cur *state, held *Set) (_ *state, restore bool) {
	if cur != nil || held == nil {
		return cur, false
	}
	return held.state(), true
}

// failed returns err with the loaded set, if there is one, for Sync's
// callers to keep using.
func (m *Manager) failed(cur *state, now time.Time, err error) (*Set, bool, error) {
	if cur == nil {
		return nil, false, err
	}
	set, serr := cur.snapshot(now, m.opts.Now)
	if serr != nil {
		return nil, false, err
	}
	return set, false, err
}

// next returns the state after what o makes due at now, and whether that
// changes anything. If a new key is due and fresh is nil, it reports
// needKey and returns no state; otherwise fresh is the new key.
func (m *Manager) next(cur *state, now time.Time, o op, fresh *Key) (next *state, changed, needKey bool) {
	if cur == nil {
		// First start: the first key signs at once, there is nobody to
		// publish it ahead to.
		if fresh == nil {
			return nil, true, true
		}
		return &state{created: now, entries: []*entry{newEntry(fresh, now, now)}}, true, false
	}
	if o == opLoad {
		return cur, false, false
	}
	next = cur.clone()
	newest := next.entries[0]
	pending := newest.info.Activates.After(now)
	rotate, immediate := false, false
	switch {
	case o == opRotateNow:
		rotate, immediate = true, true
	case pending:
		// A key published ahead is never replaced (short of an immediate
		// rotation): an instance that has not synced since it was
		// published signs with it from its activation on.
	case newest.key.Algorithm != m.opts.Algorithm:
		rotate = true // an algorithm change is a rotation
	case o == opRotate:
		rotate = true
	case m.opts.RotateEvery > 0:
		rotate = !now.Before(newest.info.Created.Add(m.opts.RotateEvery))
	}
	if rotate {
		if fresh == nil {
			return nil, true, true
		}
		// An immediate rotation drops a key still waiting to sign: it
		// must not sign later, and it is as exposed as the signing key.
		for len(next.entries) > 1 && next.entries[0].info.Activates.After(now) {
			next.entries = next.entries[1:]
		}
		activates := now.Add(m.opts.PublishAhead)
		if immediate {
			activates = now
		}
		// Never before the key it succeeds, whose start another instance's
		// clock, a little ahead of ours, may have set in our future.
		if prev := next.entries[0].info.Activates; activates.Before(prev) {
			activates = prev
		}
		next.entries[0].info.Retires = activates
		next.entries = append([]*entry{newEntry(fresh, now, activates)}, next.entries...)
		changed = true
	}
	// Retention: a key that stopped signing stays published for RetainFor
	// (at least: a longer RetainFor than before extends it, a shorter one
	// never shortens it, since tokens with the longer lifetime exist).
	kept := next.entries[:1]
	for _, e := range next.entries[1:] {
		if e.info.Retires.IsZero() {
			e.info.Retires = now // unknown (an old key set): as of now, at the latest
			changed = true
		}
		if until := e.info.Retires.Add(m.opts.RetainFor); e.info.Expires.IsZero() || until.After(e.info.Expires) {
			e.info.Expires = until
			changed = true
		}
		if !now.Before(e.info.Expires) {
			changed = true
			continue
		}
		kept = append(kept, e)
	}
	next.entries = kept
	return next, changed, false
}

func (m *Manager) load(ctx context.Context) (*state, error) {
	data, err := m.st.Load(ctx, StorageKey)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading signing keys from storage: %w", err)
	}
	s, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("signing keys in storage (%s): %w", StorageKey, err)
	}
	return s, nil
}
