package bruteforce

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// failN records n failures at now.
func failN(l *Limiter, n int, clientID, addr string, now time.Time) {
	for range n {
		l.Fail(clientID, addr, now)
	}
}

// tracked is the number of keys per dimension.
func (l *Limiter) tracked() (clients, addrs int) {
	l.clients.mu.Lock()
	defer l.clients.mu.Unlock()
	l.addrs.mu.Lock()
	defer l.addrs.mu.Unlock()
	if len(l.clients.entries) != len(l.clients.heap) || len(l.addrs.entries) != len(l.addrs.heap) {
		panic("map and heap disagree")
	}
	return len(l.clients.entries), len(l.addrs.entries)
}

func TestNew_ZeroConfigTakesDefaults(t *testing.T) {
	l := New(Config{})
	if got, want := l.clients.interval, int64(time.Minute/20); got != want {
		t.Errorf("client interval = %v, want %v", time.Duration(got), time.Duration(want))
	}
	if got, want := l.addrs.interval, int64(time.Minute/10); got != want {
		t.Errorf("address interval = %v, want %v", time.Duration(got), time.Duration(want))
	}
	if l.clients.max != 100_000 || l.addrs.max != 100_000 {
		t.Errorf("MaxTracked = %d, %d, want 100000", l.clients.max, l.addrs.max)
	}
	// Fields default independently.
	l = New(Config{PerClient: Rate{Failures: 5}, PerAddress: Rate{Per: time.Hour}})
	if got, want := l.clients.interval, int64(time.Minute/5); got != want {
		t.Errorf("Failures only: interval = %v, want %v", time.Duration(got), time.Duration(want))
	}
	if got, want := l.addrs.interval, int64(time.Hour/10); got != want {
		t.Errorf("Per only: interval = %v, want %v", time.Duration(got), time.Duration(want))
	}
}

func TestLimiter_BudgetExhaustsAndRecovers(t *testing.T) {
	// 10 per minute: a burst of 10, then one more every 6 s.
	cfg := Config{PerClient: Rate{10, time.Minute}, PerAddress: Rate{1000, time.Minute}}
	type step struct {
		at   time.Duration // since t0
		fail int           // failures recorded at this time, after checking
		wait time.Duration // Check's answer before them
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"nine failures leave one allowed", []step{
			{0, 9, 0}, {0, 0, 0}}},
		{"the tenth failure exhausts the budget for one interval", []step{
			{0, 10, 0}, {0, 0, 6 * time.Second}}},
		{"the wait shrinks as time passes", []step{
			{0, 10, 0}, {2 * time.Second, 0, 4 * time.Second}, {5900 * time.Millisecond, 0, 100 * time.Millisecond}}},
		{"one interval later one more failure is allowed, then none", []step{
			{0, 10, 0}, {6 * time.Second, 1, 0}, {6 * time.Second, 0, 6 * time.Second}}},
		{"a full period later the whole burst is back", []step{
			{0, 10, 0}, {time.Minute, 10, 0}, {time.Minute, 0, 6 * time.Second}}},
		{"failures spread at the refill rate never trip it", []step{
			{0, 1, 0}, {6 * time.Second, 1, 0}, {12 * time.Second, 1, 0}, {18 * time.Second, 1, 0},
			{24 * time.Second, 1, 0}, {30 * time.Second, 1, 0}, {36 * time.Second, 1, 0},
			{42 * time.Second, 1, 0}, {48 * time.Second, 1, 0}, {54 * time.Second, 1, 0},
			{60 * time.Second, 1, 0}, {66 * time.Second, 1, 0}, {66 * time.Second, 0, 0}}},
		{"failures while limited keep it limited but never beyond one interval", []step{
			{0, 10, 0}, {3 * time.Second, 50, 3 * time.Second}, {3 * time.Second, 0, 6 * time.Second},
			{9 * time.Second, 0, 0}}},
		{"half a period of quiet restores half the burst", []step{
			{0, 10, 0}, {30 * time.Second, 5, 0}, {30 * time.Second, 0, 6 * time.Second}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(cfg)
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				if got := l.Check("c1", "192.0.2.1:5000", now); got != s.wait {
					t.Fatalf("step %d (t0+%v): Check = %v, want %v", i, s.at, got, s.wait)
				}
				failN(l, s.fail, "c1", "192.0.2.1:5000", now)
			}
		})
	}
}

