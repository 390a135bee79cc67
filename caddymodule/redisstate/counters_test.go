package redisstate

import (
	"context"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/policy"
	"github.com/oauthgate/oauthgate/caddymodule/ratelimit"
)

func TestRealRedis_CountersAddUpTheInstancesAndExpire(t *testing.T) {
	s := startRedis(t)
	sealer := newSealer(t)
	a, b := s.engine(t, sealer).Counters(), s.engine(t, sealer).Counters()
	ctx := context.Background()
	expire := time.Now().Add(time.Minute)
	if got, err := a.Add(ctx, []ratelimit.Count{{Key: "r:x", Delta: 3, Expire: expire}, {Key: "q:x:1", Delta: 0, Expire: expire}}); err != nil || got[0] != 3 || got[1] != 0 {
		t.Fatalf("A adds 3: totals %v (%v), want [3 0]", got, err)
	}
	if got, err := b.Add(ctx, []ratelimit.Count{{Key: "r:x", Delta: 2, Expire: expire}}); err != nil || got[0] != 5 {
		t.Fatalf("B adds 2: totals %v (%v), want [5]", got, err)
	}
	ttl, err := s.do("PTTL", "oauthgate:rl:r:x")
	if err != nil || ttl.(int64) <= 55_000 || ttl.(int64) > 60_000 {
		t.Errorf("counter PTTL %v (%v), want about a minute", ttl, err)
	}
}

func TestRealRedis_TwoLimitersShareOneQuota(t *testing.T) {
	s := startRedis(t)
	sealer := newSealer(t)
	a := ratelimit.New(ratelimit.Config{Fleet: s.engine(t, sealer).Counters()})
	b := ratelimit.New(ratelimit.Config{Fleet: s.engine(t, sealer).Counters()})
	cs := []ratelimit.Counted{{Limit: &policy.Limit{Quota: 10, Window: 24 * time.Hour}, Scope: "rule /a", Name: "rule", Caller: "c"}}
	ctx, now := context.Background(), time.Now()
	n := 0
	for range 30 {
		for _, l := range []*ratelimit.Limiter{a, b} {
			if !l.Take(cs, now).Refused {
				n++
			}
			l.Sync(ctx, now)
		}
	}
	// Each decides knowing the other's count up to the other's last sync:
	// the bound is one request, what the other admits between two syncs.
	if n < 10 || n > 11 {
		t.Errorf("%d admitted by two instances syncing after every request, want the quota of 10, plus 1 at most", n)
	}
}
