package keys_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// junkKid has the length of our kids and names no key.
var junkKid = strings.Repeat("A", 43)

// syncedKeeper returns a Keeper of a manager on st that has loaded the key
// set, making it if st has none.
func syncedKeeper(t *testing.T, st keys.Storage, clock *keystest.Clock, opts keys.KeeperOptions) *keys.Keeper {
	t.Helper()
	k := keys.NewKeeper(newManager(t, st, clock, scheduled(jwa.ES256())), opts)
	if err := k.Sync(context.Background()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return k
}

func kidsOf(set *keys.Set) []string {
	var kids []string
	for _, k := range set.Keys() {
		kids = append(kids, k.ID)
	}
	return kids
}

func TestKeeper_AKeyAnotherInstanceAddedVerifiesItsFirstTokenAfterOneRead(t *testing.T) {
	tests := map[string]func(t *testing.T, other *keys.Manager, clock *keystest.Clock) *keys.Key{
		"rotated at once (a compromised key)": func(t *testing.T, other *keys.Manager, _ *keystest.Clock) *keys.Key {
			return mustRotate(t, other, true).Signing()
		},
		"rotated on schedule, once the new key signs": func(t *testing.T, other *keys.Manager, clock *keystest.Clock) *keys.Key {
			clock.Advance(rotateEvery)
			mustSync(t, other)
			clock.Advance(publishAhead)
			return mustSync(t, other).Signing()
		},
	}
	for name, addKey := range tests {
		t.Run(name, func(t *testing.T) {
			st := newMemStorage()
			clock := keystest.NewClock(t0)
			k := syncedKeeper(t, st, clock, keys.KeeperOptions{})
			key := addKey(t, newManager(t, st, clock, scheduled(jwa.ES256())), clock)
			if k.Current().Lookup(key.ID) != nil {
				t.Fatal("the keeper knew the other instance's key before reading storage")
			}
			st.heal() // count reads from here

			// As the guard verifies: with a cache, which must not have
			// settled the token before the keeper read storage.
			v := &tokens.Verifier{Keys: k, Issuer: issuer, Audience: audience, Now: clock.Now, Cache: tokens.NewCache(0)}
			tok := mint(t, key, clock.Now())
			for i := range 3 {
				if _, err := v.Verify(tok); err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
			}
			if n := st.reads(); n != 1 {
				t.Errorf("%d reads of storage, want 1", n)
			}
			if k.Current().Signing().ID != key.ID {
				t.Errorf("after the read the keeper signs with %s, want the new key %s", k.Current().Signing().ID, key.ID)
			}
		})
	}
}

func TestKeeper_UnknownKidsReadStorageAtMostOncePerInterval(t *testing.T) {
	tests := map[string]struct {
		kids      func(signing string) []string // what a burst of requests names
		wantReads [3]int                        // after a burst, after one just within the interval, after one at its end
	}{
		"a known kid": {
			kids:      func(signing string) []string { return slices.Repeat([]string{signing}, 100) },
			wantReads: [3]int{0, 0, 0},
		},
		"one junk kid, many requests": {
			kids:      func(string) []string { return slices.Repeat([]string{junkKid}, 100) },
			wantReads: [3]int{1, 1, 2},
		},
		"a different junk kid on every request": {
			kids: func(string) []string {
				var kids []string
				for i := range 100 {
					kids = append(kids, strings.Repeat(string(rune('a'+i%26)), 43))
				}
				return kids
			},
			wantReads: [3]int{1, 1, 2},
		},
		"kids no key of ours can have": {
			kids:      func(string) []string { return []string{"", "1", "key-2024", strings.Repeat("A", 44)} },
			wantReads: [3]int{0, 0, 0},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			st := newMemStorage()
			clock := keystest.NewClock(t0)
			k := syncedKeeper(t, st, clock, keys.KeeperOptions{})
			signing := k.Current().Signing().ID
			st.heal()

			var got [3]int
			for i, step := range []time.Duration{0, keys.DefaultMinReadInterval - time.Millisecond, time.Millisecond} {
				clock.Advance(step)
				for _, kid := range tt.kids(signing) {
					if key := k.Lookup(kid); (key != nil) != (kid == signing) {
						t.Fatalf("Lookup(%q) = %v", kid, key)
					}
				}
				got[i] = st.reads()
			}
			if got != tt.wantReads {
				t.Errorf("reads of storage after each burst: %v, want %v", got, tt.wantReads)
			}
		})
	}
}

