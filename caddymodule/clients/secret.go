package clients

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Secret is one stored client secret.
//
// Hash format: "sha256:<64 hex digits>", the SHA-256 digest of a generated
// secret. A plain digest is enough for generated secrets: they carry 256
// bits of randomness, so there is nothing to brute-force, and checking them
// costs microseconds. Secrets chosen by people need a slow hash; that
// format is added together with the command that accepts such secrets.
type Secret struct {
	Hash string `json:"hash"`

	digest []byte
}

const sha256Prefix = "sha256:"

func (s *Secret) parse() error {
	hexDigest, ok := strings.CutPrefix(s.Hash, sha256Prefix)
	if !ok {
		return fmt.Errorf("hash: unknown format (want %q followed by 64 hex digits)", sha256Prefix)
	}
	d, err := hex.DecodeString(hexDigest)
	if err != nil || len(d) != sha256.Size {
		return fmt.Errorf("hash: want %q followed by 64 hex digits", sha256Prefix)
	}
	s.digest = d
	return nil
}

func (s *Secret) matches(secret string) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], s.digest) == 1
}

// secretBytes is the randomness of a generated secret: 256 bits.
const secretBytes = 32

// NewSecret returns a fresh secret and its stored form. The secret is
// base64url without padding: 43 characters, all URL-unreserved (RFC 3986
// §2.3), so it survives Basic auth, form encoding and shells unchanged.
func NewSecret() (secret string, stored Secret) {
	var b [secretBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	secret = base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(secret))
	stored = Secret{Hash: sha256Prefix + hex.EncodeToString(sum[:]), digest: sum[:]}
	return secret, stored
}

// ErrAuthentication is the one error for an unknown client, a wrong secret
// and a disabled client, so that callers cannot tell them apart by
// accident.
var ErrAuthentication = errors.New("client authentication failed")

// maxSecretLen bounds the work done on a presented secret.
const maxSecretLen = 512

// dummy is compared against when the client is unknown, so that an
// unknown ID costs the same as a wrong secret.
var dummy = func() Secret { _, s := NewSecret(); return s }()

// Registry authenticates clients. It is immutable once built; a changed
// file is a new Registry.
type Registry struct {
	byID map[string]*Client
}

// NewRegistry indexes a validated file.
func NewRegistry(f *File) *Registry {
	r := &Registry{byID: make(map[string]*Client, len(f.Clients))}
	for i := range f.Clients {
		r.byID[f.Clients[i].ID] = &f.Clients[i]
	}
	return r
}

// Authenticate returns the client if secret is one of its current secrets
// and the client is enabled. Every failure is ErrAuthentication, and each
// costs the same comparisons whether or not the client exists.
func (r *Registry) Authenticate(id, secret string) (*Client, error) {
	if len(secret) > maxSecretLen {
		return nil, ErrAuthentication
	}
	c := r.byID[id]
	if c == nil {
		dummy.matches(secret)
		return nil, ErrAuthentication
	}
	ok := false
	for i := range c.Secrets {
		// No early exit: every secret of the client is compared.
		if c.Secrets[i].matches(secret) {
			ok = true
		}
	}
	if !ok || c.Disabled {
		return nil, ErrAuthentication
	}
	return c, nil
}

// Len is the number of registered clients.
func (r *Registry) Len() int { return len(r.byID) }
