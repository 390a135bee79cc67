package redisstate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oauthgate/oauthgate/caddymodule/bruteforce"
)

const (
	// limiterTimeout bounds one limiter call, well below timeout: the
	// token endpoint asks on every request that needs argon2id or fails,
	// and Redis answers in well under a millisecond when it answers at
	// all.
	limiterTimeout = 500 * time.Millisecond
	// downFor is how long the limiter counts locally after Redis failed
	// it, before it tries Redis again: while Redis is away, each request
	// must not wait for it to fail once more.
	downFor = 5 * time.Second
)

// bucketScript is bruteforce's token bucket (GCRA: a bucket is the time
// at which it is full again) over both of a request's buckets at once, so
// that the instances of a fleet share one budget and a Take counts a
// guess before it is tried, whichever instance it reaches.
//
// KEYS: the client ID's bucket, the address's. ARGV: now (unix ms); the
// client bucket's interval and burst (ms); the address bucket's; the op,
// "check", "take" or "fail". Returns the wait in ms. Times are formatted
// with %.0f: Lua's own conversion keeps only 14 digits.
var bucketScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local op = ARGV[6]
local wait, debt = 0, {}
for i = 1, 2 do
	local interval, burst = tonumber(ARGV[2*i]), tonumber(ARGV[2*i+1])
	local full = tonumber(redis.call("GET", KEYS[i]) or "0") or 0
	debt[i] = math.min(math.max(full - now, 0), burst)
	wait = math.max(wait, debt[i] - (burst - interval))
end
if op == "fail" or (op == "take" and wait == 0) then
	for i = 1, 2 do
		local interval, burst = tonumber(ARGV[2*i]), tonumber(ARGV[2*i+1])
		local full = string.format("%.0f", now + math.min(debt[i] + interval, burst))
		redis.call("SET", KEYS[i], full, "PXAT", full)
	end
end
return wait`)

// refundScript gives one interval back to each bucket that still exists.
// ARGV: now (unix ms); the client bucket's interval; the address
// bucket's.
var refundScript = redis.NewScript(`
local now = tonumber(ARGV[1])
for i = 1, 2 do
	local full = tonumber(redis.call("GET", KEYS[i]) or "")
	if full then
		full = full - tonumber(ARGV[i+1])
		if full <= now then
			redis.call("DEL", KEYS[i])
		else
			local s = string.format("%.0f", full)
			redis.call("SET", KEYS[i], s, "PXAT", s)
		end
	end
end
return 0`)

// Limiter limits failed client authentication across a fleet, with the
// methods and the meaning of bruteforce.Limiter (see its package doc): N
// instances together allow the guesses one would.
//
// When Redis does not answer, it counts in a local bruteforce.Limiter for
// a few seconds before trying Redis again: tokens must still be issued
// while Redis is down, at the price of each instance allowing its own
// budget meanwhile. A Refund that reaches the other side of a switch
// gives back nothing that side took; buckets never go above full, so
// that costs nothing.
type Limiter struct {
	e     *Engine
	local *bruteforce.Limiter
	// ARGV of bucketScript: client interval and burst, address interval
	// and burst, in ms.
	rates [4]string
	// down is when (unix ns, Engine's clock) Redis may be tried again.
	down atomic.Int64
}

// Limiter returns a fleet-wide limiter with the budgets of cfg, which
// counts in local while Redis is away (nil: bruteforce.New(cfg)).
// cfg.MaxTracked does not apply in Redis: a bucket expires there when it
// is full again.
func (e *Engine) Limiter(cfg bruteforce.Config, local *bruteforce.Limiter) *Limiter {
	if local == nil {
		local = bruteforce.New(cfg)
	}
	perClient, perAddress := cfg.Budgets()
	l := &Limiter{e: e, local: local}
	for i, r := range []bruteforce.Rate{perClient, perAddress} {
		interval := max(r.Per.Milliseconds()/int64(r.Failures), 1)
		l.rates[2*i] = strconv.FormatInt(interval, 10)
		l.rates[2*i+1] = strconv.FormatInt(interval*int64(r.Failures), 10)
	}
	return l
}

// Check reports how long until one more failure of clientID from addr
// would be allowed; see bruteforce.Limiter.Check.
func (l *Limiter) Check(clientID, addr string, now time.Time) time.Duration {
	if wait, ok := l.bucket("check", clientID, addr, now); ok {
		return wait
	}
	return l.local.Check(clientID, addr, now)
}

// Take is Check that also takes the failure when it allows it, in one
// script; see bruteforce.Limiter.Take.
func (l *Limiter) Take(clientID, addr string, now time.Time) time.Duration {
	if wait, ok := l.bucket("take", clientID, addr, now); ok {
		return wait
	}
	return l.local.Take(clientID, addr, now)
}

// Fail records one failed authentication of clientID from addr.
func (l *Limiter) Fail(clientID, addr string, now time.Time) {
	if _, ok := l.bucket("fail", clientID, addr, now); !ok {
		l.local.Fail(clientID, addr, now)
	}
}

// Refund gives back the failure a Take took.
func (l *Limiter) Refund(clientID, addr string) {
	err := l.call(func(ctx context.Context) error {
		return refundScript.Run(ctx, l.e.rdb, l.keys(clientID, addr),
			l.e.now().UnixMilli(), l.rates[0], l.rates[2]).Err()
	})
	if err != nil {
		l.local.Refund(clientID, addr)
	}
}

func (l *Limiter) bucket(op, clientID, addr string, now time.Time) (time.Duration, bool) {
	var ms int64
	err := l.call(func(ctx context.Context) error {
		var err error
		ms, err = bucketScript.Run(ctx, l.e.rdb, l.keys(clientID, addr),
			now.UnixMilli(), l.rates[0], l.rates[1], l.rates[2], l.rates[3], op).Int64()
		return err
	})
	return time.Duration(ms) * time.Millisecond, err == nil
}

// call runs f against Redis unless Redis failed lately, and notes when it
// fails.
func (l *Limiter) call(f func(context.Context) error) error {
	if l.e.now().UnixNano() < l.down.Load() {
		return errDown
	}
	ctx, cancel := context.WithTimeout(context.Background(), limiterTimeout)
	defer cancel()
	err := f(ctx)
	if err != nil {
		l.down.Store(l.e.now().Add(downFor).UnixNano())
	}
	return err
}

type errString string

func (e errString) Error() string { return string(e) }

const errDown = errString("redisstate: limiter: Redis failed lately")

// keys names the buckets by hashes: client IDs and addresses are the
// sender's text, which must not shape key names or their length.
func (l *Limiter) keys(clientID, addr string) []string {
	return []string{
		l.e.key("fail:c:", digest(clientID)),
		l.e.key("fail:a:", digest(bruteforce.AddressBucket(addr))),
	}
}

// digest is 128 bits of SHA-256: collisions need 2^64 work and would only
// share a budget.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}