// An instance rotates at once and announces it (Redis), but the token of
// the new key can reach this one before the sync the announcement
// started has read the keys, and within a second of a read for a junk
// kid: the announcement lets that token's kid read storage at once, and
// only it.
func TestKeeper_AnAnnouncedChangeLetsTheNextUnknownKidReadStorageAtOnce(t *testing.T) {
	st := newMemStorage()
	clock := keystest.NewClock(t0)
	k := syncedKeeper(t, st, clock, keys.KeeperOptions{})
	if k.Lookup(junkKid) != nil { // a read: the next one waits for the interval
		t.Fatal("a junk kid found a key")
	}
	key := mustRotate(t, newManager(t, st, clock, scheduled(jwa.ES256())), true).Signing()
	st.heal()
	if k.Lookup(key.ID) != nil || st.reads() != 0 {
		t.Fatalf("without an announcement, %d reads within the interval", st.reads())
	}

	k.StorageChanged()
	if k.Lookup(key.ID) == nil {
		t.Fatal("after the announcement, the new key's kid did not read storage")
	}
	read := st.reads()
	if k.Lookup(strings.Repeat("B", 43)) != nil || st.reads() != read {
		t.Errorf("a junk kid after the announcement's read: %d more reads, want none", st.reads()-read)
	}

	// A Sync that read after an announcement ends it too; one that had
	// not loaded the set yet does not.
	k.StorageChanged()
	mustKeeperSync(t, k)
	read = st.reads()
	k.Lookup(strings.Repeat("C", 43))
	if st.reads() != read {
		t.Errorf("a junk kid after a Sync that followed the announcement: %d more reads, want none", st.reads()-read)
	}
	k.StorageChanged()
	st.loadErr = func(int) error { return errors.New("storage down") }
	if err := k.Sync(context.Background()); err == nil {
		t.Fatal("a Sync on a failing storage succeeded")
	}
	st.heal()
	k.Lookup(strings.Repeat("D", 43))
	if st.reads() == 0 {
		t.Error("a Sync that failed ended the announcement: the next unknown kid did not read storage")
	}
}

func mustKeeperSync(t *testing.T, k *keys.Keeper) {
	t.Helper()
	if err := k.Sync(context.Background()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func TestKeeper_ConcurrentMissesShareOneRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStorage()
		clock := keystest.NewClock(t0)
		k := syncedKeeper(t, st, clock, keys.KeeperOptions{})
		added := mustRotate(t, newManager(t, st, clock, scheduled(jwa.ES256())), true).Signing()
		st.heal()
		release := make(chan struct{})
		st.loadErr = func(int) error { <-release; return nil } // the read hangs until released

		const n = 50
		found := make([]*keys.Key, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { found[i] = k.Lookup(added.ID) })
		}
		synctest.Wait() // every request is waiting: for storage, or for the one reading it
		if got := st.reads(); got != 1 {
			t.Errorf("%d reads in flight, want 1", got)
		}
		close(release)
		wg.Wait()
		for i, key := range found {
			if key == nil || key.ID != added.ID {
				t.Fatalf("request %d found %v, want the added key %s", i, key, added.ID)
			}
		}
		if got := st.reads(); got != 1 {
			t.Errorf("%d reads in all, want 1", got)
		}
	})
}

func TestKeeper_AFailedReadIsReportedAndTheKidRefused(t *testing.T) {
	st := newMemStorage()
	clock := keystest.NewClock(t0)
	var reported []error
	k := syncedKeeper(t, st, clock, keys.KeeperOptions{Report: func(err error) { reported = append(reported, err) }})
	held := k.Current()
	errDisk := errors.New("disk on fire")
	st.loadErr = func(int) error { return errDisk }

	if key := k.Lookup(junkKid); key != nil {
		t.Errorf("Lookup = %v, want nil", key)
	}
	if len(reported) != 1 || !errors.Is(reported[0], errDisk) {
		t.Errorf("reported %v, want the storage error once", reported)
	}
	if k.Current() != held {
		t.Error("a failed read replaced the set in use")
	}
}

// tokenOf is a token signed by the key kid of set, at now.
func tokenOf(t *testing.T, set *keys.Set, kid string, now time.Time) string {
	t.Helper()
	return mint(t, set.Lookup(kid), now)
}

