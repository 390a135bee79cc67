package redisstate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oauthgate/oauthgate/caddymodule/state"
)

// First implements state.Once for the fleet: one SET NX PXAT of
// <prefix>once:<kind>:<SHA-256 of the id>, so that of any number of
// instances sent the same identifier at once, exactly one is told it is
// new. An identifier whose expiry has passed is new and not recorded.
func (e *Engine) First(ctx context.Context, kind, id string, exp time.Time) (bool, error) {
	if !time.Now().Before(exp) {
		return true, nil
	}
	sum := sha256.Sum256([]byte(id))
	ctx, cancel := e.op(ctx)
	defer cancel()
	ok, err := e.rdb.SetArgs(ctx, e.key("once:", kind, ":", hex.EncodeToString(sum[:])), "1",
		redis.SetArgs{Mode: "NX", ExpireAt: exp}).Result()
	switch {
	case err == redis.Nil: // NX: it is there
		return false, nil
	case err != nil:
		return false, fmt.Errorf("redisstate: one-time identifiers: %w", err)
	}
	return ok == "OK", nil
}

var _ state.Once = (*Engine)(nil)
