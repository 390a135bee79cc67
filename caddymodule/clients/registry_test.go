package clients

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fileOf builds a validated file from clients, as Parse would.
func fileOf(t *testing.T, cs ...Client) *File {
	t.Helper()
	data, err := json.Marshal(File{Clients: cs})
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, string(data))
}

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func at(t time.Time) AuthOptions { return AuthOptions{Now: t} }

func TestAuthenticate_ExpiredSecretsAreRefused(t *testing.T) {
	expires := t0.Add(time.Hour).Format(time.RFC3339)
	reg := NewRegistry(fileOf(t,
		Client{ID: "fast", Secrets: []Secret{{Hash: hashOf("fast-secret"), Expires: expires}}},
		Client{ID: "slow", Secrets: []Secret{{Hash: argonHashOf("slow-secret-chosen"), Expires: expires}}},
		Client{ID: "both", Secrets: []Secret{
			{Hash: hashOf("old"), Expires: expires},
			{Hash: hashOf("new")},
		}},
	))
	tests := map[string]struct {
		id, secret string
		now        time.Time
		ok         bool
	}{
		"sha256 secret before its expiry":         {"fast", "fast-secret", t0, true},
		"sha256 secret a second before expiry":    {"fast", "fast-secret", t0.Add(time.Hour - time.Second), true},
		"sha256 secret at its expiry":             {"fast", "fast-secret", t0.Add(time.Hour), false},
		"sha256 secret after its expiry":          {"fast", "fast-secret", t0.Add(48 * time.Hour), false},
		"argon2id secret before its expiry":       {"slow", "slow-secret-chosen", t0, true},
		"argon2id secret after its expiry":        {"slow", "slow-secret-chosen", t0.Add(2 * time.Hour), false},
		"old secret of a rotation, still valid":   {"both", "old", t0, true},
		"old secret of a rotation, expired":       {"both", "old", t0.Add(2 * time.Hour), false},
		"new secret of a rotation, after the old": {"both", "new", t0.Add(2 * time.Hour), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := reg.Authenticate(tc.id, tc.secret, at(tc.now))
			if tc.ok && (err != nil || c == nil || c.ID != tc.id) {
				t.Errorf("Authenticate = %v, %v; want client %q", c, err, tc.id)
			}
			if !tc.ok && (err != ErrAuthentication || c != nil) {
				t.Errorf("Authenticate = %v, %v; want nil, ErrAuthentication", c, err)
			}
		})
	}
}

func TestAuthenticate_CacheHitAvoidsArgon2(t *testing.T) {
	const secret = "a person chose this one"
	cache := NewCache(0)
	reg := NewRegistry(fileOf(t, Client{ID: "c", Secrets: []Secret{{Hash: argonHashOf(secret)}}}), cache)
	n := countArgon2(t)

	if _, err := reg.Authenticate("c", secret, at(t0)); err != nil {
		t.Fatalf("first Authenticate: %v", err)
	}
	if got := len(n.take()); got != 1 {
		t.Errorf("first success: %d argon2id computations, want 1", got)
	}
	for i := range 3 {
		if _, err := reg.Authenticate("c", secret, at(t0)); err != nil {
			t.Fatalf("Authenticate %d: %v", i+2, err)
		}
	}
	if got := len(n.take()); got != 0 {
		t.Errorf("three cached successes: %d argon2id computations, want 0", got)
	}
	if cache.Len() != 1 {
		t.Errorf("cache holds %d entries, want 1", cache.Len())
	}
	if hits, misses := cache.Stats(); hits != 3 || misses != 1 {
		t.Errorf("Stats() = %d hits, %d misses; want 3, 1", hits, misses)
	}
	// A cache hit for one client's secret does not authenticate another
	// client: the client ID is part of the entry.
	reg2 := NewRegistry(fileOf(t,
		Client{ID: "c", Secrets: []Secret{{Hash: argonHashOf(secret)}}},
		Client{ID: "d", Secrets: []Secret{{Hash: hashOf("d")}}},
	), cache)
	if _, err := reg2.Authenticate("d", secret, at(t0)); err != ErrAuthentication {
		t.Errorf("another client with the cached secret: %v, want ErrAuthentication", err)
	}
}

