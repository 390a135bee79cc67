package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/policy"
)

// t0 is a Monday, 10:00 UTC.
var t0 = time.Date(2030, 1, 7, 10, 0, 0, 0, time.UTC)

func rate(n int64, per time.Duration, burst int64) *policy.Limit {
	return &policy.Limit{Rate: n, RatePer: per, Burst: burst, Per: "client"}
}

func quota(n int64, window time.Duration) *policy.Limit {
	return &policy.Limit{Quota: n, Window: window, Per: "client"}
}

func one(l *policy.Limit, caller string) []Counted {
	return []Counted{{Limit: l, Scope: "rule /a", Name: "rule", Caller: caller}}
}

// admitted takes n requests at now and returns how many were admitted.
func admitted(l *Limiter, cs []Counted, n int, now time.Time) int {
	ok := 0
	for range n {
		if !l.Take(cs, now).Refused {
			ok++
		}
	}
	return ok
}

func TestTake_ARateAdmitsItsBurstThenOneAnInterval(t *testing.T) {
	l := New(Config{})
	cs := one(rate(10, time.Second, 5), "c1") // one every 100 ms, 5 at once
	if got := admitted(l, cs, 8, t0); got != 5 {
		t.Fatalf("at once: %d admitted, want the burst of 5", got)
	}
	v := l.Take(cs, t0)
	if !v.Refused || v.Quota || v.RetryAfter != 100*time.Millisecond || v.Name != "rule" {
		t.Errorf("over the burst: %+v, want refused by the rate, retry after 100ms", v)
	}
	if got := admitted(l, cs, 3, t0.Add(100*time.Millisecond)); got != 1 {
		t.Errorf("one interval later: %d admitted, want 1", got)
	}
	if got := admitted(l, cs, 9, t0.Add(10*time.Second)); got != 5 {
		t.Errorf("after a pause: %d admitted, want the whole burst back", got)
	}
	steady := 0
	for i := range 50 { // at the rate, never refused
		steady += admitted(l, cs, 1, t0.Add(20*time.Second+time.Duration(i)*100*time.Millisecond))
	}
	if steady != 50 {
		t.Errorf("at the rate: %d of 50 admitted", steady)
	}
}

func TestTake_EachCallerHasItsOwnBudget(t *testing.T) {
	l := New(Config{})
	lim := rate(1, time.Minute, 2)
	if got := admitted(l, one(lim, "c1"), 5, t0); got != 2 {
		t.Errorf("c1: %d admitted, want 2", got)
	}
	if got := admitted(l, one(lim, "c2"), 5, t0); got != 2 {
		t.Errorf("c2, after c1 used its budget: %d admitted, want 2", got)
	}
	other := []Counted{{Limit: lim, Scope: "rule /b", Name: "rule", Caller: "c1"}}
	if got := admitted(l, other, 5, t0); got != 2 {
		t.Errorf("c1 under another rule: %d admitted, want 2", got)
	}
}

func TestTake_AQuotaLastsUntilTheUTCWindowEnds(t *testing.T) {
	l := New(Config{})
	cs := one(quota(3, 24*time.Hour), "c1")
	if got := admitted(l, cs, 5, t0); got != 3 {
		t.Fatalf("%d admitted, want the quota of 3", got)
	}
	v := l.Take(cs, t0.Add(13*time.Hour)) // 23:00 UTC
	if !v.Refused || !v.Quota || v.RetryAfter != time.Hour {
		t.Errorf("at 23:00 UTC: %+v, want refused by the quota until midnight UTC", v)
	}
	if got := admitted(l, cs, 5, t0.Add(14*time.Hour)); got != 3 {
		t.Errorf("the next UTC day: %d admitted, want a fresh 3", got)
	}
	hourly := one(quota(2, time.Hour), "c2")
	admitted(l, hourly, 2, t0.Add(59*time.Minute))
	if v := l.Take(hourly, t0.Add(59*time.Minute)); v.RetryAfter != time.Minute {
		t.Errorf("hourly quota at 10:59: RetryAfter %v, want 1m", v.RetryAfter)
	}
	if got := admitted(l, hourly, 2, t0.Add(time.Hour)); got != 2 {
		t.Errorf("hourly quota at 11:00: %d admitted, want 2", got)
	}
}

