package keys_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"math/big"
	"slices"
	"sync"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// memStorage is keystest.Storage with counters and injected failures.
type memStorage struct {
	*keystest.Storage

	mu        sync.Mutex
	lockCalls int
	stores    int
	loads     int
	loadErr   func(call int) error // fails the call-th Load (1-based) if non-nil
	storeErr  error
	lockErr   error
}

func newMemStorage() *memStorage { return &memStorage{Storage: keystest.NewStorage()} }

func (s *memStorage) Load(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	s.loads++
	fail := s.loadErr
	n := s.loads
	s.mu.Unlock()
	if fail != nil {
		if err := fail(n); err != nil {
			return nil, err
		}
	}
	return s.Storage.Load(ctx, key)
}

func (s *memStorage) Store(ctx context.Context, key string, value []byte) error {
	s.mu.Lock()
	if s.storeErr != nil {
		s.mu.Unlock()
		return s.storeErr
	}
	s.stores++
	s.mu.Unlock()
	return s.Storage.Store(ctx, key, bytes.Clone(value))
}

func (s *memStorage) Lock(ctx context.Context, name string) error {
	s.mu.Lock()
	s.lockCalls++
	err := s.lockErr
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.Storage.Lock(ctx, name)
}

// heal ends the injected failures and resets the Load count.
func (s *memStorage) heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loadErr, s.storeErr, s.lockErr, s.loads = nil, nil, nil, 0
}

// reads returns the Load calls since the start or the last heal.
func (s *memStorage) reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads
}

// counts returns Lock and Store calls so far.
func (s *memStorage) counts() (locks, stores int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lockCalls, s.stores
}

func mustLoadOrCreate(t *testing.T, st keys.Storage) *keys.Set {
	t.Helper()
	set, err := keys.LoadOrCreate(context.Background(), st)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	return set
}

func TestLoadOrCreate_GeneratesOneES256KeyAndRestartKeepsIt(t *testing.T) {
	st := newMemStorage()
	first := mustLoadOrCreate(t, st)

	k := first.Signing()
	if k == nil || k.ID == "" {
		t.Fatalf("Signing() = %+v, want a key with a kid", k)
	}
	if k.Algorithm != jwa.ES256() {
		t.Errorf("Algorithm = %v, want ES256", k.Algorithm)
	}
	if ec, ok := k.Private.(jwk.ECDSAPrivateKey); !ok {
		t.Errorf("private key is a %T, want an EC key", k.Private)
	} else if crv, _ := ec.Crv(); crv != jwa.P256() {
		t.Errorf("private key is on %v, want P-256", crv)
	}
	if locks, stores := st.counts(); locks != 1 || stores != 1 {
		t.Errorf("first start: %d Lock and %d Store calls, want 1 and 1", locks, stores)
	}

	again := mustLoadOrCreate(t, st) // a restart
	if again.Signing().ID != k.ID {
		t.Errorf("after restart kid = %s, want %s", again.Signing().ID, k.ID)
	}
	if locks, stores := st.counts(); locks != 1 || stores != 1 {
		t.Errorf("after restart: %d Lock and %d Store calls in all, want still 1 and 1", locks, stores)
	}

	// The reloaded set verifies what the first one signed: same key
	// material, not only the same kid.
	sig, err := jws.Sign([]byte("payload"), jws.WithKey(k.Algorithm, k.Private))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(sig, jws.WithKey(jwa.ES256(), again.Lookup(k.ID).Public)); err != nil {
		t.Errorf("reloaded public key does not verify the original key's signature: %v", err)
	}
}

func TestLoadOrCreate_ConcurrentInstancesAgreeOnOneKey(t *testing.T) {
	st := newMemStorage()
	const n = 8
	kids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			set, err := keys.LoadOrCreate(context.Background(), st)
			errs[i] = err
			if err == nil {
				kids[i] = set.Signing().ID
			}
		})
	}
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	for _, kid := range kids {
		if kid != kids[0] {
			t.Fatalf("instances disagree on the kid: %q", kids)
		}
	}
	if _, stores := st.counts(); stores != 1 {
		t.Errorf("%d keys stored, want exactly 1", stores)
	}
}

func TestJWKS_PublishesOnlyPublicMembers(t *testing.T) {
	set := mustLoadOrCreate(t, newMemStorage())
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(set.JWKS(), &doc); err != nil {
		t.Fatalf("JWKS is not JSON: %v\n%s", err, set.JWKS())
	}
	if len(doc.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1: %s", len(doc.Keys), set.JWKS())
	}
	key := doc.Keys[0]
	if _, ok := key["d"]; ok {
		t.Fatalf("JWKS publishes the private key: %s", set.JWKS())
	}
	wantMembers := []string{"alg", "crv", "kid", "kty", "use", "x", "y"}
	if got := slices.Sorted(maps.Keys(key)); !slices.Equal(got, wantMembers) {
		t.Errorf("JWK members = %q, want %q", got, wantMembers)
	}
	want := map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": set.Signing().ID}
	for m, v := range want {
		if key[m] != v {
			t.Errorf("JWK %s = %v, want %q", m, key[m], v)
		}
	}
}

func TestLookup_ByKid(t *testing.T) {
	set := mustLoadOrCreate(t, newMemStorage())
	kid := set.Signing().ID
	if got := set.Lookup(kid); got != set.Signing() {
		t.Errorf("Lookup(%q) = %+v, want the signing key", kid, got)
	}
	for _, unknown := range []string{"", "unknown", kid + "x"} {
		if got := set.Lookup(unknown); got != nil {
			t.Errorf("Lookup(%q) = %+v, want nil", unknown, got)
		}
	}
}