func TestLimiter_CheckReportsTheMoreRestrictiveDimension(t *testing.T) {
	l := New(Config{PerClient: Rate{2, 10 * time.Second}, PerAddress: Rate{2, time.Minute}})
	failN(l, 2, "c1", "192.0.2.1", t0)
	// Client interval 5 s, address interval 30 s.
	if got, want := l.Check("c1", "192.0.2.1", t0), 30*time.Second; got != want {
		t.Errorf("Check = %v, want the address's %v", got, want)
	}
	if got, want := l.Check("c1", "198.51.100.7", t0), 5*time.Second; got != want {
		t.Errorf("other address: Check = %v, want the client's %v", got, want)
	}
	if got, want := l.Check("c2", "192.0.2.1", t0), 30*time.Second; got != want {
		t.Errorf("other client: Check = %v, want the address's %v", got, want)
	}
	if got := l.Check("c2", "198.51.100.7", t0); got != 0 {
		t.Errorf("other client and address: Check = %v, want 0", got)
	}
}

func TestLimiter_PerClientLimitTripsAcrossManyAddresses(t *testing.T) {
	l := New(Config{}) // 20 per minute per client, 10 per address
	for i := range 20 {
		addr := fmt.Sprintf("203.0.113.%d:443", i)
		if got := l.Check("victim", addr, t0); got != 0 {
			t.Fatalf("failure %d: Check = %v before the client budget is spent", i+1, got)
		}
		l.Fail("victim", addr, t0)
	}
	if got, want := l.Check("victim", "198.51.100.99:1", t0), 3*time.Second; got != want {
		t.Errorf("fresh address, spent client: Check = %v, want %v", got, want)
	}
	if got := l.Check("someone-else", "198.51.100.99:1", t0); got != 0 {
		t.Errorf("other client from a fresh address: Check = %v, want 0", got)
	}
}

func TestLimiter_PerAddressLimitTripsAcrossManyClientIDs(t *testing.T) {
	l := New(Config{}) // 10 per minute per address
	for i := range 10 {
		id := fmt.Sprintf("client-%d", i)
		if got := l.Check(id, "192.0.2.1:1234", t0); got != 0 {
			t.Fatalf("failure %d: Check = %v before the address budget is spent", i+1, got)
		}
		l.Fail(id, "192.0.2.1:1234", t0)
	}
	if got, want := l.Check("fresh-client", "192.0.2.1:9999", t0), 6*time.Second; got != want {
		t.Errorf("fresh client, spent address: Check = %v, want %v", got, want)
	}
	if got := l.Check("fresh-client", "192.0.2.2:9999", t0); got != 0 {
		t.Errorf("fresh client from another address: Check = %v, want 0", got)
	}
}

func TestLimiter_SuccessesNeverTripIt(t *testing.T) {
	l := New(Config{PerClient: Rate{1, time.Hour}, PerAddress: Rate{1, time.Hour}})
	for i := range 100_000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if got := l.Check("good-client", "192.0.2.1:443", now); got != 0 {
			t.Fatalf("request %d: Check = %v for a client that never failed", i, got)
		}
	}
	if c, a := l.tracked(); c != 0 || a != 0 {
		t.Errorf("Check alone tracked %d client IDs and %d addresses, want none", c, a)
	}
}

