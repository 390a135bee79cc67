// Package keys owns the signing keys of the token endpoint: it generates
// them on first start, keeps them in shared storage so that every instance
// and every restart signs and verifies with the same keys, and publishes
// their public halves as a JWK Set (RFC 7517).
package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Storage is the part of Caddy's certmagic.Storage that keys need. Load
// must return an error wrapping fs.ErrNotExist for a missing key. Lock and
// Unlock serialize first-start generation across instances sharing the
// storage.
type Storage interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

// StorageKey is where the key set lives in storage. The value holds
// private keys; storage is trusted like the TLS private keys Caddy keeps
// beside it.
const StorageKey = "oauthgate/signing_keys.json"

const lockName = "oauthgate_signing_keys"

// Key is one signing key.
type Key struct {
	// ID is the RFC 7638 thumbprint of the public key, used as "kid".
	ID string
	// Algorithm is the only algorithm this key signs and verifies with.
	Algorithm jwa.SignatureAlgorithm
	// Private signs; Public verifies and is published.
	Private jwk.Key
	Public  jwk.Key
}

// Set is the signing key and every key whose signatures are still
// accepted. It is immutable.
type Set struct {
	signing *Key
	byID    map[string]*Key
	jwks    []byte
}

// Signing is the key new tokens are signed with.
func (s *Set) Signing() *Key { return s.signing }

// Lookup returns the verification key with the given kid, or nil.
func (s *Set) Lookup(kid string) *Key { return s.byID[kid] }

// JWKS is the serialized public JWK Set.
func (s *Set) JWKS() []byte { return s.jwks }

// stored is the storage form: private JWKs, the first one signs.
type stored struct {
	Keys    []json.RawMessage `json:"keys"`
	Created time.Time         `json:"created"`
}

// LoadOrCreate returns the key set in storage, generating and storing a
// new ES256 key if there is none. Instances sharing storage agree on the
// keys: generation happens under a storage lock and re-checks storage
// after taking it.
func LoadOrCreate(ctx context.Context, st Storage) (*Set, error) {
	if set, err := load(ctx, st); !errors.Is(err, fs.ErrNotExist) {
		return set, err
	}
	if err := st.Lock(ctx, lockName); err != nil {
		return nil, fmt.Errorf("locking signing keys in storage: %w", err)
	}
	defer func() { _ = st.Unlock(context.WithoutCancel(ctx), lockName) }()

	set, err := load(ctx, st)
	if !errors.Is(err, fs.ErrNotExist) {
		return set, err // another instance created it meanwhile, or a real error
	}
	k, err := generateES256()
	if err != nil {
		return nil, err
	}
	priv, err := json.Marshal(k.Private)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(stored{Keys: []json.RawMessage{priv}, Created: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	if err := st.Store(ctx, StorageKey, data); err != nil {
		return nil, fmt.Errorf("storing new signing key: %w", err)
	}
	return newSet([]*Key{k})
}

func load(ctx context.Context, st Storage) (*Set, error) {
	data, err := st.Load(ctx, StorageKey)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("loading signing keys from storage: %w", err)
	}
	var s stored
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("signing keys in storage (%s): %w", StorageKey, err)
	}
	if len(s.Keys) == 0 {
		return nil, fmt.Errorf("signing keys in storage (%s): no keys", StorageKey)
	}
	ks := make([]*Key, 0, len(s.Keys))
	for i, raw := range s.Keys {
		k, err := parsePrivate(raw)
		if err != nil {
			return nil, fmt.Errorf("signing keys in storage (%s), key %d: %w", StorageKey, i+1, err)
		}
		ks = append(ks, k)
	}
	return newSet(ks)
}

func generateES256() (*Key, error) {
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		return nil, err
	}
	if err := priv.Set(jwk.AlgorithmKey, jwa.ES256()); err != nil {
		return nil, err
	}
	return fromPrivate(priv)
}

func parsePrivate(raw []byte) (*Key, error) {
	priv, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, err
	}
	return fromPrivate(priv)
}

// fromPrivate derives the public key and kid, and pins the algorithm the
// key was made for: verification uses this algorithm, never the one a
// token's header names.
func fromPrivate(priv jwk.Key) (*Key, error) {
	algv, ok := priv.Algorithm()
	if !ok {
		return nil, errors.New(`key has no "alg"`)
	}
	alg, ok := jwa.LookupSignatureAlgorithm(algv.String())
	if !ok || !allowed(alg) {
		return nil, fmt.Errorf("algorithm %q is not supported for signing keys", algv)
	}
	if isPrivate, err := jwk.IsPrivateKey(priv); err != nil || !isPrivate {
		return nil, errors.New("not a private key")
	}
	// ES256 is ECDSA on P-256 (RFC 7518 §3.4). jwx would sign "ES256"
	// with a key on another curve, and other verifiers would reject it.
	if ec, ok := priv.(jwk.ECDSAPrivateKey); !ok {
		return nil, fmt.Errorf("%s needs an EC key, not %v", alg, priv.KeyType())
	} else if crv, _ := ec.Crv(); crv != jwa.P256() {
		return nil, fmt.Errorf("%s needs curve P-256, not %v", alg, crv)
	}
	pub, err := priv.PublicKey()
	if err != nil {
		return nil, err
	}
	kid, err := thumbprint(pub)
	if err != nil {
		return nil, err
	}
	for _, k := range []jwk.Key{priv, pub} {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			return nil, err
		}
		if err := k.Set(jwk.KeyUsageKey, jwk.ForSignature); err != nil {
			return nil, err
		}
		if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
			return nil, err
		}
	}
	return &Key{ID: kid, Algorithm: alg, Private: priv, Public: pub}, nil
}

// allowed lists the algorithms signing keys may have.
func thumbprint(k jwk.Key) (string, error) {
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

func allowed(alg jwa.SignatureAlgorithm) bool {
	return alg == jwa.ES256()
}

func newSet(ks []*Key) (*Set, error) {
	pub := jwk.NewSet()
	byID := make(map[string]*Key, len(ks))
	for _, k := range ks {
		if byID[k.ID] != nil {
			return nil, fmt.Errorf("duplicate key %s", k.ID)
		}
		byID[k.ID] = k
		if err := pub.AddKey(k.Public); err != nil {
			return nil, err
		}
	}
	jwks, err := json.Marshal(pub)
	if err != nil {
		return nil, err
	}
	return &Set{signing: ks[0], byID: byID, jwks: jwks}, nil
}
