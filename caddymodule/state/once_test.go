package state_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/state"
)

func TestMemoryOnce_AcceptsEachIdentifierOnceUntilItExpires(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := state.NewMemoryOnce(3, func() time.Time { return now })
	ctx := context.Background()
	first := func(kind, id string, exp time.Time) bool {
		t.Helper()
		ok, err := m.First(ctx, kind, id, exp)
		if err != nil {
			t.Fatalf("First(%s, %s): %v", kind, id, err)
		}
		return ok
	}
	soon, later := now.Add(time.Minute), now.Add(time.Hour)
	steps := []struct {
		name, kind, id string
		exp            time.Time
		want           bool
	}{
		{"a new proof", "dpop", "j1", soon, true},
		{"the same proof again", "dpop", "j1", soon, false},
		{"the same again with a later expiry", "dpop", "j1", later, false},
		{"the same jti of another kind", "assertion", "j1", later, true},
		{"an identifier already expired", "dpop", "old", now, true},
		{"the expired one again: nothing was kept", "dpop", "old", now, true},
		{"a long identifier", "dpop", strings.Repeat("x", 10_000), later, true},
		{"the long one again", "dpop", strings.Repeat("x", 10_000), later, false},
	}
	for _, s := range steps {
		if got := first(s.kind, s.id, s.exp); got != s.want {
			t.Errorf("%s: First = %v, want %v", s.name, got, s.want)
		}
	}
	// Three live identifiers: full, and a fourth is refused, never taken
	// as new.
	if ok, err := m.First(ctx, "dpop", "j2", later); ok || !errors.Is(err, state.ErrOnceFull) {
		t.Errorf("First on a full table = %v, %v; want false, ErrOnceFull", ok, err)
	}
	// Once the first expires, its place is free, and it is new again.
	now = soon
	if !first("dpop", "j1", later) {
		t.Error("an identifier was not accepted again after it expired")
	}
	if n := m.Len(); n != 3 {
		t.Errorf("Len = %d, want 3 (dpop j1, assertion j1, the long one)", n)
	}
	if ok, err := m.First(ctx, "dpop", "j2", later); ok || !errors.Is(err, state.ErrOnceFull) {
		t.Errorf("First on a full table again = %v, %v; want false, ErrOnceFull", ok, err)
	}
}

func BenchmarkMemoryOnce(b *testing.B) {
	m := state.NewMemoryOnce(0, nil)
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = strings.Repeat("j", 20) + string(rune('a'+i%26)) + time.Duration(i).String()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _ = m.First(ctx, "dpop", ids[i&(len(ids)-1)], exp)
		i++
	}
}

func TestMemoryOnce_ForgetsEachIdentifierWhenItExpiresWhateverOrderTheyCameIn(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	now := start
	m := state.NewMemoryOnce(0, func() time.Time { return now })
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	exps := make([]time.Duration, 2000)
	for i := range exps {
		exps[i] = time.Duration(1+rng.IntN(600)) * time.Second
		if ok, err := m.First(ctx, "dpop", strconv.Itoa(i), start.Add(exps[i])); !ok || err != nil {
			t.Fatalf("First(%d) = %v, %v; want a new identifier", i, ok, err)
		}
	}
	for step := time.Duration(0); step <= 601*time.Second; step += 7 * time.Second {
		now = start.Add(step)
		live := 0
		for _, e := range exps {
			if e > step {
				live++
			}
		}
		// A call drops what has expired; an identifier of another kind
		// is new and over at once, so it adds nothing.
		if _, err := m.First(ctx, "probe", "x", now); err != nil {
			t.Fatal(err)
		}
		if got := m.Len(); got != live {
			t.Fatalf("after %v: Len = %d, want %d", step, got, live)
		}
		for i, e := range exps {
			if ok, _ := m.First(ctx, "dpop", strconv.Itoa(i), start.Add(e)); ok != (e <= step) {
				t.Fatalf("after %v: identifier %d (expiring after %v) new = %v", step, i, e, ok)
			}
		}
	}
}

func BenchmarkMemoryOnceNew(b *testing.B) {
	now := time.Now()
	m := state.NewMemoryOnce(0, func() time.Time { return now })
	ctx := context.Background()
	exp := now.Add(time.Hour)
	ids := make([]string, 1<<20)
	for i := range ids {
		ids[i] = "jkt-jkt-jkt-jkt-jkt-jkt-jkt-jkt-jkt-jkt-jkt\x00" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(ids) {
			b.StopTimer()
			m = state.NewMemoryOnce(0, func() time.Time { return now })
			i = 0
			b.StartTimer()
		}
		_, _ = m.First(ctx, "dpop", ids[i], exp)
		i++
	}
}
