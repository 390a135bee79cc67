package clients

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Secret is one stored client secret.
//
// Hash formats:
//
//   - "sha256:<64 hex digits>": the SHA-256 digest of a generated secret.
//     A plain digest is enough for generated secrets: they carry 256 bits
//     of randomness, so there is nothing to brute-force, and checking them
//     costs microseconds.
//   - "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>" (the PHC
//     string format; salt and key in unpadded standard base64): a secret
//     chosen by a person, who may choose a guessable one, so a stolen file
//     must be expensive to brute-force. The parameters are read from the
//     string, within bounds (see parseArgon2id), so that an edited file
//     cannot make one verification take minutes or gigabytes.
//
// A file written before secrets had IDs and dates (a secret with only
// "hash") still loads.
type Secret struct {
	// ID names the secret within its client, for `caddy oauth client
	// retire-secret`: 8 hex digits when generated.
	ID string `json:"id,omitempty"`
	// Hash is the stored form of the secret; see above.
	Hash string `json:"hash"`
	// Created is when the secret was added (RFC 3339), for the operator.
	Created string `json:"created,omitempty"`
	// Expires, when set (RFC 3339), is the instant from which the secret
	// no longer authenticates.
	Expires string `json:"expires,omitempty"`

	kind    hashKind
	digest  []byte // sha256: the digest; argon2id: the derived key
	salt    []byte // argon2id only
	params  argon2Params
	expires time.Time // zero: never
}

type hashKind uint8

const (
	kindSHA256 hashKind = iota + 1
	kindArgon2id
)

const sha256Prefix = "sha256:"

// Algorithm names the hash of a parsed secret: "sha256" or "argon2id".
func (s *Secret) Algorithm() string {
	switch s.kind {
	case kindSHA256:
		return "sha256"
	case kindArgon2id:
		return "argon2id"
	}
	return ""
}

// Expired reports whether the secret no longer authenticates at now.
func (s *Secret) Expired(now time.Time) bool {
	return !s.expires.IsZero() && !now.Before(s.expires)
}

func (s *Secret) parse() error {
	if s.ID != "" && !validID(s.ID) {
		return fmt.Errorf("id %q: must be 1 to 64 characters of A-Z a-z 0-9 - _ .", s.ID)
	}
	if s.Created != "" {
		if _, err := time.Parse(time.RFC3339, s.Created); err != nil {
			return fmt.Errorf("created: want an RFC 3339 time: %w", err)
		}
	}
	s.expires = time.Time{}
	if s.Expires != "" {
		t, err := time.Parse(time.RFC3339, s.Expires)
		if err != nil {
			return fmt.Errorf("expires: want an RFC 3339 time: %w", err)
		}
		s.expires = t
	}
	switch {
	case strings.HasPrefix(s.Hash, sha256Prefix):
		d, err := hex.DecodeString(s.Hash[len(sha256Prefix):])
		if err != nil || len(d) != sha256.Size {
			return fmt.Errorf("hash: want %q followed by 64 hex digits", sha256Prefix)
		}
		s.kind, s.digest, s.salt, s.params = kindSHA256, d, nil, argon2Params{}
		return nil
	case strings.HasPrefix(s.Hash, argon2Prefix):
		p, salt, key, err := parseArgon2id(s.Hash)
		if err != nil {
			return fmt.Errorf("hash: %w", err)
		}
		s.kind, s.digest, s.salt, s.params = kindArgon2id, key, salt, p
		return nil
	}
	return fmt.Errorf("hash: unknown format (want %q followed by 64 hex digits, or an %q PHC string)", sha256Prefix, argon2Prefix)
}

// matchesDigest compares a presented secret's SHA-256 digest with a
// sha256 secret, in constant time.
func (s *Secret) matchesDigest(sum []byte) bool {
	return subtle.ConstantTimeCompare(sum, s.digest) == 1
}

