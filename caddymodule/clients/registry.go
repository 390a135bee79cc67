package clients

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"time"
)

// ErrAuthentication is the one error for an unknown client, a wrong or
// expired secret and a disabled client, so that callers cannot tell them
// apart by accident.
var ErrAuthentication = errors.New("client authentication failed")

// ErrSlowHashRefused is returned instead of ErrAuthentication when
// AuthOptions.NoSlowHash is set and deciding would take an argon2id
// computation. It says no more than ErrAuthentication: see Authenticate.
var ErrSlowHashRefused = errors.New("client authentication refused: argon2id verification suspended")

// AuthOptions are the per-request inputs of Authenticate.
type AuthOptions struct {
	// Now is the time at which secret expiry is judged; zero means
	// time.Now().
	Now time.Time
	// NoSlowHash is set by a caller whose brute-force limiter has
	// tripped: no argon2id is computed. Secrets checked by SHA-256, and
	// argon2id secrets whose verification is cached, still authenticate,
	// so legitimate clients keep getting tokens while guessing is
	// throttled; anything else is ErrSlowHashRefused.
	NoSlowHash bool
}

// Registry authenticates clients. It is immutable once built; a changed
// file is a new Registry (given the same Cache).
type Registry struct {
	byID  map[string]*Client
	cache *Cache // nil: no caching

	// fastSlots and slowSlots are the most sha256 and argon2id secrets any
	// one client has; every failed authentication does exactly that many
	// comparisons of each kind (see Authenticate).
	fastSlots int
	slowSlots int
	dummyFast Secret // sha256 of a random secret
	dummySlow Secret // argon2id of a random secret, with the registry's parameters
}

// NewRegistry indexes a validated file. cache, if given (at most one), is
// used to remember successful argon2id verifications; pass the same Cache
// to the Registry built from the next version of the file.
func NewRegistry(f *File, cache ...*Cache) *Registry {
	if len(cache) > 1 {
		panic("clients.NewRegistry: more than one cache")
	}
	r := &Registry{byID: make(map[string]*Client, len(f.Clients))}
	if len(cache) == 1 {
		r.cache = cache[0]
	}
	slowParams, haveSlow := defaultArgon2, false
	for i := range f.Clients {
		c := &f.Clients[i]
		if len(c.Secrets) > MaxSecretsPerClient {
			// Parse refuses such a file; Authenticate relies on the bound.
			panic("clients.NewRegistry: the file was not validated")
		}
		r.byID[c.ID] = c
		fast, slow := 0, 0
		for j := range c.Secrets {
			s := &c.Secrets[j]
			switch s.kind {
			case kindSHA256:
				fast++
			case kindArgon2id:
				if !haveSlow || s.params.cost() > slowParams.cost() {
					slowParams, haveSlow = s.params, true
				}
				slow++
			}
		}
		r.fastSlots = max(r.fastSlots, fast)
		r.slowSlots = max(r.slowSlots, slow)
	}
	r.fastSlots = max(r.fastSlots, 1)

	_, r.dummyFast = NewSecret()
	// The dummy argon2id secret has a random key instead of a derived
	// one: verifying against it costs the same, and nothing matches it.
	if r.slowSlots > 0 {
		salt, key := randomBytes(slowParams.saltLen), randomBytes(slowParams.keyLen)
		r.dummySlow = Secret{
			Hash: formatArgon2id(slowParams, salt, key), kind: kindArgon2id,
			digest: key, salt: salt, params: slowParams,
		}
	}
	return r
}

