package keys_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// A schedule with round numbers: the timeline tests read as arithmetic.
const (
	rotateEvery  = 24 * time.Hour
	publishAhead = time.Hour
	retainFor    = 3 * time.Hour
)

func scheduled(alg jwa.SignatureAlgorithm) keys.Options {
	return keys.Options{Algorithm: alg, RotateEvery: rotateEvery, PublishAhead: publishAhead, RetainFor: retainFor}
}

func newManager(t *testing.T, st keys.Storage, clock *keystest.Clock, opts keys.Options) *keys.Manager {
	t.Helper()
	opts.Now = clock.Now
	m, err := keys.NewManager(st, opts)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	return m
}

func mustSync(t *testing.T, m *keys.Manager) *keys.Set {
	t.Helper()
	set, err := m.Sync(context.Background())
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return set
}

func mustRotate(t *testing.T, m *keys.Manager, immediate bool) *keys.Set {
	t.Helper()
	set, err := m.Rotate(context.Background(), immediate)
	if err != nil {
		t.Fatalf("Rotate(%v): %v", immediate, err)
	}
	return set
}

// jwksKids returns the kids the JWK Set publishes, in order.
func jwksKids(t *testing.T, set *keys.Set) []string {
	t.Helper()
	var doc struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(set.JWKS(), &doc); err != nil {
		t.Fatalf("JWKS is not JSON: %v", err)
	}
	var kids []string
	for _, k := range doc.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// namer gives kids readable names in order of appearance: key 1, key 2…
type namer map[string]string

func (n namer) names(kids ...string) []string {
	out := make([]string, len(kids))
	for i, kid := range kids {
		if n[kid] == "" {
			n[kid] = fmt.Sprintf("key %d", len(n)+1)
		}
		out[i] = n[kid]
	}
	return out
}

const (
	issuer   = "https://gw.example"
	audience = "https://gw.example"
)

// mint signs an access token with k, issued at now, valid for retainFor:
// the longest lifetime the schedule is made for.
func mint(t *testing.T, k *keys.Key, now time.Time) string {
	t.Helper()
	tok, err := tokens.Mint(k, &tokens.Claims{
		Issuer: issuer, Subject: "oauth_client_abc", ClientID: "abc", Audience: []string{audience},
		IssuedAt: now, Expiry: now.Add(retainFor), ID: tokens.NewID(),
	})
	if err != nil {
		t.Fatalf("Mint with a %s key: %v", k.Algorithm, err)
	}
	return tok
}

func verify(set *keys.Set, tok string, now time.Time) error {
	v := &tokens.Verifier{Keys: set, Issuer: issuer, Audience: audience, Now: func() time.Time { return now }}
	_, err := v.Verify(tok)
	return err
}

func TestNewManager_ValidatesOptions(t *testing.T) {
	tests := map[string]struct {
		opts    keys.Options
		wantErr string // "" for valid
	}{
		"only a retention: ES256, no rotation":  {keys.Options{RetainFor: time.Hour}, ""},
		"daily rotation of EdDSA keys":          {scheduled(jwa.EdDSA()), ""},
		"RS256":                                 {keys.Options{Algorithm: jwa.RS256(), RetainFor: time.Hour}, ""},
		"PS256":                                 {keys.Options{Algorithm: jwa.PS256(), RetainFor: time.Hour}, ""},
		"rotation as often as publish ahead":    {keys.Options{RotateEvery: time.Hour, PublishAhead: time.Hour, RetainFor: time.Hour}, ""},
		"HMAC algorithm":                        {keys.Options{Algorithm: jwa.HS256(), RetainFor: time.Hour}, "not supported"},
		"alg none":                              {keys.Options{Algorithm: jwa.NoSignature(), RetainFor: time.Hour}, "not supported"},
		"ES384":                                 {keys.Options{Algorithm: jwa.ES384(), RetainFor: time.Hour}, "not supported"},
		"no retention":                          {keys.Options{}, "retention"},
		"negative retention":                    {keys.Options{RetainFor: -time.Hour}, "retention"},
		"publish ahead within the JWKS max-age": {keys.Options{PublishAhead: 5 * time.Minute, RetainFor: time.Hour}, "publish ahead"},
		"negative publish ahead":                {keys.Options{PublishAhead: -time.Hour, RetainFor: time.Hour}, "publish ahead"},
		"rotation shorter than publish ahead":   {keys.Options{RotateEvery: 30 * time.Minute, RetainFor: time.Hour}, "shorter than publish ahead"},
		"negative rotation":                     {keys.Options{RotateEvery: -time.Hour, RetainFor: time.Hour}, "negative"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			m, err := keys.NewManager(keystest.NewStorage(), tt.opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("NewManager: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("NewManager = %v, want an error about %q", m, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("NewManager: %v, want an error about %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewManager_NoStorage(t *testing.T) {
	if _, err := keys.NewManager(nil, keys.Options{RetainFor: time.Hour}); err == nil {
		t.Fatal("NewManager(nil storage) succeeded")
	}
}

func TestParseAlgorithm_AcceptsOnlySupportedAlgorithms(t *testing.T) {
	for _, name := range []string{"ES256", "EdDSA", "RS256", "PS256"} {
		if alg, err := keys.ParseAlgorithm(name); err != nil || alg.String() != name {
			t.Errorf("ParseAlgorithm(%q) = %v, %v", name, alg, err)
		}
	}
	for _, name := range []string{"", "none", "HS256", "ES384", "RS512", "Ed25519", "es256"} {
		if alg, err := keys.ParseAlgorithm(name); err == nil {
			t.Errorf("ParseAlgorithm(%q) = %v, want an error", name, alg)
		}
	}
}

func TestSync_EachAlgorithmMakesAKeyThatSignsVerifiableTokens(t *testing.T) {
	tests := map[string]struct {
		alg jwa.SignatureAlgorithm
		// JWK members published, and the kty and crv among them
		members []string
		kty     string
		crv     string
	}{
		"ES256 (the default) is ECDSA on P-256": {jwa.SignatureAlgorithm{}, []string{"alg", "crv", "kid", "kty", "use", "x", "y"}, "EC", "P-256"},
		"EdDSA is Ed25519":                      {jwa.EdDSA(), []string{"alg", "crv", "kid", "kty", "use", "x"}, "OKP", "Ed25519"},
		"RS256 is RSA 2048":                     {jwa.RS256(), []string{"alg", "e", "kid", "kty", "n", "use"}, "RSA", ""},
		"PS256 is RSA 2048":                     {jwa.PS256(), []string{"alg", "e", "kid", "kty", "n", "use"}, "RSA", ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			st := newMemStorage()
			clock := keystest.NewClock(t0)
			set := mustSync(t, newManager(t, st, clock, keys.Options{Algorithm: tt.alg, RetainFor: retainFor}))

			k := set.Signing()
			want := tt.alg
			if want.String() == "" {
				want = jwa.ES256()
			}
			if k.Algorithm != want {
				t.Fatalf("Algorithm = %v, want %v", k.Algorithm, want)
			}
			if k.Private.KeyType().String() != tt.kty {
				t.Errorf("key type = %v, want %s", k.Private.KeyType(), tt.kty)
			}
			if tt.kty == "RSA" {
				n, _ := k.Public.(jwk.RSAPublicKey).N()
				if len(n)*8 != keys.RSABits {
					t.Errorf("RSA modulus is %d bits, want %d", len(n)*8, keys.RSABits)
				}
			}

			var doc struct{ Keys []map[string]any }
			if err := json.Unmarshal(set.JWKS(), &doc); err != nil || len(doc.Keys) != 1 {
				t.Fatalf("JWKS = %s (%v), want one key", set.JWKS(), err)
			}
			pub := doc.Keys[0]
			if got := slices.Sorted(maps.Keys(pub)); !slices.Equal(got, tt.members) {
				t.Errorf("JWK members = %q, want %q (never a private one)", got, tt.members)
			}
			if pub["kty"] != tt.kty || pub["alg"] != want.String() || pub["kid"] != k.ID || (tt.crv != "" && pub["crv"] != tt.crv) {
				t.Errorf("JWK = %v, want kty %s, crv %q, alg %s, kid %s", pub, tt.kty, tt.crv, want, k.ID)
			}

			tok := mint(t, k, t0)
			if err := verify(set, tok, t0); err != nil {
				t.Errorf("token signed by the new key does not verify: %v", err)
			}
			// Our signer is our own (Key.Sign): a standard JWS library
			// given only the published JWKS must accept its tokens too.
			published, err := jwk.Parse(set.JWKS())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jws.Verify([]byte(tok), jws.WithKeySet(published)); err != nil {
				t.Errorf("jwx does not verify the token against the JWKS: %v", err)
			}
			if locks, stores := st.counts(); locks != 1 || stores != 1 {
				t.Errorf("%d Lock and %d Store calls, want 1 and 1", locks, stores)
			}

			// Another instance (or a restart) reads the same key from
			// storage and verifies the token.
			other := mustSync(t, newManager(t, st, clock, keys.Options{Algorithm: tt.alg, RetainFor: retainFor}))
			if other.Signing().ID != k.ID {
				t.Errorf("reloaded signing kid = %s, want %s", other.Signing().ID, k.ID)
			}
			if err := verify(other, tok, t0); err != nil {
				t.Errorf("reloaded key does not verify the token: %v", err)
			}
			if _, stores := st.counts(); stores != 1 {
				t.Errorf("reloading stored again (%d Store calls)", stores)
			}
		})
	}
}

// TestSync_RotationTimeline follows one schedule step by step: each step
// sets the clock, syncs, and says which key signs and which are
// published.
func TestSync_RotationTimeline(t *testing.T) {
	steps := []struct {
		name      string
		at        time.Duration // after the first start
		signing   string
		published []string // newest first
		stored    bool     // whether this Sync writes storage
	}{
		{"first start creates one key, which signs at once", 0, "key 1", []string{"key 1"}, true},
		{"just before RotateEvery nothing changes", rotateEvery - time.Nanosecond, "key 1", []string{"key 1"}, false},
		{"at RotateEvery the next key is published but does not sign", rotateEvery, "key 1", []string{"key 2", "key 1"}, true},
		{"a later Sync does not publish a third key", rotateEvery + time.Minute, "key 1", []string{"key 2", "key 1"}, false},
		{"until PublishAhead has passed the old key signs", rotateEvery + publishAhead - time.Nanosecond, "key 1", []string{"key 2", "key 1"}, false},
		{"after PublishAhead the new key signs and the old one stays published", rotateEvery + publishAhead, "key 2", []string{"key 2", "key 1"}, false},
		{"the old key is published until RetainFor after it stopped signing", rotateEvery + publishAhead + retainFor - time.Nanosecond, "key 2", []string{"key 2", "key 1"}, false},
		{"then it is gone", rotateEvery + publishAhead + retainFor, "key 2", []string{"key 2"}, true},
		{"the next rotation is RotateEvery after the second key was made", 2 * rotateEvery, "key 2", []string{"key 3", "key 2"}, true},
		{"and it signs PublishAhead later", 2*rotateEvery + publishAhead, "key 3", []string{"key 3", "key 2"}, false},
	}
	st := newMemStorage()
	clock := keystest.NewClock(t0)
	m := newManager(t, st, clock, scheduled(jwa.ES256()))
	n := namer{}
	for _, step := range steps {
		clock.Set(t0.Add(step.at))
		_, before := st.counts()
		set := mustSync(t, m)
		_, after := st.counts()
		signing := n.names(set.Signing().ID)[0]
		published := n.names(jwksKids(t, set)...)
		if signing != step.signing || !slices.Equal(published, step.published) || (after > before) != step.stored {
			t.Errorf("%s (t0+%v): signing %s, published %q, stored %v; want %s, %q, %v",
				step.name, step.at, signing, published, after > before, step.signing, step.published, step.stored)
		}
		var listed []string
		for _, info := range set.Keys() {
			listed = append(listed, n.names(info.ID)[0])
			if set.Lookup(info.ID) == nil {
				t.Errorf("%s: Lookup(%s) = nil for a published key", step.name, n[info.ID])
			}
		}
		if !slices.Equal(listed, published) {
			t.Errorf("%s: Keys() lists %q, JWKS publishes %q", step.name, listed, published)
		}
	}
}

func TestKeys_ListsEachKeysSchedule(t *testing.T) {
	st := newMemStorage()
	clock := keystest.NewClock(t0)
	m := newManager(t, st, clock, scheduled(jwa.ES256()))
	mustSync(t, m)
	clock.Set(t0.Add(rotateEvery))
	set := mustSync(t, m)

	got := set.Keys()
	if len(got) != 2 {
		t.Fatalf("Keys() = %+v, want 2 keys", got)
	}
	want := []keys.KeyInfo{
		{ID: got[0].ID, Algorithm: jwa.ES256(), Created: t0.Add(rotateEvery), Activates: t0.Add(rotateEvery + publishAhead)},
		{ID: got[1].ID, Algorithm: jwa.ES256(), Created: t0, Activates: t0,
			Retires: t0.Add(rotateEvery + publishAhead), Expires: t0.Add(rotateEvery + publishAhead + retainFor)},
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Algorithm != w.Algorithm || !g.Created.Equal(w.Created) || !g.Activates.Equal(w.Activates) ||
			!g.Retires.Equal(w.Retires) || !g.Expires.Equal(w.Expires) {
			t.Errorf("key %d: %+v, want %+v", i+1, g, w)
		}
	}
}

func TestSigning_SwitchesAtActivationWithoutAnotherSync(t *testing.T) {
	st := newMemStorage()
	clock := keystest.NewClock(t0)
	m := newManager(t, st, clock, scheduled(jwa.ES256()))
	old := mustSync(t, m).Signing()
	clock.Set(t0.Add(rotateEvery))
	set := mustSync(t, m) // the last Sync this instance manages

	clock.Set(t0.Add(rotateEvery + publishAhead - time.Nanosecond))
	if set.Signing().ID != old.ID {
		t.Errorf("before activation the snapshot signs with %s, want the old key %s", set.Signing().ID, old.ID)
	}
	clock.Set(t0.Add(rotateEvery + publishAhead))
	if set.Signing().ID != set.Keys()[0].ID || set.Signing().ID == old.ID {
		t.Errorf("at activation the snapshot still signs with %s, want the new key", set.Signing().ID)
	}
}

func TestSync_TokensOfARetiredKeyVerifyUntilTheyExpire(t *testing.T) {
	st := newMemStorage()
	clock := keystest.NewClock(t0)
	m := newManager(t, st, clock, scheduled(jwa.EdDSA()))
	mustSync(t, m)
	clock.Set(t0.Add(rotateEvery))
	mustSync(t, m)

	// The last token of the old key, issued just before the new key
	// signs, with the longest lifetime.
	last := t0.Add(rotateEvery + publishAhead - time.Nanosecond)
	clock.Set(last)
	tok := mint(t, mustSync(t, m).Signing(), last)

	expiry := last.Add(retainFor)
	clock.Set(expiry.Add(-time.Second))
	if err := verify(mustSync(t, m), tok, clock.Now()); err != nil {
		t.Errorf("a second before it expires the old key's last token is refused: %v", err)
	}
}

func TestSync_AlgorithmChangeIsARotation(t *testing.T) {
	tests := map[string]struct{ from, to jwa.SignatureAlgorithm }{
		"ES256 to EdDSA": {jwa.ES256(), jwa.EdDSA()},
		"EdDSA to PS256": {jwa.EdDSA(), jwa.PS256()},
		"RS256 to ES256": {jwa.RS256(), jwa.ES256()},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			st := newMemStorage()
			clock := keystest.NewClock(t0)
			first := mustSync(t, newManager(t, st, clock, keys.Options{Algorithm: tt.from, RetainFor: retainFor}))
			old := first.Signing()
			tok := mint(t, old, t0)

			// Reconfigured an hour later, without automatic rotation.
			clock.Set(t0.Add(time.Hour))
			m := newManager(t, st, clock, keys.Options{Algorithm: tt.to, RetainFor: retainFor})
			set := mustSync(t, m)
			if got := set.Keys(); len(got) != 2 || got[0].Algorithm != tt.to || !got[0].Activates.Equal(t0.Add(time.Hour+keys.DefaultPublishAhead)) {
				t.Fatalf("after the change Keys() = %+v, want a new %v key activating after the default publish ahead", got, tt.to)
			}
			if set.Signing().ID != old.ID {
				t.Errorf("the %v key signs before it was published ahead", tt.to)
			}

			clock.Set(t0.Add(time.Hour + keys.DefaultPublishAhead))
			set = mustSync(t, m)
			if k := set.Signing(); k.Algorithm != tt.to {
				t.Errorf("after publish ahead the signing key is %v, want %v", k.Algorithm, tt.to)
			}
			if err := verify(set, mint(t, set.Signing(), clock.Now()), clock.Now()); err != nil {
				t.Errorf("token of the new %v key: %v", tt.to, err)
			}
			if err := verify(set, tok, clock.Now()); err != nil {
				t.Errorf("token of the old %v key: %v", tt.from, err)
			}
		})
	}
}

func TestSync_AlgorithmChangeWaitsForTheKeyWaitingToSign(t *testing.T) {
	st := newMemStorage()
	clock := keystest.NewClock(t0)
	mustSync(t, newManager(t, st, clock, scheduled(jwa.ES256())))
	clock.Set(t0.Add(rotateEvery))
	waiting := mustSync(t, newManager(t, st, clock, scheduled(jwa.ES256()))).Keys()[0]

	// Reconfigured while an ES256 key waits: instances that have not
	// synced since will sign with it when its time comes, so it stays.
	m := newManager(t, st, clock, scheduled(jwa.EdDSA()))
	clock.Set(t0.Add(rotateEvery + 10*time.Minute))
	if got := mustSync(t, m).Keys(); len(got) != 2 || got[0].ID != waiting.ID {
		t.Fatalf("Keys() = %+v, want the waiting ES256 key first, unchanged", got)
	}

	// Once it signs, the EdDSA key is published ahead of it.
	clock.Set(waiting.Activates)
	set := mustSync(t, m)
	got := set.Keys()
	if len(got) != 3 || got[0].Algorithm != jwa.EdDSA() || got[1].ID != waiting.ID || set.Signing().ID != waiting.ID {
		t.Fatalf("Keys() = %+v, signing %s; want a new EdDSA key ahead of the signing ES256 key %s", got, set.Signing().ID, waiting.ID)
	}
	if !got[0].Activates.Equal(waiting.Activates.Add(publishAhead)) {
		t.Errorf("the EdDSA key activates at %v, want %v", got[0].Activates, waiting.Activates.Add(publishAhead))
	}
}

func TestRotate(t *testing.T) {
	type check func(t *testing.T, before, after *keys.Set, clock *keystest.Clock, m *keys.Manager)
	tests := map[string]struct {
		setup     func(t *testing.T, m *keys.Manager, clock *keystest.Clock) // after the first Sync
		immediate bool
		check     check
	}{
		"scheduled: the new key is published now and signs after PublishAhead": {
			immediate: false,
			check: func(t *testing.T, before, after *keys.Set, clock *keystest.Clock, m *keys.Manager) {
				now := clock.Now()
				if after.Signing().ID != before.Signing().ID || len(after.Keys()) != 2 {
					t.Fatalf("right after Rotate(false): signing %s, %d keys; want the old key and 2 keys", after.Signing().ID, len(after.Keys()))
				}
				newKey, old := after.Keys()[0], after.Keys()[1]
				if !newKey.Activates.Equal(now.Add(publishAhead)) || !old.Retires.Equal(newKey.Activates) || !old.Expires.Equal(newKey.Activates.Add(retainFor)) {
					t.Errorf("schedule %+v, want the new key to sign at %v and the old one to leave %v later", after.Keys(), now.Add(publishAhead), retainFor)
				}
				clock.Advance(publishAhead)
				if after.Signing().ID != newKey.ID {
					t.Errorf("after PublishAhead the new key does not sign")
				}
			},
		},
		"scheduled twice: the second call adds nothing": {
			setup: func(t *testing.T, m *keys.Manager, clock *keystest.Clock) {
				mustRotate(t, m, false)
				clock.Advance(time.Minute)
			},
			immediate: false,
			check: func(t *testing.T, before, after *keys.Set, clock *keystest.Clock, m *keys.Manager) {
				if !slices.Equal(jwksKids(t, after), jwksKids(t, before)) {
					t.Errorf("second Rotate(false) published %q, want still %q", jwksKids(t, after), jwksKids(t, before))
				}
			},
		},
		"immediate: the new key signs at once and the old one retires now": {
			immediate: true,
			check: func(t *testing.T, before, after *keys.Set, clock *keystest.Clock, m *keys.Manager) {
				now := clock.Now()
				oldID := before.Signing().ID
				if after.Signing().ID == oldID || len(after.Keys()) != 2 {
					t.Fatalf("right after Rotate(true): signing %s, %d keys; want a new key and 2 keys", after.Signing().ID, len(after.Keys()))
				}
				old := after.Keys()[1]
				if old.ID != oldID || !old.Retires.Equal(now) || !old.Expires.Equal(now.Add(retainFor)) {
					t.Errorf("old key %+v, want retired at %v and published until %v", old, now, now.Add(retainFor))
				}
				clock.Advance(retainFor)
				if set := mustSync(t, m); set.Lookup(oldID) != nil {
					t.Errorf("the old key is published after RetainFor")
				}
			},
		},
		"immediate while a key waits: the waiting key, which never signed, is dropped": {
			setup: func(t *testing.T, m *keys.Manager, clock *keystest.Clock) {
				mustRotate(t, m, false)
				clock.Advance(time.Minute)
			},
			immediate: true,
			check: func(t *testing.T, before, after *keys.Set, clock *keystest.Clock, m *keys.Manager) {
				waiting, signing := before.Keys()[0].ID, before.Keys()[1].ID
				got := after.Keys()
				if len(got) != 2 || got[0].ID == waiting || got[1].ID != signing || after.Signing().ID != got[0].ID {
					t.Errorf("Keys() = %+v, want a new signing key and the retired one, without the waiting key %s", got, waiting)
				}
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			st := newMemStorage()
			clock := keystest.NewClock(t0)
			m := newManager(t, st, clock, keys.Options{RetainFor: retainFor, PublishAhead: publishAhead}) // no automatic rotation
			mustSync(t, m)
			clock.Advance(2 * time.Hour)
			if tt.setup != nil {
				tt.setup(t, m, clock)
			}
			before := mustSync(t, m)
			after := mustRotate(t, m, tt.immediate)
			tt.check(t, before, after, clock, m)
		})
	}
}

func TestRotate_OnEmptyStorageCreatesTheFirstKey(t *testing.T) {
	for _, immediate := range []bool{false, true} {
		st := newMemStorage()
		m := newManager(t, st, keystest.NewClock(t0), keys.Options{RetainFor: retainFor})
		set := mustRotate(t, m, immediate)
		if len(set.Keys()) != 1 || set.Signing() == nil {
			t.Errorf("Rotate(%v) on empty storage: %+v, want one signing key", immediate, set.Keys())
		}
	}
}

func TestSync_ConcurrentInstancesAgreeOnTheKeys(t *testing.T) {
	tests := map[string]struct {
		alg jwa.SignatureAlgorithm
		at  time.Duration // when they sync, after a first start at t0 (0: they make the first start)
		op  func(m *keys.Manager) (*keys.Set, error)
	}{
		"first start":                           {jwa.ES256(), 0, func(m *keys.Manager) (*keys.Set, error) { return m.Sync(context.Background()) }},
		"rotation due":                          {jwa.ES256(), rotateEvery, func(m *keys.Manager) (*keys.Set, error) { return m.Sync(context.Background()) }},
		"rotation of slow-to-make RSA keys due": {jwa.RS256(), rotateEvery, func(m *keys.Manager) (*keys.Set, error) { return m.Sync(context.Background()) }},
		"scheduled rotation asked of every instance": {jwa.ES256(), time.Hour, func(m *keys.Manager) (*keys.Set, error) {
			return m.Rotate(context.Background(), false)
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			st := newMemStorage()
			clock := keystest.NewClock(t0)
			wantKeys := 1
			if tt.at > 0 {
				mustSync(t, newManager(t, st, clock, scheduled(tt.alg)))
				clock.Set(t0.Add(tt.at))
				wantKeys = 2
			}
			_, storesBefore := st.counts()

			const n = 4
			sets := make([]*keys.Set, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				m := newManager(t, st, clock, scheduled(tt.alg)) // one per instance
				wg.Go(func() { sets[i], errs[i] = tt.op(m) })
			}
			wg.Wait()

			for i, err := range errs {
				if err != nil {
					t.Fatalf("instance %d: %v", i, err)
				}
			}
			for i, set := range sets {
				if set.Signing().ID != sets[0].Signing().ID || string(set.JWKS()) != string(sets[0].JWKS()) {
					t.Fatalf("instance %d signs with %s and publishes %s; instance 0: %s and %s",
						i, set.Signing().ID, set.JWKS(), sets[0].Signing().ID, sets[0].JWKS())
				}
			}
			if got := len(sets[0].Keys()); got != wantKeys {
				t.Errorf("%d keys published, want %d", got, wantKeys)
			}
			if _, stores := st.counts(); stores-storesBefore != 1 {
				t.Errorf("%d writes to storage, want exactly 1", stores-storesBefore)
			}
		})
	}
}

func TestSync_StorageFailureLeavesThePreviousKeysUsable(t *testing.T) {
	errDisk := errors.New("disk on fire")
	tests := map[string]struct {
		breakStorage func(*memStorage)
		wantSet      bool // whether Sync still returns the keys in storage
	}{
		"store fails": {func(s *memStorage) { s.storeErr = errDisk }, true},
		"lock fails":  {func(s *memStorage) { s.lockErr = errDisk }, true},
		"load under the lock fails": {func(s *memStorage) {
			s.loadErr = func(call int) error {
				if call%2 == 0 { // every re-check after taking the lock
					return errDisk
				}
				return nil
			}
		}, true},
		"load fails": {func(s *memStorage) { s.loadErr = func(int) error { return errDisk } }, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			st := newMemStorage()
			clock := keystest.NewClock(t0)
			m := newManager(t, st, clock, scheduled(jwa.ES256()))
			first := mustSync(t, m)
			stored, _ := st.Storage.Load(context.Background(), keys.StorageKey)

			clock.Set(t0.Add(rotateEvery)) // a rotation is due
			st.heal()                      // Load calls count from here
			tt.breakStorage(st)
			set, err := m.Sync(context.Background())
			if !errors.Is(err, errDisk) {
				t.Fatalf("Sync error = %v, want the storage error", err)
			}
			if !tt.wantSet && set != nil {
				t.Errorf("Sync returned a set without loading one")
			}
			if tt.wantSet && (set == nil || set.Signing().ID != first.Signing().ID || len(set.Keys()) != 1) {
				t.Errorf("Sync returned %v, want the unchanged keys in storage", set)
			}
			if kept, _ := st.Storage.Load(context.Background(), keys.StorageKey); string(kept) != string(stored) {
				t.Errorf("storage changed despite the error")
			}
			if _, err := m.Rotate(context.Background(), true); err == nil {
				t.Errorf("Rotate succeeded on broken storage")
			}

			// Repaired, the next Sync does what was due.
			st.heal()
			set = mustSync(t, m)
			if len(set.Keys()) != 2 || set.Signing().ID != first.Signing().ID {
				t.Errorf("after repair: Keys() = %+v, want the old key signing and the next one published", set.Keys())
			}
		})
	}
}

func TestLoadOrCreate_NeverRotates(t *testing.T) {
	// LoadOrCreate runs on the real clock: this schedule started two
	// rotation periods ago, and its last Sync was one period ago.
	start := time.Now().Add(-2 * rotateEvery)
	st := newMemStorage()
	clock := keystest.NewClock(start)
	m := newManager(t, st, clock, scheduled(jwa.EdDSA()))
	first := mustSync(t, m).Signing()
	clock.Set(start.Add(rotateEvery))
	second := mustSync(t, m).Keys()[0]

	// Now the second key signs, the first one's retention has ended, and
	// a rotation is due: LoadOrCreate publishes what the schedule says,
	// rotates nothing and writes nothing.
	set := mustLoadOrCreate(t, st)
	if set.Signing().ID != second.ID || set.Signing().Algorithm != jwa.EdDSA() {
		t.Errorf("LoadOrCreate signs with %s (%v), want the second EdDSA key %s", set.Signing().ID, set.Signing().Algorithm, second.ID)
	}
	if got := jwksKids(t, set); !slices.Equal(got, []string{second.ID}) {
		t.Errorf("LoadOrCreate publishes %q, want only the second key (the first one %s has expired)", got, first.ID)
	}
	if _, stores := st.counts(); stores != 2 {
		t.Errorf("LoadOrCreate wrote to storage (%d writes in all, want 2)", stores)
	}
}

func TestSync_InstancesWithClocksApart(t *testing.T) {
	st := newMemStorage()
	ahead := keystest.NewClock(t0.Add(5 * time.Second))
	behind := keystest.NewClock(t0)
	first := mustSync(t, newManager(t, st, ahead, keys.Options{RetainFor: retainFor}))

	// For the instance behind, the first key starts in 5s: it signs with
	// it all the same.
	mb := newManager(t, st, behind, keys.Options{RetainFor: retainFor})
	set := mustSync(t, mb)
	if set.Signing() == nil || set.Signing().ID != first.Signing().ID {
		t.Fatalf("the instance behind signs with %v, want the only key %s", set.Signing(), first.Signing().ID)
	}

	// An immediate rotation there starts the new key no earlier than the
	// old one, so the stored schedule stays in order and readable.
	rotated := mustRotate(t, mb, true)
	got := rotated.Keys()
	if len(got) != 2 || got[0].Activates.Before(got[1].Activates) {
		t.Fatalf("Keys() = %+v, want a new key starting no earlier than the old one", got)
	}
	for name, clock := range map[string]*keystest.Clock{"ahead": ahead, "behind": behind} {
		set := mustSync(t, newManager(t, st, clock, keys.Options{RetainFor: retainFor}))
		if set.Signing().ID != got[0].ID {
			t.Errorf("instance %s signs with %s, want the new key %s", name, set.Signing().ID, got[0].ID)
		}
	}
}
