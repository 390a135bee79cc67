// Package issuers lets the guard trust the access tokens of other
// authorization servers (SAP XSUAA, Keycloak, Entra ID, …). Per issuer, the
// keys come from its JWKS, found at a configured URL or by discovery; they
// are fetched at start, refreshed periodically and when a token names an
// unknown "kid", and kept while the issuer is unreachable. Tokens are then
// verified by package tokens in its External profile, each key with the one
// algorithm it was accepted for.
package issuers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/weburl"
)

// Defaults of Config.
const (
	DefaultLeeway             = 30 * time.Second
	DefaultRefreshInterval    = time.Hour
	DefaultMinRefetchInterval = 30 * time.Second
	DefaultRolesClaim         = "scope"
)

// ErrUnavailable means that no key of the issuer has been obtained yet,
// so its tokens can be neither accepted nor refused: the guard answers 503,
// not 401, and the client may retry.
var ErrUnavailable = errors.New("the issuer's keys are unavailable")

// Config describes one trusted issuer.
type Config struct {
	// Issuer is the exact "iss" of its tokens. With Discovery it is also
	// the URL the metadata is found at.
	Issuer string
	// JWKSURL is where the issuer publishes its keys. Exactly one of
	// JWKSURL and Discovery is set.
	JWKSURL string
	// Discovery finds the JWKS URL in the issuer's metadata: for an issuer
	// without a path, /.well-known/openid-configuration, else
	// /.well-known/oauth-authorization-server; for an issuer with a path,
	// <issuer>/.well-known/openid-configuration (OpenID Connect Discovery
	// §4), else the RFC 8414 §3 form with the well-known part inserted
	// before the path. The document's "issuer" must equal Issuer exactly
	// (RFC 8414 §3.3), or anyone able to serve it could name any issuer's
	// keys.
	Discovery bool
	// Audience must appear in the tokens' "aud".
	Audience string
	// Algorithms the issuer's keys may have: RS256, RS384, RS512, PS256,
	// PS384, PS512, ES256, ES384, ES512, EdDSA (Ed25519). Default RS256. A
	// published key without "alg" gets the first of these that fits its
	// type and curve, so list the algorithm the issuer signs with first.
	Algorithms []string
	// Types are the accepted "typ" headers, as in tokens.Verifier: case
	// does not matter, "application/" may precede, "" accepts a token
	// without "typ". Default at+jwt (RFC 9068); SAP XSUAA needs JWT.
	Types []string
	// Leeway absorbs clock skew in the exp, nbf and iat checks. Default
	// 30s; negative is an error.
	Leeway time.Duration
	// RolesClaim is the claim (a dotted path for nested objects, e.g.
	// realm_access.roles) whose string or string-array value becomes the
	// token's roles, tokens.Claims.Roles. Default "scope".
	RolesClaim string
	// RoleMatch says how a roles-claim value names a role of the policy:
	// "exact" (default), or "suffix" for SAP XSUAA, whose scopes read
	// "<xsappname>.<role>" where <xsappname> is Audience (see RolePrefix).
	RoleMatch string
	// HTTPClient fetches metadata and keys; nil means a new client. Its
	// CheckRedirect is replaced: at most 3 redirects, each to a URL this
	// package accepts, never from https to http.
	HTTPClient *http.Client
	// RefreshInterval is how often Run refetches the keys. Default 1h.
	RefreshInterval time.Duration
	// MinRefetchInterval bounds how often an unknown "kid" makes us
	// refetch, so that junk tokens cannot make us flood the issuer, and
	// how fast Run retries after a failure. Default 30s.
	MinRefetchInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Report is told what would otherwise go unseen: JWKS keys skipped
	// (symmetric, private, too weak, algorithm not allowed, …) and failed
	// refetches in the background, after which the last keys stay in use.
	// nil discards them. The errors name the issuer, never a token.
	Report func(error)
	// Fetched, if set, is told the outcome of every fetch (nil: new keys
	// in use), for metrics.
	Fetched func(error)
	// Cache, if set, remembers this issuer's verified tokens (see
	// tokens.Cache); it must be the issuer's own.
	Cache *tokens.Cache
}