// Authenticate returns the client if secret is one of its unexpired
// secrets and the client is enabled. Every failure is ErrAuthentication,
// or ErrSlowHashRefused under opt.NoSlowHash.
//
// Timing. A failure costs the same whether the client exists, is disabled,
// or which hashes it has, so that the time to refuse tells nothing about
// the client:
//
//   - A presented secret longer than MaxSecretLen is refused before the
//     client is looked up: that time depends on the request alone.
//   - The secret's SHA-256 is computed once and compared, in constant
//     time, with each of fastSlots digests: the client's sha256 secrets,
//     padded with a dummy digest. Every digest is compared; none is
//     skipped because an earlier one matched or is expired.
//   - If the registry holds any argon2id secret, then slowSlots argon2id
//     slots follow (1 unless a client has several argon2id secrets, as
//     during the rotation of a person-chosen secret): the client's
//     argon2id secrets, padded with a dummy secret that has the registry's
//     parameters (those of its most expensive argon2id secret) and that
//     nothing matches. Each slot costs one cache look-up (when there is a
//     cache) and, unless the request succeeds on a cache hit, one argon2id
//     computation, also a slot whose cache hit did not authenticate
//     (expired secret, disabled client). So a failure costs exactly
//     slowSlots argon2id computations, whatever the client.
//     Timing is exactly uniform when all argon2id secrets share
//     parameters, as they do when this package wrote them all.
//   - With NoSlowHash, a failure in a registry that holds any argon2id
//     secret is ErrSlowHashRefused, whatever the client, because the same
//     failure would otherwise have computed at least the dummy. So the
//     choice between the two errors reveals nothing about the client.
//
// Successes may end early (a matching SHA-256 or cached secret skips the
// argon2id slots): only a caller who already holds a valid secret sees
// their timing.
func (r *Registry) Authenticate(id, secret string, opt AuthOptions) (*Client, error) {
	if len(secret) > MaxSecretLen {
		return nil, ErrAuthentication
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	c := r.byID[id]
	enabled := c != nil && !c.Disabled

	// Slots: the client's secrets of each kind, padded with the dummies.
	// Clients have at most MaxSecretsPerClient secrets (Parse checks).
	var fast, slow [MaxSecretsPerClient]*Secret
	nf, ns := 0, 0
	if c != nil {
		for i := range c.Secrets {
			switch s := &c.Secrets[i]; s.kind {
			case kindSHA256:
				fast[nf] = s
				nf++
			case kindArgon2id:
				slow[ns] = s
				ns++
			}
		}
	}
	for ; nf < r.fastSlots; nf++ {
		fast[nf] = &r.dummyFast
	}
	for ; ns < r.slowSlots; ns++ {
		slow[ns] = &r.dummySlow
	}
	valid := func(s *Secret, match bool) bool {
		// match is computed by the caller first, so every comparison
		// is made whatever the secret's expiry or kind.
		return s != &r.dummyFast && s != &r.dummySlow && !s.Expired(now) && match
	}

	sum := sha256.Sum256([]byte(secret))
	ok := false
	for _, s := range fast[:nf] {
		if valid(s, s.matchesDigest(sum[:])) {
			ok = true
		}
	}
	if ok && enabled {
		return c, nil
	}
	if r.slowSlots == 0 {
		return nil, ErrAuthentication
	}

	var entries [MaxSecretsPerClient][32]byte
	if r.cache != nil {
		for i, s := range slow[:ns] {
			entries[i] = r.cache.entry(id, secret, s.Hash)
			if valid(s, r.cache.contains(entries[i])) {
				ok = true
			}
		}
		if ok && enabled {
			return c, nil
		}
	}
	if opt.NoSlowHash {
		return nil, ErrSlowHashRefused
	}

	// One argon2id per slot, none skipped: also for a slot whose cache hit
	// did not authenticate above (expired secret, disabled client).
	matched := -1
	for i, s := range slow[:ns] {
		if valid(s, s.matchesSlow(secret)) {
			matched = i
		}
	}
	if matched < 0 || !enabled {
		return nil, ErrAuthentication
	}
	if r.cache != nil {
		r.cache.add(entries[matched])
	}
	return c, nil
}

// Len is the number of registered clients.
func (r *Registry) Len() int { return len(r.byID) }

// Lookup returns the registered client with the given ID, or nil.
func (r *Registry) Lookup(id string) *Client { return r.byID[id] }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return b
}