// storedKey wraps one JWK, with alg set if given, in the storage format.
func storedKey(t *testing.T, raw any, alg ...jwa.SignatureAlgorithm) []byte {
	t.Helper()
	k, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(alg) > 0 {
		if err := k.Set(jwk.AlgorithmKey, alg[0]); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(`{"keys": [` + string(b) + `], "created": "2025-01-01T00:00:00Z"}`)
}

// rsaKeyFile writes k in the storage format by hand: jwx refuses to
// import RSA keys of fewer than 2048 bits, which is what some tests need.
func rsaKeyFile(k *rsa.PrivateKey, alg string) []byte {
	b := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.Bytes()) }
	jwk, _ := json.Marshal(map[string]string{
		"kty": "RSA", "alg": alg,
		"n": b(k.N), "e": b(big.NewInt(int64(k.E))), "d": b(k.D),
		"p": b(k.Primes[0]), "q": b(k.Primes[1]),
		"dp": b(k.Precomputed.Dp), "dq": b(k.Precomputed.Dq), "qi": b(k.Precomputed.Qinv),
	})
	return []byte(`{"keys": [` + string(jwk) + `], "created": "2025-01-01T00:00:00Z"}`)
}

func TestLoadOrCreate_RefusesCorruptKeysInsteadOfRegenerating(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)

	// A P-256 key whose "x" and "y" are another key's.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var mismatched map[string]any
	_ = json.Unmarshal(storedKey(t, p256, jwa.ES256()), &mismatched)
	otherJWK, _ := jwk.Import(&other.PublicKey)
	otherX, _ := otherJWK.(jwk.ECDSAPublicKey).X()
	otherY, _ := otherJWK.(jwk.ECDSAPublicKey).Y()
	mismatched["keys"].([]any)[0].(map[string]any)["x"] = base64.RawURLEncoding.EncodeToString(otherX)
	mismatched["keys"].([]any)[0].(map[string]any)["y"] = base64.RawURLEncoding.EncodeToString(otherY)
	mismatchedData, _ := json.Marshal(mismatched)

	tests := map[string][]byte{
		"not JSON":                    []byte(`{"keys": [`),
		"empty keys list":             []byte(`{"keys": []}`),
		"no keys member":              []byte(`{}`),
		"key that is not a JWK":       []byte(`{"keys": [{"kty": "EC"}]}`),
		"public-only key":             storedKey(t, &p256.PublicKey, jwa.ES256()),
		"key without alg":             storedKey(t, p256),
		"HS256 key":                   storedKey(t, []byte("0123456789abcdef0123456789abcdef"), jwa.HS256()),
		"EC key with alg none":        storedKey(t, p256, jwa.NoSignature()),
		"EC key with alg ES384":       storedKey(t, p384, jwa.ES384()),
		"P-384 key labelled ES256":    storedKey(t, p384, jwa.ES256()),
		"Ed25519 key labelled ES256":  storedKey(t, ed, jwa.ES256()),
		"P-256 key labelled EdDSA":    storedKey(t, p256, jwa.EdDSA()),
		"RSA key labelled ES256":      rsaKeyFile(rsa1024, "ES256"),
		"Ed25519 key labelled PS256":  storedKey(t, ed, jwa.PS256()),
		"RSA 1024 key labelled RS256": rsaKeyFile(rsa1024, "RS256"),
		"RSA 1024 key labelled PS256": rsaKeyFile(rsa1024, "PS256"),
		"Ed25519 key with the RFC 9864 alg Ed25519, which is not supported": storedKey(t, ed, jwa.EdDSAEd25519()),
		"EC key whose public half is another key's":                         mismatchedData,
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			st := newMemStorage()
			if err := st.Storage.Store(context.Background(), keys.StorageKey, data); err != nil {
				t.Fatal(err)
			}
			set, err := keys.LoadOrCreate(context.Background(), st)
			if err == nil {
				t.Fatalf("keys.LoadOrCreate = %+v, want error", set.Signing())
			}
			t.Log(err)
			m := newManager(t, st, keystest.NewClock(t0), scheduled(jwa.ES256()))
			if set, err := m.Sync(context.Background()); err == nil || set != nil {
				t.Errorf("Sync = %v, %v; want an error", set, err)
			}
			kept, _ := st.Storage.Load(context.Background(), keys.StorageKey)
			if _, stores := st.counts(); stores != 0 || !bytes.Equal(kept, data) {
				t.Errorf("stored keys were replaced (%d Store calls)", stores)
			}
		})
	}
}

func TestLoadOrCreate_ReturnsStorageErrors(t *testing.T) {
	errDisk := errors.New("disk on fire")
	tests := map[string]func(*memStorage){
		"load fails": func(s *memStorage) { s.loadErr = func(int) error { return errDisk } },
		"load fails under the lock": func(s *memStorage) {
			s.loadErr = func(call int) error {
				if call == 2 { // the re-check after taking the lock
					return errDisk
				}
				return nil
			}
		},
		"store fails": func(s *memStorage) { s.storeErr = errDisk },
		"lock fails":  func(s *memStorage) { s.lockErr = errDisk },
	}
	for name, breakStorage := range tests {
		t.Run(name, func(t *testing.T) {
			st := newMemStorage()
			breakStorage(st)
			set, err := keys.LoadOrCreate(context.Background(), st)
			if !errors.Is(err, errDisk) || set != nil {
				t.Errorf("keys.LoadOrCreate = %v, %v; want nil and the storage error", set, err)
			}
			if _, stores := st.counts(); stores != 0 {
				t.Errorf("%d keys stored despite the error", stores)
			}
		})
	}
}
