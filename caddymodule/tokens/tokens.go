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
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/oauthjson"
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
	// Extra are an external issuer's other claims (Verifier.External), as
	// encoding/json decodes them, for policy conditions ("when"); nil
	// for the gateway's own tokens, which carry none.
	Extra map[string]any
	// Confirmation is the "cnf" claim: the key a sender-constrained
	// token is bound to; zero for a bearer token.
	Confirmation Confirmation
	// KeyID is not a claim: it names the key that verified the token.
	KeyID string

	derived   atomic.Value // see Derived
	tokenHash digest       // see TokenHash; zero if not computed
}

// Confirmation is the "cnf" claim of a sender-constrained token (RFC
// 7800): only a request that proves the key it names may use the token.
// A token whose cnf names any other method is refused as malformed, not
// taken as a bearer token: a binding the gateway cannot check must not
// fall away.
type Confirmation struct {
	// X5tS256 is the base64url SHA-256 thumbprint of the client's
	// certificate (RFC 8705 §3.1).
	X5tS256 string `json:"x5t#S256,omitempty"`
	// JKT is the base64url JWK SHA-256 thumbprint (RFC 7638) of the
	// client's DPoP key (RFC 9449 §6.1).
	JKT string `json:"jkt,omitempty"`
}

// Bound reports whether the token is bound to a key.
func (c Confirmation) Bound() bool { return c != Confirmation{} }

// Derived returns what SetDerived last stored, nil if nothing. Claims a
// Verifier with a Cache returns are shared by every request that presents
// the same token; their one user (the guard) keeps here what it derives
// from them, so that a token sent again is not worked on again. What is
// kept must not be changed once stored, and must say what else it was
// derived from (a policy) if that may change.
func (c *Claims) Derived() any { return c.derived.Load() }

// SetDerived stores v for Derived. Every value stored on the same claims
// must be of the same type.
func (c *Claims) SetDerived(v any) { c.derived.Store(v) }

// TokenHash returns the SHA-256 of the token the claims were verified
// from, when the Verifier computed it (one with a Cache does, for every
// token); ok is false otherwise. It is a DPoP proof's ath (RFC 9449
// §4.2), which then need not be computed again on every request.
func (c *Claims) TokenHash() (sum [sha256.Size]byte, ok bool) {
	return c.tokenHash, c.tokenHash != digest{}
}

// MaxLength is the longest token Mint makes: what a guard accepts by
// default. A token that long would be refused before it is read.
const MaxLength = 8 << 10

// ErrTooLong is Mint's refusal of claims whose token would exceed
// MaxLength, usually a scope of very many roles.
var ErrTooLong = errors.New("the token would be longer than a guard accepts")

// Mint signs c with k.
//
// The compact JWS is built here rather than by jws.Sign, which spent
// about as much on its header object and on encoding/json's reflection
// over the claims as an Ed25519 signature costs. The header and claims
// are still what jws.Sign and encoding/json made, byte for byte
// (TestMint_MakesWhatJWXMakes).
func Mint(k *keys.Key, c *Claims) (string, error) {
	var buf [512]byte
	hdr := appendHeader(buf[:0], k)
	payload := appendClaims(hdr[len(hdr):], c)
	enc := base64.RawURLEncoding
	input := make([]byte, 0, enc.EncodedLen(len(hdr))+1+enc.EncodedLen(len(payload)))
	input = enc.AppendEncode(input, hdr)
	input = append(input, '.')
	input = enc.AppendEncode(input, payload)
	sig, err := k.Sign(input)
	if err != nil {
		return "", fmt.Errorf("signing access token: %w", err)
	}
	n := len(input) + 1 + enc.EncodedLen(len(sig))
	if n > MaxLength {
		return "", fmt.Errorf("%w: %d bytes", ErrTooLong, n)
	}
	var tok strings.Builder
	tok.Grow(n)
	tok.Write(input)
	tok.WriteByte('.')
	tok.Write(enc.AppendEncode(buf[:0], sig))
	return tok.String(), nil
}

// appendHeader appends the JOSE header of k's tokens: what jws.Sign
// writes, its members sorted by name.
func appendHeader(b []byte, k *keys.Key) []byte {
	b = append(b, `{"alg":`...)
	b = oauthjson.AppendString(b, k.Algorithm.String())
	b = append(b, `,"kid":`...)
	b = oauthjson.AppendString(b, k.ID)
	b = append(b, `,"typ":`...)
	b = oauthjson.AppendString(b, Type)
	return append(b, '}')
}