// fetchTimeout bounds one fetch (metadata and JWKS): a request that waits
// for the refetch an unknown kid triggered waits at most this long.
const fetchTimeout = 5 * time.Second

// Issuer verifies the tokens of one configured issuer. It is safe for
// concurrent use.
type Issuer struct {
	cfg       Config
	verifier  tokens.Verifier // Keys is set per call
	algs      []jwa.SignatureAlgorithm
	client    *http.Client
	discovery []string // metadata URLs to try, in order

	// keys is nil until the first successful fetch; a failed fetch never
	// replaces it, so the issuer's last keys outlive its outages.
	keys atomic.Pointer[keySet]
	// fetchedAt is when keys was last stored, in Unix nanoseconds.
	fetchedAt atomic.Int64

	mu          sync.Mutex
	inflight    *flight   // the running fetch, shared by all who need one
	lastAttempt time.Time // when the last fetch started

	// jwksURL is the discovered JWKS URL. Only fetches touch it, and
	// they never overlap (inflight).
	jwksURL string

	// after is Run's timer; tests replace it.
	after func(time.Duration) <-chan time.Time
}

// flight is one fetch; done is closed when err is set.
type flight struct {
	done chan struct{}
	err  error
}

// keySet is an immutable map from kid to key.
type keySet map[string]*keys.Key

// New checks cfg and returns its Issuer, which has no key yet: call Fetch.
func New(cfg Config) (*Issuer, error) {
	if err := defaults(&cfg); err != nil {
		return nil, fmt.Errorf("issuer %q: %w", cfg.Issuer, err)
	}
	i := &Issuer{cfg: cfg, after: time.After}
	var err error
	if i.algs, err = parseAlgorithms(cfg.Algorithms); err != nil {
		return nil, fmt.Errorf("issuer %q: %w", cfg.Issuer, err)
	}
	// Keys fetched in clear over a network could be anyone's: https, or
	// http to a loopback host (tests, a sidecar). Redirects are held to
	// the same rule (checkRedirect).
	if cfg.Discovery {
		u, err := weburl.Check(cfg.Issuer)
		if err == nil && u.RawQuery != "" {
			err = errors.New("has a query") // RFC 8414 §2
		}
		if err != nil {
			return nil, fmt.Errorf("issuer %q: with discovery, the issuer is a URL: %w", cfg.Issuer, err)
		}
		i.discovery = discoveryURLs(u)
	} else if _, err := weburl.Check(cfg.JWKSURL); err != nil {
		return nil, fmt.Errorf("issuer %q: JWKS URL: %w", cfg.Issuer, err)
	}
	i.client = &http.Client{CheckRedirect: checkRedirect}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		c.CheckRedirect = checkRedirect
		i.client = &c
	}
	i.verifier = tokens.Verifier{
		Issuer:     cfg.Issuer,
		Audience:   cfg.Audience,
		Leeway:     cfg.Leeway,
		Now:        cfg.Now,
		Types:      cfg.Types,
		External:   true,
		RolesClaim: cfg.RolesClaim,
		Cache:      cfg.Cache,
	}
	return i, nil
}

