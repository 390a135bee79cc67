package redisstate

import (
	"context"
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

const (
	// idle is how long a quiet subscription waits before it pings: a
	// connection that died without a word (a partition, a dead host)
	// is found within idle + timeout, not at the next TCP keepalive.
	idle = time.Second
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
	for ctx.Err() == nil {
		subscribed, err := e.subscribe(ctx, w)
		if errors.Is(err, redis.ErrClosed) {
			return // the Engine was closed (or ctx ended and closed the PubSub)
		}
		if subscribed {
			backoff = minBackoff
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

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

	sctx, cancel := e.op(ctx)
	err = ps.Subscribe(sctx, e.channel())
	cancel()
	if err != nil {
		return false, err
	}
	bw, _ := w.(BlobWatcher)
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, idle)
		var ne net.Error
		switch {
		case err == nil:
		case !pinged && errors.As(err, &ne) && ne.Timeout():
			// Quiet: ask for a Pong. Silence for another idle means the
			// connection is dead, and the error below says so.
			pctx, cancel := e.op(ctx)
			err = ps.Ping(pctx)
			cancel()
			if err != nil {
				return subscribed, err
			}
			pinged = true
			continue
		default:
			return subscribed, err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			// The first confirms the subscription; any later one follows
			// a reconnect that go-redis made on its own, after which
			// messages may be missing just as after one of ours.
			if m.Kind == "subscribe" {
				subscribed = true
				w.Resync(ctx)
			}
		case *redis.Message:
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
