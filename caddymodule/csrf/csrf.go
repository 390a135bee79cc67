// Package csrf is SAP Cloud Integration's "CSRF Protected" option for the
// guard: the tokens a sender fetches with "X-CSRF-Token: Fetch" and must
// send back on every request that changes something.
//
// A token is stateless: a version, an expiry, a random nonce and an
// HMAC-SHA256 over them and the client it was fetched for, under a
// 256-bit key that every instance of a fleet shares through the state
// engine (Keeper). So a token fetched at one instance is valid at all of
// them, and nothing is stored per token. The wire form is base64url
// without padding:
//
//	version (1) | expiry, Unix seconds, big-endian (8) | nonce (16) | HMAC (32)
//
// The HMAC covers a label, the first 25 bytes and the client ID, so a
// token of one client, of another key or of a changed expiry is refused.
package csrf

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

// DefaultLifetime is how long a fetched token is valid: SAP Cloud
// Integration ties its token to the HTTP session, which ends after 30
// idle minutes.
const DefaultLifetime = 30 * time.Minute

// KeyLen is the size of the HMAC key in bytes.
const KeyLen = 32

const (
	version  = 1
	nonceLen = 16
	bodyLen  = 1 + 8 + nonceLen
	rawLen   = bodyLen + sha256.Size
	// Length is the length of a token as sent: every token of this version
	// has exactly this many characters, and a value of any other length
	// is refused unread.
	Length = (rawLen*8 + 5) / 6
)

// label separates these MACs from any other use of the key.
const label = "oauthgate csrf v1\x00"

// Why a token is refused. ErrInvalid covers every token whose MAC does not
// hold: another client's, one made under another key, a changed one; they
// cannot be told apart, and a sender does the same for each: fetch anew.
var (
	ErrMalformed = errors.New("the CSRF token is malformed")
	ErrInvalid   = errors.New("the CSRF token is not valid for this client")
	ErrExpired   = errors.New("the CSRF token has expired")
)

// Signer issues and verifies tokens under one key.
type Signer struct {
	key   []byte
	label string
}

// NewSigner returns a Signer under key, which must have KeyLen bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) != KeyLen {
		return nil, errors.New("csrf: the key must have 32 bytes")
	}
	return &Signer{key: key, label: label}, nil
}

// For returns a Signer under the same key for another purpose (DPoP
// server nonces): its MACs cover another label, so that no token of one
// purpose is ever valid for the other, whatever the client IDs.
func (s *Signer) For(purpose string) *Signer {
	return &Signer{key: s.key, label: "oauthgate " + purpose + " v1\x00"}
}

// Issue returns a token for clientID that is valid until now+lifetime.
func (s *Signer) Issue(clientID string, now time.Time, lifetime time.Duration) string {
	var raw [rawLen]byte
	raw[0] = version
	binary.BigEndian.PutUint64(raw[1:9], uint64(now.Add(lifetime).Unix()))
	_, _ = rand.Read(raw[9:bodyLen]) // crypto/rand.Read never fails (Go ≥ 1.24)
	s.mac(raw[:bodyLen], clientID, raw[bodyLen:bodyLen])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// Verify checks that token was issued by Issue under this key for
// clientID and has not expired at now. The MAC is compared in constant
// time, and checked before the expiry, so that only an authentic token
// is ever said to be expired.
func (s *Signer) Verify(token, clientID string, now time.Time) error {
	if len(token) != Length {
		return ErrMalformed
	}
	var raw [rawLen]byte
	if n, err := base64.RawURLEncoding.Strict().Decode(raw[:], []byte(token)); err != nil || n != rawLen {
		return ErrMalformed
	}
	if raw[0] != version {
		return ErrMalformed
	}
	var want [sha256.Size]byte
	if !hmac.Equal(s.mac(raw[:bodyLen], clientID, want[:0]), raw[bodyLen:]) {
		return ErrInvalid
	}
	exp := binary.BigEndian.Uint64(raw[1:9])
	if now.Unix() >= int64(exp) {
		return ErrExpired
	}
	return nil
}

// mac appends the HMAC of body and clientID to out. The client ID comes
// last, after a body of fixed length, so no two inputs read alike.
func (s *Signer) mac(body []byte, clientID string, out []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(s.label))
	m.Write(body)
	m.Write([]byte(clientID))
	return m.Sum(out)
}
