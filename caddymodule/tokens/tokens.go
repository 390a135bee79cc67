// Package tokens mints and verifies the gateway's access tokens: JWTs in
// the RFC 9068 profile ("typ": "at+jwt"), signed by the keys package.
//
// Verification trusts nothing in the token before its signature checks
// out: the key is chosen by "kid" from our own key set, the algorithm is
// the one pinned to that key (the header must merely agree), and the
// claims are decoded strictly (a number where a number belongs, no
// duplicate names) before they are checked.
package tokens

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
)

// Type is the JWT "typ" header of access tokens (RFC 9068 §2.1).
const Type = "at+jwt"

// Claims are the claims of an access token.
type Claims struct {
	Issuer    string
	Subject   string
	ClientID  string
	Audience  []string
	IssuedAt  time.Time
	NotBefore time.Time // zero when absent
	Expiry    time.Time
	ID        string
	Scope     []string
}

// wireClaims is the JSON form. Dates are NumericDate; scope is the RFC
// 8693 space-separated string that RFC 9068 §2.2.3 prescribes.
type wireClaims struct {
	Issuer    string       `json:"iss"`
	Subject   string       `json:"sub"`
	ClientID  string       `json:"client_id"`
	Audience  audience     `json:"aud"`
	IssuedAt  *numericDate `json:"iat"`
	NotBefore *numericDate `json:"nbf,omitempty"`
	Expiry    *numericDate `json:"exp"`
	ID        string       `json:"jti"`
	Scope     string       `json:"scope"`
}

// Mint signs c with k.
func Mint(k *keys.Key, c *Claims) (string, error) {
	w := wireClaims{
		Issuer:   c.Issuer,
		Subject:  c.Subject,
		ClientID: c.ClientID,
		Audience: c.Audience,
		IssuedAt: (*numericDate)(&c.IssuedAt),
		Expiry:   (*numericDate)(&c.Expiry),
		ID:       c.ID,
		Scope:    strings.Join(c.Scope, " "),
	}
	if !c.NotBefore.IsZero() {
		w.NotBefore = (*numericDate)(&c.NotBefore)
	}
	payload, err := json.Marshal(w)
	if err != nil {
		return "", err
	}
	h := jws.NewHeaders()
	for name, v := range map[string]any{jws.TypeKey: Type, jws.KeyIDKey: k.ID} {
		if err := h.Set(name, v); err != nil {
			return "", err
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(k.Algorithm, k.Private, jws.WithProtectedHeaders(h)))
	if err != nil {
		return "", fmt.Errorf("signing access token: %w", err)
	}
	return string(tok), nil
}

// NewID returns a fresh "jti": 128 random bits, base64url.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// KeySource resolves a "kid" to a verification key.
type KeySource interface {
	Lookup(kid string) *keys.Key
}

// Verifier checks access tokens.
type Verifier struct {
	Keys   KeySource
	Issuer string
	// Audience must appear in "aud", unless IgnoreAudience is set (for the
	// authorization server's own introspection and revocation, which
	// answer for tokens of every audience).
	Audience       string
	IgnoreAudience bool
	// Leeway absorbs clock skew between the token's issuer and us in the
	// exp, nbf and iat checks.
	Leeway time.Duration
	// MaxLength bounds the token before any decoding.
	MaxLength int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Error says which check a token failed. Its text is safe to return to
// the client: it never contains the token or key material.
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

func fail(format string, args ...any) error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

// header is the part of the JOSE header we read. Every other member
// (jku, x5u, jwk, x5c, …) is ignored: keys only ever come from our set.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
	B64  json.RawMessage `json:"b64"`
}

// Verify checks token and returns its claims. Every failure is an *Error.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if v.MaxLength > 0 && len(token) > v.MaxLength {
		return nil, fail("token is longer than %d bytes", v.MaxLength)
	}
	rawHeader, rawPayload, ok := splitCompact(token)
	if !ok {
		return nil, fail("token is not a compact JWS (three base64url segments)")
	}
	var h header
	if err := decodeSegment(rawHeader, &h); err != nil {
		return nil, fail("token header is malformed: %v", err)
	}
	if h.Crit != nil || h.B64 != nil {
		return nil, fail("token header has critical extensions, which are not supported")
	}
	if !strings.EqualFold(h.Typ, Type) && !strings.EqualFold(h.Typ, "application/"+Type) {
		return nil, fail("token type must be %q", Type)
	}
	k := v.Keys.Lookup(h.Kid)
	if k == nil {
		return nil, fail("token is signed by an unknown key")
	}
	// The algorithm is the key's; a header that claims another one is
	// refused, never obeyed.
	if h.Alg != k.Algorithm.String() {
		return nil, fail("token algorithm %q is not allowed for its key", h.Alg)
	}
	if _, err := jws.VerifyCompactFast(k.Public, []byte(token), k.Algorithm); err != nil {
		return nil, fail("token signature is invalid")
	}
	var w wireClaims
	if err := decodeSegment(rawPayload, &w); err != nil {
		return nil, fail("token claims are malformed: %v", err)
	}
	return v.check(&w)
}