// matchesSlow derives the argon2id key of a presented secret with the
// stored salt and parameters and compares it in constant time: one
// argon2id computation.
func (s *Secret) matchesSlow(secret string) bool {
	slowSlots <- struct{}{}
	defer func() { <-slowSlots }()
	key := argon2IDKey([]byte(secret), s.salt, s.params.time, s.params.memory, s.params.threads, uint32(len(s.digest)))
	return subtle.ConstantTimeCompare(key, s.digest) == 1
}

// slowSlots bounds concurrent argon2id computations to one per CPU: each
// takes its memory parameter (19 MiB by default), so unbounded parallel
// failures could exhaust memory; queued requests hold none.
var slowSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// argon2IDKey is argon2.IDKey; tests replace it to count computations.
var argon2IDKey = argon2.IDKey

// secretBytes is the randomness of a generated secret: 256 bits.
const secretBytes = 32

// NewSecret returns a fresh secret and its stored form. The secret is
// base64url without padding: 43 characters, all URL-unreserved (RFC 3986
// §2.3), so it survives Basic auth, form encoding and shells unchanged.
// The stored form is its SHA-256 digest, with a new ID and the current
// time as Created.
func NewSecret() (secret string, stored Secret) {
	var b [secretBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	secret = base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(secret))
	stored = Secret{
		ID:      newSecretID(),
		Hash:    sha256Prefix + hex.EncodeToString(sum[:]),
		Created: time.Now().UTC().Format(time.RFC3339),
		kind:    kindSHA256,
		digest:  sum[:],
	}
	return secret, stored
}

// Bounds on a secret chosen by a person.
const (
	// MinChosenSecretLen is the fewest characters a chosen secret may
	// have: argon2id slows guessing down, it cannot make "password" safe.
	MinChosenSecretLen = 16
	// MaxSecretLen is the most bytes of any secret, chosen or presented;
	// it bounds the work done on a presented secret.
	MaxSecretLen = 512
)

// CheckChosenSecret reports whether secret is acceptable as a secret chosen
// by a person: valid UTF-8, at least MinChosenSecretLen characters, at most
// MaxSecretLen bytes.
func CheckChosenSecret(secret string) error {
	switch n := utf8.RuneCountInString(secret); {
	case !utf8.ValidString(secret):
		return errors.New("the secret is not valid UTF-8 text")
	case n < MinChosenSecretLen:
		return fmt.Errorf("the secret has %d characters; a secret chosen by a person needs at least %d", n, MinChosenSecretLen)
	case len(secret) > MaxSecretLen:
		return fmt.Errorf("the secret has %d bytes; the most allowed is %d", len(secret), MaxSecretLen)
	}
	return nil
}

// HashChosenSecret returns the stored form of a secret chosen by a person:
// argon2id with DefaultArgon2 parameters and a fresh 128-bit salt, with a
// new ID and the current time as Created. The secret must pass
// CheckChosenSecret.
func HashChosenSecret(secret string) (Secret, error) {
	if err := CheckChosenSecret(secret); err != nil {
		return Secret{}, err
	}
	s := Secret{
		ID:      newSecretID(),
		Hash:    hashArgon2id(secret, defaultArgon2),
		Created: time.Now().UTC().Format(time.RFC3339),
	}
	if err := s.parse(); err != nil {
		return Secret{}, err // cannot happen: defaultArgon2 is within bounds
	}
	return s, nil
}

// newSecretID returns 32 random bits in hex: short enough to type, and
// unique within a client of at most MaxSecretsPerClient secrets (callers
// still check; see Client.AddSecret).
func newSecretID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ---- argon2id ----

// argon2Params are the argon2id cost parameters and sizes of one hash.
type argon2Params struct {
	memory  uint32 // KiB
	time    uint32 // passes
	threads uint8  // lanes
	saltLen int
	keyLen  int
}

// defaultArgon2 follows the OWASP Password Storage Cheat Sheet's first
// argon2id configuration (19 MiB, 2 passes, 1 lane): about 20-40 ms on a
// server core. Salt 16 bytes and key 32 bytes, as RFC 9106 recommends.
var defaultArgon2 = argon2Params{memory: 19456, time: 2, threads: 1, saltLen: 16, keyLen: 32}