func TestLimiter_AddressKeys(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"IPv6 addresses in one /64 share a budget", "[2001:db8:1:2::1]:443", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:80", true},
		{"IPv6 addresses in neighbouring /64s do not", "[2001:db8:1:2::1]:443", "[2001:db8:1:3::1]:443", false},
		{"neighbouring IPv4 addresses do not", "192.0.2.1:443", "192.0.2.2:443", false},
		{"IPv4 host:port and bare IPv4 are the same key", "192.0.2.1:5555", "192.0.2.1", true},
		{"IPv6 host:port and bare IPv6 are the same key", "[2001:db8::1]:5555", "2001:db8::1", true},
		{"bracketed bare IPv6 is the same key", "[2001:db8::1]", "2001:db8::1", true},
		{"the port never matters", "192.0.2.1:1", "192.0.2.1:65535", true},
		{"IPv4-mapped IPv6 is the IPv4 address", "[::ffff:192.0.2.1]:443", "192.0.2.1:80", true},
		{"IPv4-mapped IPv6 does not share a /64 with its neighbours", "[::ffff:192.0.2.1]:443", "192.0.2.2:80", false},
		{"an IPv6 zone is ignored", "[fe80::1%eth0]:443", "fe80::2", true},
		{"an unparsable address is tracked as itself", "@unix-socket", "@unix-socket", true},
		{"different unparsable addresses differ", "@unix-socket", "@other-socket", false},
		{"an unparsable address does not collide with an IP", "192.0.2.1x", "192.0.2.1", false},
		{"any port text after an IP host is ignored", "192.0.2.1:notaport", "192.0.2.1", true},
		{"long unparsable addresses are told apart", strings.Repeat("x", 300) + "a", strings.Repeat("x", 300) + "b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Config{PerAddress: Rate{1, time.Minute}, PerClient: Rate{1000, time.Minute}})
			l.Fail("c1", tt.a, t0)
			limited := l.Check("c2", tt.b, t0) > 0
			if limited != tt.same {
				t.Errorf("after a failure from %q, %q limited = %v, want %v", tt.a, tt.b, limited, tt.same)
			}
			if same := AddressBucket(tt.a) == AddressBucket(tt.b); same != tt.same {
				t.Errorf("AddressBucket(%q) == AddressBucket(%q) is %v, want %v", tt.a, tt.b, same, tt.same)
			}
		})
	}
}

func TestLimiter_ClientIDKeys(t *testing.T) {
	long := strings.Repeat("a", 200)
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"the same client ID shares a budget", "3f9a", "3f9a", true},
		{"client IDs are case-sensitive", "3f9a", "3F9A", false},
		{"a long client ID is one key", long, long, true},
		{"long client IDs differing at the end differ", long + "1", long + "2", false},
		{"a 128-byte client ID is kept as itself", strings.Repeat("b", 128), strings.Repeat("b", 128), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Config{PerClient: Rate{1, time.Minute}, PerAddress: Rate{1000, time.Minute}})
			l.Fail(tt.a, "192.0.2.1", t0)
			limited := l.Check(tt.b, "192.0.2.2", t0) > 0
			if limited != tt.same {
				t.Errorf("after a failure of %.20q…, %.20q… limited = %v, want %v", tt.a, tt.b, limited, tt.same)
			}
		})
	}
}

func TestLimiter_LongClientIDsAreStoredAsDigests(t *testing.T) {
	l := New(Config{})
	l.Fail(strings.Repeat("z", 1<<20), "192.0.2.1", t0)
	for k := range l.clients.entries {
		if len(k.s) > maxKeyLen || !k.hashed {
			t.Errorf("a 1 MiB client ID is stored as %d bytes (hashed %v), want a digest", len(k.s), k.hashed)
		}
	}
}

func TestLimiter_MaxTrackedHoldsUnderTenTimesAsManyKeys(t *testing.T) {
	const maxTracked = 1000
	tests := []struct {
		name     string
		clientID func(i int) string
		addr     func(i int) string
	}{
		{"rotating client IDs and IPv4 addresses", func(i int) string { return fmt.Sprint("client-", i) },
			func(i int) string { return fmt.Sprintf("10.%d.%d.%d:443", i>>16&255, i>>8&255, i&255) }},
		{"rotating IPv6 /64s", func(i int) string { return "victim" },
			func(i int) string { return fmt.Sprintf("[2001:db8:%x:%x::1]:443", i>>16, i&0xffff) }},
		{"rotating unparsable addresses and long client IDs", func(i int) string { return fmt.Sprint(strings.Repeat("x", 200), i) },
			func(i int) string { return fmt.Sprint("garbage-", i) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New(Config{MaxTracked: maxTracked})
			for i := range 10 * maxTracked {
				// All within one second: nothing recovers, every
				// insertion past the bound must evict.
				l.Fail(tt.clientID(i), tt.addr(i), t0.Add(time.Duration(i)*time.Microsecond))
				if c, a := l.tracked(); c > maxTracked || a > maxTracked {
					t.Fatalf("after %d failures: tracking %d client IDs and %d addresses, bound %d", i+1, c, a, maxTracked)
				}
			}
		})
	}
}

