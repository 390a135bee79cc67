package redisstate

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/sealing"
)

// The key ring the oauth app builds from the sealing keys is a Sealer.
var _ Sealer = (*sealing.Ring)(nil)

func TestBlobs_StoreAndLoad(t *testing.T) {
	const name = "oauthgate/signing_keys.json"
	secret := []byte(`{"keys":[{"d":"private-key-material"}]}`)
	tests := []struct {
		name  string
		setup func(t *testing.T, f *miniFleet) // after Store
		load  func(t *testing.T, f *miniFleet) ([]byte, error)
		want  []byte
		err   string // in the error; "" for none
		isNot bool   // the error wraps fs.ErrNotExist
	}{
		{
			name: "a stored blob loads on another instance",
			load: func(t *testing.T, f *miniFleet) ([]byte, error) { return f.engine(t).Blobs().Load(t.Context(), name) },
			want: secret,
		},
		{
			name: "a missing blob is fs.ErrNotExist",
			load: func(t *testing.T, f *miniFleet) ([]byte, error) {
				return f.engine(t).Blobs().Load(t.Context(), "missing")
			},
			isNot: true,
		},
		{
			name: "a value copied under another name does not open",
			setup: func(t *testing.T, f *miniFleet) {
				v, _ := f.m.Get("oauthgate:blob:" + name)
				_ = f.m.Set("oauthgate:blob:oauthgate/tokens/opaque_mac_key", v)
			},
			load: func(t *testing.T, f *miniFleet) ([]byte, error) {
				return f.engine(t).Blobs().Load(t.Context(), "oauthgate/tokens/opaque_mac_key")
			},
			err: "does not open",
		},
		{
			name: "a value copied to another fleet's prefix does not open",
			setup: func(t *testing.T, f *miniFleet) {
				v, _ := f.m.Get("oauthgate:blob:" + name)
				_ = f.m.Set("other:blob:"+name, v)
			},
			load: func(t *testing.T, f *miniFleet) ([]byte, error) {
				return f.engine(t, func(c *Config) { c.Prefix = "other:" }).Blobs().Load(t.Context(), name)
			},
			err: "does not open",
		},
		{
			name: "a blob sealed with another key does not open",
			load: func(t *testing.T, f *miniFleet) ([]byte, error) {
				return f.engine(t, func(c *Config) { c.Sealer = newSealer(t) }).Blobs().Load(t.Context(), name)
			},
			err: "does not open",
		},
		{
			name: "a stored value too large to be a sealed blob is refused unopened",
			setup: func(t *testing.T, f *miniFleet) {
				_ = f.m.Set("oauthgate:blob:"+name, strings.Repeat("x", maxValue+sealSlack+1))
			},
			load: func(t *testing.T, f *miniFleet) ([]byte, error) { return f.engine(t).Blobs().Load(t.Context(), name) },
			err:  "more than a sealed blob",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMiniFleet(t)
			if err := f.engine(t).Blobs().Store(t.Context(), name, secret); err != nil {
				t.Fatal(err)
			}
			raw, _ := f.m.Get("oauthgate:blob:" + name)
			if strings.Contains(raw, "private-key-material") {
				t.Fatal("the blob rests in Redis in clear")
			}
			if tt.setup != nil {
				tt.setup(t, f)
			}
			got, err := tt.load(t, f)
			switch {
			case tt.isNot:
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("error %v, want fs.ErrNotExist", err)
				}
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("error %v, want one about %q", err, tt.err)
				}
				if err != nil && strings.Contains(err.Error(), "private-key-material") {
					t.Errorf("error %q repeats the secret", err)
				}
			case err != nil:
				t.Fatal(err)
			case !bytes.Equal(got, tt.want):
				t.Errorf("loaded %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBlobs_RefuseWhatIsTooLargeOrBadlyNamed(t *testing.T) {
	f := newMiniFleet(t)
	b := f.engine(t).Blobs()
	ctx := t.Context()
	tests := []struct {
		name string
		err  error
	}{
		{"a value over 64 KiB", b.Store(ctx, "k", make([]byte, maxValue+1))},
		{"an empty name", b.Store(ctx, "", []byte("v"))},
		{"a name over 256 bytes", b.Store(ctx, strings.Repeat("n", maxName+1), []byte("v"))},
		{"a name with a newline", b.Store(ctx, "a\nb", []byte("v"))},
		{"loading an empty name", func() error { _, err := b.Load(ctx, ""); return err }()},
		{"locking an empty name", b.Lock(ctx, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Error("accepted")
			}
		})
	}
	if keys := f.m.Keys(); len(keys) != 0 {
		t.Errorf("refused calls left keys %v", keys)
	}
}

func TestBlobs_LockExcludesAcrossInstances(t *testing.T) {
	f := newMiniFleet(t)
	a, b := f.engine(t).Blobs(), f.engine(t).Blobs()
	if err := a.Lock(t.Context(), "keys"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	if err := b.Lock(ctx, "keys"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Lock while held: %v, want it to wait until ctx ends", err)
	}
	if err := b.Lock(t.Context(), "other"); err != nil {
		t.Errorf("a lock of another name: %v", err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(t.Context(), "keys") }()
	time.Sleep(50 * time.Millisecond)
	if err := a.Unlock(t.Context(), "keys"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the waiting Lock did not get the lock after Unlock")
	}
	if err := b.Unlock(t.Context(), "keys"); err != nil {
		t.Error(err)
	}
	if err := b.Unlock(t.Context(), "keys"); err == nil {
		t.Error("a second Unlock succeeded")
	}
}

func TestBlobs_ExpiredLockFreesForOthersAndIsNotTakenBack(t *testing.T) {
	f := newMiniFleet(t)
	a, b := f.engine(t).Blobs(), f.engine(t).Blobs()
	if err := a.Lock(t.Context(), "keys"); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(lockTTL + time.Second) // a died holding it
	if err := b.Lock(t.Context(), "keys"); err != nil {
		t.Fatalf("Lock after the holder's lock expired: %v", err)
	}
	if err := a.Unlock(t.Context(), "keys"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Unlock of an expired lock: %v, want it said", err)
	}
	if !f.m.Exists("oauthgate:lock:keys") {
		t.Fatal("the late Unlock freed the lock another instance holds")
	}
	if ttl := f.m.TTL("oauthgate:lock:keys"); ttl <= 0 || ttl > lockTTL {
		t.Errorf("lock TTL %v, want (0, %v]", ttl, lockTTL)
	}
}

func TestBlobs_ARotatedRingReSealsWhatItReadsSoTheOldKeyCanGo(t *testing.T) {
	ctx := context.Background()
	f := newMiniFleet(t)
	oldLine, _ := sealing.Generate("old")
	newLine, _ := sealing.Generate("new")
	ring := func(lines ...string) *sealing.Ring {
		r, err := sealing.Parse(strings.Join(lines, "\n"))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	before := f.engine(t, func(c *Config) { c.Sealer = ring(oldLine) })
	if err := before.Blobs().Store(ctx, "mac_key", []byte("mac")); err != nil {
		t.Fatal(err)
	}
	// The new key seals, the old one still opens: reading re-seals.
	during := f.engine(t, func(c *Config) { c.Sealer = ring(newLine, oldLine) })
	if v, err := during.Blobs().Load(ctx, "mac_key"); err != nil || string(v) != "mac" {
		t.Fatalf("Load during the rotation = %q, %v", v, err)
	}
	// The old key removed: the blob must open with the new key alone.
	after := f.engine(t, func(c *Config) { c.Sealer = ring(newLine) })
	if v, err := after.Blobs().Load(ctx, "mac_key"); err != nil || string(v) != "mac" {
		t.Errorf("Load after the old key was removed = %q, %v; want the blob re-sealed under the new key", v, err)
	}
}
