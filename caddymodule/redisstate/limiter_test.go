package redisstate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/bruteforce"
)

// The token endpoint takes it where it takes a bruteforce.Limiter.
var _ authserver.Limiter = (*Limiter)(nil)

var threePerMinute = bruteforce.Config{
	PerClient:  bruteforce.Rate{Failures: 3, Per: time.Minute},
	PerAddress: bruteforce.Rate{Failures: 1000, Per: time.Minute},
}

func TestLimiter_InstancesOnOneRedisShareOneBudget(t *testing.T) {
	f := newMiniFleet(t)
	a, b := f.engine(t).Limiter(threePerMinute, nil), f.engine(t).Limiter(threePerMinute, nil)
	now := t0
	for i, l := range []*Limiter{a, b, a} {
		if wait := l.Take("client-1", fmt.Sprintf("192.0.2.%d:443", i), now); wait != 0 {
			t.Fatalf("take %d: wait %v, want 0", i+1, wait)
		}
	}
	for name, l := range map[string]*Limiter{"one instance": a, "the other": b} {
		if wait := l.Check("client-1", "198.51.100.1:443", now); wait != 20*time.Second {
			t.Errorf("%s: wait %v after the fleet's three failures, want 20s", name, wait)
		}
	}
	if wait := b.Take("client-1", "198.51.100.1:443", now); wait == 0 {
		t.Error("a fourth guess passed on another instance")
	}
	if wait := b.Check("client-2", "198.51.100.1:443", now); wait != 0 {
		t.Errorf("another client ID: wait %v, want 0", wait)
	}
}

// TestLimiter_CountsAsBruteforceDoes runs the same calls against a local
// bruteforce.Limiter and the fleet's, and wants the same answers.
func TestLimiter_CountsAsBruteforceDoes(t *testing.T) {
	cfg := bruteforce.Config{
		PerClient:  bruteforce.Rate{Failures: 4, Per: time.Minute}, // one every 15 s
		PerAddress: bruteforce.Rate{Failures: 6, Per: time.Minute}, // one every 10 s
	}
	type call struct {
		at     time.Duration // since t0
		op     string
		client string
		addr   string
	}
	calls := []call{
		{0, "take", "c1", "192.0.2.1:1"},
		{0, "take", "c1", "192.0.2.1:2"},
		{0, "refund", "c1", "192.0.2.1"},
		{time.Second, "fail", "c1", "[2001:db8::1]:443"},
		{time.Second, "take", "c1", "[2001:db8::2]:443"}, // same /64
		{time.Second, "take", "c1", "192.0.2.1"},
		{time.Second, "take", "c1", "192.0.2.1"}, // over the client budget
		{time.Second, "check", "c2", "192.0.2.1"},
		{2 * time.Second, "fail", "c2", "192.0.2.1"},
		{2 * time.Second, "fail", "c2", "192.0.2.1"},
		{2 * time.Second, "fail", "c2", "192.0.2.1"},
		{2 * time.Second, "fail", "c2", "192.0.2.1"},
		{2 * time.Second, "check", "c3", "192.0.2.1"}, // over the address budget
		{2 * time.Second, "check", "c3", "192.0.2.2"},
		{9 * time.Second, "check", "c1", "192.0.2.3"},
		{16 * time.Second, "take", "c1", "192.0.2.3"},
		{20 * time.Second, "check", "c3", "192.0.2.1"},
		{time.Minute, "check", "c1", "192.0.2.1"},
		{5 * time.Minute, "take", "c1", "192.0.2.1"},
		{5 * time.Minute, "check", "c1", "192.0.2.1"},
	}
	f := newMiniFleet(t)
	fleet := f.engine(t).Limiter(cfg, nil)
	local := bruteforce.New(cfg)
	for i, c := range calls {
		now := t0.Add(c.at)
		var got, want time.Duration
		switch c.op {
		case "take":
			got, want = fleet.Take(c.client, c.addr, now), local.Take(c.client, c.addr, now)
		case "check":
			got, want = fleet.Check(c.client, c.addr, now), local.Check(c.client, c.addr, now)
		case "fail":
			fleet.Fail(c.client, c.addr, now)
			local.Fail(c.client, c.addr, now)
		case "refund":
			fleet.Refund(c.client, c.addr)
			local.Refund(c.client, c.addr)
		}
		if got != want {
			t.Errorf("call %d (%s %s %s at +%v): fleet wait %v, bruteforce %v", i, c.op, c.client, c.addr, c.at, got, want)
		}
	}
}

func TestLimiter_BucketKeysAreBoundedHashes(t *testing.T) {
	f := newMiniFleet(t)
	l := f.engine(t).Limiter(threePerMinute, nil)
	l.Fail(strings.Repeat("c", 1<<20)+"\r\n*", "not an address \x00 at all", t0)
	l.Fail("client-1", "[2001:db8::1]:443", t0)
	keys := f.m.Keys()
	if len(keys) != 4 {
		t.Fatalf("keys %q, want 2 buckets per failure", keys)
	}
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, "oauthgate:fail:")
		if !ok || len(rest) != 2+32 || strings.Trim(rest[2:], "0123456789abcdef") != "" {
			t.Errorf("key %q, want oauthgate:fail:<c|a>:<32 hex digits>", k)
		}
		if ttl := f.m.TTL(k); ttl <= 0 || ttl > time.Minute {
			t.Errorf("key %q TTL %v, want it gone when the bucket is full again", k, ttl)
		}
	}
}

func TestLimiter_CountsLocallyWhileRedisIsDown(t *testing.T) {
	f := newMiniFleet(t)
	e := f.engine(t)
	local := bruteforce.New(threePerMinute)
	l := e.Limiter(threePerMinute, local)
	if wait := l.Take("client-1", "192.0.2.1", t0); wait != 0 {
		t.Fatal(wait)
	}
	f.m.Close()

	start := time.Now()
	for i := range 3 {
		if wait := l.Take("client-1", "192.0.2.1", t0); wait != 0 {
			t.Fatalf("take %d while Redis is down: wait %v, want 0 (the local budget is whole)", i+1, wait)
		}
	}
	if wait := l.Take("client-1", "192.0.2.1", t0); wait == 0 {
		t.Error("the local budget did not hold while Redis is down")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("five calls while Redis is down took %v", took)
	}
	if wait := local.Check("client-1", "192.0.2.1", t0); wait == 0 {
		t.Error("the failures were not counted in the local limiter given")
	}

	// Back after downFor: counting returns to Redis, whose bucket
	// still holds the first failure.
	if err := f.m.Restart(); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(downFor)
	if wait := l.Take("client-2", "198.51.100.1", t0); wait != 0 {
		t.Fatal(wait)
	}
	if !f.m.Exists(l.keys("client-2", "198.51.100.1")[0]) {
		t.Error("after downFor the limiter still counts locally")
	}
}
