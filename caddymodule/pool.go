package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/bruteforce"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/issuers"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/ratelimit"
	"github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// What outlives a config reload. Caddy provisions the new config before
// it cleans up the old one, so a value both hold stays in the pool across
// the switch, and is dropped when the last config holding it is cleaned
// up (as Caddy's own acme_server keeps its databases):
//
//   - the cache of verified slow-hash secrets and the failure limiter: a
//     reload must neither make every client pay argon2id again nor give
//     an attacker a fresh budget;
//   - the token caches, by the checks they prove (a guard's issuer,
//     audience and leeway): a reload must not make every sender pay the
//     signature check again;
//   - the signing-key keeper, by the state it keeps the keys in and the
//     key options: a config loaded while that state is empty (a Redis
//     restarted empty) must write back the keys in use, not make new
//     ones;
//   - the rate-limit counts, by the state that shares them: a reload must
//     not give every caller a fresh budget;
//   - the trusted issuers, by their settings, with the keys they fetched:
//     a reload must not leave an issuer without keys until its next fetch
//     (503s), nor forget its keys while its JWKS endpoint is down.
var pool = caddy.NewUsagePool()

// pooled is a value in the pool. A cache among them is counted in
// oauthgate_cache_lookups_total under its label.
type pooled[T any] struct {
	value T
	cache counter // nil if value is not a cache
	label string
	close func() error // called when dropped, if set
}

type counter interface{ Stats() (hits, misses uint64) }

// Destruct moves a dropped cache's counts to the retired totals, so that
// the counter never goes back, and closes what needs closing.
func (p *pooled[T]) Destruct() error {
	if p.cache != nil {
		statsMu.Lock()
		defer statsMu.Unlock()
		retired[p.label] = sum(retired[p.label], p.cache)
	}
	if p.close != nil {
		return p.close()
	}
	return nil
}

func (p *pooled[T]) counted() (counter, string) { return p.cache, p.label }

var (
	statsMu sync.Mutex
	retired = map[string][2]uint64{} // hits and misses of dropped caches, by label
)

// cacheStats returns the hits and misses of every cache there has been, by
// label.
func cacheStats() map[string][2]uint64 {
	statsMu.Lock()
	defer statsMu.Unlock()
	out := maps.Clone(retired)
	pool.Range(func(_, v any) bool {
		// A value whose making failed is nil for a moment.
		if p, ok := v.(interface{ counted() (counter, string) }); ok {
			if c, label := p.counted(); c != nil {
				out[label] = sum(out[label], c)
			}
		}
		return true
	})
	return out
}

func sum(n [2]uint64, c counter) [2]uint64 {
	hits, misses := c.Stats()
	return [2]uint64{n[0] + hits, n[1] + misses}
}

// holds are the pool keys one config (an App or an OAuthGuard) holds; Cleanup
// lets go of them.
type holds []string

// hold returns key's value, making it with make when no config holds it.
func hold[T any](h *holds, key string, make func() (*pooled[T], error)) (T, error) {
	v, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) { return make() })
	if err != nil {
		var zero T
		return zero, err
	}
	*h = append(*h, key)
	return v.(*pooled[T]).value, nil
}

// release lets go of every key h holds.
func (h *holds) release() {
	for _, key := range *h {
		_, _ = pool.Delete(key) // a failed close leaves nothing to undo
	}
	*h = nil
}

func holdSecretCache(h *holds) (*clients.Cache, error) {
	return hold(h, "secret_cache", func() (*pooled[*clients.Cache], error) {
		c := clients.NewCache(0)
		return &pooled[*clients.Cache]{value: c, cache: c, label: "secret"}, nil
	})
}

func holdLimiter(h *holds) (*bruteforce.Limiter, error) {
	return hold(h, "failure_limiter", func() (*pooled[*bruteforce.Limiter], error) {
		return &pooled[*bruteforce.Limiter]{value: bruteforce.New(bruteforce.Config{})}, nil
	})
}

// holdOnce returns this process's one-time identifiers, kept across
// reloads: a reload must not make a proof seen before it new again.
func holdOnce(h *holds) (*state.MemoryOnce, error) {
	return hold(h, "once", func() (*pooled[*state.MemoryOnce], error) {
		return &pooled[*state.MemoryOnce]{value: state.NewMemoryOnce(0, nil)}, nil
	})
}

