package keys

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMinReadInterval bounds how often kids the held set does not know
// make a Keeper read storage, unless KeeperOptions say otherwise. A second
// keeps junk kids to one small read a second per instance, and is short
// enough that a real new kid arriving just after such a read is rarely
// refused, and then only within that second (see Keeper.Lookup).
const DefaultMinReadInterval = time.Second

// readTimeout bounds a read for unknown kids, waiting for the Keeper's
// other syncs and the storage lock included, and so the wait of the
// requests that need it, as far as the storage heeds contexts (Caddy's
// file_system storage reads without one). A Sync that times out after it
// loaded the set still brings the kids it found.
const readTimeout = 2 * time.Second

// kidLength is the length of every kid a Manager makes: the RFC 7638
// SHA-256 thumbprint in unpadded base64url. A kid of another length is
// none of ours, whatever storage holds, and is not worth a read.
const kidLength = 43

// KeeperOptions configure a Keeper.
type KeeperOptions struct {
	// MinReadInterval is the least time between two reads of storage for
	// unknown kids. Zero or less means DefaultMinReadInterval.
	MinReadInterval time.Duration
	// Restored, if set, is told the set the Keeper wrote back to a
	// storage that had no key set: the storage was wiped or replaced,
	// which the operator should know of.
	Restored func(*Set)
	// Report, if set, is told of a read for unknown kids that failed,
	// which the requests waiting for it cannot report. The errors name no
	// token and no key material.
	Report func(error)
}

// Keeper holds the key set one instance signs and verifies with, and
// keeps it in step with the storage it shares with other instances. It is
// a tokens.KeySource. Its methods are safe for concurrent use.
//
// Two things set it apart from calling Manager.Sync now and then. A token
// whose kid the held set does not know makes it read storage before the
// token is refused: another instance may have just rotated, at once for a
// compromised key, and the tokens it now signs must pass here at once,
// not after this instance's next scheduled Sync. And a storage that has
// lost the key set never makes it replace the keys it holds: it writes
// them back, so the tokens they signed stay valid and instances go on
// agreeing on the keys.
type Keeper struct {
	m    *Manager
	opts KeeperOptions
	set  atomic.Pointer[Set]

	// sem serializes this keeper's syncs (scheduled, Rotate, reads for
	// unknown kids), so that a slow one never puts back an older set
	// over a newer one. A channel, unlike a mutex, can be waited for
	// under a deadline.
	sem chan struct{}

	mu       sync.Mutex
	inflight *flight   // the read for unknown kids running now
	lastRead time.Time // when the last read for unknown kids started
	// announced counts the changes other instances announced
	// (StorageChanged); covered is the count a completed read began
	// after. While they differ, an unknown kid reads storage at once.
	announced, covered uint64
}

// flight is one read for unknown kids; done is closed when it has ended.
type flight struct{ done chan struct{} }

// NewKeeper returns a Keeper of m's key set. It holds no set until the
// first Sync or Rotate has loaded one.
func NewKeeper(m *Manager, opts KeeperOptions) *Keeper {
	if opts.MinReadInterval <= 0 {
		opts.MinReadInterval = DefaultMinReadInterval
	}
	return &Keeper{m: m, opts: opts, sem: make(chan struct{}, 1)}
}

// Current returns the set in use, nil before the first successful Sync.
func (k *Keeper) Current() *Set { return k.set.Load() }

// Lookup returns the published key with the given kid, or nil. A kid the
// set in use knows costs what Set.Lookup costs.
//
// A kid it does not know waits for a read of storage (Sync): the one
// running, or a new one unless the last began less than MinReadInterval
// ago, and is looked up again after it. So a key another instance has
// just added is found on its first token, while tokens with made-up kids
// cost at most one read per interval, shared by all of them. Keys come
// only from this keeper's storage, never from the token.
func (k *Keeper) Lookup(kid string) *Key {
	if key := k.set.Load().Lookup(kid); key != nil {
		return key
	}
	return k.miss(kid)
}

// miss is Lookup's path for a kid the set in use does not know; kept
// apart so that the known kid's path stays small.
func (k *Keeper) miss(kid string) *Key {
	if len(kid) != kidLength {
		return nil
	}
	k.mu.Lock()
	f, leader := k.inflight, false
	if f == nil {
		now := k.m.opts.Now()
		if k.announced == k.covered && !k.lastRead.IsZero() && now.Sub(k.lastRead) < k.opts.MinReadInterval {
			k.mu.Unlock()
			// A scheduled Sync or a Rotate may have brought it since.
			return k.set.Load().Lookup(kid)
		}
		f, leader = &flight{done: make(chan struct{})}, true
		k.inflight, k.lastRead = f, now
	}
	k.mu.Unlock()
	if leader {
		k.read(f)
	} else {
		<-f.done
	}
	return k.set.Load().Lookup(kid)
}

// read syncs for the requests waiting in miss for f. It is detached from
// their contexts (Lookup has none, and one impatient request must not
// cancel the read for all) and bounded by readTimeout instead.
func (k *Keeper) read(f *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer func() {
		cancel()
		// Deferred, so that the waiters are let go whatever happens.
		k.mu.Lock()
		k.inflight = nil
		k.mu.Unlock()
		close(f.done)
	}()
	if err := k.Sync(ctx); err != nil && k.opts.Report != nil {
		k.opts.Report(fmt.Errorf("reading signing keys for a token of an unknown kid: %w", err))
	}
}

// StorageChanged tells the Keeper that another instance announced a
// change of the key set in storage (a state engine that announces, such
// as Redis). The next kid it does not know reads storage at once, even
// within MinReadInterval of the last read: a token of a key rotated at
// once elsewhere can arrive before the Sync the announcement started has
// read the keys. Its effect ends when a read that began after it has
// loaded the set: a Sync it started, or the read of that kid.
func (k *Keeper) StorageChanged() {
	k.mu.Lock()
	k.announced++
	k.mu.Unlock()
}

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
	k.mu.Lock()
	announced := k.announced // what is read from here on includes these
	k.mu.Unlock()
	set, restored, err := k.m.update(ctx, o, k.set.Load())
	if set != nil {
		k.set.Store(set)
		k.mu.Lock()
		k.covered = max(k.covered, announced)
		k.mu.Unlock()
	}
	if restored && k.opts.Restored != nil {
		k.opts.Restored(set)
	}
	return set, err
}
