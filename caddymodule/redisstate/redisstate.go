// Package redisstate keeps the state a fleet of gateways shares in one
// Redis (or Valkey): the signing keys and the opaque-token MAC key
// (Blobs), revocations, opaque tokens and lifetime-0 records (Entries),
// the failure counters of the token endpoint (Limiter), and the request
// counts of the policy's rate limits (Counters).
//
// Entries end by themselves: opaque tokens by Redis TTL, revocations and
// lifetime-0 records when Each prunes them. No instance lists opaque
// tokens; each loads the revocations and lifetime-0 records into memory
// at start and after a reconnect (the guard never waits on the network
// for a JWT), and learns every later change through pub/sub within
// milliseconds.
//
// Blobs are sealed (Config.Sealer) with their Redis key name as context:
// read access to Redis, or a backup of it, does not give the power to
// mint tokens, and a value copied under another name does not open.
//
// # Key layout
//
// Every key starts with Config.Prefix (default "oauthgate:"), so the
// fleets of several gateways can share one Redis:
//
//	<prefix>blob:<name>     string: a sealed blob
//	<prefix>lock:<name>     string: a random token while an instance holds the lock (PX 30 s)
//	<prefix>revoked         sorted set: member = id, score = expiry (unix ms)
//	<prefix>latest          hash: field = client ID, value = "<expiry unix ms>:<value>"
//	<prefix>opaque:<id>     string: the record, expiring with the token (PXAT)
//	<prefix>fail:c:<hash>   string: a client ID's failure bucket (unix ms when full), expiring then
//	<prefix>fail:a:<hash>   string: an address's failure bucket, likewise
//	<prefix>rl:r:<hash>     string: the fleet's admissions under one rate limit for one caller (Counters)
//	<prefix>rl:q:<hash>:<w> string: the same under one quota, in the window starting at w (unix s)
//	<prefix>events          pub/sub channel: one small JSON message per change
//	<prefix>beat:<random>   pub/sub channel: one watcher's beats, published through the primary
//
// # Memory
//
// Measured on Redis 7.0 (TestRealRedis_BytesPerEntry), ids of 64 hex
// digits: an opaque token with a 205-byte record costs about 430 bytes
// (360 by MEMORY USAGE, the rest is the keyspace and expiry tables); a
// revocation 165 to 180 (82 while the set holds at most 128, packed); a
// lifetime-0 record with a 110-byte value about 240. A fleet's memory
// is mostly its live opaque tokens.
//
// # Deployment
//
// One Redis server, or a primary found through Sentinel. Redis Cluster
// is not supported: the revocations and the lifetime-0 records are one key
// each, and a change and its announcement are one transaction; both would
// need hash tags and sharded pub/sub, and a fleet's state is small enough
// for one primary.
package redisstate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Sealer encrypts and authenticates the blobs (package sealing is one).
// Open must refuse a value sealed with another context.
type Sealer interface {
	Seal(plaintext, context []byte) ([]byte, error)
	Open(sealed, context []byte) ([]byte, error)
}

// Config configures an Engine.
type Config struct {
	// URL of the Redis server: redis://[user:password@]host[:port][/db],
	// or rediss:// for TLS. Options in a query are refused: timeouts and
	// the pool are the engine's, so that a dead Redis fails calls fast.
	// With Sentinels, the URL's host is not used (the Sentinels name the
	// primary), its user, password, database and scheme are; it may then
	// be left empty.
	URL string
	// Username and Password, when set, replace the URL's.
	Username string
	Password string
	// CAFile is a PEM file of the certificate authorities that the
	// server's certificate must chain to, instead of the system's. It
	// implies TLS.
	CAFile string
	// Sentinels are the addresses (host:port) of the Sentinels that name
	// the primary called MasterName.
	Sentinels  []string
	MasterName string
	// SentinelPassword authenticates to the Sentinels (requirepass).
	SentinelPassword string
	// Prefix starts every key and the channel. Default "oauthgate:".
	Prefix string
	// Sealer seals the blobs. Required: signing keys never rest in Redis
	// in clear.
	Sealer Sealer
	// Now is the clock that decides which entries are live; nil means
	// time.Now. Opaque tokens expire by the Redis server's clock.
	Now func() time.Time
}

// DefaultPrefix starts the keys unless Config.Prefix says otherwise.
const DefaultPrefix = "oauthgate:"

const (
	// timeout bounds every call, dial included: a dead or hung Redis
	// must fail a request in seconds, not hold it.
	timeout  = 2 * time.Second
	poolSize = 10
	// maxValue bounds an entry or a blob. Everything the state keeps is
	// far smaller; a larger value is a mistake or an attack.
	maxValue = 64 << 10
	// maxName bounds an id, a client ID or a blob name.
	maxName = 256
)

// Engine is one instance's connection to the fleet's state. Its methods
// are safe for concurrent use.
type Engine struct {
	rdb    *redis.Client
	sealer Sealer
	now    func() time.Time
	prefix string
	// pageSize is how many revocations Each reads per call; a field so
	// that tests can page through a few.
	pageSize int64

	mu sync.Mutex
	// locks holds the token of each lock this instance holds, so that
	// Unlock deletes the lock only if it is still ours.
	locks map[string]string
}

