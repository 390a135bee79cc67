package redisstate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oauthgate/oauthgate/caddymodule/state"
)

var _ state.Entries = (*Engine)(nil)

// BlobWatcher is a Watcher that also learns when some instance (this one
// included) stored a blob: a rotated signing key, a new MAC key. Watch
// calls BlobsChanged if the Watcher it is given implements it. A Resync
// means that blobs too may have changed unannounced.
type BlobWatcher interface {
	state.Watcher
	BlobsChanged(name string)
}

// FailWatcher is a Watcher that is told why its subscription failed: once
// when it fails after having worked (or never worked), not at each retry,
// so that an outage is one line and a subscription that Redis refuses
// (an ACL without the channels) is not silent.
type FailWatcher interface {
	state.Watcher
	WatchFailed(err error)
}

const (
	// beat is how often a subscription proves that it hears the
	// primary: it publishes a beat through the primary, on a channel of
	// its own, and must hear it back within another beat. A subscription
	// that does not is subscribed again and resyncs: one left on an old
	// primary after a failover (which runs on as a primary of its own
	// until the Sentinel makes it a replica, up to 10 s later), or a
	// connection that died without a word (a partition, a dead host).
	// Both are found within two beats, within the second a change may
	// take to reach the fleet; a ping on the subscription would find
	// only the second.
	beat = 250 * time.Millisecond
	// The wait between attempts to subscribe while Redis is away. A
	// change another instance makes once Redis is back reaches this one
	// only when it has subscribed again and resynced, so the longest
	// wait stays well within the second a change may take to reach the
	// fleet. An attempt at a Redis that refuses costs a failed connect;
	// one at a Redis that hangs is bounded by the dial timeout.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 500 * time.Millisecond
)

// Watch tells w of the changes every instance makes, from the calling
// goroutine, until ctx ends (or the Engine is closed); then it returns.
// It calls w.Resync once subscribed, and again after every reconnect,
// since what was published meanwhile is lost: a Resync reads what Redis
// holds after the subscription is in place, so no change falls between
// the two. A message that does not decode is treated alike.
func (e *Engine) Watch(ctx context.Context, w state.Watcher) {
	backoff := minBackoff
	fw, _ := w.(FailWatcher)
	told := false
	for ctx.Err() == nil {
		subscribed, err := e.subscribe(ctx, w)
		if errors.Is(err, redis.ErrClosed) {
			return // the Engine was closed (or ctx ended and closed the PubSub)
		}
		if subscribed {
			backoff, told = minBackoff, false
		}
		if fw != nil && !told && ctx.Err() == nil {
			fw.WatchFailed(err)
			told = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// errBeatLost ends a subscription whose beat did not come back.
const errBeatLost = errString("redisstate: watch: the subscription did not hear its beat published through the primary")

// subscribe runs one subscription until it fails, and reports whether it
// got as far as being subscribed.
func (e *Engine) subscribe(ctx context.Context, w state.Watcher) (subscribed bool, err error) {
	// Subscribe without channels does not connect: the first error is
	// the SUBSCRIBE's, below, or the first Receive's.
	ps := e.rdb.Subscribe(ctx)
	defer ps.Close()
	// A Receive blocks on the socket whatever ctx says; closing the
	// PubSub is what ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()

	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	beats := e.key("beat:", hex.EncodeToString(id[:]))
	sctx, cancel := e.op(ctx)
	err = ps.Subscribe(sctx, e.channel(), beats)
	cancel()
	if err != nil {
		return false, err
	}
	bw, _ := w.(BlobWatcher)
	// The next beat is published at next; one published is due back by
	// due (zero while none is out).
	next, due := time.Now().Add(beat), time.Time{}
	for {
		until := next
		if !due.IsZero() {
			until = due
		}
		msg, err := ps.ReceiveTimeout(ctx, max(time.Until(until), time.Millisecond))
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return subscribed, err
		}
		switch now := time.Now(); {
		case !due.IsZero() && now.After(due):
			// A message received with this is not lost: the Resync
			// after the next subscription reads what it announced.
			return subscribed, errBeatLost
		case due.IsZero() && !now.Before(next):
			// A beat that cannot be published within a beat is as lost
			// as one that does not come back.
			pctx, cancel := context.WithTimeout(ctx, beat)
			err := e.rdb.Publish(pctx, beats, "").Err()
			cancel()
			if err != nil {
				return subscribed, err
			}
			due = time.Now().Add(beat)
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			// The first confirms the subscription; any later one follows
			// a reconnect that go-redis made on its own, after which
			// messages may be missing just as after one of ours.
			if m.Kind == "subscribe" && m.Channel == e.channel() {
				subscribed = true
				w.Resync(ctx)
			}
		case *redis.Message:
			if m.Channel == beats {
				next, due = time.Now().Add(beat), time.Time{}
				continue
			}
			ev, err := decode(m.Payload)
			switch {
			case err != nil:
				w.Resync(ctx)
			case ev.Op == opBlob:
				if bw != nil {
					bw.BlobsChanged(ev.Name)
				}
			case ev.Op == opDelete:
				w.Changed(ev.Kind, ev.ID, nil, time.Time{})
			default:
				w.Changed(ev.Kind, ev.ID, ev.Value, time.UnixMilli(ev.Exp))
			}
		}
	}
}