func TestLimiter_Eviction(t *testing.T) {
	// Room for 3 addresses; the per-client limit is out of the way.
	newLimiter := func() *Limiter {
		return New(Config{MaxTracked: 3, PerAddress: Rate{10, time.Minute}, PerClient: Rate{1 << 20, time.Minute}})
	}
	t.Run("a recovered entry goes before an unrecovered one, even a more recently failed one", func(t *testing.T) {
		l := newLimiter()
		failN(l, 10, "c", "192.0.2.1", t0)                    // recovered at t0+60s
		failN(l, 1, "c", "192.0.2.2", t0.Add(10*time.Second)) // recovered at t0+16s
		failN(l, 10, "c", "192.0.2.3", t0.Add(20*time.Second))
		l.Fail("c", "192.0.2.4", t0.Add(30*time.Second)) // needs room
		for a, want := range map[string]bool{"192.0.2.1": true, "192.0.2.2": false, "192.0.2.3": true, "192.0.2.4": true} {
			if _, got := l.addrs.entries[addrKey(a)]; got != want {
				t.Errorf("%s tracked = %v, want %v", a, got, want)
			}
		}
	})
	t.Run("with nothing recovered the least recently failed goes", func(t *testing.T) {
		l := newLimiter()
		failN(l, 10, "c", "192.0.2.1", t0)
		failN(l, 10, "c", "192.0.2.2", t0.Add(time.Second))
		failN(l, 10, "c", "192.0.2.3", t0.Add(2*time.Second))
		now := t0.Add(3 * time.Second)
		l.Fail("c", "192.0.2.4", now)
		if _, ok := l.addrs.entries[addrKey("192.0.2.1")]; ok {
			t.Error("the least recently failed address is still tracked")
		}
		for _, a := range []string{"192.0.2.2", "192.0.2.3", "192.0.2.4"} {
			if _, ok := l.addrs.entries[addrKey(a)]; !ok {
				t.Errorf("%s was evicted", a)
			}
		}
	})
	t.Run("a spray of single failures cannot flush a limited entry", func(t *testing.T) {
		l := New(Config{MaxTracked: 100, PerAddress: Rate{10, time.Minute}, PerClient: Rate{1 << 20, time.Minute}})
		failN(l, 10, "c", "192.0.2.1", t0)
		for i := range 1000 {
			l.Fail("c", fmt.Sprintf("10.0.%d.%d", i>>8, i&255), t0.Add(time.Duration(i)*time.Millisecond))
		}
		if got := l.Check("c", "192.0.2.1", t0.Add(time.Second)); got == 0 {
			t.Error("the limited address was evicted by 1000 single failures from other addresses")
		}
	})
	t.Run("recovered entries are dropped in passing", func(t *testing.T) {
		l := New(Config{})
		for i := range 100 {
			l.Fail("c", fmt.Sprintf("10.0.0.%d", i), t0)
		}
		later := t0.Add(time.Hour)
		for range 50 {
			l.Fail("c", "192.0.2.1", later)
		}
		if _, a := l.tracked(); a != 1 {
			t.Errorf("tracking %d addresses an hour later, want only the one still failing", a)
		}
	})
}

func TestLimiter_WallClockSteppedBackNeverWaitsBeyondOneInterval(t *testing.T) {
	l := New(Config{PerClient: Rate{10, time.Minute}, PerAddress: Rate{10, time.Minute}})
	failN(l, 10, "c", "192.0.2.1", t0)
	if got, want := l.Check("c", "192.0.2.1", t0.Add(-time.Hour)), 6*time.Second; got != want {
		t.Errorf("an hour earlier: Check = %v, want at most %v", got, want)
	}
}

