// Package caddymodule plugs oauthgate into Caddy: the "oauth" app, which
// owns what both handlers share (issuer, signing keys, clients, policy),
// the "oauth_server" and "oauth_guard" HTTP handlers, their Caddyfile
// syntax, the admin API and the metrics. The logic lives in the
// sub-packages, which know nothing of Caddy; the "caddy oauth" commands
// are in package command.
package caddymodule

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/clientcert"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/csrf"
	"github.com/oauthgate/oauthgate/caddymodule/filewatch"
	"github.com/oauthgate/oauthgate/caddymodule/issuers"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
	"github.com/oauthgate/oauthgate/caddymodule/ratelimit"
	"github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
	"github.com/oauthgate/oauthgate/caddymodule/weburl"
)

func init() {
	caddy.RegisterModule(new(App))
}

// DefaultLeeway is the clock skew tolerated in exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// App is the "oauth" app: the gateway's authorization-server state,
// shared by the oauth_server and oauth_guard handlers of every site.
//
// Signing keys are kept in Caddy's configured storage (the "storage"
// global option), generated there on first start. Instances that share
// storage share keys, and a restart keeps issued tokens valid.
type App struct {
	// Issuer identifies this gateway as a token issuer: the "iss" claim
	// of every token it issues and the only issuer its guards trust. An
	// absolute http(s) URL without query or fragment, normally the
	// gateway's public base URL; RFC 8414 metadata and the JWKS are
	// published under it. Required.
	Issuer string `json:"issuer,omitempty"`

	// Audience is the "aud" claim of issued tokens and what guards
	// require in "aud" by default. Default: the issuer.
	Audience string `json:"audience,omitempty"`

	// ClientsFile is the path of the clients file (JSON, written by
	// "caddy oauth client add"). Required. It is watched like the policy:
	// a change (a new, disabled or removed client, a rotated secret) is in
	// force within half a second; a file that does not parse is refused
	// and the last good one stays in force.
	ClientsFile string `json:"clients,omitempty"`

	// PolicyFile is the path of the policy file (YAML): subjects and their
	// roles, and the roles each path requires. Required. It is watched:
	// a change is in force within half a second, without a reload and
	// without dropping a request; a file that does not parse is refused
	// (logged with file:line, counted in oauthgate_file_reloads_total)
	// and the last good policy stays in force.
	PolicyFile string `json:"policy,omitempty"`

	// Leeway is the clock skew tolerated when checking a token's exp,
	// nbf and iat. Default: 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`

	// MaxTokenLifetime caps every client's token lifetime; a client with
	// token_lifetime 0 ("valid until the client requests a new token", as
	// in SAP BTP Neo) gets exactly this. Default: 180 days (4320h), SAP's
	// cap.
	MaxTokenLifetime caddy.Duration `json:"max_token_lifetime,omitempty"`

	// SigningAlgorithm signs new tokens: ES256 (default), EdDSA (Ed25519),
	// RS256 or PS256 (RSA 2048). Changing it rotates to a key of the new
	// algorithm, published an hour before it signs.
	SigningAlgorithm string `json:"signing_algorithm,omitempty"`

	// KeyRotation is the age at which the signing key is replaced. The
	// next key is published in the JWKS an hour before it signs; a
	// replaced key stays published until every token it signed has
	// expired. At least 1h. Default: 720h (30 days). Keys can also be
	// rotated on demand through the admin API (POST /oauth/keys/rotate).
	KeyRotation caddy.Duration `json:"key_rotation,omitempty"`

	// State, if set, keeps what the instances of a fleet must agree on in
	// a shared engine (Redis) instead of Caddy's storage. See StateConfig.
	State *StateConfig `json:"state,omitempty"`

	// TrustedIssuers are external issuers whose tokens the guards accept
	// besides the gateway's own, each checked with its own keys and rules.
	TrustedIssuers []TrustedIssuer `json:"trusted_issuers,omitempty"`

	// ClientCertificates, if set, turns on TLS client certificates: client
	// authentication by certificate and certificate-bound tokens (RFC
	// 8705). See ClientCertificates.
	ClientCertificates *ClientCertificates `json:"client_certificates,omitempty"`

	issuers map[string]*issuers.Issuer // by "iss"
	clients *clients.Watcher
	limiter authserver.Limiter // of failed client authentications
	keys    *keys.Keeper       // also the guards' and introspection's tokens.KeySource
	policy  *policy.Watcher
	tokens  *tokenstate.Store
	csrf    *csrf.Keeper // the CSRF key, shared like the MAC key
	logger  *zap.Logger
	stop    context.CancelFunc
	done    chan struct{}
	held    holds // what it holds in the pool (pool.go)
	// fleet adds up the instances' request counts (Redis); nil counts
	// per instance. limits counts the callers of every guard.
	fleet  ratelimit.Fleet
	limits *ratelimit.Limiter
	// once remembers the one-time identifiers of DPoP proofs and client
	// assertions: Redis for a fleet, else this process's memory.
	once state.Once
	// keysChanged wakes the key sync when another instance stored keys.
	keysChanged chan struct{}
	// certs finds requests' client certificates; nil when
	// client_certificates is not set. clientCAs verify tls_client_auth.
	certs     *clientcert.Source
	clientCAs *x509.CertPool
}

