// Package ratelimit counts the requests of each caller against the
// limits of the policy (policy.Limit): a rate as a token bucket (GCRA:
// a bucket is the time at which it is full again, one int64), and a
// quota per fixed window of UTC time. It decides from memory only: a
// request never waits on the network.
//
// # One instance
//
// Each (limit, caller) pair is one entry, in a table bounded by
// Config.MaxTracked. A new entry that finds its shard full first drops
// idle entries (bucket full, quota window over) among a sample, and
// otherwise the least recently used of the sample: that caller's counts
// start afresh. Callers are counted by what verified tokens say (client
// ID, subject, a claim), so filling the table takes many valid tokens.
//
// # A fleet
//
// With a Fleet (Redis), every instance still decides from its own
// counts, and Run adds what it admitted to the fleet's counters every
// SyncInterval (sooner when one entry has admitted a quarter of its
// burst or a hundredth of its quota), reading back what the others admitted: their requests are
// charged to the local bucket, and the fleet's quota count replaces the
// local one. So a fleet of N instances admits at most what one would,
// plus what the other N-1 admit before they learn of each other: for a
// rate, at most one burst (plus SyncInterval at the rate) per other
// instance, since an instance new to a caller starts with a full bucket
// (the fleet's count it reads first is history: it cannot tell when
// those requests came); for a quota, what the callers send each other
// instance in one SyncInterval. When the Fleet fails, each instance counts on its own
// until it answers again (per-instance limits, as without a Fleet), and
// the quota it admitted meanwhile is added when it is back.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/policy"
)

// Defaults of the zero Config.
const (
	DefaultMaxTracked   = 100_000
	DefaultSyncInterval = 100 * time.Millisecond
)

// Fleet adds the instances' counts up: Redis is one
// (redisstate.Engine.Counters).
type Fleet interface {
	// Add adds each Count's Delta to the counter named Key, keeps that
	// counter at least until Expire, and returns the counters' totals
	// in the order of counts.
	Add(ctx context.Context, counts []Count) ([]int64, error)
}

// Count is one counter's change in one Fleet.Add.
type Count struct {
	Key    string
	Delta  int64
	Expire time.Time
}

// Config configures a Limiter.
type Config struct {
	// MaxTracked bounds the (limit, caller) entries kept. An entry costs
	// about 200 bytes. Default 100,000.
	MaxTracked int
	// Fleet, if set, shares the counts with the other instances.
	Fleet Fleet
	// SyncInterval is how often Run syncs with the Fleet. Default 100 ms.
	SyncInterval time.Duration
	// OnFleet is told when the Fleet fails (err != nil, once until it
	// answers again) and when it answers again (nil).
	OnFleet func(err error)
}

// Limiter counts requests against limits. Safe for concurrent use.
type Limiter struct {
	shards  [nShards]shard
	seed    maphash.Seed
	max     int // per shard
	fleet   Fleet
	every   time.Duration
	onFleet func(error)
	wake    chan struct{}
	down    bool // the Fleet failed at the last sync; Run's own
}

const (
	nShards = 32
	// sample is how many entries a full shard looks at to make room.
	sample = 16
	// maxCaller is the longest caller kept as itself.
	maxCaller = 128
	// fleetTimeout bounds one sync: nothing waits on it, but a hung
	// Redis must not stop the syncs for long.
	fleetTimeout = 500 * time.Millisecond
	// watchFor is how long after its last request an entry is still
	// synced: an instance a caller has just used learns of the requests
	// the others admit, before the caller comes back to it.
	watchFor = 2 * time.Second
)

type shard struct {
	mu      sync.Mutex
	entries map[key]*entry
	dirty   []*entry // touched since the last sync, with a Fleet
}

// key is one limit's counts of one caller. Scope names the limit (a
// rule or a subject); both strings are the policy's and the verified
// token's, so a lookup copies nothing.
type key struct{ scope, caller string }

