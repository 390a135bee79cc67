package csrf

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"sync/atomic"

	"github.com/oauthgate/oauthgate/caddymodule/state"
)

// KeyName is where the key lives among the state engine's blobs: Caddy's
// storage, or sealed in Redis.
const KeyName = "oauthgate/csrf_key"

// Keeper holds the fleet's CSRF key: made by the first instance that
// needs it, under the engine's lock, and read by every other one.
//
// The key is never rotated by itself. It signs tokens that live half an
// hour and are bound to a client, which also needs its access token to
// use one, so a key that leaked alone lets no one in.
type Keeper struct {
	blobs  state.Blobs
	signer atomic.Pointer[Signer]
}

// OpenKeeper loads the key, making it if there is none yet.
func OpenKeeper(ctx context.Context, blobs state.Blobs) (*Keeper, error) {
	k := &Keeper{blobs: blobs}
	if err := k.Sync(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Signer returns the signer under the key in use.
func (k *Keeper) Signer() *Signer { return k.signer.Load() }

// Sync reads the key again. A key another instance stored is taken up,
// so that after the engine lost its state every instance comes to sign
// with the same key again; a missing one is written back from memory
// (or made, on first start), under the lock and re-checked there, as
// another instance may be doing the same.
func (k *Keeper) Sync(ctx context.Context) error {
	key, err := k.load(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = k.create(ctx)
	}
	if err != nil {
		return err
	}
	if cur := k.signer.Load(); cur != nil && bytes.Equal(cur.key, key) {
		return nil
	}
	s, err := NewSigner(key)
	if err != nil {
		return err
	}
	k.signer.Store(s)
	return nil
}

func (k *Keeper) load(ctx context.Context) ([]byte, error) {
	key, err := k.blobs.Load(ctx, KeyName)
	if err == nil && len(key) != KeyLen {
		return nil, fmt.Errorf("%s: want %d bytes, found %d", KeyName, KeyLen, len(key))
	}
	return key, err
}

func (k *Keeper) create(ctx context.Context) ([]byte, error) {
	if err := k.blobs.Lock(ctx, KeyName); err != nil {
		return nil, fmt.Errorf("locking %s: %w", KeyName, err)
	}
	defer func() { _ = k.blobs.Unlock(context.WithoutCancel(ctx), KeyName) }()
	key, err := k.load(ctx)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if cur := k.signer.Load(); cur != nil {
		key = cur.key
	} else {
		key = make([]byte, KeyLen)
		_, _ = rand.Read(key) // crypto/rand.Read never fails (Go ≥ 1.24)
	}
	if err := k.blobs.Store(ctx, KeyName, key); err != nil {
		return nil, fmt.Errorf("storing %s: %w", KeyName, err)
	}
	return key, nil
}
