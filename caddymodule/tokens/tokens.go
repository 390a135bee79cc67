// Package tokens mints and verifies the gateway's access tokens: JWTs in
// the RFC 9068 profile ("typ": "at+jwt"), signed by the keys package. It
// also verifies the access tokens of external issuers, whose profile is
// looser (Verifier.External).
//
// Verification trusts nothing in the token before its signature checks
// out: the key is chosen by "kid" from our own key set, the algorithm is
// the one pinned to that key (the header must merely agree), and the
// claims are decoded strictly (a number where a number belongs, no
// duplicate names) before they are checked.
package tokens

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
)

// Type is the JWT "typ" header of access tokens (RFC 9068 §2.1).
const Type = "at+jwt"

// Claims are the claims of an access token. In an external issuer's token
// (Verifier.External), ClientID and ID may be empty and IssuedAt zero.
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
	// Roles are the raw values of an external issuer's roles claim
	// (Verifier.RolesClaim); nil for the gateway's own tokens, whose roles
	// come from the policy.
	Roles []string
	// KeyID is not a claim: it names the key that verified the token.
	KeyID string
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

// MaxLength is the longest token Mint makes: what a guard accepts by
// default. A token that long would be refused before it is read.
const MaxLength = 8 << 10

// ErrTooLong is Mint's refusal of claims whose token would exceed
// MaxLength, usually a scope of very many roles.
var ErrTooLong = errors.New("the token would be longer than a guard accepts")

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
	tok, err := jws.Sign(payload, jws.WithKey(k.Algorithm, k.SignKey(), jws.WithProtectedHeaders(h)))
	if err != nil {
		return "", fmt.Errorf("signing access token: %w", err)
	}
	if len(tok) > MaxLength {
		return "", fmt.Errorf("%w: %d bytes", ErrTooLong, len(tok))
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
	// Cache, if set, remembers verified tokens (see Cache); it must be
	// this verifier's own.
	Cache *Cache

	// Types are the accepted "typ" headers, compared without case and
	// with or without the "application/" prefix (RFC 7515 §4.1.9); an
	// entry "" accepts a token without "typ". nil means "at+jwt" only:
	// RFC 9068 §4 asks for it so that an ID token or other JWT of the
	// same issuer cannot pass as an access token. External issuers that
	// sign their access tokens as plain "JWT" (SAP XSUAA) need a list.
	Types []string
	// External verifies a token of another issuer, whose profile is not
	// ours: "client_id", "jti" and "iat" may be absent; the client is
	// "client_id", else "cid" (SAP XSUAA), else "azp" (OpenID Connect);
	// "scope" may be a JSON array of strings as well as a space-separated
	// string. "iss", "aud", "sub" and "exp" stay required.
	External bool
	// RolesClaim (External only) names the claim whose value becomes
	// Claims.Roles: a space-separated string or an array of strings. A
	// name that is not itself a claim but contains dots is a path into
	// nested objects ("realm_access.roles"), so that both namespaced
	// claims ("https://example.com/roles") and Keycloak's nesting work.
	// "" means no roles from the token.
	RolesClaim string
}

// ReasonBadSignature is the Reason of a signature that does not verify.
const ReasonBadSignature = "token signature is invalid"

// Error says which check a token failed. Its text is safe to return to
// the client: it never contains the token or key material.
type Error struct {
	Reason string
	early  bool // the token may pass later: not yet valid
}

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
//
// With a Cache, a token verified before is not checked again while it is
// valid and the key that verified it is still known; the claims returned
// are then shared with other callers and must not be changed.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if v.MaxLength > 0 && len(token) > v.MaxLength {
		return nil, fail("token is longer than %d bytes", v.MaxLength)
	}
	if v.Cache == nil {
		c, _, _, err := v.verify(token)
		return c, err
	}
	now, key := v.now(), digestOf(token)
	if e, ok := v.Cache.get(key, now); ok {
		if v.sameKey(e) {
			return e.Claims, nil
		}
		v.Cache.remove(key)
	}
	if e, ok := v.Cache.refused.get(key, now); ok {
		if v.sameKey(e) {
			return nil, e.Err
		}
		v.Cache.refused.remove(key)
	}
	c, k, final, err := v.verify(token)
	switch {
	case err == nil:
		v.Cache.put(key, &cacheEntry{Claims: c, KeyID: k.ID, KeyPrint: k.Thumbprint(), Until: c.Expiry.Add(v.Leeway)})
	case final:
		v.Cache.refused.put(key, &cacheEntry{Err: err, KeyID: k.ID, KeyPrint: k.Thumbprint(), Until: now.Add(refusalTTL)})
	}
	return c, err
}

