// Package assertion verifies the JWTs with which clients authenticate
// instead of a secret: private_key_jwt (RFC 7523 §2.2 and §3, OpenID
// Connect Core §9). The client signs a short-lived JWT about itself with a
// key it registered; the gateway checks it against that key and never
// accepts the same one twice.
package assertion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// Type is the client_assertion_type of a JWT client assertion (RFC 7523
// §2.2), and Method the name of the authentication method (RFC 7591,
// OpenID Connect Core §9).
const (
	Type   = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	Method = "private_key_jwt"
)

// Bounds. A real assertion is well under 1 KiB; the kind of the one-time
// record is what state.Once calls it.
const (
	MaxLength          = 8 << 10
	maxIDLength        = 256
	DefaultMaxLifetime = 5 * time.Minute
	DefaultLeeway      = 30 * time.Second
	OnceKind           = "assertion"
)

// Algorithms are the signature algorithms an assertion may use, all
// asymmetric: a client's registered keys are public, and an HMAC keyed
// with a public key would be a signature anyone can make. A key
// registered without "alg" is pinned to the first that fits it, so RS256,
// which RFC 7523 clients (Authlib, openid-client) sign with by default,
// comes before PS256.
var Algorithms = []string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// ErrUnavailable wraps what the gateway could not check for reasons of
// its own (the replay table, a client's JWKS URL): the client may retry,
// and the answer is 503, not invalid_client.
var ErrUnavailable = errors.New("the client assertion cannot be checked now")

// Error is an assertion that is refused. Reason is for the gateway's log:
// it names the check, never the assertion's content.
type Error struct{ Reason string }

func (e *Error) Error() string { return "client assertion refused: " + e.Reason }

func refuse(format string, args ...any) error { return &Error{Reason: fmt.Sprintf(format, args...)} }

// Assertion is a client assertion taken apart, not yet verified.
type Assertion struct {
	Alg, Kid string
	// Issuer and Subject must both be the client's ID.
	Issuer, Subject string
	// Audience is the one audience named (a string, or an array of one).
	Audience string
	ID       string
	// Expiry is required; IssuedAt and NotBefore are zero when absent.
	Expiry, IssuedAt, NotBefore time.Time

	jws *tokens.CompactJWS
}

// Parse takes a client assertion apart: a compact JWS of at most
// MaxLength bytes, decoded as strictly as an access token, whose header
// names an allowed algorithm and no critical extension, and whose claims
// have iss, sub, aud, exp and jti of the right types. It checks no
// signature and no time.
func Parse(raw string) (*Assertion, error) {
	jws, err := tokens.ParseCompact(raw, MaxLength)
	if err != nil {
		return nil, refuse("%v", err)
	}
	a := &Assertion{jws: jws}
	h := jws.Header
	if err := str(h, "alg", &a.Alg, true); err != nil {
		return nil, err
	}
	if !slices.Contains(Algorithms, a.Alg) {
		// "none", HS256 and anything unknown: refused before any key is
		// looked at.
		return nil, refuse("algorithm %.20q is not allowed", a.Alg)
	}
	if err := str(h, "kid", &a.Kid, false); err != nil {
		return nil, err
	}
	var typ string
	if err := str(h, "typ", &typ, false); err != nil {
		return nil, err
	}
	switch t := strings.TrimPrefix(strings.ToLower(typ), "application/"); t {
	case "at+jwt", "dpop+jwt":
		// Another kind of JWT presented as an assertion: whatever its
		// claims say, it was not made for this.
		return nil, refuse("typ %q is not a client assertion", t)
	}
	if _, ok := h["crit"]; ok {
		return nil, refuse("the header has crit: no extension is understood")
	}
	if _, ok := h["b64"]; ok {
		return nil, refuse("the header has b64: no extension is understood")
	}
	c := jws.Claims
	for _, f := range []struct {
		name string
		dst  *string
	}{{"iss", &a.Issuer}, {"sub", &a.Subject}, {"jti", &a.ID}} {
		if err := str(c, f.name, f.dst, true); err != nil {
			return nil, err
		}
	}
	if len(a.ID) > maxIDLength {
		return nil, refuse("jti is longer than %d bytes", maxIDLength)
	}
	if a.Audience, err = audience(c["aud"]); err != nil {
		return nil, err
	}
	var present bool
	if a.Expiry, present, err = date(c, "exp"); err != nil {
		return nil, err
	} else if !present {
		return nil, refuse("exp is missing")
	}
	if a.IssuedAt, _, err = date(c, "iat"); err != nil {
		return nil, err
	}
	if a.NotBefore, _, err = date(c, "nbf"); err != nil {
		return nil, err
	}
	return a, nil
}

func str(m map[string]string, name string, dst *string, required bool) error {
	v, ok := m[name]
	if !ok || v == "null" {
		if required {
			return refuse("%s is missing", name)
		}
		return nil
	}
	if v[0] != '"' || json.Unmarshal([]byte(v), dst) != nil {
		return refuse("%s is not a string", name)
	}
	if required && *dst == "" {
		return refuse("%s is empty", name)
	}
	return nil
}