// appendClaims appends the JSON of c as the token's payload, as
// encoding/json wrote it before: iss, sub, client_id, aud, iat, nbf, exp,
// jti and scope in that order, "nbf" only when set, "aud" a string when
// it has one value, dates as NumericDate (whole seconds), and scope the
// RFC 8693 space-separated string that RFC 9068 §2.2.3 prescribes.
func appendClaims(b []byte, c *Claims) []byte {
	b = append(b, `{"iss":`...)
	b = oauthjson.AppendString(b, c.Issuer)
	b = append(b, `,"sub":`...)
	b = oauthjson.AppendString(b, c.Subject)
	b = append(b, `,"client_id":`...)
	b = oauthjson.AppendString(b, c.ClientID)
	b = append(b, `,"aud":`...)
	switch {
	case len(c.Audience) == 1:
		b = oauthjson.AppendString(b, c.Audience[0])
	case c.Audience == nil:
		b = append(b, "null"...)
	default:
		b = append(b, '[')
		for i, a := range c.Audience {
			if i > 0 {
				b = append(b, ',')
			}
			b = oauthjson.AppendString(b, a)
		}
		b = append(b, ']')
	}
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, c.IssuedAt.Unix(), 10)
	if !c.NotBefore.IsZero() {
		b = append(b, `,"nbf":`...)
		b = strconv.AppendInt(b, c.NotBefore.Unix(), 10)
	}
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, c.Expiry.Unix(), 10)
	b = append(b, `,"jti":`...)
	b = oauthjson.AppendString(b, c.ID)
	b = append(b, `,"scope":`...)
	b = oauthjson.AppendString(b, strings.Join(c.Scope, " "))
	if c.Confirmation.Bound() {
		b = append(b, `,"cnf":{`...)
		if c.Confirmation.X5tS256 != "" {
			b = append(b, `"x5t#S256":`...)
			b = oauthjson.AppendString(b, c.Confirmation.X5tS256)
		}
		if c.Confirmation.JKT != "" {
			if c.Confirmation.X5tS256 != "" {
				b = append(b, ',')
			}
			b = append(b, `"jkt":`...)
			b = oauthjson.AppendString(b, c.Confirmation.JKT)
		}
		b = append(b, '}')
	}
	return append(b, '}')
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
	Alg, Kid, Typ string
	// Critical is set if the header has "crit" or "b64", whatever their
	// value: extensions we do not implement (RFC 7515 §4.1.11, RFC 7797).
	Critical bool
}

func (h *header) decode(data []byte) error {
	var buf [8]Member
	members, err := checkObject(data, buf[:0])
	for _, m := range members {
		switch m.Name {
		case "alg":
			err = str(m, &h.Alg)
		case "kid":
			err = str(m, &h.Kid)
		case "typ":
			err = str(m, &h.Typ)
		case "crit", "b64":
			h.Critical = true
		}
		if err != nil {
			break
		}
	}
	return err
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
		c.tokenHash = key
		if v.Cache.admit(key) {
			v.Cache.put(key, &cacheEntry{Claims: c, KeyID: k.ID, KeyPrint: k.Thumbprint(), Until: c.Expiry.Add(v.Leeway)})
		}
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
	if err != nil && early(err) {
		final = false
	}
	return c, k, final, err
}

// early reports whether err is a refusal that may not hold later. It is
// a function of its own so that a token that passes does not pay for
// the variable errors.As moves to the heap.
func early(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.early
}

// errNotCompact is the refusal of a token that splitCompact refuses.
var errNotCompact = &Error{Reason: "token is not a compact JWS (three base64url segments)"}

// check1 is verify.
func (v *Verifier) check1(token string, signed *bool) (*Claims, *keys.Key, error) {
	c, k, err := v.check2(token, signed)
	// check2 finds the segments by their dots alone, and leaves the
	// alphabet to the base64url decoders, which refuse every other
	// character but CR and LF (cutCompact refuses those): a token that
	// passes was all base64url. One that fails is refused as splitCompact
	// would have refused it first, if it would.
	if err != nil {
		if _, _, _, ok := splitCompact(token); !ok {
			*signed = false
			return nil, nil, errNotCompact
		}
	}
	return c, k, err
}

