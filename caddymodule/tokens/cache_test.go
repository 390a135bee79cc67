package tokens

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
)

var cacheT0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func cacheEntryOf(sub string, until time.Time) *cacheEntry {
	return &cacheEntry{Claims: &Claims{Subject: sub}, KeyID: "k1", Until: until}
}

func TestCache_GetReturnsTheEntryOfExactlyThatTokenUntilItEnds(t *testing.T) {
	c := NewCache(0)
	c.put(digestOf("aaa.bbb.ccc"), cacheEntryOf("one", cacheT0.Add(time.Minute)))

	for _, tc := range []struct {
		name  string
		token string
		at    time.Time
		want  bool
	}{
		{"the same token before its end", "aaa.bbb.ccc", cacheT0, true},
		{"a token that differs in one character", "aaa.bbb.ccd", cacheT0, false},
		{"a prefix of the token", "aaa.bbb.cc", cacheT0, false},
		{"the same token at its end", "aaa.bbb.ccc", cacheT0.Add(time.Minute), false},
		{"the same token after it ended (removed by the previous lookup)", "aaa.bbb.ccc", cacheT0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := c.get(digestOf(tc.token), tc.at)
			if ok != tc.want {
				t.Fatalf("Get = %v, want %v", ok, tc.want)
			}
			if ok && e.Claims.Subject != "one" {
				t.Errorf("claims of another entry: %+v", e.Claims)
			}
		})
	}
	if n := c.Len(); n != 0 {
		t.Errorf("Len after the entry ended = %d, want 0", n)
	}
	if hits, misses := c.Stats(); hits != 1 || misses != 4 {
		t.Errorf("Stats = %d hits, %d misses; want 1, 4", hits, misses)
	}
}

func TestCache_PutNeverHoldsMoreThanItsSize(t *testing.T) {
	const size = 1000
	c := NewCache(size)
	for i := range 20 * size {
		c.put(digestOf("token-"+strconv.Itoa(i)), cacheEntryOf("s", cacheT0.Add(time.Hour)))
	}
	if n := c.Len(); n > size || n < size/2 {
		t.Errorf("Len after 20× its size in distinct tokens = %d, want between %d and %d", n, size/2, size)
	}
	// Replacing an entry of a full shard evicts nothing.
	before := c.Len()
	c.put(digestOf("token-19999"), cacheEntryOf("s", cacheT0.Add(time.Hour)))
	if _, ok := c.get(digestOf("token-19999"), cacheT0); !ok {
		t.Fatal("the newest token is not cached")
	}
	if c.Len() != before {
		t.Errorf("Len after replacing an entry = %d, want %d", c.Len(), before)
	}
}

func TestCache_RemoveForgetsTheToken(t *testing.T) {
	c := NewCache(0)
	c.put(digestOf("a"), cacheEntryOf("s", cacheT0.Add(time.Hour)))
	c.remove(digestOf("a"))
	if _, ok := c.get(digestOf("a"), cacheT0); ok {
		t.Error("a deleted token is still cached")
	}
}

func TestCache_ConcurrentUse(t *testing.T) {
	c := NewCache(128)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				tok := strconv.Itoa(g*10000 + i%300)
				if _, ok := c.get(digestOf(tok), cacheT0); !ok {
					c.put(digestOf(tok), cacheEntryOf(tok, cacheT0.Add(time.Hour)))
				}
				if i%7 == 0 {
					c.remove(digestOf(tok))
				}
			}
		}()
	}
	wg.Wait()
	if n := c.Len(); n > 128 {
		t.Errorf("Len = %d, want at most 128", n)
	}
}