// holdRateLimiter returns the request counts of the policy's limits,
// shared with the fleet through fleet (nil: counted in this process)
// and kept by where, the state that fleet belongs to. Its sync with the
// fleet runs while any config holds it.
func holdRateLimiter(h *holds, where string, fleet ratelimit.Fleet, log *zap.Logger) (*ratelimit.Limiter, error) {
	return hold(h, "rate_limits "+where, func() (*pooled[*ratelimit.Limiter], error) {
		l := ratelimit.New(ratelimit.Config{
			Fleet: fleet,
			OnFleet: func(err error) {
				if err != nil {
					log.Error("rate limits: the fleet's counts cannot be read or added to; counting per instance until they can", zap.Error(err))
				} else {
					log.Info("rate limits: counting across the fleet again")
				}
			},
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.Run(ctx); close(done) }()
		return &pooled[*ratelimit.Limiter]{value: l, close: func() error { cancel(); <-done; return nil }}, nil
	})
}

// holdTokenCache returns the token cache of a guard that verifies the
// gateway's own tokens for audience with leeway, holding size tokens. A
// cache proves its verifier's checks, so only guards that check alike
// share one.
func holdTokenCache(h *holds, issuer, audience string, leeway time.Duration, size int) (*tokens.Cache, error) {
	key := fmt.Sprintf("token_cache %q %q %d %d", issuer, audience, leeway, size)
	return hold(h, key, func() (*pooled[*tokens.Cache], error) {
		c := tokens.NewCache(size)
		return &pooled[*tokens.Cache]{value: c, cache: c, label: "token"}, nil
	})
}

// holdIssuer returns the verifier of trusted issuer t, with its own token
// cache, shared by the configs that trust it with the same settings.
func holdIssuer(h *holds, t TrustedIssuer) (*issuers.Issuer, error) {
	settings, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	return hold(h, "issuer "+string(settings), func() (*pooled[*issuers.Issuer], error) {
		// The issuer outlives the config that made it, so it logs to
		// Caddy's default logger, not to that config's.
		log := caddy.Log().Named("oauth").With(zap.String("trusted_issuer", t.Issuer))
		cache := tokens.NewCache(0)
		cfg := t.config(cache)
		cfg.Report = func(err error) { log.Warn("trusted issuer", zap.Error(err)) }
		cfg.Fetched = func(err error) {
			result := "ok"
			if err != nil {
				result = "error"
			}
			metrics.jwksFetches.WithLabelValues(t.Issuer, result).Inc()
		}
		iss, err := issuers.New(cfg)
		if err != nil {
			return nil, err
		}
		return &pooled[*issuers.Issuer]{value: iss, cache: cache, label: "token"}, nil
	})
}

// holdKeeper returns the keeper of the signing keys in blobs, where names
// (see openState; "" keeps nothing across reloads).
func holdKeeper(h *holds, where string, blobs state.Blobs, opts keys.Options) (*keys.Keeper, error) {
	make := func() (*pooled[*keys.Keeper], error) {
		m, err := keys.NewManager(blobs, opts)
		if err != nil {
			return nil, err
		}
		// The keeper outlives the config that made it, so it logs to
		// Caddy's default logger, not to that config's.
		log := caddy.Log().Named("oauth")
		return &pooled[*keys.Keeper]{value: keys.NewKeeper(m, keys.KeeperOptions{
			// Worth a look: a storage that lost the keys has likely lost
			// the token state too (revocations, opaque tokens).
			Restored: func(set *keys.Set) {
				log.Warn("signing keys were missing from storage; wrote back the keys in use (was the storage wiped or replaced?)",
					zap.Any("keys", set.Describe()))
			},
			Report: func(err error) { log.Error("signing keys", zap.Error(err)) },
		})}, nil
	}
	if where == "" {
		p, err := make()
		if err != nil {
			return nil, err
		}
		return p.value, nil
	}
	return hold(h, fmt.Sprintf("keys %s %s %d %d", where, opts.Algorithm, opts.RotateEvery, opts.RetainFor), make)
}
