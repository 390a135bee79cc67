package redisstate

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/state"
)

func TestEntries_PutGetDelete(t *testing.T) {
	record := []byte(`{"client_id":"3f9a","sub":"oauth_client_3f9a","scope":["ESBMessaging.send"]}`)
	tests := []struct {
		name  string
		kind  state.Kind
		value []byte
	}{
		{"a revocation", state.Revoked, nil},
		{"an opaque token", state.Opaque, record},
		{"a lifetime-0 record", state.Latest, []byte(`{"jti":"j1","iat":"2030-01-02T03:04:05Z","zero":true}`)},
		{"a lifetime-0 record with a colon and binary bytes", state.Latest, []byte("a:b\x00\xff")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMiniFleet(t)
			a, b := f.engine(t), f.engine(t)
			ctx := t.Context()
			if err := a.Put(ctx, tt.kind, "id-1", tt.value, t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			got, err := b.Get(ctx, tt.kind, "id-1")
			if err != nil {
				t.Fatalf("Get on another instance: %v", err)
			}
			if !bytes.Equal(got, tt.value) || got == nil {
				t.Errorf("Get = %q, want %q (not nil)", got, tt.value)
			}
			if _, err := b.Get(ctx, tt.kind, "id-2"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Get of another id: %v, want fs.ErrNotExist", err)
			}

			f.clock.advance(59 * time.Second)
			if _, err := b.Get(ctx, tt.kind, "id-1"); err != nil {
				t.Errorf("Get a second before the end: %v", err)
			}
			f.clock.advance(time.Second)
			if _, err := b.Get(ctx, tt.kind, "id-1"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Get when it ends: %v, want fs.ErrNotExist", err)
			}

			if err := a.Put(ctx, tt.kind, "id-3", tt.value, f.clock.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := b.Delete(ctx, tt.kind, "id-3"); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Get(ctx, tt.kind, "id-3"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Get after Delete: %v, want fs.ErrNotExist", err)
			}
			if err := b.Delete(ctx, tt.kind, "id-3"); err != nil {
				t.Errorf("deleting what is not there: %v", err)
			}

			if err := a.Put(ctx, tt.kind, "id-4", tt.value, f.clock.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := a.Put(ctx, tt.kind, "id-4", tt.value, f.clock.Now()); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Get(ctx, tt.kind, "id-4"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Get after a Put that ends at once: %v, want fs.ErrNotExist", err)
			}
		})
	}
}

func TestEntries_OpaqueTokensExpireByRedisTTL(t *testing.T) {
	f := newMiniFleet(t)
	e := f.engine(t)
	if err := e.Put(t.Context(), state.Opaque, "h1", []byte("rec"), t0.Add(90*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ttl := f.m.TTL("oauthgate:opaque:h1"); ttl != 90*time.Second {
		t.Errorf("TTL %v, want 90s", ttl)
	}
	f.clock.advance(90 * time.Second)
	if f.m.Exists("oauthgate:opaque:h1") {
		t.Error("the opaque token outlived its expiry in Redis")
	}
}

func TestEntries_RefuseWhatIsTooLargeOrMalformed(t *testing.T) {
	f := newMiniFleet(t)
	e := f.engine(t)
	ctx := t.Context()
	exp := t0.Add(time.Hour)
	tests := []struct {
		name string
		err  error
	}{
		{"a value over 64 KiB", e.Put(ctx, state.Opaque, "h", make([]byte, maxValue+1), exp)},
		{"a revocation with a value", e.Put(ctx, state.Revoked, "h", []byte("v"), exp)},
		{"an unknown kind", e.Put(ctx, "sessions", "h", nil, exp)},
		{"an empty id", e.Put(ctx, state.Revoked, "", nil, exp)},
		{"an id over 256 bytes", e.Put(ctx, state.Latest, strings.Repeat("c", maxName+1), []byte("v"), exp)},
		{"an id with a control character", e.Put(ctx, state.Latest, "c\r\n", []byte("v"), exp)},
		{"an id that is not UTF-8", e.Put(ctx, state.Latest, "c\xff", []byte("v"), exp)},
		{"getting an unknown kind", func() error { _, err := e.Get(ctx, "sessions", "h"); return err }()},
		{"deleting an empty id", e.Delete(ctx, state.Opaque, "")},
		{"listing opaque tokens", e.Each(ctx, state.Opaque, func(string, []byte, time.Time) {})},
		{"listing an unknown kind", e.Each(ctx, "sessions", func(string, []byte, time.Time) {})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(tt.err.Error(), "redisstate: ") {
				t.Errorf("error %q does not name the package and operation", tt.err)
			}
		})
	}
	if keys := f.m.Keys(); len(keys) != 0 {
		t.Errorf("refused calls left keys %v", keys)
	}
}

func TestEntries_EachListsTheLiveAndPrunesTheEnded(t *testing.T) {
	for _, kind := range []state.Kind{state.Revoked, state.Latest} {
		t.Run(string(kind), func(t *testing.T) {
			f := newMiniFleet(t)
			e := f.engine(t)
			e.pageSize = 3 // several pages
			ctx := t.Context()
			value := func(i int) []byte {
				if kind == state.Revoked {
					return nil
				}
				return fmt.Appendf(nil, `{"jti":"j%d"}`, i)
			}
			// ten that end after a minute, ten after an hour
			var want []string
			for i := range 20 {
				exp := t0.Add(time.Minute)
				if i >= 10 {
					exp = t0.Add(time.Hour)
					want = append(want, fmt.Sprintf("id-%02d", i))
				}
				if err := e.Put(ctx, kind, fmt.Sprintf("id-%02d", i), value(i), exp); err != nil {
					t.Fatal(err)
				}
			}
			f.clock.advance(time.Minute)

			got := map[string][]byte{}
			ends := map[string]time.Time{}
			if err := e.Each(ctx, kind, func(id string, v []byte, exp time.Time) { got[id], ends[id] = v, exp }); err != nil {
				t.Fatal(err)
			}
			ids := slices.Sorted(func(yield func(string) bool) {
				for id := range got {
					if !yield(id) {
						return
					}
				}
			})
			if !slices.Equal(ids, want) {
				t.Errorf("Each listed %v, want %v", ids, want)
			}
			for _, id := range want {
				var i int
				_, _ = fmt.Sscanf(id, "id-%d", &i)
				if want := value(i); !bytes.Equal(got[id], want) || got[id] == nil {
					t.Errorf("value of %s = %q, want %q", id, got[id], want)
				}
				if !ends[id].Equal(t0.Add(time.Hour)) {
					t.Errorf("%s ends %v, want %v", id, ends[id], t0.Add(time.Hour))
				}
			}
			var left int
			if kind == state.Revoked {
				members, _ := f.m.ZMembers("oauthgate:revoked")
				left = len(members)
			} else {
				fields, _ := f.m.HKeys("oauthgate:latest")
				left = len(fields)
			}
			if left != 10 {
				t.Errorf("%d entries left in Redis after Each, want the 10 live ones", left)
			}
		})
	}
}

func TestEntries_EachPagesThroughRevocationsOfOneExpiry(t *testing.T) {
	// Tokens issued in one second share their expiry: far more of one
	// score than a page holds.
	tests := []struct {
		name string
		exps []time.Duration // one per revocation
	}{
		{"all of one expiry", repeat(time.Hour, 11)},
		{"a page boundary inside a run", append(append(repeat(time.Hour, 4), repeat(2*time.Hour, 7)...), 3*time.Hour)},
		{"runs of exactly a page", append(repeat(time.Hour, 3), repeat(2*time.Hour, 3)...)},
		{"all different", []time.Duration{1, 2, 3, 4, 5, 6, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMiniFleet(t)
			e := f.engine(t)
			e.pageSize = 3
			for i, d := range tt.exps {
				if err := e.Put(t.Context(), state.Revoked, fmt.Sprintf("r%02d", i), nil, t0.Add(time.Minute+d)); err != nil {
					t.Fatal(err)
				}
			}
			seen := map[string]int{}
			if err := e.Each(t.Context(), state.Revoked, func(id string, _ []byte, _ time.Time) { seen[id]++ }); err != nil {
				t.Fatal(err)
			}
			for i := range tt.exps {
				if id := fmt.Sprintf("r%02d", i); seen[id] != 1 {
					t.Errorf("%s seen %d times, want once", id, seen[id])
				}
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = d
	}
	return s
}

func TestEntries_PruningKeepsARecordRewrittenMeanwhile(t *testing.T) {
	f := newMiniFleet(t)
	e := f.engine(t)
	ctx := t.Context()
	ended := string(latestValue(t0.UnixMilli(), []byte("old")))
	fresh := string(latestValue(t0.Add(time.Hour).UnixMilli(), []byte("new")))
	f.m.HSet("oauthgate:latest", "rewritten", fresh, "ended", ended)
	// Each read both as ended; another instance rewrote one since.
	if err := pruneLatestScript.Run(ctx, e.rdb, []string{"oauthgate:latest"},
		"rewritten", ended, "ended", ended).Err(); err != nil {
		t.Fatal(err)
	}
	if got := f.m.HGet("oauthgate:latest", "rewritten"); got != fresh {
		t.Errorf("the rewritten record is %q, want it kept", got)
	}
	if f.m.HGet("oauthgate:latest", "ended") != "" {
		t.Error("the ended record was kept")
	}
}

func TestEntries_EachSkipsCorruptRecordsAndSaysSo(t *testing.T) {
	f := newMiniFleet(t)
	e := f.engine(t)
	ctx := t.Context()
	if err := e.Put(ctx, state.Latest, "good", []byte("v"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	f.m.HSet("oauthgate:latest", "no-expiry", "v", "bad-expiry", "x:v")
	var got []string
	err := e.Each(ctx, state.Latest, func(id string, _ []byte, _ time.Time) { got = append(got, id) })
	var corrupt *state.CorruptError
	if !errors.As(err, &corrupt) || len(corrupt.Errs) != 2 {
		t.Errorf("error %v, want a *state.CorruptError naming the 2 corrupt records", err)
	}
	if !slices.Equal(got, []string{"good"}) {
		t.Errorf("Each listed %v, want the good record despite the corrupt ones", got)
	}
	if fields, _ := f.m.HKeys("oauthgate:latest"); len(fields) != 3 {
		t.Errorf("records %v left, want the corrupt ones kept for a person to look at", fields)
	}
}
func TestNew_PrefixDefaultsAndSeparatesFleets(t *testing.T) {
	f := newMiniFleet(t)
	a := f.engine(t)
	b := f.engine(t, func(c *Config) { c.Prefix = "other:" })
	ctx := t.Context()
	if err := a.Put(ctx, state.Revoked, "r1", nil, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !f.m.Exists("oauthgate:revoked") {
		t.Errorf("keys %v, want oauthgate:revoked", f.m.Keys())
	}
	if _, err := b.Get(ctx, state.Revoked, "r1"); err == nil {
		t.Error("a fleet with another prefix sees the revocation")
	}
}

func TestEntries_ANewRevocationPrunesTheEndedOnes(t *testing.T) {
	f := newMiniFleet(t)
	e := f.engine(t)
	ctx := t.Context()
	for i := range 5 {
		if err := e.Put(ctx, state.Revoked, fmt.Sprintf("short-%d", i), nil, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.advance(2 * time.Minute)
	if err := e.Put(ctx, state.Revoked, "fresh", nil, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	members, err := f.m.ZMembers(e.key("revoked"))
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || members[0] != "fresh" {
		t.Errorf("revoked set holds %q, want only the live revocation: without a reconnect nothing else prunes it", members)
	}
}