// Every way an entry leaves (eviction, expiry, removal) must leave the
// others findable and the bound exact.
func TestCache_EveryEntryStaysFindableWhileOthersLeave(t *testing.T) {
	c := NewCache(shards * 4)
	want := map[digest]bool{}
	for i := range 5000 {
		k := digestOf(strconv.Itoa(i % 700))
		switch i % 5 {
		case 0:
			c.remove(k)
			delete(want, k)
		case 1: // an entry that has ended: get drops it
			c.put(k, cacheEntryOf("s", cacheT0))
			c.get(k, cacheT0)
			delete(want, k)
		default:
			c.put(k, cacheEntryOf("s", cacheT0.Add(time.Hour)))
			want[k] = true
		}
	}
	for i := range c.shards {
		s := &c.shards[i]
		if len(s.keys) != len(s.m) || len(s.m) > c.perShard {
			t.Fatalf("shard %d: %d keys for %d entries, at most %d", i, len(s.keys), len(s.m), c.perShard)
		}
		for slot, k := range s.keys {
			if e := s.m[k]; e == nil || e.slot != slot {
				t.Fatalf("shard %d: key %d does not lead to its entry", i, slot)
			}
		}
	}
	evicted := 0
	for k := range want {
		if _, ok := c.get(k, cacheT0); !ok {
			evicted++
		}
	}
	if kept := len(want) - evicted; kept != c.Len() {
		t.Errorf("%d of the tokens put last are found, but the cache holds %d", kept, c.Len())
	}
}

func BenchmarkCache_Hit(b *testing.B) {
	c := NewCache(0)
	tok := "eyJhbGciOiJFUzI1NiIsImtpZCI6IngiLCJ0eXAiOiJhdCtqd3QifQ." +
		"eyJpc3MiOiJodHRwczovL2dhdGV3YXkuZXhhbXBsZS5jb20iLCJzdWIiOiJvYXV0aF9jbGllbnRfMTIzIn0.sig"
	c.put(digestOf(tok), cacheEntryOf("s", cacheT0.Add(time.Hour)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := c.get(digestOf(tok), cacheT0); !ok {
				b.Fatal("miss")
			}
		}
	})
}

// droppableKeys is a key source whose keys can be withdrawn, as a key
// rotation eventually withdraws a retired key.
type droppableKeys struct {
	set     *keys.Set
	dropped bool
}

func (d *droppableKeys) Lookup(kid string) *keys.Key {
	if d.dropped {
		return nil
	}
	return d.set.Lookup(kid)
}

func TestVerify_ATokenIsKeptFromItsSecondVerificationOn(t *testing.T) {
	set := keystest.NewSet(t)
	v := verifier(set)
	v.Cache = NewCache(0)
	// Tokens that share a slot of the seen-once table push each other
	// out of it and may need a third verification (admit's doc); about one
	// run in fourteen would draw two such among 100, so they are left out.
	sentOnce := make([]string, 100)
	slots := map[uint64]bool{}
	for i := range sentOnce {
		var tok string
		for tok == "" || slots[v.Cache.seenSlot(digestOf(tok))] {
			c := validClaims()
			c.ID = NewID()
			var err error
			if tok, err = Mint(set.Signing(), c); err != nil {
				t.Fatal(err)
			}
		}
		slots[v.Cache.seenSlot(digestOf(tok))] = true
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
		sentOnce[i] = tok
	}
	if n := v.Cache.Len(); n != 0 {
		t.Errorf("after 100 tokens sent once the cache holds %d, want 0: a token sent once is never read again", n)
	}
	// Sent again, each is verified once more and kept, then answered
	// from the cache.
	for _, tok := range sentOnce {
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.Cache.Len(); n != len(sentOnce) {
		t.Errorf("after each was sent twice the cache holds %d, want %d", n, len(sentOnce))
	}
	for _, tok := range sentOnce {
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if hits, _ := v.Cache.Stats(); hits != uint64(len(sentOnce)) {
		t.Errorf("cache hits on the third sending = %d, want %d", hits, len(sentOnce))
	}
	// A refused token is not "seen": refusals have a cache of their own.
	forged := sentOnce[0][:len(sentOnce[0])-2] + "AA"
	for range 2 {
		if _, err := v.Verify(forged); err == nil {
			t.Fatal("a token with a changed signature was accepted")
		}
	}
}

func TestVerify_CachedTokenIsCheckedAgainOnlyForExpiryAndItsKey(t *testing.T) {
	set := keystest.NewSet(t)
	src := &droppableKeys{set: set}
	clock := now
	v := verifier(set)
	v.Keys, v.Cache = src, NewCache(0)
	v.Now = func() time.Time { return clock }
	tok, err := Mint(set.Signing(), validClaims())
	if err != nil {
		t.Fatal(err)
	}

	if _, err := v.Verify(tok); err != nil { // seen once: not kept yet (see admit)
		t.Fatal(err)
	}
	first, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if first.KeyID != set.Signing().ID {
		t.Errorf("KeyID = %q, want the signing key %q", first.KeyID, set.Signing().ID)
	}
	again, err := v.Verify(tok)
	if err != nil || again != first {
		t.Fatalf("third Verify = %p, %v; want the cached claims %p", again, err, first)
	}
	if hits, _ := v.Cache.Stats(); hits != 1 {
		t.Errorf("cache hits = %d, want 1", hits)
	}

	// A token that differs in its signature is a different token: it is
	// verified, and fails.
	if _, err := v.Verify(tok[:len(tok)-2] + "AA"); err == nil {
		t.Error("a token with a changed signature was accepted next to its cached original")
	}

	// Once the key that verified it is withdrawn, a cached token counts
	// for nothing.
	src.dropped = true
	if _, err := v.Verify(tok); err == nil || !strings.Contains(err.Error(), "unknown key") {
		t.Errorf("after its key was withdrawn: %v, want unknown key", err)
	}
	src.dropped = false

	// Up to the end of the leeway the entry holds; then the token is
	// verified again, and is expired.
	clock = validClaims().Expiry.Add(v.Leeway - time.Second)
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("within the leeway after exp: %v", err)
	}
	clock = validClaims().Expiry.Add(v.Leeway)
	if _, err := v.Verify(tok); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("at exp + leeway: %v, want expired", err)
	}
}

