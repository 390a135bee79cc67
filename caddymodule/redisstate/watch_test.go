package redisstate

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/state"
)

// change is one call a recorder received.
type change struct {
	kind  state.Kind
	id    string
	value []byte // nil: deleted
	exp   time.Time
	blob  string // BlobsChanged
	sync  bool   // Resync
	at    time.Time
}

// recorder is a BlobWatcher that hands each call on to a channel.
type recorder struct{ ch chan change }

func newRecorder() *recorder { return &recorder{ch: make(chan change, 1024)} }

func (r *recorder) Changed(kind state.Kind, id string, value []byte, exp time.Time) {
	r.ch <- change{kind: kind, id: id, value: value, exp: exp, at: time.Now()}
}

func (r *recorder) Resync(context.Context) { r.ch <- change{sync: true, at: time.Now()} }

func (r *recorder) BlobsChanged(name string) { r.ch <- change{blob: name, at: time.Now()} }

// next waits for the next call, or fails the test after wait.
func (r *recorder) next(t *testing.T, wait time.Duration) change {
	t.Helper()
	select {
	case c := <-r.ch:
		return c
	case <-time.After(wait):
		t.Fatalf("no call within %v", wait)
		return change{}
	}
}

// nextChange skips Resyncs until a change arrives.
func (r *recorder) nextChange(t *testing.T, wait time.Duration) change {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		c := r.next(t, time.Until(deadline))
		if !c.sync {
			return c
		}
	}
}

// none asserts that nothing arrives within wait.
func (r *recorder) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case c := <-r.ch:
		t.Fatalf("unexpected call %+v", c)
	case <-time.After(wait):
	}
}

// watch starts w on e until the test ends, and waits for the first
// Resync, which says the subscription is in place.
func watch(t *testing.T, e *Engine) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := newRecorder()
	go e.Watch(ctx, r)
	if c := r.next(t, 5*time.Second); !c.sync {
		t.Fatalf("first call %+v, want a Resync", c)
	}
	return r
}

func TestWatch_TellsOfEveryAnnouncedChange(t *testing.T) {
	f := newMiniFleet(t)
	a, b := f.engine(t), f.engine(t)
	ra, rb := watch(t, a), watch(t, b)
	ctx := t.Context()
	exp := t0.Add(time.Hour)
	tests := []struct {
		name string
		do   func() error
		want change
	}{
		{"a revocation", func() error { return a.Put(ctx, state.Revoked, "r1", nil, exp) },
			change{kind: state.Revoked, id: "r1", value: []byte{}, exp: exp}},
		{"a lifetime-0 record", func() error { return a.Put(ctx, state.Latest, "client-1", []byte(`{"jti":"j"}`), exp) },
			change{kind: state.Latest, id: "client-1", value: []byte(`{"jti":"j"}`), exp: exp}},
		{"a deleted lifetime-0 record", func() error { return a.Delete(ctx, state.Latest, "client-1") },
			change{kind: state.Latest, id: "client-1"}},
		{"a deleted opaque token", func() error { return a.Delete(ctx, state.Opaque, "h1") },
			change{kind: state.Opaque, id: "h1"}},
		{"a stored blob", func() error { return a.Blobs().Store(ctx, "oauthgate/signing_keys.json", []byte("k")) },
			change{blob: "oauthgate/signing_keys.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); err != nil {
				t.Fatal(err)
			}
			for who, r := range map[string]*recorder{"the instance that made it": ra, "another instance": rb} {
				got := r.next(t, 2*time.Second)
				if got.kind != tt.want.kind || got.id != tt.want.id || !bytes.Equal(got.value, tt.want.value) ||
					(got.value == nil) != (tt.want.value == nil) || !got.exp.Equal(tt.want.exp) || got.blob != tt.want.blob || got.sync {
					t.Errorf("%s got %+v, want %+v", who, got, tt.want)
				}
			}
		})
	}
}