func (v *Verifier) check(w *wireClaims) (*Claims, error) {
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	switch {
	case w.Issuer != v.Issuer:
		return nil, fail("token issuer is not trusted")
	case !v.IgnoreAudience && !slices.Contains(w.Audience, v.Audience):
		return nil, fail("token audience does not include %q", v.Audience)
	case w.Subject == "":
		return nil, fail(`token has no "sub"`)
	case w.ClientID == "":
		return nil, fail(`token has no "client_id"`)
	case w.ID == "":
		return nil, fail(`token has no "jti"`)
	case w.Expiry == nil:
		return nil, fail(`token has no "exp"`)
	case w.IssuedAt == nil:
		return nil, fail(`token has no "iat"`)
	case !now.Before(w.Expiry.time().Add(v.Leeway)):
		return nil, fail("token is expired")
	case w.IssuedAt.time().After(now.Add(v.Leeway)):
		return nil, fail("token is issued in the future")
	case w.NotBefore != nil && w.NotBefore.time().After(now.Add(v.Leeway)):
		return nil, fail("token is not valid yet")
	}
	c := &Claims{
		Issuer:   w.Issuer,
		Subject:  w.Subject,
		ClientID: w.ClientID,
		Audience: w.Audience,
		IssuedAt: w.IssuedAt.time(),
		Expiry:   w.Expiry.time(),
		ID:       w.ID,
		Scope:    strings.Fields(w.Scope),
	}
	if w.NotBefore != nil {
		c.NotBefore = w.NotBefore.time()
	}
	return c, nil
}

// splitCompact returns the header and payload segments of a compact JWS
// if token has exactly three non-empty segments of base64url characters.
// Anything else (JSON serialization, JWE's five segments, padding,
// whitespace) is refused here, before any decoder sees it.
func splitCompact(token string) (hdr, payload string, ok bool) {
	dots := 0
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '.':
			dots++
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return "", "", false
		}
	}
	if dots != 2 {
		return "", "", false
	}
	hdr, rest, _ := strings.Cut(token, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	if hdr == "" || payload == "" || sig == "" {
		return "", "", false
	}
	return hdr, payload, true
}

// maxDepth bounds nesting in a token's JSON. Our tokens have depth 2 (an
// audience array); a little room is left for external issuers.
const maxDepth = 8

// decodeSegment base64url-decodes seg and strictly decodes the JSON
// object into v: duplicate member names and deep nesting are refused, so
// no two parsers can read the same token differently.
func decodeSegment(seg string, v any) error {
	data, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return errors.New("not base64url")
	}
	if err := checkObject(data); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		var de *dateError
		switch {
		case errors.As(err, &te):
			return fmt.Errorf("%q has the wrong type", te.Field)
		case errors.As(err, &de):
			return de
		}
		return errNotJSON
	}
	return nil
}

var errNotJSON = errors.New("not JSON")

// checkObject verifies that data is one JSON object with no duplicate
// member names at any level and no nesting deeper than maxDepth.
func checkObject(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	if err := checkContainer(dec, '{', 1); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// checkContainer reads the rest of an object or array whose opening
// delimiter was just read, recursing into nested containers.
func checkContainer(dec *json.Decoder, open json.Delim, depth int) error {
	if depth > maxDepth {
		return errors.New("JSON nested too deeply")
	}
	names := map[string]bool{}
	for dec.More() {
		if open == '{' {
			t, err := dec.Token()
			if err != nil {
				return errNotJSON
			}
			// encoding/json matches member names case-insensitively, so
			// "sub" and "SUB" are duplicates to it: refuse them as such.
			name, _ := t.(string)
			folded := strings.ToLower(name)
			if names[folded] {
				return fmt.Errorf("duplicate member %q", name)
			}
			names[folded] = true
		}
		t, err := dec.Token()
		if err != nil {
			return errNotJSON
		}
		if d, ok := t.(json.Delim); ok {
			if err := checkContainer(dec, d, depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return errNotJSON
	}
	return nil
}

// audience is "aud": a string or an array of strings (RFC 7519 §4.1.3).
type audience []string

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a *audience) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	return json.Unmarshal(data, (*[]string)(a))
}

// numericDate is RFC 7519's NumericDate: seconds since the epoch, a JSON
// number. Strings, negatives and dates past year 9999 are refused rather
// than guessed at.
type numericDate time.Time

type dateError struct{ msg string }

func (e *dateError) Error() string { return e.msg }

const maxNumericDate = 253402300799 // 9999-12-31T23:59:59Z

func (d *numericDate) time() time.Time { return time.Time(*d) }

func (d *numericDate) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprint(time.Time(*d).Unix())), nil
}

func (d *numericDate) UnmarshalJSON(data []byte) error {
	// A JSON string would unmarshal into float64 with an error too, but
	// say why: issuers that quote dates exist and are refused on purpose.
	var f float64
	if len(data) == 0 || data[0] == '"' || json.Unmarshal(data, &f) != nil {
		return &dateError{"dates (exp, nbf, iat) must be JSON numbers"}
	}
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return &dateError{"a date (exp, nbf, iat) is out of range"}
	}
	sec, frac := math.Modf(f)
	*d = numericDate(time.Unix(int64(sec), int64(frac*1e9)))
	return nil
}
