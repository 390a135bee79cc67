package caddymodule

import (
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

func TestPool_AReloadKeepsWhatBothConfigsHold(t *testing.T) {
	var old, next holds
	limiter, err := holdLimiter(&old)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := holdTokenCache(&old, "https://pool.test", "aud", time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Caddy provisions the next config, then cleans up the old one.
	if l, _ := holdLimiter(&next); l != limiter {
		t.Error("the next config got a new failure limiter: a reload would reset every budget")
	}
	if c, _ := holdTokenCache(&next, "https://pool.test", "aud", time.Second, 10); c != cache {
		t.Error("a guard that checks alike got a new token cache: a reload would cost every sender a signature check")
	}
	if c, _ := holdTokenCache(&next, "https://pool.test", "other-aud", time.Second, 10); c == cache {
		t.Error("a guard of another audience shares the cache: an entry proves one verifier's checks only")
	}
	old.release()
	if c, _ := holdTokenCache(&next, "https://pool.test", "aud", time.Second, 10); c != cache {
		t.Error("the cache went with the old config although the next one holds it")
	}
	next.release()

	var later holds
	defer later.release()
	if c, _ := holdTokenCache(&later, "https://pool.test", "aud", time.Second, 10); c == cache {
		t.Error("the cache outlived every config that held it")
	}
}

func TestPool_CacheCountsNeverGoBackWhenACacheIsDropped(t *testing.T) {
	var h holds
	cache, err := holdTokenCache(&h, "https://pool.test/counts", "aud", time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	v := tokens.Verifier{Keys: keystest.NewSet(t), Issuer: "https://pool.test/counts", Audience: "aud", Cache: cache}
	_, _ = v.Verify("not.a.token") // a miss
	before := cacheStats()["token"]
	if before[1] == 0 {
		t.Fatal("the miss was not counted")
	}
	h.release()
	if after := cacheStats()["token"]; after[0] < before[0] || after[1] < before[1] {
		t.Errorf("token cache counts went from %v to %v when a cache was dropped", before, after)
	}
}