// New connects to Redis as cfg says. It does not wait for Redis: a fleet
// member starts while Redis is down, and Ping tells when it is up.
func New(cfg Config) (*Engine, error) {
	if cfg.Sealer == nil {
		return nil, errors.New("redisstate: a Sealer is required: the signing keys must not rest in Redis in clear")
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if len(prefix) > maxName {
		return nil, fmt.Errorf("redisstate: prefix longer than %d bytes", maxName)
	}
	opt, err := options(cfg)
	if err != nil {
		return nil, err
	}
	var rdb *redis.Client
	if len(cfg.Sentinels) > 0 {
		rdb = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       cfg.MasterName,
			SentinelAddrs:    cfg.Sentinels,
			SentinelPassword: cfg.SentinelPassword,
			Username:         opt.Username,
			Password:         opt.Password,
			DB:               opt.DB,
			TLSConfig:        opt.TLSConfig,
			ClientName:       opt.ClientName,

			MaxRetries:            opt.MaxRetries,
			DialTimeout:           opt.DialTimeout,
			DialerRetries:         opt.DialerRetries,
			ReadTimeout:           opt.ReadTimeout,
			WriteTimeout:          opt.WriteTimeout,
			ContextTimeoutEnabled: opt.ContextTimeoutEnabled,
			PoolSize:              opt.PoolSize,
			PoolTimeout:           opt.PoolTimeout,
			DisableIdentity:       opt.DisableIdentity,
		})
	} else {
		rdb = redis.NewClient(opt)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Engine{rdb: rdb, sealer: cfg.Sealer, now: now, prefix: prefix,
		pageSize: 1000, locks: map[string]string{}}, nil
}

// options turns cfg into go-redis options with the engine's bounds.
func options(cfg Config) (*redis.Options, error) {
	sentinel := len(cfg.Sentinels) > 0
	if sentinel && cfg.MasterName == "" {
		return nil, errors.New("redisstate: Sentinels need a MasterName")
	}
	if !sentinel && cfg.MasterName != "" {
		return nil, errors.New("redisstate: a MasterName needs Sentinels")
	}
	opt := &redis.Options{}
	if cfg.URL != "" || !sentinel {
		u, err := url.Parse(cfg.URL)
		if err != nil {
			// url.Error repeats the URL, password and all.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("redisstate: URL: %w", err)
		}
		switch {
		case u.Scheme != "redis" && u.Scheme != "rediss":
			return nil, fmt.Errorf("redisstate: URL: scheme %q, want redis or rediss", u.Scheme)
		case u.RawQuery != "":
			return nil, errors.New("redisstate: URL: options in the query are refused; the engine bounds timeouts and the pool itself")
		case !sentinel && u.Host == "":
			return nil, errors.New("redisstate: URL: no host")
		}
		if opt, err = redis.ParseURL(u.String()); err != nil {
			return nil, fmt.Errorf("redisstate: URL: %w", err)
		}
		if sentinel && opt.TLSConfig != nil {
			// Not the URL's host: the dialer takes the name from the
			// address it dials, which with Sentinel is only known then.
			opt.TLSConfig.ServerName = ""
		}
	}
	if cfg.Username != "" {
		opt.Username = cfg.Username
	}
	if cfg.Password != "" {
		opt.Password = cfg.Password
	}
	if cfg.CAFile != "" {
		if opt.TLSConfig == nil {
			// No ServerName: the dialer verifies the host it dials.
			opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redisstate: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redisstate: CA file %s holds no PEM certificate", cfg.CAFile)
		}
		opt.TLSConfig.RootCAs = pool
	}

	opt.ClientName = "oauthgate"
	// One retry survives a pooled connection that died with a restarted
	// server; the context deadline bounds the whole call, retry included.
	opt.MaxRetries = 1
	opt.DialTimeout = timeout
	opt.DialerRetries = 1
	opt.ReadTimeout = timeout
	opt.WriteTimeout = timeout
	opt.ContextTimeoutEnabled = true
	opt.PoolSize = poolSize
	opt.PoolTimeout = timeout
	// CLIENT SETINFO and the maintenance-notification handshake are round
	// trips that an older Redis or Valkey refuses; the engine needs
	// neither.
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return opt, nil
}

// Ping reports whether Redis answers, for health checks.
func (e *Engine) Ping(ctx context.Context) error {
	ctx, cancel := e.op(ctx)
	defer cancel()
	if err := e.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstate: ping: %w", err)
	}
	return nil
}

// Close closes the connections; watchers then end.
func (e *Engine) Close() error {
	return e.rdb.Close()
}

// op bounds one call to Redis: a caller's context may have no deadline,
// and a request must not wait on a hung Redis for longer than timeout.
func (e *Engine) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, timeout)
}

// checkName refuses what cannot be an id, a client ID or a blob name, so
// that key names and messages stay small.
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty %s", what)
	case len(s) > maxName:
		return fmt.Errorf("%s longer than %d bytes", what, maxName)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%s holds a control character", what)
	case !utf8.ValidString(s):
		// JSON would replace the bytes: another instance would be
		// told of a different id.
		return fmt.Errorf("%s is not UTF-8", what)
	}
	return nil
}

func (e *Engine) key(parts ...string) string {
	return e.prefix + strings.Join(parts, "")
}

func (e *Engine) channel() string { return e.key("events") }