// Bounds on the parameters read from a file. The upper ones cap what an
// edited file can make one verification cost (64 MiB, ten passes: well
// under a second); the lower ones are argon2's own minimums and RFC 9106's
// smallest sensible sizes.
const (
	maxArgon2Memory  = 64 * 1024 // KiB
	maxArgon2Time    = 10
	maxArgon2Threads = 16
	minArgon2Salt    = 8
	maxArgon2Salt    = 64
	minArgon2Key     = 16
	maxArgon2Key     = 64
)

const argon2Prefix = "$argon2id$"

// hashArgon2id returns the PHC string of secret under p, with a fresh salt.
func hashArgon2id(secret string, p argon2Params) string {
	salt := make([]byte, p.saltLen)
	_, _ = rand.Read(salt)
	key := argon2IDKey([]byte(secret), salt, p.time, p.memory, p.threads, uint32(p.keyLen))
	return formatArgon2id(p, salt, key)
}

func formatArgon2id(p argon2Params, salt, key []byte) string {
	return fmt.Sprintf("%sv=%d$m=%d,t=%d,p=%d$%s$%s", argon2Prefix, argon2.Version,
		p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// parseArgon2id parses "$argon2id$v=19$m=<KiB>,t=<n>,p=<n>$<salt>$<key>".
// Only the canonical form this package writes is accepted (no leading
// zeros, no padding, parameters in this order), and every parameter must
// be within bounds.
func parseArgon2id(h string) (p argon2Params, salt, key []byte, err error) {
	const want = `want "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>"`
	parts := strings.Split(h, "$")
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, key
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("argon2id: " + want)
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("argon2id: version %q: only v=%d is supported", parts[2], argon2.Version)
	}
	kv := strings.Split(parts[3], ",")
	if len(kv) != 3 {
		return p, nil, nil, errors.New("argon2id: " + want)
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(kv[i], name+"=")
		if !ok {
			return p, nil, nil, errors.New("argon2id: " + want)
		}
		n, perr := strconv.ParseUint(v, 10, 32)
		if perr != nil {
			return p, nil, nil, fmt.Errorf("argon2id: %s=%q: not a number up to 2^32-1", name, v)
		}
		vals[i] = n
	}
	m, t, par := vals[0], vals[1], vals[2]
	switch {
	case par < 1 || par > maxArgon2Threads:
		return p, nil, nil, fmt.Errorf("argon2id: p=%d: want 1 to %d", par, maxArgon2Threads)
	case t < 1 || t > maxArgon2Time:
		return p, nil, nil, fmt.Errorf("argon2id: t=%d: want 1 to %d", t, maxArgon2Time)
	case m < 8*par || m > maxArgon2Memory:
		return p, nil, nil, fmt.Errorf("argon2id: m=%d: want %d (8 per lane) to %d KiB", m, 8*par, maxArgon2Memory)
	}
	salt, err1 := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	key, err2 := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	switch {
	case err1 != nil || len(salt) < minArgon2Salt || len(salt) > maxArgon2Salt:
		return p, nil, nil, fmt.Errorf("argon2id: salt: want %d to %d bytes in unpadded base64", minArgon2Salt, maxArgon2Salt)
	case err2 != nil || len(key) < minArgon2Key || len(key) > maxArgon2Key:
		return p, nil, nil, fmt.Errorf("argon2id: key: want %d to %d bytes in unpadded base64", minArgon2Key, maxArgon2Key)
	}
	p = argon2Params{memory: uint32(m), time: uint32(t), threads: uint8(par), saltLen: len(salt), keyLen: len(key)}
	if formatArgon2id(p, salt, key) != h {
		return argon2Params{}, nil, nil, errors.New("argon2id: not in canonical form (" + want[5:] + ", no leading zeros)")
	}
	return p, salt, key, nil
}

// cost orders parameter sets by the work one verification takes.
func (p argon2Params) cost() uint64 {
	return uint64(p.memory)*uint64(p.time)<<8 | uint64(p.threads)
}
