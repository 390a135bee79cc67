package tokencache

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func entry(sub string, until time.Time) *Entry {
	return &Entry{Claims: &tokens.Claims{Subject: sub}, KeyID: "k1", Until: until}
}

func TestGet_ReturnsTheEntryOfExactlyThatTokenUntilItEnds(t *testing.T) {
	c := New(0)
	c.Put("aaa.bbb.ccc", entry("one", t0.Add(time.Minute)))

	for _, tc := range []struct {
		name  string
		token string
		at    time.Time
		want  bool
	}{
		{"the same token before its end", "aaa.bbb.ccc", t0, true},
		{"a token that differs in one character", "aaa.bbb.ccd", t0, false},
		{"a prefix of the token", "aaa.bbb.cc", t0, false},
		{"the same token at its end", "aaa.bbb.ccc", t0.Add(time.Minute), false},
		{"the same token after it ended (removed by the previous lookup)", "aaa.bbb.ccc", t0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := c.Get(tc.token, tc.at)
			if ok != tc.want {
				t.Fatalf("Get = %v, want %v", ok, tc.want)
			}
			if ok && e.Claims.Subject != "one" {
				t.Errorf("claims of another entry: %+v", e.Claims)
			}
		})
	}
	if n := c.Len(); n != 0 {
		t.Errorf("Len after the entry ended = %d, want 0", n)
	}
	if hits, misses := c.Stats(); hits != 1 || misses != 4 {
		t.Errorf("Stats = %d hits, %d misses; want 1, 4", hits, misses)
	}
}

func TestPut_NeverHoldsMoreThanItsSize(t *testing.T) {
	const size = 1000
	c := New(size)
	for i := range 20 * size {
		c.Put("token-"+strconv.Itoa(i), entry("s", t0.Add(time.Hour)))
	}
	if n := c.Len(); n > size || n < size/2 {
		t.Errorf("Len after 20× its size in distinct tokens = %d, want between %d and %d", n, size/2, size)
	}
	// Replacing an entry of a full shard evicts nothing.
	before := c.Len()
	c.Put("token-19999", entry("s", t0.Add(time.Hour)))
	if _, ok := c.Get("token-19999", t0); !ok {
		t.Fatal("the newest token is not cached")
	}
	if c.Len() != before {
		t.Errorf("Len after replacing an entry = %d, want %d", c.Len(), before)
	}
}

func TestDelete_ForgetsTheToken(t *testing.T) {
	c := New(0)
	c.Put("a", entry("s", t0.Add(time.Hour)))
	c.Delete("a")
	if _, ok := c.Get("a", t0); ok {
		t.Error("a deleted token is still cached")
	}
}

func TestCache_ConcurrentUse(t *testing.T) {
	c := New(128)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				tok := strconv.Itoa(g*10000 + i%300)
				if _, ok := c.Get(tok, t0); !ok {
					c.Put(tok, entry(tok, t0.Add(time.Hour)))
				}
				if i%7 == 0 {
					c.Delete(tok)
				}
			}
		}()
	}
	wg.Wait()
	if n := c.Len(); n > 128 {
		t.Errorf("Len = %d, want at most 128", n)
	}
}

func BenchmarkGet_Hit(b *testing.B) {
	c := New(0)
	tok := "eyJhbGciOiJFUzI1NiIsImtpZCI6IngiLCJ0eXAiOiJhdCtqd3QifQ." +
		"eyJpc3MiOiJodHRwczovL2dhdGV3YXkuZXhhbXBsZS5jb20iLCJzdWIiOiJvYXV0aF9jbGllbnRfMTIzIn0.sig"
	c.Put(tok, entry("s", t0.Add(time.Hour)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := c.Get(tok, t0); !ok {
				b.Fatal("miss")
			}
		}
	})
}