// DefaultMaxTokenLifetime is SAP BTP's cap on token lifetimes.
const DefaultMaxTokenLifetime = 180 * 24 * time.Hour

// DefaultKeyRotation is the default age of a signing key at rotation.
const DefaultKeyRotation = 30 * 24 * time.Hour

// keySync is how often an instance reads the keys and does due
// rotations, and so how long it may sign with a key another instance
// replaced. (A token of a key it does not know yet makes it read the keys
// at once: keys.Keeper.)
const keySync = time.Minute

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "oauth",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision loads the clients, the policy and the signing keys. Any
// problem fails the config load, so a running gateway keeps its previous,
// good config.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if err := a.validateConfig(); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("oauth: metrics: %w", err)
	}
	if a.Audience == "" {
		a.Audience = a.Issuer
	}
	if a.Leeway == 0 {
		a.Leeway = caddy.Duration(DefaultLeeway)
	}
	if a.MaxTokenLifetime == 0 {
		a.MaxTokenLifetime = caddy.Duration(DefaultMaxTokenLifetime)
	}
	if a.KeyRotation == 0 {
		a.KeyRotation = caddy.Duration(DefaultKeyRotation)
	}
	if err := a.provisionCertificates(); err != nil {
		return err
	}
	alg, err := keys.ParseAlgorithm(cmp.Or(a.SigningAlgorithm, "ES256"))
	if err != nil {
		return fmt.Errorf("oauth: signing_algorithm: %w", err)
	}
	local, err := holdLimiter(&a.held)
	if err != nil {
		return err
	}
	blobs, entries, limiter, where, err := a.openState(ctx, local)
	if err != nil {
		return err
	}
	a.limiter = limiter
	if a.limits, err = holdRateLimiter(&a.held, where, a.fleet, a.logger); err != nil {
		return err
	}
	if a.once == nil {
		if a.once, err = holdOnce(&a.held); err != nil {
			return err
		}
	}
	if a.keys, err = holdKeeper(&a.held, where, blobs, keys.Options{
		Algorithm:   alg,
		RotateEvery: time.Duration(a.KeyRotation),
		// A replaced key verifies every token it signed, the longest-lived
		// included, until it expires, plus the skew we tolerate and the
		// time another instance may take to notice.
		RetainFor: time.Duration(a.MaxTokenLifetime+a.Leeway) + keySync,
	}); err != nil {
		return fmt.Errorf("oauth: key_rotation: %w", err)
	}

	secrets, err := holdSecretCache(&a.held)
	if err != nil {
		return err
	}
	if a.clients, err = clients.NewWatcher(a.ClientsFile, secrets); err != nil {
		return fmt.Errorf("oauth: clients: %w", err)
	}
	observe(a.clients, a.logger, "clients", a.ClientsFile)
	if a.policy, err = policy.NewWatcher(a.PolicyFile); err != nil {
		return fmt.Errorf("oauth: policy: %w", err)
	}
	observe(a.policy, a.logger, "policy", a.PolicyFile)
	if err := a.provisionIssuers(); err != nil {
		return err
	}
	if err := a.syncKeys(ctx); err != nil {
		return err
	}
	if a.tokens, err = tokenstate.Open(ctx, blobs, entries, nil); err != nil {
		if a.tokens == nil {
			return fmt.Errorf("oauth: %w", err)
		}
		a.logger.Error("token state", zap.Error(err))
	}
	if a.csrf, err = csrf.OpenKeeper(ctx, blobs); err != nil {
		return fmt.Errorf("oauth: CSRF key: %w", err)
	}
	a.tokens.OnError = func(err error) { a.logger.Error("syncing token state", zap.Error(err)) }
	a.keysChanged = make(chan struct{}, 1)
	a.tokens.OnBlobs = func(name string) {
		if name == "" || name == keys.StorageKey {
			a.keys.StorageChanged()
			select { // the key sync reads them; one wake-up is enough
			case a.keysChanged <- struct{}{}:
			default:
			}
		}
	}
	a.logger.Info("oauth ready",
		zap.String("issuer", a.Issuer),
		zap.Int("clients", a.Clients().Len()),
		zap.String("signing_key", a.Keys().Signing().ID))
	return nil
}

