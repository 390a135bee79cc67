package redisstate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oauthgate/oauthgate/caddymodule/state"
)

// pruneLatestScript deletes the lifetime-0 records Each found expired,
// each only if it still holds what Each read: one written since by
// another instance is live and stays.
var pruneLatestScript = redis.NewScript(`
local n = 0
for i = 1, #ARGV, 2 do
	if redis.call("HGET", KEYS[1], ARGV[i]) == ARGV[i+1] then
		n = n + redis.call("HDEL", KEYS[1], ARGV[i])
	end
end
return n`)

// Opaque records are not sealed: they are found by the hash of the token,
// and a token is worthless without the MAC key, which is.

// Put writes an entry that ends at exp and, for revocations and lifetime-0
// records, announces it in the same transaction. An entry that has ended
// already is deleted instead, so that a Get after Put never finds an
// older one.
func (e *Engine) Put(ctx context.Context, kind state.Kind, id string, value []byte, exp time.Time) error {
	if err := checkEntry(kind, id); err != nil {
		return fmt.Errorf("redisstate: put: %w", err)
	}
	switch {
	case len(value) > maxValue:
		return fmt.Errorf("redisstate: put %s: value of %d bytes, more than %d", kind, len(value), maxValue)
	case kind == state.Revoked && len(value) > 0:
		return fmt.Errorf("redisstate: put %s: a revocation has no value", kind)
	case !exp.After(e.now()):
		return e.Delete(ctx, kind, id)
	}
	ms := exp.UnixMilli()
	ctx, cancel := e.op(ctx)
	defer cancel()
	var err error
	if kind == state.Opaque {
		// No announcement: no instance holds an opaque token it has not
		// looked up, and each looks up its own.
		err = e.rdb.Do(ctx, "SET", e.key("opaque:", id), value, "PXAT", ms).Err()
	} else {
		var msg string
		if msg, err = putEvent(kind, id, value, exp); err != nil {
			return fmt.Errorf("redisstate: put %s: %w", kind, err)
		}
		_, err = e.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			if kind == state.Revoked {
				p.ZAdd(ctx, e.key("revoked"), redis.Z{Score: float64(ms), Member: id})
				// Revocations of expired tokens go with every new one, so
				// the set stays as large as the revoked live tokens even
				// when no instance has reconnected (Each) for months.
				p.ZRemRangeByScore(ctx, e.key("revoked"), "-inf", strconv.FormatInt(e.now().UnixMilli(), 10))
			} else {
				p.HSet(ctx, e.key("latest"), id, latestValue(ms, value))
			}
			p.Publish(ctx, e.channel(), msg)
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("redisstate: put %s: %w", kind, err)
	}
	return nil
}

// Get returns a live entry; a revocation's value is empty.
func (e *Engine) Get(ctx context.Context, kind state.Kind, id string) ([]byte, error) {
	if err := checkEntry(kind, id); err != nil {
		return nil, fmt.Errorf("redisstate: get: %w", err)
	}
	ctx, cancel := e.op(ctx)
	defer cancel()
	now := e.now().UnixMilli()
	var (
		value []byte
		exp   int64
		err   error
	)
	switch kind {
	case state.Revoked:
		var score float64
		score, err = e.rdb.ZScore(ctx, e.key("revoked"), id).Result()
		value, exp = []byte{}, int64(score)
	case state.Latest:
		var raw []byte
		if raw, err = e.rdb.HGet(ctx, e.key("latest"), id).Bytes(); err == nil {
			exp, value, err = parseLatest(raw)
		}
	case state.Opaque:
		value, err = e.rdb.Get(ctx, e.key("opaque:", id)).Bytes()
		exp = now + 1 // Redis expires the key: a value read is live
		if err == nil && len(value) > maxValue {
			err = fmt.Errorf("%d bytes, more than an entry can be", len(value))
		}
	}
	switch {
	case errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("redisstate: get %s: %w", kind, fs.ErrNotExist)
	case err != nil:
		return nil, fmt.Errorf("redisstate: get %s: %w", kind, err)
	case exp <= now:
		return nil, fmt.Errorf("redisstate: get %s: expired: %w", kind, fs.ErrNotExist)
	}
	return value, nil
}

// Delete removes an entry and announces it.
func (e *Engine) Delete(ctx context.Context, kind state.Kind, id string) error {
	if err := checkEntry(kind, id); err != nil {
		return fmt.Errorf("redisstate: delete: %w", err)
	}
	msg, err := deleteEvent(kind, id)
	if err != nil {
		return fmt.Errorf("redisstate: delete %s: %w", kind, err)
	}
	ctx, cancel := e.op(ctx)
	defer cancel()
	_, err = e.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		switch kind {
		case state.Revoked:
			p.ZRem(ctx, e.key("revoked"), id)
		case state.Latest:
			p.HDel(ctx, e.key("latest"), id)
		case state.Opaque:
			p.Del(ctx, e.key("opaque:", id))
		}
		p.Publish(ctx, e.channel(), msg)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstate: delete %s: %w", kind, err)
	}
	return nil
}

