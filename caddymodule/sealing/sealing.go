// Package sealing encrypts the secrets oauthgate keeps in shared state
// (the signing keys, the opaque-token MAC key) under keys the operator
// holds outside that state, so that read access to Redis does not mean
// the power to mint tokens.
//
// # What it protects against
//
// Someone who can read the state store (a Redis replica, an RDB file or
// a backup, a leaked read-only password) sees only sealed values: they
// cannot sign tokens with the signing keys nor forge opaque tokens with
// the MAC key. Someone who can write the store cannot plant a signing
// key or MAC key of their own either, nor move a sealed value to another
// name (each value is bound to the name it is stored under, see Seal),
// nor alter one unnoticed: Open refuses it.
//
// # What it does not
//
// A writer of the store can still delete or roll back state: delete the
// signing keys (tokens issued so far stop verifying), drop revocations
// (revoked tokens work again until they expire), or put back an older
// value sealed under the same key and name (a retired signing key, say).
// Sealing keeps the secrets secret and the sealed values unforgeable; it
// does not make the store trustworthy. What is not sealed (revocations,
// counters, what an opaque token stands for) a reader sees; it gives no
// power to mint or forge as long as opaque tokens are stored under a
// hash of the token, never the token itself. And whoever holds the
// sealing keys (a gateway's host, the file or environment they are read
// from) holds everything they protect.
//
// # Rotation
//
// A key ring holds one or more keys, each with a short ID; the first
// seals, every one opens, and each sealed value names the key that
// sealed it. To rotate the key of a fleet:
//
//  1. Generate a key (Generate) and add it second in every gateway's
//     ring; reload them all. Now every gateway can open what the new key
//     will seal, and none seals with it yet.
//  2. Move it first everywhere and reload. Values the old key sealed
//     still open; NeedsReseal reports them, and the state engine seals
//     them again under the new key when it reads them (redisstate: every
//     instance reads them when its config loads).
//  3. Once everything is re-sealed, remove the old key and reload.
//     Anything still sealed by it fails to open with an error naming its
//     key ID, so a key removed too early is found, not guessed at.
//
// A single gateway can do steps 1 and 2 at once.
//
// # Format
//
// A sealed value, format version 1, is
//
//	1 | n | key ID (n bytes) | nonce (12 bytes) | ciphertext | tag (16 bytes)
//
// AES-256-GCM with a random nonce; the additional data is the header
// (the first 2+n bytes) followed by the context (see Seal). The header
// is length-prefixed, so no shift of bytes between it and the context
// gives the same additional data. The version byte comes first so that
// a later format can be told apart, and an old gateway can say that it
// met a newer format rather than a damaged value.
package sealing

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"strings"
)

// Sizes of keys and of sealed values.
const (
	// KeyLen is the length of a sealing key in bytes: AES-256.
	KeyLen = 32

	// MaxIDLen bounds a key ID. Short IDs are all a ring needs; the bound
	// also means that an entry with its key pasted where the ID belongs
	// (44 characters of base64) is refused as an ID, never echoed in an
	// error as one.
	MaxIDLen = 32

	// MaxSealedLen bounds what Open accepts, and so what Seal produces.
	// What is sealed is a few keys (a set of RSA-4096 signing keys is
	// tens of KB), while a store value may be hundreds of MB: the bound
	// keeps a corrupt or hostile value from costing each gateway more
	// than this much memory and decryption work per Open.
	MaxSealedLen = 1 << 20
)

// The format; see the package doc.
const (
	version1  = 1
	nonceLen  = 12
	tagLen    = 16
	overhead  = nonceLen + tagLen
	minHeader = 2 + 1 // version, ID length, a one-character ID
)

// ErrUnknownKey is a value sealed by a key that is not in the ring,
// usually one removed before everything it sealed was re-sealed.
var ErrUnknownKey = errors.New("the key is not in the key ring")

// ErrInvalid is a value that is not one this ring sealed for this
// context: malformed, truncated, changed, or stored under another name.
var ErrInvalid = errors.New("invalid sealed value")

var errNoContext = errors.New("sealing: an empty context binds a value to nothing; give the name it is stored under")

// Ring is a key ring: the first key seals, every key opens. It is
// immutable and safe for concurrent use. Create one with Parse, FromFile
// or FromEnv; the zero Ring has no key and refuses every call.
type Ring struct {
	keys []ringKey
}

type ringKey struct {
	id string
	// Only the AEAD is kept, not the key bytes: there is no way to get a
	// key back out of a Ring, by a method or by printing it.
	aead cipher.AEAD
}

func newRingKey(id string, secret []byte) (ringKey, error) {
	block, err := aes.NewCipher(secret)
	if err != nil {
		return ringKey{}, err
	}
	// The standard library draws the nonce inside Seal, from the source
	// of crypto/rand, so no code here can reuse one; it is also the only
	// GCM that Go's FIPS 140-only mode allows.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return ringKey{}, err
	}
	return ringKey{id: id, aead: aead}, nil
}