func (a *App) validateConfig() error {
	switch {
	case a.Issuer == "":
		return errors.New("oauth: issuer is required (the gateway's public base URL, e.g. https://gateway.example.com)")
	case a.ClientsFile == "":
		return errors.New("oauth: clients is required (the path of the clients file)")
	case a.PolicyFile == "":
		return errors.New("oauth: policy is required (the path of the policy file)")
	case a.Leeway < 0:
		return errors.New("oauth: leeway must not be negative")
	case a.MaxTokenLifetime < 0:
		return errors.New("oauth: max_token_lifetime must not be negative")
	}
	u, err := weburl.Parse(a.Issuer)
	// No path: the endpoints and RFC 8414 metadata are served at the root
	// of the host, which is where clients look for an issuer without one.
	if err != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("oauth: issuer %q: want an absolute http(s) URL of a host, without path, query, fragment or user info", a.Issuer)
	}
	if weburl.Cleartext(u) {
		// RFC 8414 §2 wants https; plain http is fine on loopback demos,
		// elsewhere it is a mistake worth a line in the log.
		a.logger.Warn("issuer is not https; tokens and secrets cross the network in clear", zap.String("issuer", a.Issuer))
	}
	return nil
}

// Start keeps the token state current and runs the key sync.
func (a *App) Start() error {
	ctx, cancel := context.WithCancel(context.Background())
	a.stop, a.done = cancel, make(chan struct{})
	a.runIssuers(ctx)
	go a.policy.Run(ctx)
	go a.clients.Run(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.tokens.Run(ctx) })
	wg.Go(func() {
		t := time.NewTicker(keySync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-a.keysChanged:
			}
			if err := a.syncKeys(ctx); err != nil && ctx.Err() == nil {
				a.logger.Error("background sync", zap.Error(err))
			}
			// After the state engine lost its data, the CSRF key comes
			// back from the instances that hold it, or they take up the
			// one a new instance made: either way, within a minute.
			if err := a.csrf.Sync(ctx); err != nil && ctx.Err() == nil {
				a.logger.Error("CSRF key sync", zap.Error(err))
			}
		}
	})
	go func() {
		wg.Wait()
		close(a.done)
	}()
	return nil
}

// syncKeys reads the keys from storage and does due rotations. A set that
// loaded is put in use even if maintenance failed: signing goes on with
// the keys that are there.
func (a *App) syncKeys(ctx context.Context) error {
	if err := a.keys.Sync(ctx); err != nil {
		if a.keys.Current() == nil {
			return fmt.Errorf("oauth: signing keys: %w", err)
		}
		a.logger.Error("signing keys: maintenance failed; signing with the keys in use", zap.Error(err))
	}
	return nil
}

// RotateKeys publishes a new signing key: it signs after an hour, or at
// once if immediate (for a compromised key). Every instance sharing the
// storage accepts its tokens from the first one on, and signs with it
// within a minute (keySync).
func (a *App) RotateKeys(ctx context.Context, immediate bool) (*keys.Set, error) {
	set, err := a.keys.Rotate(ctx, immediate)
	if err != nil {
		return nil, err
	}
	a.logger.Info("signing keys rotated", zap.Bool("immediate", immediate), zap.String("signing_key", set.Signing().ID))
	return set, nil
}

// Stop ends the background sync and waits for it.
func (a *App) Stop() error {
	if a.stop != nil {
		a.stop()
		<-a.done
	}
	return nil
}

// The snapshots both handlers read (authserver.State, guard.State).

// Clients returns the client registry.
func (a *App) Clients() *clients.Registry { return a.clients.Current() }

// Keys returns the signing keys.
func (a *App) Keys() *keys.Set { return a.keys.Current() }

// Policy returns the policy.
func (a *App) Policy() *policy.Policy { return a.policy.Current() }

// Roles returns the roles the policy grants subject.
func (a *App) Roles(subject string) []string { return a.Policy().Roles(subject) }

// verifier returns a verifier of this app's tokens, of both formats, for
// the given audience ("" for any: introspection and revocation), with its
// own cache of verified tokens if cache is not nil.
func (a *App) verifier(audience string, cache *tokens.Cache) *tokenstate.Verifier {
	return &tokenstate.Verifier{
		JWT: &tokens.Verifier{
			Keys:           a.keys,
			Issuer:         a.Issuer,
			Audience:       audience,
			IgnoreAudience: audience == "",
			Leeway:         time.Duration(a.Leeway),
			Cache:          cache,
		},
		State:        a.tokens,
		ClientActive: a.clientActive,
	}
}

func (a *App) clientActive(id string) bool {
	c := a.Clients().Lookup(id)
	return c != nil && !c.Disabled
}

// observe logs and counts the reloads of a watched file: what is
// "policy" or "clients".
func observe[T any](w *filewatch.Watcher[T], log *zap.Logger, what, file string) {
	w.OnReload = func(*T) {
		metrics.fileReloads.WithLabelValues(what, "ok").Inc()
		log.Info(what+" reloaded", zap.String("file", file))
	}
	w.OnRefuse = func(err error) {
		metrics.fileReloads.WithLabelValues(what, "error").Inc()
		log.Error(what+" file refused; the last good one stays in force", zap.Error(err))
	}
}

// Cleanup lets go of what this config held in the pool; what the next
// config holds too stays.
func (a *App) Cleanup() error {
	a.held.release()
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