func TestTake_ARequestRefusedByOneLimitUsesUpNoneOfTheOthers(t *testing.T) {
	l := New(Config{})
	ruleLimit := rate(100, time.Second, 100)
	subjectLimit := quota(2, time.Hour)
	cs := []Counted{
		{Limit: ruleLimit, Scope: "rule /a", Name: "rule", Caller: "c1"},
		{Limit: subjectLimit, Scope: "subject s", Name: "subject", Caller: "c1"},
	}
	if got := admitted(l, cs, 10, t0); got != 2 {
		t.Fatalf("%d admitted, want the subject's quota of 2", got)
	}
	// The rule's bucket gave back the 8 refused: 98 left of 100.
	alone := cs[:1]
	if got := admitted(l, alone, 200, t0); got != 98 {
		t.Errorf("the rule's limit alone afterwards: %d admitted, want 98", got)
	}
}

func TestTake_RefusalCarriesTheDraftHeaders(t *testing.T) {
	l := New(Config{})
	cs := []Counted{
		{Limit: &policy.Limit{Rate: 2, RatePer: time.Second, Burst: 4, Quota: 1000, Window: 24 * time.Hour}, Scope: "rule /a", Name: "rule", Caller: "c1"},
		{Limit: quota(10, time.Hour), Scope: "subject s", Name: "subject", Caller: "c1"},
	}
	admitted(l, cs, 4, t0)
	v := l.Take(cs, t0.Add(100*time.Millisecond))
	if !v.Refused || v.RetryAfter != 400*time.Millisecond {
		t.Fatalf("%+v, want refused, retry after 400ms", v)
	}
	wantPolicy := `"rule-rate";q=4;w=2, "rule-quota";q=1000;w=86400, "subject-quota";q=10;w=3600`
	wantState := `"rule-rate";r=0;t=2, "rule-quota";r=996;t=50400, "subject-quota";r=6;t=3600`
	if v.Policy != wantPolicy || v.State != wantState {
		t.Errorf("RateLimit-Policy: %s\nRateLimit: %s\nwant\n%s\n%s", v.Policy, v.State, wantPolicy, wantState)
	}
	if v := l.Take(cs[1:], t0); v.Refused || v.Policy != "" {
		t.Errorf("an admitted request: %+v, want no headers (they cost on every request)", v)
	}
}

func TestTake_ARateFasterThanItsBurstIsAdvertisedPerSecond(t *testing.T) {
	for _, tc := range []struct {
		lim        *policy.Limit
		wantPolicy string
	}{
		{rate(100, time.Second, 1), `"rule-rate";q=100;w=1`},
		{rate(3, time.Second, 2), `"rule-rate";q=3;w=1`},
		{rate(1, time.Minute, 3), `"rule-rate";q=3;w=180`},
	} {
		l := New(Config{})
		cs := []Counted{{Limit: tc.lim, Scope: "rule /a", Name: "rule", Caller: "c1"}}
		admitted(l, cs, int(tc.lim.Burst), t0)
		if v := l.Take(cs, t0); !v.Refused || v.Policy != tc.wantPolicy {
			t.Errorf("%d per %v, burst %d: %+v, want refused with RateLimit-Policy %s", tc.lim.Rate, tc.lim.RatePer, tc.lim.Burst, v, tc.wantPolicy)
		}
	}
}

func TestLimiter_TableStaysWithinMaxTracked(t *testing.T) {
	l := New(Config{MaxTracked: nShards * 4})
	lim := rate(1, time.Hour, 1)
	for i := range 10_000 {
		l.Take(one(lim, fmt.Sprint("caller-", i)), t0)
	}
	n := 0
	for i := range l.shards {
		n += len(l.shards[i].entries)
	}
	if n > nShards*4 {
		t.Errorf("%d entries tracked, want at most %d", n, nShards*4)
	}
	// The last caller is tracked: its budget is used up.
	if !l.Take(one(lim, "caller-9999"), t0).Refused {
		t.Error("the most recent caller was evicted")
	}
}

// fakeFleet is Redis's INCRBY in a map; fail makes it fail.
type fakeFleet struct {
	mu       sync.Mutex
	counters map[string]int64
	fail     bool
	calls    int
}

func (f *fakeFleet) Add(_ context.Context, counts []Count) ([]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail {
		return nil, errors.New("fleet down")
	}
	out := make([]int64, len(counts))
	for i, c := range counts {
		f.counters[c.Key] += c.Delta
		out[i] = f.counters[c.Key]
	}
	return out, nil
}

