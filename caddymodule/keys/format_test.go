package keys_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
)

// rotatedFile returns the stored key set after one scheduled rotation:
// a waiting key and the signing key, in the current format.
func rotatedFile(t *testing.T) map[string]any {
	t.Helper()
	st := newMemStorage()
	clock := keystest.NewClock(t0)
	m := newManager(t, st, clock, scheduled(jwa.ES256()))
	mustSync(t, m)
	clock.Set(t0.Add(rotateEvery))
	mustSync(t, m)
	data, err := st.Storage.Load(context.Background(), keys.StorageKey)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func meta(doc map[string]any, i int) map[string]any {
	return doc["meta"].([]any)[i].(map[string]any)
}

func TestSync_WritesTheCurrentFormat(t *testing.T) {
	doc := rotatedFile(t)
	if doc["version"] != 2.0 {
		t.Errorf("version = %v, want 2", doc["version"])
	}
	ks, ms := doc["keys"].([]any), doc["meta"].([]any)
	if len(ks) != 2 || len(ms) != 2 {
		t.Fatalf("%d keys and %d meta entries, want 2 and 2", len(ks), len(ms))
	}
	for i := range 2 {
		k := ks[i].(map[string]any)
		if k["kid"] != meta(doc, i)["kid"] || k["d"] == nil {
			t.Errorf("key %d: private JWK %v with metadata %v, want a private key with its own kid", i+1, k["kid"], meta(doc, i))
		}
	}
	newest, signing := meta(doc, 0), meta(doc, 1)
	want := map[string]string{
		"newest created":    t0.Add(rotateEvery).Format(time.RFC3339),
		"newest activates":  t0.Add(rotateEvery + publishAhead).Format(time.RFC3339),
		"signing activates": t0.Format(time.RFC3339),
		"signing retires":   t0.Add(rotateEvery + publishAhead).Format(time.RFC3339),
		"signing expires":   t0.Add(rotateEvery + publishAhead + retainFor).Format(time.RFC3339),
	}
	got := map[string]any{
		"newest created": newest["created"], "newest activates": newest["activates"],
		"signing activates": signing["activates"], "signing retires": signing["retires"], "signing expires": signing["expires"],
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %v, want %s", name, got[name], w)
		}
	}
	if _, ok := newest["retires"]; ok {
		t.Errorf("the newest key has a retirement: %v", newest)
	}
}

func TestSync_RefusesCorruptMetadata(t *testing.T) {
	tests := map[string]func(doc map[string]any){
		"metadata of another key": func(d map[string]any) { meta(d, 0)["kid"] = meta(d, 1)["kid"] },
		"fewer metadata entries than keys": func(d map[string]any) {
			d["meta"] = d["meta"].([]any)[:1]
		},
		"metadata without a format version": func(d map[string]any) { delete(d, "version") },
		"a format version from the future":  func(d map[string]any) { d["version"] = 3 },
		"keys out of order": func(d map[string]any) {
			k, m := d["keys"].([]any), d["meta"].([]any)
			k[0], k[1] = k[1], k[0]
			m[0], m[1] = m[1], m[0]
			meta(d, 0)["retires"], meta(d, 1)["retires"] = nil, meta(d, 0)["retires"]
			meta(d, 0)["expires"], meta(d, 1)["expires"] = nil, meta(d, 0)["expires"]
			delete(meta(d, 0), "retires")
			delete(meta(d, 0), "expires")
		},
		"the newest key retired":                 func(d map[string]any) { meta(d, 0)["retires"] = meta(d, 0)["activates"] },
		"an older key without retirement":        func(d map[string]any) { delete(meta(d, 1), "retires") },
		"an older key without an end of publish": func(d map[string]any) { delete(meta(d, 1), "expires") },
		"a key that retires before it signs": func(d map[string]any) {
			meta(d, 1)["retires"] = t0.Add(-time.Hour).Format(time.RFC3339)
		},
		"a key unpublished before it retires": func(d map[string]any) {
			meta(d, 1)["expires"] = t0.Add(time.Hour).Format(time.RFC3339)
		},
		"a key that signs before it was made": func(d map[string]any) {
			meta(d, 0)["created"] = t0.Add(100 * time.Hour).Format(time.RFC3339)
		},
		"a time that is not a time": func(d map[string]any) { meta(d, 0)["activates"] = "tomorrow" },
		"the same key twice": func(d map[string]any) {
			d["keys"].([]any)[1] = d["keys"].([]any)[0]
			d["meta"].([]any)[1] = d["meta"].([]any)[0]
		},
		"metadata that is not a list": func(d map[string]any) { d["meta"] = map[string]any{} },
	}
	for name, corrupt := range tests {
		t.Run(name, func(t *testing.T) {
			doc := rotatedFile(t)
			corrupt(doc)
			data, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			st := newMemStorage()
			if err := st.Storage.Store(context.Background(), keys.StorageKey, data); err != nil {
				t.Fatal(err)
			}
			clock := keystest.NewClock(t0.Add(rotateEvery + time.Minute))
			set, err := newManager(t, st, clock, scheduled(jwa.ES256())).Sync(context.Background())
			if err == nil || set != nil {
				t.Fatalf("Sync = %v, %v; want an error", set, err)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), keys.StorageKey) {
				t.Errorf("error %q does not say where the keys are", err)
			}
			if _, err := keys.LoadOrCreate(context.Background(), st); err == nil {
				t.Errorf("LoadOrCreate accepts it")
			}
			kept, _ := st.Storage.Load(context.Background(), keys.StorageKey)
			if _, stores := st.counts(); stores != 0 || !bytes.Equal(kept, data) {
				t.Errorf("the stored keys were replaced (%d Store calls)", stores)
			}
		})
	}
}