func TestWatch_AnOpaqueTokenIsNotAnnounced(t *testing.T) {
	f := newMiniFleet(t)
	e := f.engine(t)
	r := watch(t, e)
	if err := e.Put(t.Context(), state.Opaque, "h1", []byte("rec"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.none(t, 200*time.Millisecond)
}

func TestWatch_ResyncsOnAMessageItCannotRead(t *testing.T) {
	tests := []struct {
		name    string
		payload string
	}{
		{"not JSON", "revoked r1"},
		{"an unknown op", `{"op":"truncate"}`},
		{"an unknown kind", `{"op":"put","kind":"sessions","id":"x","exp":1}`},
		{"a put without expiry", `{"op":"put","kind":"revoked","id":"x"}`},
		{"an id with a newline", `{"op":"del","kind":"revoked","id":"a\nb"}`},
		{"a blob without a name", `{"op":"blob"}`},
		{"a message too long to be ours", `{"op":"del","kind":"revoked","id":"` + string(bytes.Repeat([]byte("x"), maxMessage)) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMiniFleet(t)
			r := watch(t, f.engine(t))
			f.m.Publish("oauthgate:events", tt.payload)
			if got := r.next(t, 2*time.Second); !got.sync {
				t.Errorf("got %+v, want a Resync", got)
			}
		})
	}
}

func TestWatch_AWatcherWithoutBlobsChangedIsNotToldOfBlobs(t *testing.T) {
	f := newMiniFleet(t)
	e := f.engine(t)
	r := newRecorder()
	var w state.Watcher = struct{ state.Watcher }{r} // hides BlobsChanged
	go e.Watch(t.Context(), w)
	if got := r.next(t, 2*time.Second); !got.sync {
		t.Fatalf("got %+v, want a Resync", got)
	}
	if err := e.Blobs().Store(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := e.Put(t.Context(), state.Revoked, "r1", nil, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := r.next(t, 2*time.Second); got.id != "r1" {
		t.Errorf("got %+v, want the revocation and nothing before it", got)
	}
}

func TestWatch_ReturnsWhenItsContextEnds(t *testing.T) {
	f := newMiniFleet(t)
	e := f.engine(t)
	ctx, cancel := context.WithCancel(t.Context())
	r := newRecorder()
	returned := make(chan struct{})
	go func() { e.Watch(ctx, r); close(returned) }()
	r.next(t, 2*time.Second)
	cancel()
	select {
	case <-returned:
	case <-time.After(2 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
	// miniredis sees the connection close a moment later.
	deadline := time.Now().Add(2 * time.Second)
	for f.m.PubSubNumSub("oauthgate:events")["oauthgate:events"] != 0 {
		if time.Now().After(deadline) {
			t.Fatal("still subscribed after Watch returned")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatch_ReturnsWhenTheEngineCloses(t *testing.T) {
	f := newMiniFleet(t)
	e := f.engine(t)
	r := newRecorder()
	returned := make(chan struct{})
	go func() { e.Watch(t.Context(), r); close(returned) }()
	r.next(t, 2*time.Second)
	_ = e.Close()
	select {
	case <-returned:
	case <-time.After(3 * time.Second):
		t.Fatal("Watch did not return after the Engine closed")
	}
}

// failRecorder is a recorder that is also told of failed subscriptions.
type failRecorder struct {
	*recorder
	fails chan error
}

func (r *failRecorder) WatchFailed(err error) { r.fails <- err }

func TestWatch_TellsOfAFailedSubscriptionOncePerOutage(t *testing.T) {
	f := newMiniFleet(t)
	e := f.engine(t)
	r := &failRecorder{recorder: newRecorder(), fails: make(chan error, 16)}
	go e.Watch(t.Context(), r)
	r.next(t, 2*time.Second) // subscribed: the first Resync
	for outage := range 2 {
		f.m.Close()
		select {
		case err := <-r.fails:
			if err == nil {
				t.Fatalf("outage %d: told of a failure without its error", outage+1)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("outage %d: not told that the subscription failed", outage+1)
		}
		// Retries go on (every 0.5 s at most) without telling again.
		select {
		case err := <-r.fails:
			t.Fatalf("outage %d: told again: %v", outage+1, err)
		case <-time.After(1500 * time.Millisecond):
		}
		if err := f.m.Restart(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for c := r.next(t, 3*time.Second); !c.sync; c = r.next(t, time.Until(deadline)) {
		}
	}
}
