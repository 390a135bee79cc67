// Package dpop checks DPoP proofs (RFC 9449): the JWT a client signs
// with its own key for every request, so that a token bound to that key
// (cnf.jkt) is worth nothing to whoever copies it without the key.
//
// A proof is trusted no further than its own signature: the algorithm
// must be on an allowlist of asymmetric algorithms, the key in the header
// must be a public key of the type that algorithm is defined for, and the
// header and claims are decoded as strictly as the gateway's tokens
// (tokens.DecodeObject). Its jti is remembered fleet-wide (state.Once)
// for as long as the proof could be accepted, so a proof works once.
package dpop

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// Type is the "typ" header every proof must carry (RFC 9449 §4.2).
const Type = "dpop+jwt"

// Header is the request header that carries a proof, and Scheme the
// Authorization scheme of a DPoP-bound token (RFC 9449 §4.1, §7.1).
const (
	Header      = "DPoP"
	NonceHeader = "DPoP-Nonce"
	Scheme      = "DPoP"
)

// MaxLength bounds a proof. An ES256 proof is about 550 bytes and an
// RSA-4096 one about 1.6 KiB; anything longer is refused unread.
const MaxLength = 8 << 10

// maxJTI bounds the jti, which is remembered: a UUID or 32 random bytes
// in base64url fit easily.
const maxJTI = 256

// maxRSABits bounds the work an RSA key in a proof can ask for.
const maxRSABits = 8192

// DefaultAlgorithms are the proof algorithms accepted unless configured:
// every asymmetric JWS algorithm of RFC 7518 and EdDSA (Ed25519). HMAC and
// "none" can never be configured.
var DefaultAlgorithms = []string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// Defaults of the iat window: a proof is accepted from iat-DefaultFuture
// (clock skew) to iat+DefaultMaxAge. RFC 9449 §11.1 leaves the window to
// the server; a minute is what most servers use.
const (
	DefaultMaxAge = 60 * time.Second
	DefaultFuture = 5 * time.Second
)