func TestFleet_InstancesShareOneBudget(t *testing.T) {
	f := &fakeFleet{counters: map[string]int64{}}
	a, b := New(Config{Fleet: f}), New(Config{Fleet: f})
	ctx := context.Background()
	lim := &policy.Limit{Rate: 10, RatePer: time.Minute, Burst: 10, Quota: 30, Window: 24 * time.Hour}
	cs := one(lim, "c1")
	// Both learn of the caller first: a first total is not charged.
	admitted(a, cs, 1, t0)
	admitted(b, cs, 1, t0)
	a.Sync(ctx, t0)
	b.Sync(ctx, t0)
	if got := admitted(a, cs, 4, t0); got != 4 {
		t.Fatalf("A: %d admitted, want 4", got)
	}
	a.Sync(ctx, t0)
	b.Sync(ctx, t0) // B learns of A's 4 and is charged for them
	if got := admitted(b, cs, 10, t0); got != 5 {
		t.Errorf("B after its own 1 and A's 4: %d admitted, want the 5 left of 10", got)
	}
	// Quota: 11 used fleet-wide; A learns of B's.
	b.Sync(ctx, t0)
	a.Sync(ctx, t0)
	later := t0.Add(time.Hour) // the buckets are full again; 19 left of the quota
	if got := admitted(a, cs, 30, later); got != 10 {
		t.Errorf("A an hour later: %d admitted, want a full burst of 10", got)
	}
	a.Sync(ctx, later)
	b.Sync(ctx, later)
	if got := admitted(b, cs, 30, later.Add(time.Hour)); got != 9 {
		t.Errorf("B two hours later: %d admitted, want the 9 left of the quota of 30", got)
	}
	if v := b.Take(cs, later.Add(time.Hour)); !v.Quota {
		t.Errorf("B with the quota used up across the fleet: %+v, want refused by the quota", v)
	}
}

func TestFleet_WhileItFailsEachInstanceCountsOnItsOwn(t *testing.T) {
	f := &fakeFleet{counters: map[string]int64{}}
	var told []error
	a := New(Config{Fleet: f, OnFleet: func(err error) { told = append(told, err) }})
	ctx := context.Background()
	cs := one(quota(10, 24*time.Hour), "c1")
	f.fail = true
	admitted(a, cs, 3, t0)
	a.Sync(ctx, t0)
	admitted(a, cs, 3, t0)
	a.Sync(ctx, t0)
	if len(told) != 1 || told[0] == nil {
		t.Fatalf("OnFleet told %v, want one error", told)
	}
	if got := admitted(a, cs, 10, t0); got != 4 {
		t.Errorf("while the fleet fails: %d admitted, want the 4 left locally", got)
	}
	f.fail = false
	a.Sync(ctx, t0)
	if len(told) != 2 || told[1] != nil {
		t.Errorf("OnFleet told %v, want the error, then nil when it is back", told)
	}
	var total int64
	for k, v := range f.counters {
		if k[0] == 'q' {
			total += v
		}
	}
	if total != 10 {
		t.Errorf("the fleet's quota counter = %d after it is back, want all 10 admitted meanwhile", total)
	}
}

func TestRun_SyncsWhenABurstIsAQuarterUsed(t *testing.T) {
	f := &fakeFleet{counters: map[string]int64{}}
	a := New(Config{Fleet: f, SyncInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	admitted(a, one(rate(100, time.Second, 100), "c1"), 25, time.Now())
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		calls := f.calls
		f.mu.Unlock()
		if calls > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no sync within 5s of a quarter of the burst, with an interval of an hour")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

func BenchmarkTake_Admitted(b *testing.B) {
	l := New(Config{})
	cs := []Counted{{Limit: rate(1_000_000_000, time.Second, 1_000_000_000), Scope: "rule /http/*", Name: "rule", Caller: "3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6"}}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if l.Take(cs, now).Refused {
				b.Fatal("refused")
			}
		}
	})
}

func TestLimiter_AFullTableMakesRoomWithIdleAndLeastRecentCallersNotTheOneInUse(t *testing.T) {
	l := New(Config{MaxTracked: nShards * 8})
	hourly := quota(1, time.Hour)
	// Yesterday's callers used their quota; their windows are over.
	for i := range 200 {
		l.Take(one(hourly, fmt.Sprint("old-", i)), t0.Add(-24*time.Hour))
	}
	// Today's caller is over its quota, and stays so while others come.
	l.Take(one(hourly, "today"), t0)
	for i := range 2000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		l.Take(one(hourly, fmt.Sprint("new-", i)), now)
		if !l.Take(one(hourly, "today"), now).Refused {
			t.Fatalf("after %d new callers, today's caller got a fresh quota", i+1)
		}
	}
}