func TestAuthenticate_FailuresAreNeverCached(t *testing.T) {
	const secret = "a person chose this one"
	hash := argonHashOf(secret)
	expired := t0.Add(-time.Hour).Format(time.RFC3339)
	reg := NewRegistry(fileOf(t,
		Client{ID: "c", Secrets: []Secret{{Hash: hash}}},
		Client{ID: "off", Secrets: []Secret{{Hash: hash}}, Disabled: true},
		Client{ID: "old", Secrets: []Secret{{Hash: hash, Expires: expired}}},
	), NewCache(0))
	tests := map[string]struct{ id, secret string }{
		"wrong secret":                     {"c", "not the secret at all"},
		"unknown client":                   {"nobody", secret},
		"disabled client, right secret":    {"off", secret},
		"expired secret, right secret":     {"old", secret},
		"empty secret":                     {"c", ""},
		"right secret with a trailing \\n": {"c", secret + "\n"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			n := countArgon2(t)
			for i := range 3 {
				if _, err := reg.Authenticate(tc.id, tc.secret, at(t0)); err != ErrAuthentication {
					t.Fatalf("attempt %d: %v, want ErrAuthentication", i+1, err)
				}
			}
			if got := len(n.take()); got != 3 {
				t.Errorf("three failures: %d argon2id computations, want 3 (none answered from the cache)", got)
			}
			if reg.cache.Len() != 0 {
				t.Errorf("cache holds %d entries after failures, want 0", reg.cache.Len())
			}
		})
	}
}

func TestAuthenticate_CacheEntryDoesNotOutliveItsSecret(t *testing.T) {
	const secret = "a person chose this one"
	cache := NewCache(0)
	hash := argonHashOf(secret)
	other := Secret{ID: "other", Hash: hashOf("generated")}
	prime := func(t *testing.T) {
		t.Helper()
		reg := NewRegistry(fileOf(t, Client{ID: "c", Secrets: []Secret{{ID: "s", Hash: hash}, other}}), cache)
		if _, err := reg.Authenticate("c", secret, at(t0)); err != nil {
			t.Fatalf("priming Authenticate: %v", err)
		}
	}

	t.Run("the same file re-read keeps using the entry", func(t *testing.T) {
		prime(t)
		n := countArgon2(t)
		reg := NewRegistry(fileOf(t, Client{ID: "c", Secrets: []Secret{{ID: "s", Hash: hash}, other}}), cache)
		if _, err := reg.Authenticate("c", secret, at(t0)); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if got := len(n.take()); got != 0 {
			t.Errorf("%d argon2id computations, want 0: the cache should survive a new Registry", got)
		}
	})
	t.Run("a retired secret is refused although its entry is cached", func(t *testing.T) {
		prime(t)
		n := countArgon2(t)
		reg := NewRegistry(fileOf(t, Client{ID: "c", Secrets: []Secret{other}}), cache)
		if _, err := reg.Authenticate("c", secret, at(t0)); err != ErrAuthentication {
			t.Fatalf("Authenticate with the retired secret = %v, want ErrAuthentication", err)
		}
		// No argon2id secret is left, so the refusal costs no argon2id.
		if got := len(n.take()); got != 0 {
			t.Errorf("%d argon2id computations, want 0", got)
		}
	})
	t.Run("a retired secret is refused while another argon2id secret remains", func(t *testing.T) {
		prime(t)
		n := countArgon2(t)
		reg := NewRegistry(fileOf(t, Client{ID: "c", Secrets: []Secret{{ID: "s2", Hash: argonHashOf("the new chosen secret")}}}), cache)
		n.take()
		if _, err := reg.Authenticate("c", secret, at(t0)); err != ErrAuthentication {
			t.Fatalf("Authenticate with the retired secret = %v, want ErrAuthentication", err)
		}
		if got := len(n.take()); got != 1 {
			t.Errorf("%d argon2id computations, want 1 (verified afresh, not from the cache)", got)
		}
	})
	t.Run("the same secret stored again under a new salt is verified afresh", func(t *testing.T) {
		prime(t)
		rehashed := argonHashOf(secret)
		n := countArgon2(t)
		reg := NewRegistry(fileOf(t, Client{ID: "c", Secrets: []Secret{{ID: "s3", Hash: rehashed}}}), cache)
		if _, err := reg.Authenticate("c", secret, at(t0)); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if got := len(n.take()); got != 1 {
			t.Errorf("%d argon2id computations, want 1", got)
		}
	})
	t.Run("a cached secret of a client disabled since is refused", func(t *testing.T) {
		prime(t)
		n := countArgon2(t)
		reg := NewRegistry(fileOf(t, Client{ID: "c", Secrets: []Secret{{ID: "s", Hash: hash}, other}, Disabled: true}), cache)
		if _, err := reg.Authenticate("c", secret, at(t0)); err != ErrAuthentication {
			t.Fatalf("Authenticate = %v, want ErrAuthentication", err)
		}
		if got := len(n.take()); got != 1 {
			t.Errorf("%d argon2id computations, want 1, like any other failure", got)
		}
	})
	t.Run("a cached secret that has expired since is refused", func(t *testing.T) {
		prime(t)
		n := countArgon2(t)
		reg := NewRegistry(fileOf(t, Client{ID: "c", Secrets: []Secret{{ID: "s", Hash: hash, Expires: t0.Format(time.RFC3339)}, other}}), cache)
		if _, err := reg.Authenticate("c", secret, at(t0)); err != ErrAuthentication {
			t.Fatalf("Authenticate = %v, want ErrAuthentication", err)
		}
		if got := len(n.take()); got != 1 {
			t.Errorf("%d argon2id computations, want 1, like any other failure", got)
		}
	})
}

