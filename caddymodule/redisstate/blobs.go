package redisstate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	mathrand "math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oauthgate/oauthgate/caddymodule/state"
)

const (
	// lockTTL bounds how long a lock outlives an instance that died
	// holding it. The sections it guards (creating or rotating a key)
	// take milliseconds; one that ran longer would lose the lock.
	lockTTL = 30 * time.Second
	// sealSlack is more than any Sealer adds (nonce, tag, key ID), so
	// that a stored value too large to be a sealed blob is refused
	// before it is opened.
	sealSlack = 4 << 10
)

// unlockScript deletes the lock only if it still holds our token: a lock
// that expired and was taken by another instance is not ours to free.
var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// Blobs returns the engine's blobs: the signing keys and the opaque-token
// MAC key, sealed in Redis.
func (e *Engine) Blobs() state.Blobs { return blobs{e} }

type blobs struct{ e *Engine }

var _ state.Blobs = blobs{}

// Load returns the blob name, opened.
func (b blobs) Load(ctx context.Context, name string) ([]byte, error) {
	if err := checkName("blob name", name); err != nil {
		return nil, fmt.Errorf("redisstate: load blob: %w", err)
	}
	key := b.e.key("blob:", name)
	ctx, cancel := b.e.op(ctx)
	defer cancel()
	sealed, err := b.e.rdb.Get(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("redisstate: load blob %s: %w", name, fs.ErrNotExist)
	case err != nil:
		return nil, fmt.Errorf("redisstate: load blob %s: %w", name, err)
	case len(sealed) > maxValue+sealSlack:
		return nil, fmt.Errorf("redisstate: load blob %s: %d bytes, more than a sealed blob can be", name, len(sealed))
	}
	value, err := b.e.sealer.Open(sealed, []byte(key))
	if err != nil {
		// Not stored by this fleet under this name, or another key:
		// never use it, and never say more than that.
		return nil, fmt.Errorf("redisstate: load blob %s: does not open (sealed under another name or key?): %w", name, err)
	}
	b.reseal(ctx, key, sealed, value)
	return value, nil
}

// resealer is a Sealer that can tell a value sealed by a key that no
// longer seals (package sealing's Ring is one).
type resealer interface {
	NeedsReseal(sealed []byte) bool
}

// resealScript replaces a blob only if it is still the value that was
// read: a blob another instance stored meanwhile (a rotation) must not be
// put back to what it was.
var resealScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("SET", KEYS[1], ARGV[2])
end
return 0`)

// reseal stores value again under the ring's sealing key if sealed was
// sealed by an older one, so that after a rotation of the ring every blob
// moves to the new key as it is read, and the old key can be removed from
// the ring. The MAC key, which nothing rewrites, would otherwise stay
// under the old key for good. Best effort: the next read tries again.
func (b blobs) reseal(ctx context.Context, key string, sealed, value []byte) {
	r, ok := b.e.sealer.(resealer)
	if !ok || !r.NeedsReseal(sealed) {
		return
	}
	fresh, err := b.e.sealer.Seal(value, []byte(key))
	if err != nil {
		return
	}
	_ = resealScript.Run(ctx, b.e.rdb, []string{key}, sealed, fresh).Err()
}

// Store seals value and stores it as name, and tells every instance, so
// that a rotated key is read at once rather than at the next resync.
func (b blobs) Store(ctx context.Context, name string, value []byte) error {
	if err := checkName("blob name", name); err != nil {
		return fmt.Errorf("redisstate: store blob: %w", err)
	}
	if len(value) > maxValue {
		return fmt.Errorf("redisstate: store blob %s: %d bytes, more than %d", name, len(value), maxValue)
	}
	key := b.e.key("blob:", name)
	sealed, err := b.e.sealer.Seal(value, []byte(key))
	if err != nil {
		return fmt.Errorf("redisstate: store blob %s: sealing: %w", name, err)
	}
	msg, err := blobEvent(name)
	if err != nil {
		return fmt.Errorf("redisstate: store blob %s: %w", name, err)
	}
	ctx, cancel := b.e.op(ctx)
	defer cancel()
	_, err = b.e.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, sealed, 0)
		p.Publish(ctx, b.e.channel(), msg)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstate: store blob %s: %w", name, err)
	}
	return nil
}

// Lock takes the fleet-wide lock name, waiting (with backoff) while
// another holder has it, until ctx ends. A Redis error ends the wait at
// once: a caller must not hang on a dead Redis.
func (b blobs) Lock(ctx context.Context, name string) error {
	if err := checkName("lock name", name); err != nil {
		return fmt.Errorf("redisstate: lock: %w", err)
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	token := hex.EncodeToString(raw[:])
	key := b.e.key("lock:", name)
	backoff := 10 * time.Millisecond
	for {
		octx, cancel := b.e.op(ctx)
		ok, err := b.e.rdb.SetNX(octx, key, token, lockTTL).Result()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fmt.Errorf("redisstate: lock %s: %w", name, err)
		}
		if ok {
			b.e.mu.Lock()
			b.e.locks[name] = token
			b.e.mu.Unlock()
			return nil
		}
		// Jitter keeps waiting instances from retrying in step.
		wait := backoff/2 + mathrand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("redisstate: lock %s: held elsewhere: %w", name, ctx.Err())
		case <-time.After(wait):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// Unlock frees the lock name if this instance still holds it. A lock that
// expired meanwhile is an error: what it guarded may have been changed by
// another instance at the same time.
func (b blobs) Unlock(ctx context.Context, name string) error {
	b.e.mu.Lock()
	token, ok := b.e.locks[name]
	delete(b.e.locks, name)
	b.e.mu.Unlock()
	if !ok {
		return fmt.Errorf("redisstate: unlock %s: not locked here", name)
	}
	ctx, cancel := b.e.op(ctx)
	defer cancel()
	n, err := unlockScript.Run(ctx, b.e.rdb, []string{b.e.key("lock:", name)}, token).Int()
	switch {
	case err != nil:
		return fmt.Errorf("redisstate: unlock %s: %w", name, err)
	case n == 0:
		return fmt.Errorf("redisstate: unlock %s: the lock had expired (held longer than %v)", name, lockTTL)
	}
	return nil
}