type entry struct {
	k    key
	seen int64 // last use (unix ns)

	// The rate: the bucket is full again at tat (unix ns); interval and
	// burst (ns) are its last limit's, for charging the fleet's requests.
	tat, interval, burst int64
	// The quota: the window that starts at window (unix ns) has used
	// fleet (the Fleet's total at the last sync, this instance's
	// admissions included), sending (admitted, being added) and local
	// (admitted since) requests.
	window, windowEnd     int64
	fleet, sending, local int64

	// With a Fleet: rate admissions not yet added, the last total read
	// (0: never read), and whether the entry is on its shard's dirty list.
	ratePending, rateSeen int64
	rateRead, dirty       bool
	fleetKey              string // made at the first sync
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	l := &Limiter{
		seed:    maphash.MakeSeed(),
		max:     max(cfg.MaxTracked, 0),
		fleet:   cfg.Fleet,
		every:   cfg.SyncInterval,
		onFleet: cfg.OnFleet,
		wake:    make(chan struct{}, 1),
	}
	if l.max == 0 {
		l.max = DefaultMaxTracked
	}
	l.max = max(l.max/nShards, 1)
	if l.every <= 0 {
		l.every = DefaultSyncInterval
	}
	for i := range l.shards {
		l.shards[i].entries = make(map[key]*entry)
	}
	return l
}

// Counted is one limit that counts a request: the limit, what it is
// (Scope: the same for every request it counts, e.g. "rule /a" or
// "subject s", and the header name Name) and whose budget (Caller).
type Counted struct {
	Limit  *policy.Limit
	Scope  string
	Name   string
	Caller string
}

// Verdict is the answer to Take.
type Verdict struct {
	// Refused says a limit refused the request; Quota that it was a
	// quota (else a rate).
	Refused, Quota bool
	// Name is the refusing limit's Counted.Name.
	Name string
	// RetryAfter is how long until the request would be admitted.
	RetryAfter time.Duration
	// Policy and State are, for a refusal, the RateLimit-Policy and
	// RateLimit header values (draft-ietf-httpapi-ratelimit-headers-09):
	// every limit that counted the request, rate and quota each an item.
	Policy, State string
}

// Take counts one request against every limit in cs, at now: it is
// admitted only if each of them admits it, and a refused request uses up
// nothing of any.
func (l *Limiter) Take(cs []Counted, now time.Time) Verdict {
	t := now.UnixNano()
	var v Verdict
	taken := 0
	for i := range cs {
		if ok := l.take(&cs[i], t, &v); !ok {
			break
		}
		taken++
	}
	if !v.Refused {
		return v
	}
	for i := range taken {
		l.refund(&cs[i])
	}
	v.Policy, v.State = l.headers(cs, t)
	return v
}

func (l *Limiter) shard(k key) *shard {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(k.scope)
	h.WriteString(k.caller)
	return &l.shards[h.Sum64()%nShards]
}

// lookup finds c's key and shard. A caller longer than maxCaller (a
// claim's value can be long) is counted by its digest, so that the
// table's memory stays bounded by MaxTracked.
func (l *Limiter) lookup(c *Counted) (key, *shard) {
	k := key{c.Scope, c.Caller}
	if len(k.caller) > maxCaller {
		sum := sha256.Sum256([]byte(k.caller))
		k.caller = "sha256:" + hex.EncodeToString(sum[:])
	}
	return k, l.shard(k)
}