func TestAuthenticate_NoSlowHash(t *testing.T) {
	const chosen = "a person chose this one"
	file := fileOf(t,
		Client{ID: "slow", Secrets: []Secret{{Hash: argonHashOf(chosen)}}},
		Client{ID: "fast", Secrets: []Secret{{Hash: hashOf("generated")}}},
		Client{ID: "off", Secrets: []Secret{{Hash: hashOf("off")}}, Disabled: true},
	)
	mixed := func(cache *Cache) *Registry { return NewRegistry(file, cache) }
	cached := NewCache(0)
	if _, err := mixed(cached).Authenticate("slow", chosen, at(t0)); err != nil {
		t.Fatal(err)
	}
	fastOnly := NewRegistry(fileOf(t, Client{ID: "fast", Secrets: []Secret{{Hash: hashOf("generated")}}}))

	tests := map[string]struct {
		reg        *Registry
		id, secret string
		want       error // nil = authenticated
	}{
		"argon2id secret not in the cache is not computed":  {mixed(NewCache(0)), "slow", chosen, ErrSlowHashRefused},
		"argon2id secret without any cache is not computed": {mixed(nil), "slow", chosen, ErrSlowHashRefused},
		"argon2id secret in the cache authenticates":        {mixed(cached), "slow", chosen, nil},
		"wrong secret of an argon2id client":                {mixed(cached), "slow", "wrong", ErrSlowHashRefused},
		"sha256 secret authenticates":                       {mixed(cached), "fast", "generated", nil},
		"wrong sha256 secret, argon2id elsewhere":           {mixed(cached), "fast", "wrong", ErrSlowHashRefused},
		"unknown client, argon2id elsewhere":                {mixed(cached), "nobody", "generated", ErrSlowHashRefused},
		"disabled client, argon2id elsewhere":               {mixed(cached), "off", "off", ErrSlowHashRefused},
		"over-long secret":                                  {mixed(cached), "slow", strings.Repeat("x", MaxSecretLen+1), ErrAuthentication},
		"wrong secret, no argon2id anywhere":                {fastOnly, "fast", "wrong", ErrAuthentication},
		"unknown client, no argon2id anywhere":              {fastOnly, "nobody", "generated", ErrAuthentication},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			n := countArgon2(t)
			c, err := tc.reg.Authenticate(tc.id, tc.secret, AuthOptions{Now: t0, NoSlowHash: true})
			if err != tc.want || (err == nil) != (c != nil) {
				t.Errorf("Authenticate = %v, %v; want error %v", c, err, tc.want)
			}
			if got := len(n.take()); got != 0 {
				t.Errorf("%d argon2id computations under NoSlowHash, want 0", got)
			}
		})
	}
}