func defaults(cfg *Config) error {
	switch {
	case cfg.Issuer == "":
		return errors.New("the issuer is required")
	case cfg.Audience == "":
		return errors.New("the audience is required")
	case (cfg.JWKSURL == "") == !cfg.Discovery:
		return errors.New("set exactly one of a JWKS URL and discovery")
	case cfg.Leeway < 0, cfg.RefreshInterval < 0, cfg.MinRefetchInterval < 0:
		return errors.New("leeway and intervals must not be negative")
	case cfg.RoleMatch != "" && cfg.RoleMatch != "exact" && cfg.RoleMatch != "suffix":
		return fmt.Errorf("role_match %q: want exact or suffix", cfg.RoleMatch)
	case strings.HasPrefix(cfg.RolesClaim, ".") || strings.HasSuffix(cfg.RolesClaim, ".") || strings.Contains(cfg.RolesClaim, ".."):
		return fmt.Errorf("roles claim %q has an empty name in its path", cfg.RolesClaim)
	}
	if cfg.Algorithms == nil {
		cfg.Algorithms = []string{"RS256"}
	}
	cfg.Types = slices.Clone(cfg.Types) // ours, whatever the caller does with its slice
	if cfg.Types == nil {
		cfg.Types = []string{tokens.Type}
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.RolesClaim == "" {
		cfg.RolesClaim = DefaultRolesClaim
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.MinRefetchInterval == 0 {
		cfg.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if cfg.MinRefetchInterval > cfg.RefreshInterval {
		return errors.New("the minimum refetch interval is longer than the refresh interval")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return nil
}

// Issuer returns the configured "iss".
func (i *Issuer) Issuer() string { return i.cfg.Issuer }

// RolePrefix is "" for exact role matching; with role_match suffix it is
// the xsappname (the audience) whose "<xsappname>.<role>" scopes grant
// <role>, as in SAP Cloud Integration. The scopes of other apps in the
// same token grant nothing.
func (i *Issuer) RolePrefix() string {
	if i.cfg.RoleMatch == "suffix" {
		return i.cfg.Audience
	}
	return ""
}

// Verify checks token, a token of this issuer. A bad token gives a
// *tokens.Error. A token naming an unknown kid makes us refetch the keys
// first, unless a fetch started less than MinRefetchInterval ago; if no
// key has ever been obtained, the error is ErrUnavailable.
func (i *Issuer) Verify(ctx context.Context, token string) (*tokens.Claims, error) {
	before := i.keys.Load()
	c, missed, err := i.verify(before, token)
	// A wrong signature by a known kid may mean the issuer has put a new
	// key under an old kid: its kids are labels, not thumbprints as ours
	// are. Refetch for that too, under the same rate limit.
	if !missed && !isBadSignature(err) {
		return c, err
	}
	i.refetch(ctx)
	// Compared with the keys the token was checked against, not with
	// those after the check: a fetch that ended in between brought keys
	// the token has not met yet.
	switch after := i.keys.Load(); {
	case after == nil:
		return nil, fmt.Errorf("issuer %q: %w: none was ever obtained", i.cfg.Issuer, ErrUnavailable)
	case after != before: // new keys: they may verify it
		c, _, err = i.verify(after, token)
	}
	return c, err
}

// isBadSignature reports whether err is a signature that did not verify.
func isBadSignature(err error) bool {
	var te *tokens.Error
	return errors.As(err, &te) && te.Reason == tokens.ReasonBadSignature
}

// verify checks token against set and says whether it named a kid set
// does not have. It takes no lock.
func (i *Issuer) verify(set *keySet, token string) (c *tokens.Claims, missed bool, err error) {
	l := &lookup{set: set}
	v := i.verifier
	v.Keys = l
	c, err = v.Verify(token)
	return c, l.missed, err
}

type lookup struct {
	set    *keySet
	missed bool
}

func (l *lookup) Lookup(kid string) *keys.Key {
	if l.set != nil {
		if k := (*l.set)[kid]; k != nil {
			return k
		}
	}
	l.missed = true
	return nil
}

// refetch waits for a fetch of the keys: the running one, or a new one if
// the last started at least MinRefetchInterval ago. Otherwise it returns
// at once.
func (i *Issuer) refetch(ctx context.Context) {
	i.mu.Lock()
	f := i.inflight
	if f == nil {
		if !i.lastAttempt.IsZero() && i.cfg.Now().Sub(i.lastAttempt) < i.cfg.MinRefetchInterval {
			i.mu.Unlock()
			return
		}
		f = i.start(true)
	}
	i.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
	}
}

// Fetch fetches the keys now (with discovery, the metadata too), or waits
// for the fetch already running. On failure the previous keys stay in use.
func (i *Issuer) Fetch(ctx context.Context) error {
	i.mu.Lock()
	f := i.inflight
	if f == nil {
		f = i.start(false)
	}
	i.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start runs a fetch for everyone who needs one. It is detached from the
// caller's context, which one impatient request could cancel for all, and
// bounded by fetchTimeout instead. A fetch for an unknown kid reuses the
// discovered JWKS URL (new keys are needed, not new metadata) and reports
// its own failure, as the requests waiting for it cannot. i.mu must be
// held.
func (i *Issuer) start(unknownKid bool) *flight {
	f := &flight{done: make(chan struct{})}
	i.inflight = f
	i.lastAttempt = i.cfg.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		f.err = i.fetch(ctx, !unknownKid)
		cancel()
		if i.cfg.Fetched != nil {
			i.cfg.Fetched(f.err)
		}
		if f.err != nil && unknownKid {
			i.report(f.err)
		}
		i.mu.Lock()
		i.inflight = nil
		i.mu.Unlock()
		close(f.done)
	}()
	return f
}

// Run refetches the keys every RefreshInterval until ctx is done. After a
// failure it retries after MinRefetchInterval, doubling up to
// RefreshInterval, and reports the failure; the last keys stay in use.
// Call Fetch first: if it failed, Run's first retry comes after
// MinRefetchInterval.
func (i *Issuer) Run(ctx context.Context) {
	failures := 0
	if i.keys.Load() == nil {
		failures = 1
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-i.after(i.delay(failures)):
		}
		if err := i.Fetch(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			i.report(fmt.Errorf("%w (the last keys stay in use)", err))
		} else {
			failures = 0
		}
	}
}

// delay is Run's wait after the given number of consecutive failures.
func (i *Issuer) delay(failures int) time.Duration {
	if failures == 0 {
		return i.cfg.RefreshInterval
	}
	d := i.cfg.MinRefetchInterval
	for n := 1; n < failures && d < i.cfg.RefreshInterval; n++ {
		d *= 2
	}
	return min(d, i.cfg.RefreshInterval)
}

func (i *Issuer) report(err error) {
	if i.cfg.Report != nil {
		i.cfg.Report(err)
	}
}

// fetch gets and installs the keys. Without rediscover, a JWKS URL found
// by discovery before is reused.
func (i *Issuer) fetch(ctx context.Context, rediscover bool) error {
	jwksURL := i.cfg.JWKSURL
	if i.cfg.Discovery {
		if i.jwksURL == "" || rediscover {
			u, err := i.discover(ctx)
			if err != nil {
				return fmt.Errorf("issuer %q: discovery: %w", i.cfg.Issuer, err)
			}
			i.jwksURL = u
		}
		jwksURL = i.jwksURL
	}
	body, err := i.get(ctx, jwksURL)
	if err != nil {
		return fmt.Errorf("issuer %q: JWKS: %w", i.cfg.Issuer, err)
	}
	set, skipped, err := parseJWKS(body, i.algs)
	for _, s := range skipped {
		i.report(fmt.Errorf("issuer %q: JWKS %s: %w", i.cfg.Issuer, jwksURL, s))
	}
	if err != nil {
		return fmt.Errorf("issuer %q: JWKS %s: %w", i.cfg.Issuer, jwksURL, err)
	}
	i.keys.Store(&set)
	i.fetchedAt.Store(i.cfg.Now().UnixNano())
	return nil
}

// discoveryURLs lists where the metadata of issuer u may be.
func discoveryURLs(u *url.URL) []string {
	origin := u.Scheme + "://" + u.Host
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	if path == "" {
		return []string{origin + "/.well-known/openid-configuration", origin + "/.well-known/oauth-authorization-server"}
	}
	return []string{origin + path + "/.well-known/openid-configuration", origin + "/.well-known/oauth-authorization-server" + path}
}