func TestVerify_OnlyFinalRefusalsAreRemembered(t *testing.T) {
	set := keystest.NewSet(t)
	src := &droppableKeys{set: set}
	clock := now
	v := verifier(set)
	v.Keys, v.Cache = src, NewCache(0)
	v.Now = func() time.Time { return clock }
	mint := func(edit func(*Claims)) string {
		c := validClaims()
		edit(c)
		tok, err := Mint(set.Signing(), c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	refusedHits := func() uint64 { h, _ := v.Cache.refused.Stats(); return h }

	// Final: another audience, a wrong signature. The second refusal
	// comes from the cache, and no refusal ever reaches the good tokens'.
	for _, tok := range []string{
		mint(func(c *Claims) { c.Audience = []string{"https://elsewhere.example"} }),
		swapSignature(mint(func(*Claims) {}), mint(func(c *Claims) { c.Subject = "oauth_client_other" })),
	} {
		before := refusedHits()
		_, err1 := v.Verify(tok)
		_, err2 := v.Verify(tok)
		if err1 == nil || err2 == nil || err1.Error() != err2.Error() {
			t.Errorf("refusals %v, %v; want the same refusal twice", err1, err2)
		}
		if refusedHits() != before+1 {
			t.Errorf("the second refusal of %q was not remembered", err1)
		}
	}
	if n := v.Cache.Len(); n != 0 {
		t.Errorf("the good tokens' cache holds %d entries after refusals, want 0", n)
	}

	// Not final: a key we do not know yet, a token not valid yet. Each
	// passes once its time has come.
	src.dropped = true
	tok := mint(func(*Claims) {})
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("a token of an unknown key was accepted")
	}
	src.dropped = false
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("once its key is known: %v", err)
	}
	early := mint(func(c *Claims) { c.NotBefore = now.Add(time.Hour) })
	if _, err := v.Verify(early); err == nil {
		t.Fatal("a token not valid yet was accepted")
	}
	clock = now.Add(time.Hour)
	if _, err := v.Verify(early); err != nil {
		t.Errorf("once it is valid: %v", err)
	}
}

// swapSignature is a's header and payload with b's signature: well formed,
// by a key we know, and wrong.
func swapSignature(a, b string) string {
	return a[:strings.LastIndexByte(a, '.')] + b[strings.LastIndexByte(b, '.'):]
}

// relabelledKeys answers for kid with whatever key it is told to: an
// external issuer may publish a new key under an old kid.
type relabelledKeys struct {
	kid string
	key *keys.Key
}

func (r *relabelledKeys) Lookup(kid string) *keys.Key {
	if kid == r.kid {
		return r.key
	}
	return nil
}

