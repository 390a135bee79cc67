package keys

import (
	"context"
	"fmt"
	"sync/atomic"
)

// KeeperOptions configure a Keeper.
type KeeperOptions struct {
	// Restored, if set, is told the set the Keeper wrote back to a
	// storage that had no key set: the storage was wiped or replaced,
	// which the operator should know of.
	Restored func(*Set)
}

// Keeper holds the key set one instance signs and verifies with, and
// keeps it in step with the storage it shares with other instances. It is
// a tokens.KeySource. Its methods are safe for concurrent use.
//
// Unlike calling Manager.Sync now and then, a storage that has lost the
// key set never makes it replace the keys it holds: it writes them back,
// so the tokens they signed stay valid and instances go on agreeing on
// the keys.
type Keeper struct {
	m    *Manager
	opts KeeperOptions
	set  atomic.Pointer[Set]

	// sem serializes this keeper's syncs, so that a slow one never puts
	// back an older set over a newer one. A channel, unlike a mutex, can
	// be waited for under a deadline.
	sem chan struct{}
}

// NewKeeper returns a Keeper of m's key set. It holds no set until the
// first Sync or Rotate has loaded one.
func NewKeeper(m *Manager, opts KeeperOptions) *Keeper {
	return &Keeper{m: m, opts: opts, sem: make(chan struct{}, 1)}
}

// Current returns the set in use, nil before the first successful Sync.
func (k *Keeper) Current() *Set { return k.set.Load() }

// Lookup returns the published key with the given kid, or nil.
func (k *Keeper) Lookup(kid string) *Key { return k.set.Load().Lookup(kid) }

// Sync reads the key set from storage and does the maintenance that is
// due, as Manager.Sync does, and puts the set in use. A storage without a
// key set gets the set in use back (see KeeperOptions.Restored); only a
// keeper that holds none yet makes a new one there.
//
// A set that loaded is put in use even if maintenance failed, and the
// error returned: the next Sync tries again. If no set could be loaded,
// the set in use stays.
func (k *Keeper) Sync(ctx context.Context) error {
	_, err := k.update(ctx, opSync)
	return err
}

// Rotate publishes a new key as Manager.Rotate does, and puts the set in
// use. A storage without a key set first gets the set in use back.
func (k *Keeper) Rotate(ctx context.Context, immediate bool) (*Set, error) {
	o := opRotate
	if immediate {
		o = opRotateNow
	}
	set, err := k.update(ctx, o)
	if err != nil {
		return nil, err
	}
	return set, nil
}

func (k *Keeper) update(ctx context.Context, o op) (*Set, error) {
	select {
	case k.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for another sync of the signing keys: %w", ctx.Err())
	}
	defer func() { <-k.sem }()
	set, restored, err := k.m.update(ctx, o, k.set.Load())
	if set != nil {
		k.set.Store(set)
	}
	if restored && k.opts.Restored != nil {
		k.opts.Restored(set)
	}
	return set, err
}