// sameKey reports whether the key that decided a cached entry is still
// the one its kid names.
func (v *Verifier) sameKey(e *cacheEntry) bool {
	k := v.Keys.Lookup(e.KeyID)
	return k != nil && k.Thumbprint() == e.KeyPrint
}

// refusalTTL bounds how long a refusal is remembered; it could be
// forever (see verify), but the memory is better spent on tokens that
// are still sent.
const refusalTTL = 10 * time.Minute

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// verify checks token. A refusal is final when the token will never pass
// this verifier: its signature, made by a key we know, is wrong (a kid is
// the key's thumbprint, so that key never changes), or a claim fails for
// good (issuer, audience, expiry, a missing member). Failures before the
// signature check are cheap and may change (an unknown kid may be
// published later), and "not valid yet" ends by itself; those are not
// final.
// It returns the key that decided, once one was found.
func (v *Verifier) verify(token string) (c *Claims, k *keys.Key, final bool, err error) {
	c, k, err = v.check1(token, &final)
	var e *Error
	if err != nil && errors.As(err, &e) && e.early {
		final = false
	}
	return c, k, final, err
}

func (v *Verifier) check1(token string, signed *bool) (*Claims, *keys.Key, error) {
	rawHeader, rawPayload, ok := splitCompact(token)
	if !ok {
		return nil, nil, fail("token is not a compact JWS (three base64url segments)")
	}
	var h header
	if err := decodeSegment(rawHeader, &h); err != nil {
		return nil, nil, fail("token header is malformed: %v", err)
	}
	if h.Crit != nil || h.B64 != nil {
		return nil, nil, fail("token header has critical extensions, which are not supported")
	}
	if !v.typeAccepted(h.Typ) {
		return nil, nil, v.typeError()
	}
	k := v.Keys.Lookup(h.Kid)
	if k == nil {
		return nil, nil, fail("token is signed by an unknown key")
	}
	// The algorithm is the key's; a header that claims another one is
	// refused, never obeyed.
	if h.Alg != k.Algorithm.String() {
		return nil, k, fail("token algorithm %q is not allowed for its key", h.Alg)
	}
	*signed = true // from here on, a refusal is for good (see verify)
	if _, err := jws.VerifyCompactFast(k.VerifyKey(), []byte(token), k.Algorithm); err != nil {
		return nil, k, &Error{Reason: ReasonBadSignature}
	}
	var c *Claims
	var err error
	if v.External {
		c, err = v.checkExternal(rawPayload)
	} else {
		var w wireClaims
		if err := decodeSegment(rawPayload, &w); err != nil {
			return nil, k, fail("token claims are malformed: %v", err)
		}
		if c, err = v.check(&w); err == nil {
			c.Scope = strings.Fields(w.Scope)
		}
	}
	if err != nil {
		return nil, k, err
	}
	c.KeyID = k.ID
	return c, k, nil
}

func (v *Verifier) typeAccepted(typ string) bool {
	if v.Types == nil {
		return isType(typ, Type)
	}
	for _, t := range v.Types {
		if t == typ || t != "" && isType(typ, t) {
			return true
		}
	}
	return false
}

// isType reports whether the header typ names media type want, with or
// without the "application/" prefix, ignoring case.
func isType(typ, want string) bool {
	const prefix = "application/"
	if len(typ) == len(prefix)+len(want) && strings.EqualFold(typ[:len(prefix)], prefix) {
		typ = typ[len(prefix):]
	}
	return strings.EqualFold(typ, want)
}