func TestVerify_CacheEntriesHoldOnlyWhileTheirKidNamesTheSameKey(t *testing.T) {
	set, other := keystest.NewSet(t), keystest.NewSet(t)
	good := set.Signing()
	impostor := *other.Signing() // another key, published under good's kid
	impostor.ID = good.ID
	src := &relabelledKeys{kid: good.ID, key: good}
	v := verifier(set)
	v.Keys, v.Cache = src, NewCache(0)
	tok, err := Mint(good, validClaims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	src.key = &impostor
	if _, err := v.Verify(tok); err == nil || err.Error() != ReasonBadSignature {
		t.Errorf("after the kid changed keys: %v, want the signature checked again, and refused", err)
	}
	src.key = good
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("with its key back, the remembered refusal must not hold: %v", err)
	}
}

// The decoding of a header is remembered once a token with it verified;
// every check of the decoded header is still made on every token, by
// each verifier against its own rules and keys.
func TestVerify_ARememberedHeaderIsCheckedAgainOnEveryToken(t *testing.T) {
	set := keystest.NewSet(t)
	k := set.Signing()
	hdr := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"at+jwt","remembered":%d}`, k.ID, time.Now().UnixNano())
	payload, err := json.Marshal(map[string]any{"iss": testIssuer, "sub": "oauth_client_abc", "client_id": "abc",
		"aud": testAudience, "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "j"})
	if err != nil {
		t.Fatal(err)
	}
	tok := signRaw(t, k, hdr, string(payload))
	seg := tok[:strings.IndexByte(tok, '.')]

	forged := tok[:strings.LastIndexByte(tok, '.')+1] + b64("not the signature")
	if _, err := verifier(set).Verify(forged); err == nil {
		t.Fatal("a forged signature verified")
	}
	if _, ok := headers.get(seg); ok {
		t.Fatal("the header of a token whose signature failed was remembered")
	}
	if _, err := verifier(set).Verify(tok); err != nil {
		t.Fatal(err)
	}
	if _, ok := headers.get(seg); !ok {
		t.Fatal("the header of a verified token was not remembered")
	}

	jwtOnly := verifier(set)
	jwtOnly.Types = []string{"JWT"}
	if _, err := jwtOnly.Verify(tok); err == nil || !strings.Contains(err.Error(), "token type must be") {
		t.Errorf("a verifier that wants typ JWT: %v", err)
	}
	other := verifier(keystest.NewSet(t))
	if _, err := other.Verify(tok); err == nil || err.Error() != "token is signed by an unknown key" {
		t.Errorf("a verifier without the key: %v", err)
	}
	if _, err := verifier(set).Verify(forged); err == nil || err.Error() != ReasonBadSignature {
		t.Errorf("a forged signature under a remembered header: %v", err)
	}
}

func TestHeaderCache_StartsAgainWhenFull(t *testing.T) {
	var c headerCache
	for i := range 3 * maxHeaders {
		c.put(fmt.Sprint("segment ", i), header{Kid: fmt.Sprint(i)})
		if n := len(*c.m.Load()); n > maxHeaders {
			t.Fatalf("%d headers remembered, at most %d", n, maxHeaders)
		}
		if h, ok := c.get(fmt.Sprint("segment ", i)); !ok || h.Kid != fmt.Sprint(i) {
			t.Fatalf("the header just added is %+v, %v", h, ok)
		}
	}
}

func TestVerify_ClaimsOfACachingVerifierCarryTheirTokensHash(t *testing.T) {
	set := keystest.NewSet(t)
	tok, err := Mint(set.Signing(), validClaims())
	if err != nil {
		t.Fatal(err)
	}
	v := verifier(set)
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.TokenHash(); ok {
		t.Error("a verifier without a cache computed no hash, yet TokenHash says it has one")
	}
	v.Cache = NewCache(0)
	for i := range 3 { // the first verification, the second (kept), the cached one
		c, err := v.Verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := c.TokenHash(); !ok || h != sha256.Sum256([]byte(tok)) {
			t.Errorf("verification %d: TokenHash = %x, %v; want the token's SHA-256", i+1, h, ok)
		}
	}
}