// Timing is asserted structurally: each failure does the same number of
// argon2id computations, with the same parameters, whatever the client.
// Speed itself belongs in benchmarks, not in timed unit tests.
func TestAuthenticate_EveryFailureCostsTheSameArgon2Work(t *testing.T) {
	const chosen = "a person chose this one"
	expired := t0.Add(-time.Minute).Format(time.RFC3339)
	file := fileOf(t,
		Client{ID: "slow", Secrets: []Secret{{Hash: argonHashOf(chosen)}}},
		Client{ID: "fast", Secrets: []Secret{{Hash: hashOf("generated")}, {Hash: hashOf("generated-2")}}},
		Client{ID: "mixed", Secrets: []Secret{{Hash: hashOf("generated")}, {Hash: argonHashOf(chosen)}}},
		Client{ID: "off", Secrets: []Secret{{Hash: argonHashOf(chosen)}}, Disabled: true},
		Client{ID: "off-fast", Secrets: []Secret{{Hash: hashOf("generated")}}, Disabled: true},
		Client{ID: "expired", Secrets: []Secret{{Hash: argonHashOf(chosen), Expires: expired}}},
	)
	failures := map[string]struct{ id, secret string }{
		"unknown client":                       {"nobody", chosen},
		"unknown client, empty secret":         {"nobody", ""},
		"argon2id client, wrong secret":        {"slow", "wrong"},
		"sha256 client, wrong secret":          {"fast", "wrong"},
		"mixed client, wrong secret":           {"mixed", "wrong"},
		"disabled argon2id client, its secret": {"off", chosen},
		"disabled sha256 client, its secret":   {"off-fast", "generated"},
		"expired argon2id secret":              {"expired", chosen},
		"id in another case":                   {"SLOW", chosen},
	}
	for _, withCache := range []bool{false, true} {
		var cache *Cache
		if withCache {
			cache = NewCache(0)
		}
		reg := NewRegistry(file, cache)
		for name, tc := range failures {
			t.Run(fmt.Sprintf("%s (cache %v)", name, withCache), func(t *testing.T) {
				n := countArgon2(t)
				if _, err := reg.Authenticate(tc.id, tc.secret, at(t0)); err != ErrAuthentication {
					t.Fatalf("Authenticate = %v, want ErrAuthentication", err)
				}
				if got := n.take(); !slices.Equal(got, []argon2Params{cheapArgon2}) {
					t.Errorf("argon2id computations = %+v, want exactly one with the registry's parameters %+v", got, cheapArgon2)
				}
			})
		}
	}

	t.Run("a client with two argon2id secrets makes every failure cost two", func(t *testing.T) {
		reg := NewRegistry(fileOf(t,
			Client{ID: "rotating", Secrets: []Secret{{Hash: argonHashOf(chosen)}, {Hash: argonHashOf("the next chosen secret")}}},
			Client{ID: "fast", Secrets: []Secret{{Hash: hashOf("generated")}}},
		))
		n := countArgon2(t)
		for _, id := range []string{"rotating", "fast", "nobody"} {
			if _, err := reg.Authenticate(id, "wrong", at(t0)); err != ErrAuthentication {
				t.Fatalf("%s: %v, want ErrAuthentication", id, err)
			}
			if got := len(n.take()); got != 2 {
				t.Errorf("%s: %d argon2id computations, want 2", id, got)
			}
		}
	})
	t.Run("no argon2id secret anywhere: failures compute none", func(t *testing.T) {
		reg := NewRegistry(fileOf(t, Client{ID: "fast", Secrets: []Secret{{Hash: hashOf("generated")}}}))
		n := countArgon2(t)
		for _, id := range []string{"fast", "nobody"} {
			if _, err := reg.Authenticate(id, "wrong", at(t0)); err != ErrAuthentication {
				t.Fatalf("%s: %v, want ErrAuthentication", id, err)
			}
		}
		if got := len(n.take()); got != 0 {
			t.Errorf("%d argon2id computations, want 0", got)
		}
	})
	t.Run("the dummy uses the most expensive parameters in the file", func(t *testing.T) {
		heavier := argon2Params{memory: 128, time: 2, threads: 1, saltLen: 16, keyLen: 32}
		reg := NewRegistry(fileOf(t,
			Client{ID: "light", Secrets: []Secret{{Hash: argonHashOf(chosen)}}},
			Client{ID: "heavy", Secrets: []Secret{{Hash: hashArgon2id(chosen, heavier)}}},
		))
		n := countArgon2(t)
		if _, err := reg.Authenticate("nobody", chosen, at(t0)); err != ErrAuthentication {
			t.Fatal(err)
		}
		if got := n.take(); !slices.Equal(got, []argon2Params{heavier}) {
			t.Errorf("argon2id computations = %+v, want one with %+v", got, heavier)
		}
	})
}