// firstFormat returns keys in the storage format before rotation: private
// JWKs, the first one signing, and the set's creation time.
func firstFormat(t *testing.T, created string, raws ...any) []byte {
	t.Helper()
	var ks []json.RawMessage
	for _, raw := range raws {
		k, err := jwk.Import(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Set(jwk.AlgorithmKey, jwa.ES256()); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		ks = append(ks, b)
	}
	data, err := json.Marshal(map[string]any{"keys": ks, "created": created})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSync_ReadsTheFirstFormat(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	kid := func(k *ecdsa.PrivateKey) string {
		j, err := jwk.Import(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		tp, err := j.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(tp)
	}
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

	tests := map[string]struct {
		data      []byte
		opts      keys.Options
		wantStore bool     // whether the first Sync writes (in the current format)
		published []string // after the first Sync, newest first
		later     []string // published RetainFor later
	}{
		"one key, nothing due: it signs, storage is left alone": {
			data: firstFormat(t, "2025-01-01T00:00:00Z", k1), opts: keys.Options{RetainFor: retainFor},
			published: []string{kid(k1)}, later: []string{kid(k1)},
		},
		"one key older than RotateEvery: it rotates": {
			data: firstFormat(t, "2025-01-01T00:00:00Z", k1), opts: scheduled(jwa.ES256()), wantStore: true,
			published: []string{"new", kid(k1)}, later: []string{"new"},
		},
		"two keys: the first signs, the second stays published for RetainFor": {
			data: firstFormat(t, "2025-01-01T00:00:00Z", k1, k2), opts: keys.Options{RetainFor: retainFor}, wantStore: true,
			published: []string{kid(k1), kid(k2)}, later: []string{kid(k1)},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			st := newMemStorage()
			if err := st.Storage.Store(context.Background(), keys.StorageKey, tt.data); err != nil {
				t.Fatal(err)
			}
			old := mustLoadOrCreate(t, st)
			if old.Signing().ID != kid(k1) || !old.Keys()[0].Created.Equal(created) {
				t.Fatalf("LoadOrCreate: signing %s created %v, want the first key, created %v", old.Signing().ID, old.Keys()[0].Created, created)
			}

			clock := keystest.NewClock(t0)
			m := newManager(t, st, clock, tt.opts)
			set := mustSync(t, m)
			if set.Signing().ID != kid(k1) {
				t.Errorf("signing %s, want the first key %s", set.Signing().ID, kid(k1))
			}
			if got := namesOrNew(jwksKids(t, set), kid(k1), kid(k2)); !slices.Equal(got, tt.published) {
				t.Errorf("published %q, want %q", got, tt.published)
			}
			if _, stores := st.counts(); (stores > 0) != tt.wantStore {
				t.Errorf("%d Store calls, want a write: %v", stores, tt.wantStore)
			}
			again := mustSync(t, m)
			if _, stores := st.counts(); stores > 1 {
				t.Errorf("a second Sync wrote again (%d Store calls)", stores)
			}
			if !slices.Equal(jwksKids(t, again), jwksKids(t, set)) {
				t.Errorf("a second Sync publishes %q, the first %q", jwksKids(t, again), jwksKids(t, set))
			}

			clock.Set(t0.Add(publishAhead + retainFor))
			if got := namesOrNew(jwksKids(t, mustSync(t, m)), kid(k1), kid(k2)); !slices.Equal(got, tt.later) {
				t.Errorf("RetainFor later published %q, want %q", got, tt.later)
			}
		})
	}
}

// namesOrNew returns kids, with every kid not in known replaced by "new".
func namesOrNew(kids []string, known ...string) []string {
	out := make([]string, len(kids))
	for i, k := range kids {
		out[i] = "new"
		if slices.Contains(known, k) {
			out[i] = k
		}
	}
	return out
}