// ParseAlgorithms checks names against the asymmetric algorithms a proof
// may use; nil or empty means DefaultAlgorithms.
func ParseAlgorithms(names []string) ([]jwa.SignatureAlgorithm, error) {
	if len(names) == 0 {
		names = DefaultAlgorithms
	}
	out := make([]jwa.SignatureAlgorithm, 0, len(names))
	for _, n := range names {
		if !slices.Contains(DefaultAlgorithms, n) {
			return nil, fmt.Errorf("DPoP proof algorithm %q is not supported (want asymmetric ones of %s)", n, strings.Join(DefaultAlgorithms, ", "))
		}
		a, _ := jwa.LookupSignatureAlgorithm(n)
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// Nonces issue and check server nonces (RFC 9449 §8, §9). They must be
// stateless or shared, so that a nonce one instance of a fleet issues is
// good at every other.
type Nonces interface {
	Issue(now time.Time) string
	Valid(nonce string, now time.Time) bool
}

// Verifier checks proofs. Its zero value is not usable: Once is needed.
type Verifier struct {
	// Algorithms are the accepted "alg" values (see ParseAlgorithms).
	Algorithms []jwa.SignatureAlgorithm
	// MaxAge and Future bound iat: from now-MaxAge to now+Future.
	MaxAge, Future time.Duration
	// Once remembers the jti of every accepted proof until it could no
	// longer be accepted anyway.
	Once state.Once
	// Nonces, if set, makes every proof carry a valid server nonce.
	Nonces Nonces
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	once sync.Once
	keys *keyCache
}

// keyCacheSize bounds the headers a Verifier keeps: a client signs
// every proof with the same key, so its proofs share one header, whose
// decoding and key parsing cost about a fifth of the signature check
// they precede.
const keyCacheSize = 4096

// keyCache holds the key of each proof header that passed headerKey, by
// the header segment's exact text: the same text always decodes to the
// same header, and the same checks (one Verifier's) then find the same
// key, so what is found is what decoding would have made. Full, it is
// emptied, so that headers sent once cannot crowd it for good.
type keyCache struct {
	mu sync.Mutex
	m  map[string]*keys.Key
}

func (c *keyCache) get(seg string) *keys.Key {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[seg]
}

func (c *keyCache) put(seg string, k *keys.Key) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= keyCacheSize {
		clear(c.m)
	}
	// A copy: seg is part of a proof, which the cache must not keep alive.
	c.m[strings.Clone(seg)] = k
}

// Request is what a proof must match.
type Request struct {
	// Method is the request's method (htm).
	Method string
	// URLs are the request's URL as the client may have addressed it,
	// without query and fragment; htu must equal one of them after
	// normalization (RFC 9449 §4.3).
	URLs []string
	// AccessToken, when not "", is the token sent with the proof, whose
	// hash the proof must carry (ath). AccessTokenHash, if not zero, is
	// its SHA-256, which the caller may know already
	// (tokens.Claims.TokenHash).
	AccessToken     string
	AccessTokenHash [sha256.Size]byte
	// JKT, when not "", is the thumbprint of the key the token is bound
	// to: the proof must be signed by that key. It is checked before the
	// jti is remembered, so that a thief with a token and a key of his
	// own fills no replay store.
	JKT string
}

// Proof is a verified proof.
type Proof struct {
	// JKT is the RFC 7638 thumbprint of the proof's key, base64url: the
	// cnf.jkt of a token bound to it.
	JKT string
	ID  string
}

// Error is why a proof is refused. Nonce is set when the proof lacked a
// valid server nonce: the answer is use_dpop_nonce with a fresh one.
// Unavailable is set when the replay check could not be made, which is
// the gateway's fault and never the proof's. OtherKey is set when the
// proof is valid but signed by another key than Request.JKT.
type Error struct {
	Reason      string
	Nonce       bool
	Unavailable bool
	OtherKey    bool
	Err         error // from the state engine, for the log
}

func (e *Error) Error() string { return "DPoP proof: " + e.Reason }

func (e *Error) Unwrap() error { return e.Err }

func refuse(format string, args ...any) *Error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

// Parsed is a proof whose signature holds, not yet held to a request.
type Parsed struct {
	JKT      string
	ID       string
	Method   string
	URL      string
	IssuedAt time.Time
	Hash     string // ath, "" if absent
	Nonce    string // "" if absent
}

// Parse checks a proof's form and signature against the algorithm
// allowlist algs; it reads nothing from the proof before the header has
// passed and the signature holds.
func Parse(proof string, algs []jwa.SignatureAlgorithm) (Parsed, error) {
	return parse(proof, algs, nil)
}

func parse(proof string, algs []jwa.SignatureAlgorithm, cache *keyCache) (Parsed, error) {
	if len(proof) > MaxLength {
		return Parsed{}, refuse("longer than %d bytes", MaxLength)
	}
	h, rest, ok1 := strings.Cut(proof, ".")
	body, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return Parsed{}, refuse("not a compact JWS")
	}
	key := cache.get(h)
	if key == nil {
		var err error
		if key, err = headerKey(h, algs); err != nil {
			return Parsed{}, err
		}
		cache.put(h, key)
	}
	// The signing input and the signature in one allocation: Key.Verify
	// keeps neither, but its argument escapes all the same.
	input := proof[:len(h)+1+len(body)]
	buf := make([]byte, len(input)+base64.RawURLEncoding.DecodedLen(len(sig)))
	copy(buf, input)
	n, err := base64.RawURLEncoding.Strict().Decode(buf[len(input):], []byte(sig))
	if err != nil {
		return Parsed{}, refuse("signature is not base64url")
	}
	if !key.Verify(buf[:len(input)], buf[len(input):len(input)+n]) {
		return Parsed{}, refuse("the signature does not verify with the proof's jwk")
	}
	var room [8]tokens.Member
	claims, err := tokens.DecodeObject(room[:0], body)
	if err != nil {
		return Parsed{}, refuse("claims: %v", err)
	}
	p := Parsed{JKT: key.Thumbprint()}
	var haveIAT bool
	for _, m := range claims {
		var err error
		switch m.Name {
		case "jti":
			p.ID, err = m.AsString()
		case "htm":
			p.Method, err = m.AsString()
		case "htu":
			p.URL, err = m.AsString()
		case "ath":
			p.Hash, err = m.AsString()
		case "nonce":
			p.Nonce, err = m.AsString()
		case "iat":
			p.IssuedAt, haveIAT, err = m.AsDate()
		}
		if err != nil {
			return Parsed{}, refuse("claim %.16q: %v", m.Name, err)
		}
	}
	switch {
	case p.ID == "":
		return Parsed{}, refuse(`no "jti"`)
	case len(p.ID) > maxJTI:
		return Parsed{}, refuse(`"jti" is longer than %d bytes`, maxJTI)
	case p.Method == "":
		return Parsed{}, refuse(`no "htm"`)
	case p.URL == "":
		return Parsed{}, refuse(`no "htu"`)
	case !haveIAT:
		return Parsed{}, refuse(`no "iat"`)
	}
	return p, nil
}

