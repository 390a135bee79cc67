package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/bruteforce"
	"github.com/oauthgate/oauthgate/caddymodule/csrf"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/redisstate"
	"github.com/oauthgate/oauthgate/caddymodule/sealing"
	"github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// StateConfig says where the instances of a fleet keep what they must
// agree on: the signing keys, the opaque-token MAC key, revocations,
// opaque tokens, lifetime-0 records and the failure counters.
//
// Without it, Caddy's storage (the "storage" global option) keeps them:
// right for one node, or a few sharing a disk. Instances then learn of
// each other's revocations and lifetime-0 tokens within 10 seconds, and
// each counts failed client authentications on its own.
type StateConfig struct {
	// Redis keeps the state in Redis or Valkey, shared by every instance
	// that names the same server and prefix: a change made at one
	// instance holds at all of them within a second (about a
	// millisecond on a local network), and the failure limits count
	// across the fleet.
	Redis *RedisState `json:"redis,omitempty"`
}

// RedisState is a Redis or Valkey server (or a Sentinel-managed primary)
// holding the fleet's state. Every value may use Caddy's {env.*}
// placeholders, which keeps passwords out of the config file.
type RedisState struct {
	// URL is redis://[user:password@]host:port[/db], or rediss:// for
	// TLS. With Sentinels, its host is not used; its user, password, db
	// and scheme are. Required.
	URL string `json:"url,omitempty"`

	// Username and Password, if set, replace those of the URL: an ACL
	// user (Redis 6 and later) or, with Username empty, the server's
	// requirepass.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	// Sentinels are host:port addresses of Redis Sentinels that know
	// MasterName; the state follows the primary through a failover.
	Sentinels        []string `json:"sentinels,omitempty"`
	MasterName       string   `json:"master_name,omitempty"`
	SentinelPassword string   `json:"sentinel_password,omitempty"`

	// TLSCAFile is a PEM file of the CAs that may sign the server's
	// certificate, instead of the system's; it implies TLS.
	TLSCAFile string `json:"tls_ca_file,omitempty"`

	// Prefix starts every key oauthgate writes, so that several fleets
	// (or other applications) can share a server. Default: "oauthgate:".
	Prefix string `json:"prefix,omitempty"`

	// SealingKeysFile or SealingKeysEnv gives the key ring that encrypts
	// the signing keys and the MAC key in Redis (AES-256-GCM), so that
	// read access to Redis is not the power to mint tokens: one key per
	// line (or comma-separated), "<id>:<base64 of 32 bytes>", the first
	// sealing, every one opening. "caddy oauth state key" makes one.
	// Exactly one is required.
	SealingKeysFile string `json:"sealing_keys_file,omitempty"`
	SealingKeysEnv  string `json:"sealing_keys_env,omitempty"`
}

// go-redis logs its own troubles (a dial that failed, a pool that
// shrank) through a global logger; they belong in Caddy's log, at debug:
// during an outage it says so on every call, and the operations that
// failed are logged as errors by their callers.
func init() { redis.SetLogger(redisLog{}) }

type redisLog struct{}

func (redisLog) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("oauth.redis").Debug(fmt.Sprintf(format, v...))
}

// openState returns where this config keeps what the fleet shares, and
// the failure limiter: Caddy's storage and the process's own limiter, or
// the Redis engine of State, held in the pool across reloads so that a
// reload keeps its connection and subscription. The first instance to
// start on an empty Redis imports what Caddy's storage holds, so that
// moving a gateway to Redis ends no token.
//
// where names the state for the pool: configs that name the same state
// share what is kept of it across reloads; "" when it cannot be told.
func (a *App) openState(ctx caddy.Context, local *bruteforce.Limiter) (blobs state.Blobs, entries state.Entries, limiter authserver.Limiter, where string, err error) {
	st := ctx.Storage()
	if a.State == nil || a.State.Redis == nil {
		if s, ok := st.(fmt.Stringer); ok {
			where = "storage " + s.String()
		}
		return st, state.StorageEntries(st, nil), local, where, nil
	}
	r := a.State.Redis.expanded()
	if r.URL == "" && len(r.Sentinels) == 0 {
		return nil, nil, nil, "", errors.New("oauth: state redis: a URL is required")
	}
	if (r.SealingKeysFile == "") == (r.SealingKeysEnv == "") {
		return nil, nil, nil, "", errors.New("oauth: state redis: give exactly one of sealing_keys_file and sealing_keys_env (caddy oauth state key makes a key)")
	}
	e, key, err := holdEngine(&a.held, r)
	if err != nil {
		return nil, nil, nil, "", fmt.Errorf("oauth: state redis: %w", err)
	}
	imported, err := state.Import(ctx, st, e.Blobs(), e, keys.StorageKey, tokenstate.MACKeyName, csrf.KeyName)
	var corrupt *state.CorruptError
	switch {
	case errors.As(err, &corrupt):
		a.logger.Warn("state redis: imported from Caddy's storage, skipping entries that do not decode", zap.Error(err))
	case err != nil:
		return nil, nil, nil, "", fmt.Errorf("oauth: state redis: importing from Caddy's storage: %w", err)
	case imported:
		a.logger.Info("state redis: imported the signing keys and token state from Caddy's storage; tokens issued before stay valid")
	}
	a.fleet = e.Counters()
	a.once = e
	return e.Blobs(), e, e.Limiter(bruteforce.Config{}, local), key, nil
}

// expanded is r with Caddy's global placeholders ({env.*}, {file.*})
// replaced, so that secrets can stay out of the config file.
func (r RedisState) expanded() RedisState {
	repl := caddy.NewReplacer()
	for _, s := range []*string{&r.URL, &r.Username, &r.Password, &r.MasterName, &r.SentinelPassword,
		&r.TLSCAFile, &r.Prefix, &r.SealingKeysFile, &r.SealingKeysEnv} {
		*s = repl.ReplaceKnown(*s, "")
	}
	for i, s := range r.Sentinels {
		r.Sentinels[i] = repl.ReplaceKnown(s, "")
	}
	return r
}

// holdEngine returns the Redis engine of r, shared by the configs that
// name the same server, credentials, prefix and key ring. The ring is
// read on every load, so that a reload after a rotation of the ring (a
// key with a new ID) takes it up.
func holdEngine(h *holds, r RedisState) (e *redisstate.Engine, key string, err error) {
	var ring *sealing.Ring
	if r.SealingKeysFile != "" {
		ring, err = sealing.FromFile(r.SealingKeysFile)
	} else {
		ring, err = sealing.FromEnv(r.SealingKeysEnv)
	}
	if err != nil {
		return nil, "", err
	}
	settings, err := json.Marshal(r)
	if err != nil {
		return nil, "", err
	}
	key = "redis " + string(settings) + " " + ring.String()
	e, err = hold(h, key, func() (*pooled[*redisstate.Engine], error) {
		e, err := redisstate.New(redisstate.Config{
			URL:              r.URL,
			Username:         r.Username,
			Password:         r.Password,
			CAFile:           r.TLSCAFile,
			Sentinels:        r.Sentinels,
			MasterName:       r.MasterName,
			SentinelPassword: r.SentinelPassword,
			Prefix:           r.Prefix,
			Sealer:           ring,
		})
		if err != nil {
			return nil, err
		}
		return &pooled[*redisstate.Engine]{value: e, close: e.Close}, nil
	})
	return e, key, err
}