func (l *Limiter) take(c *Counted, t int64, v *Verdict) bool {
	k, s := l.lookup(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[k]
	if e == nil {
		e = l.add(s, k, t)
	}
	e.seen = t
	lim := c.Limit
	var debt, interval, burst int64
	if lim.Rate > 0 {
		interval = int64(lim.Interval())
		burst = interval * lim.Burst
		debt = min(max(e.tat-t, 0), burst)
		if wait := debt + interval - burst; wait > 0 {
			v.Refused, v.Name, v.RetryAfter = true, c.Name, time.Duration(wait)
		}
	}
	if lim.Quota > 0 {
		e.roll(lim, t)
		if e.used() >= lim.Quota {
			v.Refused, v.Quota, v.Name = true, true, c.Name
			v.RetryAfter = max(v.RetryAfter, time.Duration(e.window+int64(lim.Window)-t))
		}
	}
	if v.Refused {
		return false
	}
	if lim.Rate > 0 {
		e.tat = t + debt + interval
		e.interval, e.burst = interval, burst
		e.ratePending++
	}
	if lim.Quota > 0 {
		e.local++
	}
	if l.fleet != nil {
		if !e.dirty {
			e.dirty = true
			s.dirty = append(s.dirty, e)
		}
		// A quarter of the burst, or a hundredth of the quota, admitted
		// since the last sync: sync now, so that the fleet's overshoot
		// stays well below a burst each.
		if lim.Rate > 0 && e.ratePending*4 >= lim.Burst || lim.Quota > 0 && e.local >= max(lim.Quota/100, 1) {
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
	}
	return true
}

// roll starts the quota's current window if e counts an earlier one.
func (e *entry) roll(lim *policy.Limit, t int64) {
	if w := t - t%int64(lim.Window); w != e.window {
		e.window, e.windowEnd, e.fleet, e.sending, e.local = w, w+int64(lim.Window), 0, 0, 0
	}
}

func (e *entry) used() int64 { return e.fleet + e.sending + e.local }

// idle reports whether e holds nothing that matters at t: its bucket is
// full, its quota window over or unused, and nothing waits for the Fleet.
func (e *entry) idle(t int64) bool {
	return e.tat <= t && (e.windowEnd <= t || e.used() == 0) && e.ratePending == 0 && e.sending == 0
}

// refund gives back what a take admitted, when a later limit refused.
func (l *Limiter) refund(c *Counted) {
	k, s := l.lookup(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[k]
	if e == nil {
		return
	}
	if c.Limit.Rate > 0 {
		e.tat -= int64(c.Limit.Interval())
		e.ratePending = max(e.ratePending-1, 0)
	}
	if c.Limit.Quota > 0 && e.local > 0 {
		e.local--
	}
}

// add makes k's entry, first making room in a full shard.
func (l *Limiter) add(s *shard, k key, t int64) *entry {
	if len(s.entries) >= l.max {
		var oldest *entry
		n := 0
		for _, e := range s.entries {
			if e.idle(t) {
				delete(s.entries, e.k)
				oldest = nil
			} else if oldest == nil || e.seen < oldest.seen {
				oldest = e
			}
			if n++; n == sample {
				break
			}
		}
		if len(s.entries) >= l.max && oldest != nil {
			delete(s.entries, oldest.k)
		}
	}
	// Clones: the caller may be a slice of a token's buffer, the scope
	// of a policy since replaced.
	k = key{strings.Clone(k.scope), strings.Clone(k.caller)}
	e := &entry{k: k, tat: t}
	s.entries[k] = e
	return e
}

// headers are the RateLimit-Policy and RateLimit values for cs at t, as
// draft-ietf-httpapi-ratelimit-headers-09 writes them:
//
//	RateLimit-Policy: "rule-rate";q=100;w=1, "rule-quota";q=100000;w=86400
//	RateLimit: "rule-rate";r=0;t=1, "rule-quota";r=99871;t=52113
//
// A rate's w is the whole seconds its burst takes to come back, and q
// what a full bucket admits in w (the burst, and what the rate refills
// meanwhile: 100/s with a burst of 1 is q=100;w=1, not q=1); r is what
// is left now and t the seconds until the bucket is full again. A
// quota's w is its window and t the seconds until the window ends.
func (l *Limiter) headers(cs []Counted, t int64) (pol, st string) {
	var pb, sb []byte
	item := func(name string, q, w, r, reset int64) {
		if len(pb) > 0 {
			pb, sb = append(pb, ", "...), append(sb, ", "...)
		}
		pb = strconv.AppendQuote(pb, name)
		pb = append(pb, ";q="...)
		pb = strconv.AppendInt(pb, q, 10)
		pb = append(pb, ";w="...)
		pb = strconv.AppendInt(pb, w, 10)
		sb = strconv.AppendQuote(sb, name)
		sb = append(sb, ";r="...)
		sb = strconv.AppendInt(sb, r, 10)
		sb = append(sb, ";t="...)
		sb = strconv.AppendInt(sb, reset, 10)
	}
	for i := range cs {
		c := &cs[i]
		k, s := l.lookup(c)
		s.mu.Lock()
		e := s.entries[k]
		var tat, used, window int64 = t, 0, t
		if e != nil {
			tat, used, window = e.tat, e.used(), e.window
		}
		s.mu.Unlock()
		lim := c.Limit
		if lim.Rate > 0 {
			interval := int64(lim.Interval())
			burst := interval * lim.Burst
			debt := min(max(tat-t, 0), burst)
			w := ceilSeconds(burst)
			q := lim.Burst + (w*int64(time.Second)-burst)/interval
			item(c.Name+"-rate", q, w, (burst-debt)/interval, ceilSeconds(debt))
		}
		if lim.Quota > 0 {
			w := int64(lim.Window)
			if window != t-t%w {
				used, window = 0, t-t%w
			}
			item(c.Name+"-quota", lim.Quota, ceilSeconds(w), max(lim.Quota-used, 0), ceilSeconds(window+w-t))
		}
	}
	return string(pb), string(sb)
}

// ceilSeconds is ns in whole seconds, rounded up.
func ceilSeconds(ns int64) int64 {
	return (ns + int64(time.Second) - 1) / int64(time.Second)
}

// Run syncs with the Fleet until ctx ends; without a Fleet it returns at
// once.
func (l *Limiter) Run(ctx context.Context) {
	if l.fleet == nil {
		return
	}
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-l.wake:
		}
		l.Sync(ctx, time.Now())
	}
}

// pending is one entry's part of a sync.
type pending struct {
	e              *entry
	rate, quota    int64 // admissions sent
	window         int64 // the quota's window they were admitted in
	hasRate, hasQt bool
}

// Sync adds what this instance admitted since the last sync to the
// Fleet, and takes in what the others admitted. Run calls it; tests call
// it to sync at a moment of their choosing.
func (l *Limiter) Sync(ctx context.Context, now time.Time) {
	t := now.UnixNano()
	var ps []pending
	var counts []Count
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for _, e := range s.dirty {
			if e.fleetKey == "" {
				sum := sha256.Sum256([]byte(e.k.scope + "\x00" + e.k.caller))
				e.fleetKey = hex.EncodeToString(sum[:16])
			}
			p := pending{e: e, rate: e.ratePending, quota: e.local, window: e.window}
			e.ratePending = 0
			e.sending += e.local
			e.local = 0
			if e.interval > 0 {
				p.hasRate = true
				// Kept while it matters: a minute past a full bucket.
				counts = append(counts, Count{Key: "r:" + e.fleetKey, Delta: p.rate, Expire: now.Add(time.Duration(e.burst) + time.Minute)})
			}
			if e.window != 0 {
				p.hasQt = true
				// Kept a day past the longest window's end: an instance
				// whose clock is behind still adds to the right one.
				counts = append(counts, Count{Key: "q:" + e.fleetKey + ":" + strconv.FormatInt(e.window/int64(time.Second), 10),
					Delta: p.quota, Expire: time.Unix(0, e.window).Add(48 * time.Hour)})
			}
			ps = append(ps, p)
		}
		// Entries used lately stay on the list for the next sync.
		kept := s.dirty[:0]
		for _, e := range s.dirty {
			if e.dirty = t-e.seen < int64(watchFor) && s.entries[e.k] == e; e.dirty {
				kept = append(kept, e)
			}
		}
		clear(s.dirty[len(kept):])
		s.dirty = kept
		s.mu.Unlock()
	}
	if len(ps) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	totals, err := l.fleet.Add(ctx, counts)
	if err == nil && len(totals) != len(counts) {
		err = errShort
	}
	l.report(err)
	j := 0
	for _, p := range ps {
		s := l.shard(p.e.k)
		s.mu.Lock()
		e := p.e
		if err != nil {
			// Counted here meanwhile; the quota goes to the fleet when it
			// answers again, the rate is history by then.
			if e.window == p.window {
				e.sending -= p.quota
				e.local += p.quota
			}
			s.mu.Unlock()
			continue
		}
		if p.hasRate {
			// The first total read is history: what the others admitted
			// before this instance counted the caller is not charged.
			if others := totals[j] - e.rateSeen - p.rate; e.rateRead && others > 0 {
				e.charge(others, t)
			}
			e.rateSeen, e.rateRead = totals[j], true
			j++
		}
		if p.hasQt {
			if e.window == p.window {
				e.sending -= p.quota
				e.fleet = max(totals[j], e.fleet)
			}
			j++
		}
		s.mu.Unlock()
	}
}

// charge adds n requests the other instances admitted to e's bucket,
// which never goes beyond empty, as a take never makes it.
func (e *entry) charge(n, t int64) {
	debt := min(max(e.tat-t, 0)+n*e.interval, e.burst)
	e.tat = t + debt
}

// report tells OnFleet when the Fleet fails and when it is back.
func (l *Limiter) report(err error) {
	if (err != nil) == l.down {
		return
	}
	l.down = err != nil
	if l.onFleet != nil {
		l.onFleet(err)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

const errShort = errString("ratelimit: the fleet answered fewer totals than it was sent counts")