func (v *Verifier) typeError() error {
	if v.Types == nil {
		return fail("token type must be %q", Type)
	}
	names := make([]string, len(v.Types))
	for i, t := range v.Types {
		names[i] = strconv.Quote(t)
		if t == "" {
			names[i] = "absent"
		}
	}
	return fail("token type must be %s", strings.Join(names, " or "))
}

// externalClaims are the claims of another issuer's token: ours, a scope
// that may be an array, and the client ID's other names.
type externalClaims struct {
	wireClaims
	Scope    stringList `json:"scope"` // shadows wireClaims.Scope
	CID      string     `json:"cid"`
	AuthzPty string     `json:"azp"`
}

func (v *Verifier) checkExternal(rawPayload string) (*Claims, error) {
	data, err := base64.RawURLEncoding.Strict().DecodeString(rawPayload)
	if err != nil {
		return nil, fail("token claims are malformed: not base64url")
	}
	var w externalClaims
	if err := decodeJSON(data, &w); err != nil {
		return nil, fail("token claims are malformed: %v", err)
	}
	w.ClientID = cmp.Or(w.ClientID, w.CID, w.AuthzPty)
	c, err := v.check(&w.wireClaims)
	if err != nil {
		return nil, err
	}
	c.Scope = w.Scope
	switch v.RolesClaim {
	case "":
	case "scope": // the usual case, already decoded
		c.Roles = slices.Clone(c.Scope)
	default:
		if c.Roles, err = roles(data, v.RolesClaim); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// roles reads the claim named by path from the claims JSON. An absent
// claim, or a path through something that is not an object, gives no
// roles, which can only deny more; a value of the wrong type is refused
// so that the issuer's mistake shows.
func roles(data []byte, path string) ([]string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fail("token claims are malformed: %v", errNotJSON)
	}
	raw, ok := obj[path]
	for rest := path; !ok && strings.Contains(rest, "."); {
		var name string
		name, rest, _ = strings.Cut(rest, ".")
		var inner map[string]json.RawMessage
		if json.Unmarshal(obj[name], &inner) != nil {
			return nil, nil
		}
		obj = inner
		raw, ok = obj[rest]
	}
	var l stringList
	if ok && json.Unmarshal(raw, &l) != nil {
		return nil, fail("token claim %q must be a string or an array of strings", path)
	}
	return l, nil
}

func (v *Verifier) check(w *wireClaims) (*Claims, error) {
	now := v.now()
	switch {
	case w.Issuer != v.Issuer:
		return nil, fail("token issuer is not trusted")
	case !v.IgnoreAudience && !slices.Contains(w.Audience, v.Audience):
		return nil, fail("token audience does not include %q", v.Audience)
	case w.Subject == "":
		return nil, fail(`token has no "sub"`)
	case w.ClientID == "" && !v.External:
		return nil, fail(`token has no "client_id"`)
	case w.ID == "" && !v.External:
		return nil, fail(`token has no "jti"`)
	case w.Expiry == nil:
		return nil, fail(`token has no "exp"`)
	case w.IssuedAt == nil && !v.External:
		return nil, fail(`token has no "iat"`)
	case !now.Before(w.Expiry.time().Add(v.Leeway)):
		return nil, fail("token is expired")
	case w.IssuedAt != nil && w.IssuedAt.time().After(now.Add(v.Leeway)):
		return nil, &Error{Reason: "token is issued in the future", early: true}
	case w.NotBefore != nil && w.NotBefore.time().After(now.Add(v.Leeway)):
		return nil, &Error{Reason: "token is not valid yet", early: true}
	}
	c := &Claims{
		Issuer:   w.Issuer,
		Subject:  w.Subject,
		ClientID: w.ClientID,
		Audience: w.Audience,
		Expiry:   w.Expiry.time(),
		ID:       w.ID,
	}
	if w.IssuedAt != nil {
		c.IssuedAt = w.IssuedAt.time()
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

// maxPeekLength bounds the tokens PeekIssuer reads; the guard's own bound
// (8 KiB by default) is normally far lower.
const maxPeekLength = 64 << 10

// PeekIssuer returns the "iss" claim of token without verifying anything,
// so that a guard trusting several issuers can choose whose verifier to
// run. Nothing else may be decided on it. ok is false unless token is a
// compact JWS of at most 64 KiB whose claims are a strictly decoded JSON
// object with a non-empty string "iss".
func PeekIssuer(token string) (iss string, ok bool) {
	if len(token) > maxPeekLength {
		return "", false
	}
	_, payload, ok := splitCompact(token)
	if !ok {
		return "", false
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if decodeSegment(payload, &c) != nil || c.Issuer == "" {
		return "", false
	}
	return c.Issuer, true
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
	return decodeJSON(data, v)
}

// decodeJSON is decodeSegment after base64url.
func decodeJSON(data []byte, v any) error {
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
//
// json.Valid vouches for the syntax first, so the walk below only has to
// find where strings, containers and member names are; it allocates a
// string per member name and a set per object, so that a token of
// many members costs linear time (json.Decoder's token stream
// cost as much as the RSA check).
func checkObject(data []byte) error {
	if !json.Valid(data) {
		return errNotJSON
	}
	type frame struct {
		object  bool
		wantKey bool
		names   map[string]struct{} // lower-cased: encoding/json matches names without case
	}
	var stack []frame
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{', '[':
			if len(stack) == 0 && c != '{' {
				return errors.New("not a JSON object")
			}
			if len(stack) == maxDepth {
				return errors.New("JSON nested too deeply")
			}
			stack = append(stack, frame{object: c == '{', wantKey: c == '{'})
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			if top := &stack[len(stack)-1]; top.object {
				top.wantKey = true
			}
		case '"':
			start := i
			for i++; data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
			if len(stack) == 0 {
				return errors.New("not a JSON object")
			}
			top := &stack[len(stack)-1]
			if !top.wantKey {
				continue
			}
			top.wantKey = false
			name := string(data[start+1 : i])
			if strings.IndexByte(name, '\\') >= 0 {
				_ = json.Unmarshal(data[start:i+1], &name) // valid JSON: cannot fail
			}
			if err := checkName(name, len(stack), &top.names); err != nil {
				return err
			}
		default:
			if len(stack) == 0 && c > ' ' {
				return errors.New("not a JSON object")
			}
		}
	}
	return nil
}

// decodedNames are the header and claim names decoded into struct
// fields: header, wireClaims and externalClaims.
var decodedNames = []string{"alg", "kid", "typ", "crit", "b64",
	"iss", "sub", "client_id", "aud", "iat", "nbf", "exp", "jti", "scope", "cid", "azp"}

// checkName refuses a member name that another of its object already
// has, ignoring case. encoding/json also matches names to struct fields
// with Unicode case folding, so to it "sub", "SUB" and "ſub" are one
// name: a top-level member that folds to a name we read must be spelled
// exactly so, or another JWT library would read a different claim than
// we do.
func checkName(name string, depth int, seen *map[string]struct{}) error {
	if depth == 1 {
		for _, k := range decodedNames {
			if name != k && strings.EqualFold(name, k) {
				return fmt.Errorf("member %q is not %q: names are case-sensitive", name, k)
			}
		}
	}
	folded := strings.ToLower(name)
	if _, dup := (*seen)[folded]; dup {
		return fmt.Errorf("duplicate member %q", name)
	}
	if *seen == nil {
		*seen = make(map[string]struct{})
	}
	(*seen)[folded] = struct{}{}
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

// stringList is an external issuer's "scope" or roles claim: a
// space-separated string (RFC 8693 §4.2) or an array of strings (SAP
// XSUAA, Keycloak, Entra ID).
type stringList []string

func (l *stringList) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*l = strings.Fields(s)
		return nil
	}
	return json.Unmarshal(data, (*[]string)(l))
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