// audience accepts one audience: a string or an array of exactly one
// string. An assertion meant for several servers is one any of them
// could replay to the others (the audience confusion that
// draft-ietf-oauth-rfc7523bis closes).
func audience(v string) (string, error) {
	if v == "" || v == "null" {
		return "", refuse("aud is missing")
	}
	var one string
	if json.Unmarshal([]byte(v), &one) == nil {
		return one, nil
	}
	var list []string
	if json.Unmarshal([]byte(v), &list) == nil && len(list) == 1 {
		return list[0], nil
	}
	return "", refuse("aud is not one string")
}

// date reads a NumericDate (RFC 7519 §2): a finite number of seconds
// that a time.Time holds.
func date(m map[string]string, name string) (time.Time, bool, error) {
	v, ok := m[name]
	if !ok || v == "null" {
		return time.Time{}, false, nil
	}
	var f float64
	if v[0] == '"' || json.Unmarshal([]byte(v), &f) != nil || math.IsNaN(f) || f < 0 || f > 1<<40 {
		return time.Time{}, false, refuse("%s is not a date", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// Keys finds a client's registered key by kid, or its only key when kid
// is "": nil if there is no such key. An error means the keys could not
// be obtained (a JWKS URL that does not answer).
type Keys interface {
	Key(ctx context.Context, kid string) (*keys.Key, error)
}

// Verifier checks parsed assertions. Its zero value is not usable: Once
// and Audiences are required.
type Verifier struct {
	// Audiences are the accepted "aud" values: the issuer identifier and
	// the token endpoint URL, exactly as the metadata publishes them.
	Audiences []string
	// MaxLifetime bounds how far ahead of now exp may be (default 5m),
	// and so how long a stolen assertion could be used at all; Leeway
	// absorbs clock skew in every time check (default 30s).
	MaxLifetime, Leeway time.Duration
	// Once remembers every accepted jti until the assertion expires.
	Once state.Once
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verify checks a, presented by clientID, against the client's keys: iss
// and sub are the client, the signature is by one of its keys with that
// key's algorithm, aud is one of Audiences, the times are sane, and the
// jti was never accepted before (the last check, so that only an
// otherwise valid assertion spends its jti). Every refusal is an *Error,
// or wraps ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, a *Assertion, clientID string, ks Keys) error {
	if a.Issuer != clientID || a.Subject != clientID {
		return refuse("iss and sub must both be the client ID")
	}
	k, err := ks.Key(ctx, a.Kid)
	if err != nil {
		return fmt.Errorf("%w: the client's keys: %v", ErrUnavailable, err)
	}
	if k == nil {
		return refuse("no registered key of the client matches kid %.64q", a.Kid)
	}
	// The key was registered for one algorithm; the header's is only
	// believed when it is that one.
	if k.Algorithm.String() != a.Alg {
		return refuse("the key %.64q is for %s, not %.20s", a.Kid, k.Algorithm, a.Alg)
	}
	if !k.Verify([]byte(a.jws.SigningInput), a.jws.Signature) {
		return refuse("the signature is invalid")
	}
	if !slices.Contains(v.Audiences, a.Audience) {
		return refuse("aud is not this server's issuer or token endpoint")
	}
	now := v.now()
	leeway, maxLife := v.leeway(), v.maxLifetime()
	switch {
	case !now.Before(a.Expiry.Add(leeway)):
		return refuse("the assertion has expired")
	case a.Expiry.After(now.Add(maxLife + leeway)):
		return refuse("exp is more than %s ahead", maxLife)
	case !a.IssuedAt.IsZero() && a.IssuedAt.After(now.Add(leeway)):
		return refuse("iat is in the future")
	case !a.IssuedAt.IsZero() && a.Expiry.Sub(a.IssuedAt) > maxLife+leeway:
		return refuse("exp is more than %s after iat", maxLife)
	case !a.NotBefore.IsZero() && a.NotBefore.After(now.Add(leeway)):
		return refuse("the assertion is not valid yet (nbf)")
	}
	// Scoped to the client: one client's jti cannot block another's.
	first, err := v.Once.First(ctx, OnceKind, clientID+"\x00"+a.ID, a.Expiry.Add(leeway))
	if err != nil {
		return fmt.Errorf("%w: the replay table: %v", ErrUnavailable, err)
	}
	if !first {
		return refuse("the jti was used before (a replay)")
	}
	return nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) leeway() time.Duration {
	if v.Leeway > 0 {
		return v.Leeway
	}
	return DefaultLeeway
}

func (v *Verifier) maxLifetime() time.Duration {
	if v.MaxLifetime > 0 {
		return v.MaxLifetime
	}
	return DefaultMaxLifetime
}