// Seal encrypts plaintext under the ring's first key, bound to context:
// the name the value is stored under (e.g. "oauthgate:keys:signing"), so
// that a copy of it stored under another name does not open. context
// must not be empty.
//
// A key may seal at most 2^32 values before random nonces risk
// colliding; what is sealed is a few keys per rotation, far below that.
func (r *Ring) Seal(plaintext, context []byte) ([]byte, error) {
	if len(r.keys) == 0 {
		return nil, errors.New("sealing: the key ring is empty")
	}
	if len(context) == 0 {
		return nil, errNoContext
	}
	k := r.keys[0]
	hdr := header(k.id)
	if n := len(hdr) + overhead + len(plaintext); n > MaxSealedLen {
		// Open would refuse it: better not to store what cannot be read.
		return nil, fmt.Errorf("sealing: %d bytes to seal, more than a sealed value of at most %d bytes holds", len(plaintext), MaxSealedLen)
	}
	out := make([]byte, len(hdr), len(hdr)+overhead+len(plaintext))
	copy(out, hdr)
	return k.aead.Seal(out, nil, plaintext, additionalData(hdr, context)), nil
}

// Open decrypts a value Seal returned for the same context, under the
// key that sealed it. Errors wrap ErrUnknownKey (the key ID is named; a
// key is never part of an error) or ErrInvalid.
func (r *Ring) Open(sealed, context []byte) ([]byte, error) {
	if len(context) == 0 {
		return nil, errNoContext
	}
	if len(sealed) > MaxSealedLen {
		return nil, fmt.Errorf("sealing: %d bytes, more than a sealed value may have (%d): %w", len(sealed), MaxSealedLen, ErrInvalid)
	}
	id, err := keyID(sealed)
	if err != nil {
		return nil, err
	}
	k, ok := r.find(id)
	if !ok {
		return nil, fmt.Errorf("sealing: sealed by key %q: %w (was it removed before everything it sealed was re-sealed?)", id, ErrUnknownKey)
	}
	hdrLen := 2 + len(id)
	if len(sealed)-hdrLen < overhead {
		return nil, fmt.Errorf("sealing: %d bytes, too short for a value sealed by key %q: %w", len(sealed), id, ErrInvalid)
	}
	plaintext, err := k.aead.Open(nil, nil, sealed[hdrLen:], additionalData(sealed[:hdrLen], context))
	if err != nil {
		return nil, fmt.Errorf("sealing: does not open under key %q: changed, truncated, or stored under another name: %w", id, ErrInvalid)
	}
	return plaintext, nil
}

// NeedsReseal reports whether sealed names a key of the ring other than
// the first: after a rotation, such a value should be opened and sealed
// again before its key is removed. It reads only the header; for a value
// that names no key of the ring it reports false, since it cannot be
// re-sealed.
func (r *Ring) NeedsReseal(sealed []byte) bool {
	id, err := keyID(sealed)
	if err != nil {
		return false
	}
	_, ok := r.find(id)
	return ok && id != r.keys[0].id
}

// IDs returns the key IDs of the ring, the sealing key first.
func (r *Ring) IDs() []string {
	ids := make([]string, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.id
	}
	return ids
}

// String names the keys by ID, e.g. "sealing key ring [k2 k1]".
func (r *Ring) String() string {
	return "sealing key ring [" + strings.Join(r.IDs(), " ") + "]"
}

func (r *Ring) find(id string) (ringKey, bool) {
	for _, k := range r.keys {
		if k.id == id {
			return k, true
		}
	}
	return ringKey{}, false
}

func header(id string) []byte {
	return append([]byte{version1, byte(len(id))}, id...)
}

// additionalData is a fresh slice: the AEAD refuses additional data that
// overlaps its output.
func additionalData(hdr, context []byte) []byte {
	ad := make([]byte, 0, len(hdr)+len(context))
	return append(append(ad, hdr...), context...)
}

// keyID returns the key ID of a sealed value's header. The ID is checked
// like a ring's IDs, so that one from a damaged or hostile value is safe
// to put in an error and a log.
func keyID(sealed []byte) (string, error) {
	if len(sealed) < minHeader {
		return "", fmt.Errorf("sealing: %d bytes, too short for a sealed value: %w", len(sealed), ErrInvalid)
	}
	if v := sealed[0]; v != version1 {
		return "", fmt.Errorf("sealing: format version %d is unknown to this gateway (sealed by a newer one?): %w", v, ErrInvalid)
	}
	n := int(sealed[1])
	if 2+n > len(sealed) {
		return "", fmt.Errorf("sealing: the header is truncated: %w", ErrInvalid)
	}
	id := string(sealed[2 : 2+n])
	if !validID(id) {
		return "", fmt.Errorf("sealing: the header holds no valid key ID: %w", ErrInvalid)
	}
	return id, nil
}

// validID reports whether id is 1 to MaxIDLen of A-Z a-z 0-9 _ -: safe
// in a log line, a file, an environment variable and a Redis key name.
func validID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
