package keys_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
)

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