// headerKey decodes and checks the header segment seg (typ, alg, jwk, no
// crit) and returns the key that must have signed the proof.
func headerKey(seg string, algs []jwa.SignatureAlgorithm) (*keys.Key, error) {
	hdr, err := tokens.DecodeObject(nil, seg)
	if err != nil {
		return nil, refuse("header: %v", err)
	}
	var typ, algName, rawJWK string
	for _, m := range hdr {
		var err error
		switch m.Name {
		case "typ":
			typ, err = m.AsString()
		case "alg":
			algName, err = m.AsString()
		case "jwk":
			rawJWK = m.Value
		case "crit":
			// RFC 7515 §4.1.11: extensions we do not implement must fail.
			return nil, refuse(`header has "crit", which no proof needs`)
		case "x5c", "x5u", "jku", "kid":
			// The key is the jwk alone (RFC 9449 §4.2); a second way to
			// name it is a second key to confuse with the first.
			return nil, refuse("header names its key by %q besides jwk", m.Name)
		}
		if err != nil {
			return nil, refuse("header %.16q: %v", m.Name, err)
		}
	}
	if typ != Type {
		return nil, refuse(`"typ" is %.32q, not %q`, typ, Type)
	}
	alg, ok := jwa.LookupSignatureAlgorithm(algName)
	if algName == "" || !ok || !slices.Contains(algs, alg) {
		return nil, refuse("algorithm %.16q is not allowed", algName)
	}
	if rawJWK == "" || rawJWK == "null" || rawJWK[0] != '{' {
		return nil, refuse(`header has no "jwk" object`)
	}
	return parseJWK(alg, rawJWK)
}

// parseJWK returns the key of a proof's jwk, for alg only.
func parseJWK(alg jwa.SignatureAlgorithm, rawJWK string) (*keys.Key, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(rawJWK), &m); err != nil {
		return nil, refuse(`"jwk" is not a JSON object`)
	}
	for _, name := range privateMembers {
		if _, ok := m[name]; ok {
			return nil, refuse(`"jwk" has the private or symmetric key member %q`, name)
		}
	}
	pub, err := jwk.ParseKey([]byte(rawJWK))
	if err != nil {
		return nil, refuse(`"jwk" is not a valid JWK`)
	}
	if private, err := jwk.IsPrivateKey(pub); err != nil || private {
		return nil, refuse(`"jwk" is not a public key`)
	}
	if pub.KeyType() == jwa.RSA() {
		var rk rsa.PublicKey
		if err := jwk.Export(pub, &rk); err != nil {
			return nil, refuse(`"jwk" is not a valid RSA key`)
		}
		if n := rk.N.BitLen(); n < keys.RSABits || n > maxRSABits {
			return nil, refuse("the RSA key has %d bits, not %d to %d", n, keys.RSABits, maxRSABits)
		}
	}
	// NewPublic refuses a key that is not of the type (and curve) alg
	// is defined for: the alg names the key, never the other way round.
	k, err := keys.NewPublic("", alg, pub)
	if err != nil {
		return nil, refuse(`"jwk" is not a key for %s`, alg)
	}
	return k, nil
}