// check2 is check1 once the token has its two dots.
func (v *Verifier) check2(token string, signed *bool) (*Claims, *keys.Key, error) {
	rawHeader, rawPayload, rawSig, ok := cutCompact(token)
	if !ok {
		return nil, nil, errNotCompact
	}
	h, seen := headers.get(rawHeader)
	// The signing input is checked as bytes: a copy, in the allocation
	// the segments are decoded into.
	room := len(rawSig) + len(rawPayload)
	if !seen {
		room += len(rawHeader)
	}
	input, dec := newSegmentDecoder(token[:len(rawHeader)+1+len(rawPayload)], room)
	if !seen {
		if data, err := dec.decode(rawHeader); err != nil {
			return nil, nil, fail("token header is malformed: %v", err)
		} else if err := h.decode(data); err != nil {
			return nil, nil, fail("token header is malformed: %v", err)
		}
	}
	if h.Critical {
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
		return nil, k, fail("token algorithm %.32q is not allowed for its key", h.Alg)
	}
	*signed = true // from here on, a refusal is for good (see verify)
	sig, err := dec.decode(rawSig)
	if err != nil || !k.Verify(input, sig) {
		return nil, k, &Error{Reason: ReasonBadSignature}
	}
	if !seen {
		headers.put(rawHeader, h)
	}
	payload, err := dec.decode(rawPayload)
	if err != nil {
		return nil, k, fail("token claims are malformed: %v", err)
	}
	c, err := v.checkClaims(payload)
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

// claimsJSON are the claims as decoded: ours, and for an external
// issuer's token a scope that may be an array and the client ID's other
// names.
type claimsJSON struct {
	Issuer, Subject, ClientID, ID string
	Audience                      audience
	// The dates are values, not pointers: a pointer into the struct
	// would move it to the heap on every verification.
	IssuedAt, NotBefore, Expiry optionalDate
	Scope                       stringList // decoded from a string only, unless External
	CID, AZP                    string     // External only
	Cnf                         Confirmation
}

// decodeClaims decodes members into w.
func (v *Verifier) decodeClaims(members []Member, w *claimsJSON) error {
	var err error
	for _, m := range members {
		switch m.Name {
		case "iss":
			err = str(m, &w.Issuer)
		case "sub":
			err = str(m, &w.Subject)
		case "client_id":
			err = str(m, &w.ClientID)
		case "jti":
			err = str(m, &w.ID)
		case "aud":
			err = w.Audience.decode(m)
		case "exp":
			w.Expiry, err = date(m)
		case "iat":
			w.IssuedAt, err = date(m)
		case "nbf":
			w.NotBefore, err = date(m)
		case "scope":
			if v.External {
				err = w.Scope.decode(m)
			} else {
				var scope string
				if err = str(m, &scope); err == nil {
					w.Scope = strings.Fields(scope)
				}
			}
		case "cid":
			if v.External {
				err = str(m, &w.CID)
			}
		case "azp":
			if v.External {
				err = str(m, &w.AZP)
			}
		case "cnf":
			err = confirmation(m, &w.Cnf)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkClaims checks the decoded claims segment.
func (v *Verifier) checkClaims(data []byte) (*Claims, error) {
	var buf [16]Member
	members, err := checkObject(data, buf[:0])
	var w claimsJSON
	if err == nil {
		err = v.decodeClaims(members, &w)
	}
	if err != nil {
		return nil, fail("token claims are malformed: %v", err)
	}
	if v.External {
		w.ClientID = cmp.Or(w.ClientID, w.CID, w.AZP)
	}
	c, err := v.check(&w)
	if err != nil {
		return nil, err
	}
	c.Scope = w.Scope
	c.Confirmation = w.Cnf
	if v.External {
		c.Extra = extra(data)
	}
	switch {
	case !v.External || v.RolesClaim == "":
	case v.RolesClaim == "scope": // the usual case, already decoded
		c.Roles = slices.Clone(c.Scope)
	default:
		if c.Roles, err = roles(data, v.RolesClaim); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// confirmation decodes a "cnf" claim: an object with x5t#S256, jkt or
// both, non-empty strings, and nothing else.
func confirmation(m Member, dst *Confirmation) error {
	all, err := unmarshal[map[string]json.RawMessage](m.Value)
	if err != nil || all == nil {
		return m.wrongType()
	}
	if len(all) == 0 {
		return errors.New(`"cnf" names no key`)
	}
	for name, raw := range all {
		var s string
		switch name {
		case "x5t#S256":
			s, err = unmarshal[string](string(raw))
			dst.X5tS256 = s
		case "jkt":
			s, err = unmarshal[string](string(raw))
			dst.JKT = s
		default:
			return fmt.Errorf(`"cnf" binds the token by %.32q, which the gateway does not check`, name)
		}
		if err != nil || s == "" {
			return fmt.Errorf(`"cnf" member %.32q is not a non-empty string`, name)
		}
	}
	return nil
}

// registered are the claims Claims has fields for; extra leaves them out.
var registered = []string{"iss", "sub", "client_id", "aud", "iat", "nbf", "exp", "jti", "scope", "cnf"}

// extra decodes the claims of a verified external token that Claims has
// no field for. They are bounded by the token's length; a token with
// none has nil.
func extra(data []byte) map[string]any {
	var all map[string]any
	if json.Unmarshal(data, &all) != nil { // checkObject accepted it: never
		return nil
	}
	for _, name := range registered {
		delete(all, name)
	}
	if len(all) == 0 {
		return nil
	}
	return all
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
	if ok && l.decode(Member{Name: path, Value: string(bytes.TrimSpace(raw))}) != nil {
		return nil, fail("token claim %q must be a string or an array of strings", path)
	}
	return l, nil
}

func (v *Verifier) check(w *claimsJSON) (*Claims, error) {
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
	case !w.Expiry.set:
		return nil, fail(`token has no "exp"`)
	case !w.IssuedAt.set && !v.External:
		return nil, fail(`token has no "iat"`)
	case !now.Before(w.Expiry.t.Add(v.Leeway)):
		return nil, fail("token is expired")
	case w.IssuedAt.set && w.IssuedAt.t.After(now.Add(v.Leeway)):
		return nil, &Error{Reason: "token is issued in the future", early: true}
	case w.NotBefore.set && w.NotBefore.t.After(now.Add(v.Leeway)):
		return nil, &Error{Reason: "token is not valid yet", early: true}
	}
	// An absent iat or nbf is the zero time, as Claims has it.
	return &Claims{
		Issuer:    w.Issuer,
		Subject:   w.Subject,
		ClientID:  w.ClientID,
		Audience:  w.Audience,
		IssuedAt:  w.IssuedAt.t,
		NotBefore: w.NotBefore.t,
		Expiry:    w.Expiry.t,
		ID:        w.ID,
	}, nil
}

// IsJWT reports whether token is in the JWT format rather than the
// gateway's opaque one: a compact JWS always has dots, an opaque token
// never does. It chooses which checks apply and proves nothing itself.
func IsJWT(token string) bool { return strings.IndexByte(token, '.') >= 0 }

// splitCompact returns the three segments of a compact JWS
// if token has exactly three non-empty segments of base64url characters.
// Anything else (JSON serialization, JWE's five segments, padding,
// whitespace) is refused here, before any decoder sees it.
func splitCompact(token string) (hdr, payload, sig string, ok bool) {
	var dots [2]int
	n := 0
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c == '.' && n < len(dots):
			dots[n] = i
			n++
		case !base64url[c]:
			return "", "", "", false
		}
	}
	if n != 2 || dots[0] == 0 || dots[1] == dots[0]+1 || dots[1] == len(token)-1 {
		return "", "", "", false
	}
	return token[:dots[0]], token[dots[0]+1 : dots[1]], token[dots[1]+1:], true
}

// cutCompact is splitCompact without the check of the alphabet, which
// the base64url decoders make as they go: the segments between exactly
// two dots, none of them empty, in a token without CR or LF (which the
// decoders would skip). strings.IndexByte finds a byte many at a time;
// splitCompact looks at one byte at a time, a sixth of the guard's work
// on a token beside its signature.
func cutCompact(token string) (hdr, payload, sig string, ok bool) {
	i := strings.IndexByte(token, '.')
	if i <= 0 || strings.IndexByte(token, '\n') >= 0 || strings.IndexByte(token, '\r') >= 0 {
		return "", "", "", false
	}
	j := i + 1 + strings.IndexByte(token[i+1:], '.')
	if j <= i+1 || j == len(token)-1 || strings.IndexByte(token[j+1:], '.') >= 0 {
		return "", "", "", false
	}
	return token[:i], token[i+1 : j], token[j+1:], true
}

// base64url marks the bytes of the base64url alphabet (RFC 4648 §5); a
// table makes splitCompact's scan of every byte of every token cheap.
var base64url = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = true
	}
	return t
}()

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
	_, payload, _, ok := splitCompact(token)
	if !ok {
		return "", false
	}
	var buf [16]Member
	members, err := decodeSegment(payload, buf[:0])
	for _, m := range members {
		if m.Name == "iss" && err == nil {
			err = str(m, &iss)
		}
	}
	return iss, err == nil && iss != ""
}
