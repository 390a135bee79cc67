package redisstate

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/oauthgate/oauthgate/caddymodule/ratelimit"
)

// Counters are the fleet's request counters of the policy's limits: a
// ratelimit.Fleet. Each instance adds what it admitted every 100 ms or
// so, in one pipeline of INCRBY and PEXPIREAT per counter, and reads the
// totals back; no request waits on it.
type Counters struct{ e *Engine }

// Counters returns the fleet's rate-limit counters, under
// <prefix>rl:<name>.
func (e *Engine) Counters() *Counters { return &Counters{e} }

// Add implements ratelimit.Fleet. Each Add sets the counter's expiry
// anew; the expiries the limiter asks for leave a minute or more to
// spare, so that instances whose clocks differ a little do not end a
// counter another still adds to. (PEXPIREAT GT would say it exactly,
// but needs Redis 7.0; the engine runs on 6.2.)
func (c *Counters) Add(ctx context.Context, counts []ratelimit.Count) ([]int64, error) {
	cmds := make([]*redis.IntCmd, len(counts))
	_, err := c.e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range counts {
			k := c.e.key("rl:", n.Key)
			cmds[i] = p.IncrBy(ctx, k, n.Delta)
			p.PExpireAt(ctx, k, n.Expire)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redisstate: rate-limit counters: %w", err)
	}
	out := make([]int64, len(counts))
	for i, cmd := range cmds {
		out[i] = cmd.Val()
	}
	return out, nil
}

var _ ratelimit.Fleet = (*Counters)(nil)