func TestAuthenticate_SuccessesAreNotPaddedWithArgon2(t *testing.T) {
	reg := NewRegistry(fileOf(t,
		Client{ID: "slow", Secrets: []Secret{{Hash: argonHashOf("a person chose this one")}}},
		Client{ID: "fast", Secrets: []Secret{{Hash: hashOf("generated")}}},
	), NewCache(0))
	n := countArgon2(t)
	for range 3 {
		if _, err := reg.Authenticate("fast", "generated", at(t0)); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(n.take()); got != 0 {
		t.Errorf("sha256 successes computed %d argon2id, want 0: generated secrets must stay cheap", got)
	}
}

func TestCache_IsBoundedAndDropsTheOldest(t *testing.T) {
	c := NewCache(2)
	e1, e2, e3 := c.entry("c", "s1", "h"), c.entry("c", "s2", "h"), c.entry("c", "s3", "h")
	c.add(e1)
	c.add(e2)
	c.add(e2) // no duplicate
	c.add(e3)
	if c.Len() != 2 {
		t.Errorf("Len = %d, want 2", c.Len())
	}
	if c.contains(e1) || !c.contains(e2) || !c.contains(e3) {
		t.Errorf("contains(e1, e2, e3) = %v, %v, %v; want false, true, true", c.contains(e1), c.contains(e2), c.contains(e3))
	}
	if NewCache(0).ring == nil || cap(NewCache(0).ring) != DefaultCacheSize {
		t.Errorf("NewCache(0) holds %d entries, want %d", cap(NewCache(0).ring), DefaultCacheSize)
	}
}

func TestCache_EntriesAreKeyedByEveryInputAndAProcessSecret(t *testing.T) {
	c := NewCache(0)
	base := c.entry("client", "secret", "hash")
	others := map[string][32]byte{
		"another client":               c.entry("client2", "secret", "hash"),
		"another secret":               c.entry("client", "secret2", "hash"),
		"another stored hash":          c.entry("client", "secret", "hash2"),
		"bytes moved across fields":    c.entry("client", "secre", "thash"),
		"the same inputs, other cache": NewCache(0).entry("client", "secret", "hash"),
	}
	for name, e := range others {
		if e == base {
			t.Errorf("%s: same entry as the original", name)
		}
	}
	if c.entry("client", "secret", "hash") != base {
		t.Error("the same inputs gave a different entry")
	}
}

func TestAuthenticate_ConcurrentUseWithASharedCache(t *testing.T) {
	const chosen = "a person chose this one"
	cache := NewCache(0)
	file := fileOf(t,
		Client{ID: "slow", Secrets: []Secret{{Hash: argonHashOf(chosen)}}},
		Client{ID: "fast", Secrets: []Secret{{Hash: hashOf("generated")}}},
	)
	regs := []*Registry{NewRegistry(file, cache), NewRegistry(file, cache)}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			reg := regs[i%2]
			for range 20 {
				if _, err := reg.Authenticate("slow", chosen, AuthOptions{}); err != nil {
					t.Error(err)
				}
				if _, err := reg.Authenticate("fast", "wrong", AuthOptions{NoSlowHash: i%3 == 0}); err == nil {
					t.Error("wrong secret authenticated")
				}
			}
		})
	}
	wg.Wait()
	if cache.Len() != 1 {
		t.Errorf("cache holds %d entries, want 1", cache.Len())
	}
}