func TestLimiter_ConcurrentUse(t *testing.T) {
	l := New(Config{MaxTracked: 500, PerClient: Rate{5, time.Minute}, PerAddress: Rate{5, time.Minute}})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				id := fmt.Sprint("client-", (g*7+i)%700)
				addr := fmt.Sprintf("[2001:db8:%x::1]:443", (g*13+i)%900)
				if l.Check(id, addr, now) >= 0 {
					l.Fail(id, addr, now)
				}
			}
		})
	}
	wg.Wait()
	if c, a := l.tracked(); c > 500 || a > 500 {
		t.Errorf("tracking %d client IDs and %d addresses, bound 500", c, a)
	}
	for _, tb := range []*table{l.clients, l.addrs} {
		for i, e := range tb.heap {
			if e.i != i || tb.entries[e.k] != e {
				t.Fatalf("heap entry %d is inconsistent", i)
			}
			if i > 0 && tb.heap[(i-1)/2].full > e.full {
				t.Fatalf("heap order broken at %d", i)
			}
		}
	}
}

// BenchmarkCheckFail measures the per-request cost on the token endpoint.
func BenchmarkCheckFail(b *testing.B) {
	addrs := make([]string, 1<<16)
	ids := make([]string, 1<<16)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("[2001:db8:%x:%x::1]:443", i>>8, i&255)
		ids[i] = fmt.Sprint("client-", i)
	}
	b.Run("check only, one good client", func(b *testing.B) {
		l := New(Config{})
		for b.Loop() {
			l.Check("3f9a0c", "192.0.2.1:50000", t0)
		}
	})
	b.Run("check and fail, one key", func(b *testing.B) {
		l := New(Config{})
		for b.Loop() {
			l.Check("3f9a0c", "192.0.2.1:50000", t0)
			l.Fail("3f9a0c", "192.0.2.1:50000", t0)
		}
	})
	b.Run("check and fail, rotating keys past MaxTracked", func(b *testing.B) {
		l := New(Config{MaxTracked: 10_000})
		i := 0
		for b.Loop() {
			now := t0.Add(time.Duration(i) * time.Microsecond)
			id, addr := ids[i&(1<<16-1)], addrs[i&(1<<16-1)]
			l.Check(id, addr, now)
			l.Fail(id, addr, now)
			i++
		}
	})
	b.Run("check and fail, rotating keys, parallel", func(b *testing.B) {
		l := New(Config{MaxTracked: 10_000})
		var mu sync.Mutex
		next := 0
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			i := next * 7919
			next++
			mu.Unlock()
			for pb.Next() {
				now := t0.Add(time.Duration(i) * time.Microsecond)
				id, addr := ids[i&(1<<16-1)], addrs[i&(1<<16-1)]
				l.Check(id, addr, now)
				l.Fail(id, addr, now)
				i++
			}
		})
	})
	b.Run("check only, parallel", func(b *testing.B) {
		l := New(Config{})
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Check("3f9a0c", "192.0.2.1:50000", t0)
			}
		})
	})
}

// Guesses that arrive together must be counted before any of them has
// finished its (slow) verification: Take allows exactly the budget.
func TestLimiter_TakeCountsConcurrentAttemptsBeforeTheyFinish(t *testing.T) {
	l := New(Config{PerClient: Rate{Failures: 3, Per: time.Hour}})
	now := time.Unix(1_800_000_000, 0)
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.Take("victim", fmt.Sprintf("192.0.2.%d", i), now) == 0 {
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := allowed.Load(); n != 3 {
		t.Fatalf("%d of 40 concurrent attempts were allowed, want the budget of 3", n)
	}
	// A success gives its failure back: the next attempt is allowed again.
	l.Refund("victim", "192.0.2.1")
	if wait := l.Take("victim", "192.0.2.1", now); wait != 0 {
		t.Errorf("after a refund, Take waits %v, want 0", wait)
	}
}
