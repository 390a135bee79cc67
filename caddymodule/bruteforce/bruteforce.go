// Package bruteforce rate-limits failed client authentication on the token
// endpoint, per client ID and per remote address.
//
// Only failures consume budget. (Take holds one failure while an
// authentication runs, so that concurrent guesses are counted before they
// finish; Refund returns it when the secret was right.) A client that
// presents the right secret is never counted in the end, however often it
// asks for tokens, so it keeps getting them even while an attacker is
// guessing its secret: the endpoint checks fast and cached secrets first,
// without asking the limiter, and only refuses uncached argon2id work
// when over the limit. The endpoint does, per request:
//
//	if ok := authenticate(no argon2id); ok { return }   // the limiter is not asked
//	if wait := lim.Take(clientID, remoteAddr, now); wait > 0 {
//		lim.Fail(clientID, remoteAddr, now) // 429 with Retry-After: ceil(wait seconds)
//		return
//	}
//	if ok := authenticate(with argon2id); ok {
//		lim.Refund(clientID, remoteAddr)
//	}                                       // else 401, the failure already taken
//
// Each tracked key is a token bucket holding Rate.Failures tokens that
// refills at Rate.Failures per Rate.Per; a failure takes one token. A
// bucket never goes below empty: failures while over the limit keep it
// empty rather than deepening a debt, so Check's wait is at most one
// refill interval (Per/Failures), and a sender that keeps failing stays
// limited until it pauses for that long. Buckets are stored as the time at
// which they will be full again (the GCRA form), one int64 per key.
package bruteforce

import (
	"time"
)

// Defaults of the zero Config.
const (
	DefaultClientFailures  = 20
	DefaultAddressFailures = 10
	DefaultPer             = time.Minute
	DefaultMaxTracked      = 100_000
)

// Rate is a budget of failures: at most Failures in a burst, recovering at
// Failures per Per (10 per minute recovers one every 6 s).
type Rate struct {
	Failures int
	Per      time.Duration
}

// Config configures a Limiter. Every zero (or negative) field takes its
// default independently, so Rate{Failures: 5} means 5 per minute.
type Config struct {
	// PerClient limits failures per claimed client ID, from any address:
	// it stops a distributed guess at one client's secret.
	// Default 20 per minute.
	PerClient Rate
	// PerAddress limits failures per remote address (IPv4 address or
	// IPv6 /64), for any client ID: it stops one sender spraying guesses
	// over many clients. Default 10 per minute.
	PerAddress Rate
	// MaxTracked bounds the keys tracked per dimension (client IDs and
	// addresses each), whatever the traffic. When a new key needs room,
	// fully recovered keys go first, then the key nearest to recovering.
	// A tracked key costs 165-220 bytes (measured), so the default bound
	// is at most ~45 MB for both dimensions together, reached only under
	// a sustained attack. Default 100,000.
	MaxTracked int
}

// Limiter tracks authentication failures. It is safe for concurrent use;
// the zero value is not usable, call New.
type Limiter struct {
	clients, addrs *table
}

// New returns a Limiter for cfg; see Config for the defaults.
func New(cfg Config) *Limiter {
	maxTracked := cfg.MaxTracked
	if maxTracked <= 0 {
		maxTracked = DefaultMaxTracked
	}
	perClient, perAddress := cfg.Budgets()
	return &Limiter{
		clients: newTable(perClient, maxTracked),
		addrs:   newTable(perAddress, maxTracked),
	}
}

// Budgets returns the two rates of cfg with the defaults applied: a
// limiter shared by a fleet (package redisstate) takes them from here, so
// that it allows what Limiter allows.
func (cfg Config) Budgets() (perClient, perAddress Rate) {
	return withDefaults(cfg.PerClient, DefaultClientFailures), withDefaults(cfg.PerAddress, DefaultAddressFailures)
}

func withDefaults(r Rate, failures int) Rate {
	if r.Failures <= 0 {
		r.Failures = failures
	}
	if r.Per <= 0 {
		r.Per = DefaultPer
	}
	return r
}

// Check reports how long until one more failure would be allowed for both
// clientID and addr: 0 if it would be allowed now, else the wait of the
// more restrictive of the two. Check consumes nothing.
//
// addr is the peer's address, "host:port" or a bare IP; IPv6 addresses
// count per /64, IPv4 per address, and anything unparsable as itself.
func (l *Limiter) Check(clientID, addr string, now time.Time) time.Duration {
	t := now.UnixNano()
	return time.Duration(max(l.clients.wait(clientKey(clientID), t), l.addrs.wait(addrKey(addr), t)))
}

// Take is Check that, when it allows one more failure, also takes it, in
// the same critical section: concurrent guesses cannot all pass a Check
// before the first of them fails. The caller gives the failure back with
// Refund when the authentication succeeds.
func (l *Limiter) Take(clientID, addr string, now time.Time) time.Duration {
	t, ck, ak := now.UnixNano(), clientKey(clientID), addrKey(addr)
	l.clients.mu.Lock() // always clients first, then addrs
	defer l.clients.mu.Unlock()
	l.addrs.mu.Lock()
	defer l.addrs.mu.Unlock()
	wait := max(l.clients.waitLocked(ck, t), l.addrs.waitLocked(ak, t))
	if wait == 0 {
		l.clients.failLocked(ck, t)
		l.addrs.failLocked(ak, t)
	}
	return time.Duration(wait)
}

// Refund gives back the failure a Take of clientID from addr took.
func (l *Limiter) Refund(clientID, addr string) {
	l.clients.refund(clientKey(clientID))
	l.addrs.refund(addrKey(addr))
}

// Fail records one failed authentication of clientID from addr.
func (l *Limiter) Fail(clientID, addr string, now time.Time) {
	t := now.UnixNano()
	l.clients.fail(clientKey(clientID), t)
	l.addrs.fail(addrKey(addr), t)
}
