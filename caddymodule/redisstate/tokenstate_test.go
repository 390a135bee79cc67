package redisstate

import (
	"context"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// TestTokenstate_TwoInstancesAgreeThroughRedis runs the token state, the
// engine's consumer, on two instances of one fleet.
func TestTokenstate_TwoInstancesAgreeThroughRedis(t *testing.T) {
	f := newMiniFleet(t)
	ctx := t.Context()
	open := func() *tokenstate.Store {
		e := f.engine(t)
		s, err := tokenstate.Open(ctx, e.Blobs(), e, f.clock.Now)
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { s.Run(rctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return s
	}
	a, b := open(), open()
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 2 s", what)
			}
		}
	}

	// Both instances share the MAC key: a token of one is authentic at
	// the other.
	token := a.NewOpaque()
	if !b.Authentic(token) {
		t.Fatal("the other instance does not find the opaque token authentic: two MAC keys")
	}
	exp := t0.Add(time.Hour)
	if err := a.PutOpaque(ctx, token, &tokenstate.Opaque{ClientID: "c1", Expiry: exp}); err != nil {
		t.Fatal(err)
	}
	if rec, err := b.LookupOpaque(ctx, token); err != nil || rec == nil || rec.ClientID != "c1" {
		t.Fatalf("LookupOpaque on the other instance: %+v, %v", rec, err)
	}
	if err := a.RevokeOpaque(ctx, token); err != nil {
		t.Fatal(err)
	}
	eventually("the other instance forgets a revoked opaque token", func() bool {
		rec, err := b.LookupOpaque(ctx, token)
		return rec == nil && err == nil
	})

	if err := a.Revoke(ctx, "jti-1", exp); err != nil {
		t.Fatal(err)
	}
	eventually("the other instance refuses a revoked JWT", func() bool { return b.Revoked("jti-1") })

	if err := a.Issued(ctx, "c2", "jti-new", t0.Add(time.Second), exp, true); err != nil {
		t.Fatal(err)
	}
	eventually("the other instance holds a lifetime-0 token superseded", func() bool {
		superseded, err := b.Superseded(ctx, "c2", "jti-old", t0)
		return err == nil && superseded
	})
}