// Each calls f with every live revocation or lifetime-0 record and when
// it ends, after deleting the ended ones. f may see an id twice when it
// changes during the walk; changes made meanwhile also arrive through
// Watch. Corrupt lifetime-0 records are skipped, never deleted, and named
// in a *state.CorruptError returned after the walk.
func (e *Engine) Each(ctx context.Context, kind state.Kind, f func(id string, value []byte, exp time.Time)) error {
	var err error
	switch kind {
	case state.Revoked:
		err = e.eachRevoked(ctx, f)
	case state.Latest:
		err = e.eachLatest(ctx, f)
	case state.Opaque:
		err = errors.New("opaque tokens are looked up one at a time, never listed")
	default:
		err = checkKind(kind)
	}
	if err != nil {
		return fmt.Errorf("redisstate: each %s: %w", kind, err)
	}
	return nil
}

// eachRevoked pages through the live revocations by score (expiry). The
// cursor is a score and how many members of that score were seen, not an
// offset from the start: another instance pruning ended revocations
// meanwhile would shift an offset past live ones.
func (e *Engine) eachRevoked(ctx context.Context, f func(string, []byte, time.Time)) error {
	key := e.key("revoked")
	now := e.now().UnixMilli()
	octx, cancel := e.op(ctx)
	err := e.rdb.ZRemRangeByScore(octx, key, "-inf", strconv.FormatInt(now, 10)).Err()
	cancel()
	if err != nil {
		return err
	}
	var (
		min  = "(" + strconv.FormatInt(now, 10)
		skip int64
		last float64
		seen bool // last is set
	)
	for {
		octx, cancel := e.op(ctx)
		page, err := e.rdb.ZRangeArgsWithScores(octx, redis.ZRangeArgs{
			Key: key, Start: min, Stop: "+inf", ByScore: true, Offset: skip, Count: e.pageSize,
		}).Result()
		cancel()
		if err != nil {
			return err
		}
		for _, z := range page {
			id, ok := z.Member.(string)
			if !ok || checkName("id", id) != nil {
				continue // not ours; never handed on
			}
			f(id, []byte{}, time.UnixMilli(int64(z.Score)))
		}
		if int64(len(page)) < e.pageSize {
			return nil
		}
		first, end := page[0].Score, page[len(page)-1].Score
		if seen && first == last && end == last {
			skip += int64(len(page)) // a page of one score: go on past it
			continue
		}
		last, seen, skip = end, true, 0
		for _, z := range page {
			if z.Score == end {
				skip++
			}
		}
		min = strconv.FormatFloat(end, 'f', -1, 64)
	}
}

func (e *Engine) eachLatest(ctx context.Context, f func(string, []byte, time.Time)) error {
	key := e.key("latest")
	now := e.now().UnixMilli()
	var (
		cursor  uint64
		ended   []any // field, value, field, value…
		corrupt state.CorruptError
	)
	for {
		octx, cancel := e.op(ctx)
		kv, next, err := e.rdb.HScan(octx, key, cursor, "*", e.pageSize).Result()
		cancel()
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(kv); i += 2 {
			id, raw := kv[i], kv[i+1]
			exp, value, err := parseLatest([]byte(raw))
			if bad := checkName("client ID", id); bad != nil {
				err, id = bad, fmt.Sprintf("%.64q", id) // not ours: quoted and cut for the error
			}
			switch {
			case err != nil:
				corrupt.Errs = append(corrupt.Errs, fmt.Errorf("%s %s: %w", state.Latest, id, err))
			case exp <= now:
				ended = append(ended, id, raw)
			default:
				f(id, value, time.UnixMilli(exp))
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	for len(ended) > 0 {
		n := min(len(ended), 2*int(e.pageSize))
		octx, cancel := e.op(ctx)
		err := pruneLatestScript.Run(octx, e.rdb, []string{key}, ended[:n]...).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("pruning: %w", err)
		}
		ended = ended[n:]
	}
	if len(corrupt.Errs) > 0 {
		return &corrupt
	}
	return nil
}

// latestValue prefixes value with its expiry, so that one HSET keeps both
// and Each can prune without a second structure to keep in step.
func latestValue(expMS int64, value []byte) []byte {
	b := strconv.AppendInt(nil, expMS, 10)
	b = append(b, ':')
	return append(b, value...)
}

func parseLatest(raw []byte) (expMS int64, value []byte, err error) {
	ms, value, ok := bytes.Cut(raw, []byte{':'})
	if !ok || len(raw) > maxValue+32 {
		return 0, nil, errors.New("corrupt record")
	}
	if expMS, err = strconv.ParseInt(string(ms), 10, 64); err != nil || expMS <= 0 {
		return 0, nil, errors.New("corrupt record")
	}
	return expMS, value, nil
}

func checkEntry(kind state.Kind, id string) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	return checkName("id", id)
}