// privateMembers are the JWK members of private and symmetric keys (RFC
// 7518 §6.2.2, §6.3.2, §6.4.1, RFC 8037 §2): a client that sends one has
// leaked its key, and we use no such key.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// Verify checks proof for req: form and signature (Parse), htm, htu, iat
// window, ath, nonce, and last that its jti was never seen before, so
// that a proof refused for anything else costs no entry in the replay
// store.
func (v *Verifier) Verify(ctx context.Context, proof string, req Request) (Proof, error) {
	v.once.Do(func() { v.keys = &keyCache{m: map[string]*keys.Key{}} })
	p, err := parse(proof, v.Algorithms, v.keys)
	if err != nil {
		return Proof{}, err
	}
	now := v.Clock()
	maxAge := v.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	switch {
	case p.Method != req.Method:
		return Proof{}, refuse("htm %.16q is not the request's method %s", p.Method, req.Method)
	case !matchURL(p.URL, req.URLs):
		return Proof{}, refuse("htu is not this request's URL")
	case p.IssuedAt.After(now.Add(v.Future)):
		return Proof{}, refuse("iat is in the future")
	case p.IssuedAt.Before(now.Add(-maxAge)):
		return Proof{}, refuse("iat is more than %s ago", maxAge)
	}
	if req.AccessToken != "" {
		if p.Hash == "" {
			return Proof{}, refuse(`no "ath": the proof must carry the hash of the access token`)
		}
		if !matchesHash(p.Hash, req.AccessToken, req.AccessTokenHash) {
			return Proof{}, refuse(`"ath" is not the hash of this access token`)
		}
	}
	if req.JKT != "" && !equal(p.JKT, req.JKT) {
		return Proof{}, &Error{Reason: "signed by another key than the token is bound to", OtherKey: true}
	}
	if v.Nonces != nil && (p.Nonce == "" || !v.Nonces.Valid(p.Nonce, now)) {
		return Proof{}, &Error{Reason: "a fresh server nonce is required (DPoP-Nonce)", Nonce: true}
	}
	first, err := v.Once.First(ctx, "dpop", p.JKT+"\x00"+p.ID, p.IssuedAt.Add(maxAge+time.Second))
	switch {
	case err != nil:
		return Proof{}, &Error{Reason: "its jti cannot be checked for replay now", Unavailable: true, Err: err}
	case !first:
		return Proof{}, refuse("jti was used before: a proof is good for one request")
	}
	return Proof{JKT: p.JKT, ID: p.ID}, nil
}

// athLength is the length of an ath: a SHA-256 digest in unpadded
// base64url.
const athLength = (sha256.Size*8 + 5) / 6

// matchesHash reports, in constant time, whether ath is the hash of
// token (RFC 9449 §4.2), whose SHA-256 is sum unless sum is zero. Both
// sides are built on the stack: a proof per request should cost the heap
// nothing it need not.
func matchesHash(ath, token string, sum [sha256.Size]byte) bool {
	if len(ath) != athLength {
		return false
	}
	if sum == ([sha256.Size]byte{}) {
		var buf [2 << 10]byte
		if len(token) <= len(buf) {
			sum = sha256.Sum256(buf[:copy(buf[:], token)])
		} else {
			sum = sha256.Sum256([]byte(token))
		}
	}
	var want, got [athLength]byte
	base64.RawURLEncoding.Encode(want[:], sum[:])
	copy(got[:], ath)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// equal compares a with b in constant time, copying short ones (a jkt
// is 43 characters) to the stack rather than to the heap.
func equal(a, b string) bool {
	var x, y [64]byte
	if len(a) > len(x) || len(b) > len(y) {
		return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
	}
	return subtle.ConstantTimeCompare(x[:copy(x[:], a)], y[:copy(y[:], b)]) == 1
}

// Clock is the verifier's time: Now's, or time.Now's.
func (v *Verifier) Clock() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// matchURL reports whether htu names one of urls after normalization.
func matchURL(htu string, urls []string) bool {
	for _, u := range urls {
		// The usual proof names the URL as the gateway rebuilds it:
		// equal texts normalize alike, so one of them is parsed, not two.
		if htu == u {
			_, ok := NormalizeURL(u)
			return ok
		}
	}
	got, ok := NormalizeURL(htu)
	if !ok {
		return false
	}
	for _, u := range urls {
		if want, ok := NormalizeURL(u); ok && want == got {
			return true
		}
	}
	return false
}

// NormalizeURL is u as RFC 9449 §4.3 compares it: scheme and host
// lower-cased, a default port dropped, the path as sent ("" as "/"),
// and no query or fragment. ok is false for what is not an absolute
// http(s) URL.
func NormalizeURL(u string) (string, bool) {
	p, err := url.Parse(u)
	if err != nil || p.Opaque != "" || p.User != nil || p.Host == "" {
		return "", false
	}
	scheme := strings.ToLower(p.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	host, port := strings.ToLower(p.Hostname()), p.Port()
	if scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		port = ""
	}
	if port != "" || strings.Contains(host, ":") {
		if port == "" {
			host = "[" + host + "]"
		} else {
			host = net.JoinHostPort(host, port)
		}
	}
	path := p.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}

// IsUnavailable reports whether err is a failure to check a proof that is
// the gateway's, not the proof's.
func IsUnavailable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Unavailable
}

// NeedsNonce reports whether err asks for a fresh server nonce.
func NeedsNonce(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Nonce
}