func TestKeeper_WritesTheSetItHoldsBackToAStorageThatLostIt(t *testing.T) {
	tests := map[string]struct {
		act      func(t *testing.T, k *keys.Keeper)
		wantKeys int // published afterwards
	}{
		"at the scheduled sync": {
			act: func(t *testing.T, k *keys.Keeper) {
				if err := k.Sync(context.Background()); err != nil {
					t.Fatalf("Sync: %v", err)
				}
			},
			wantKeys: 2,
		},
		"at a read for an unknown kid": {
			act:      func(t *testing.T, k *keys.Keeper) { k.Lookup(junkKid) },
			wantKeys: 2,
		},
		"at a scheduled rotation, which then adds its key": {
			act: func(t *testing.T, k *keys.Keeper) {
				if _, err := k.Rotate(context.Background(), false); err != nil {
					t.Fatalf("Rotate: %v", err)
				}
			},
			wantKeys: 3,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			st := newMemStorage()
			clock := keystest.NewClock(t0)
			var restored []*keys.Set
			k := syncedKeeper(t, st, clock, keys.KeeperOptions{Restored: func(s *keys.Set) { restored = append(restored, s) }})
			if _, err := k.Rotate(context.Background(), true); err != nil {
				t.Fatal(err)
			}
			held := k.Current()
			signing, kids := held.Signing().ID, kidsOf(held) // the retired key too
			tokens := []string{tokenOf(t, held, kids[0], clock.Now()), tokenOf(t, held, kids[1], clock.Now())}

			clock.Advance(time.Minute)
			if err := st.Delete(context.Background(), keys.StorageKey); err != nil {
				t.Fatal(err)
			}
			_, storesBefore := st.counts()
			tt.act(t, k)

			if _, stores := st.counts(); stores-storesBefore != 1 {
				t.Errorf("%d writes to storage, want 1", stores-storesBefore)
			}
			if len(restored) != 1 {
				t.Fatalf("Restored called %d times, want once", len(restored))
			}
			if got := kidsOf(k.Current()); len(got) != tt.wantKeys || !slices.Equal(got[len(got)-2:], kids) {
				t.Errorf("keys in use %v, want %d keys ending with the held %v", got, tt.wantKeys, kids)
			}
			if got := k.Current().Signing().ID; got != signing {
				t.Errorf("signs with %s, want the held key %s", got, signing)
			}

			// A new instance finds the same keys in storage, and every
			// token they signed passes there.
			fresh := syncedKeeper(t, st, clock, keys.KeeperOptions{})
			if got := fresh.Current().Signing().ID; got != signing {
				t.Errorf("a new instance signs with %s, want the held key %s", got, signing)
			}
			for i, tok := range tokens {
				if err := verify(fresh.Current(), tok, clock.Now()); err != nil {
					t.Errorf("token %d at a new instance: %v", i+1, err)
				}
			}
		})
	}
}

func TestKeeper_InstancesThatAllHoldTheSetWriteItBackOnce(t *testing.T) {
	st := newMemStorage()
	clock := keystest.NewClock(t0)
	var mu sync.Mutex
	restores := 0
	opts := keys.KeeperOptions{Restored: func(*keys.Set) { mu.Lock(); restores++; mu.Unlock() }}
	const n = 4
	keepers := make([]*keys.Keeper, n)
	for i := range keepers {
		keepers[i] = syncedKeeper(t, st, clock, opts)
	}
	signing := keepers[0].Current().Signing().ID
	if err := st.Delete(context.Background(), keys.StorageKey); err != nil {
		t.Fatal(err)
	}
	_, storesBefore := st.counts()

	var wg sync.WaitGroup
	for _, k := range keepers {
		wg.Go(func() {
			if err := k.Sync(context.Background()); err != nil {
				t.Errorf("Sync: %v", err)
			}
		})
	}
	wg.Wait()

	if _, stores := st.counts(); stores-storesBefore != 1 || restores != 1 {
		t.Errorf("%d writes and %d write-backs, want 1 and 1", stores-storesBefore, restores)
	}
	for i, k := range keepers {
		if got := k.Current().Signing().ID; got != signing {
			t.Errorf("instance %d signs with %s, want %s", i, got, signing)
		}
	}
}

func TestKeeper_WithoutASetMakesOneOnEmptyStorage(t *testing.T) {
	st := newMemStorage()
	restored := false
	k := syncedKeeper(t, st, keystest.NewClock(t0), keys.KeeperOptions{Restored: func(*keys.Set) { restored = true }})
	if k.Current() == nil || k.Current().Signing() == nil {
		t.Fatal("no signing key after the first Sync")
	}
	if restored {
		t.Error("a first start counted as a write-back")
	}
}

func TestKeeper_NeverOverwritesAKeySetItCannotRead(t *testing.T) {
	st := newMemStorage()
	clock := keystest.NewClock(t0)
	k := syncedKeeper(t, st, clock, keys.KeeperOptions{})
	held := k.Current()
	corrupt := []byte(`{"version":2,"keys":[]}`)
	if err := st.Storage.Store(context.Background(), keys.StorageKey, corrupt); err != nil {
		t.Fatal(err)
	}

	if err := k.Sync(context.Background()); err == nil {
		t.Error("Sync accepted a key set without keys")
	}
	if got, _ := st.Storage.Load(context.Background(), keys.StorageKey); string(got) != string(corrupt) {
		t.Errorf("storage now holds %s, want what the operator must look at left alone", got)
	}
	if k.Current() != held {
		t.Error("the set in use changed")
	}
}

// The guard looks up a kid on every request: through the keeper, a known
// kid must cost what the set's own lookup costs.
func BenchmarkLookup_KnownKid(b *testing.B) {
	m, err := keys.NewManager(keystest.NewStorage(), keys.Options{RetainFor: retainFor})
	if err != nil {
		b.Fatal(err)
	}
	k := keys.NewKeeper(m, keys.KeeperOptions{})
	if err := k.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	kid := k.Current().Signing().ID
	for name, src := range map[string]tokens.KeySource{"set": k.Current(), "keeper": k} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if src.Lookup(kid) == nil {
					b.Fatal("known kid not found")
				}
			}
		})
	}
}
