package main

// The Redis side of `make bench`: the cases that compare the guard and
// the token endpoint on "state redis" with the same gateway on file
// storage, and the scale case (many opaque tokens and revocations).
//
//	benchtool seed   -redis ADDR -prefix P -sealing-keys FILE -storage DIR
//	benchtool fill   -redis ADDR -prefix P -sealing-keys FILE -client-id ID -audience AUD -opaque N -revoked M [-seed S]
//	benchtool lookup -redis ADDR -prefix P -sealing-keys FILE -url URL -from I -n N -c C [-seed S] [-count]
//	benchtool stats  -redis ADDR

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/redisstate"
	"github.com/oauthgate/oauthgate/caddymodule/sealing"
	"github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// macKeyName is where tokenstate keeps the opaque-token MAC key among the
// blobs (tokenstate's macKeyName, which it does not export).
const macKeyName = state.StorageDir + "/opaque_mac_key"

// redisFlags are the flags every Redis subcommand takes.
type redisFlags struct {
	addr, prefix, sealingKeys *string
}

func addRedisFlags(fs *flag.FlagSet, engine bool) redisFlags {
	f := redisFlags{addr: fs.String("redis", "", "the Redis server, 127.0.0.1:PORT (required)")}
	if engine {
		f.prefix = fs.String("prefix", redisstate.DefaultPrefix, "the key prefix of the gateway's state redis")
		f.sealingKeys = fs.String("sealing-keys", "", "the gateway's sealing_keys_file (required)")
	}
	return f
}

// client returns a plain go-redis client of a server on this machine.
func (f redisFlags) client() (*redis.Client, error) {
	host, _, err := net.SplitHostPort(*f.addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("-redis %q: want 127.0.0.1:PORT; benchtool talks to this machine only", *f.addr)
	}
	return redis.NewClient(&redis.Options{Addr: *f.addr, DisableIdentity: true, PoolSize: 4,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}), nil
}

// engine returns the gateway's own Redis engine, with its key ring: what
// benchtool writes through it is what the gateway would write.
func (f redisFlags) engine() (*redisstate.Engine, error) {
	if _, err := f.client(); err != nil {
		return nil, err
	}
	if *f.sealingKeys == "" {
		return nil, errors.New("-sealing-keys is required")
	}
	ring, err := sealing.FromFile(*f.sealingKeys)
	if err != nil {
		return nil, err
	}
	return redisstate.New(redisstate.Config{URL: "redis://" + *f.addr, Prefix: *f.prefix, Sealer: ring})
}

// seed copies the signing keys of a gateway's file storage into the Redis
// state of another prefix, sealed as the gateway seals them, so that the
// gateway on Redis signs and verifies with the very keys of the gateway on
// file storage: both accept the same token stream.
func seed(args []string) error {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	rf := addRedisFlags(fs, true)
	storage := fs.String("storage", "", "the file_system storage directory of the gateway whose keys to copy (required)")
	_ = fs.Parse(args)
	if *storage == "" {
		return errors.New("-storage is required")
	}
	e, err := rf.engine()
	if err != nil {
		return err
	}
	defer e.Close()
	ctx := context.Background()
	data, err := readOnlyStorage(*storage).Load(ctx, keys.StorageKey)
	if err != nil {
		return fmt.Errorf("%w (start the gateway on file storage once first)", err)
	}
	if err := e.Blobs().Store(ctx, keys.StorageKey, data); err != nil {
		return err
	}
	// What the gateway will read must be what it would have written.
	if _, err := keys.LoadOrCreate(ctx, e.Blobs()); err != nil {
		return fmt.Errorf("the keys copied into Redis do not load: %w", err)
	}
	return nil
}

// opaqueToken is the i-th opaque token of a run: 32 bytes derived from
// seed and i (so that fill and lookup need not share a list of a million
// tokens) and their MAC, laid out as tokenstate.NewOpaque lays them out.
// Each one is checked with tokenstate's own Authentic.
func opaqueToken(macKey []byte, seed string, i int) string {
	h := sha256.New()
	h.Write([]byte(seed))
	_ = binary.Write(h, binary.BigEndian, uint64(i))
	random := h.Sum(nil) // 32 bytes
	m := hmac.New(sha256.New, macKey)
	m.Write(random)
	return base64.RawURLEncoding.EncodeToString(append(random, m.Sum(nil)[:16]...))
}

// hashID is tokenstate's hash: the id of a token's entry.
func hashID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// openStore opens the gateway's token state as the gateway does (the MAC
// key, the revocations, the lifetime-0 records), for its MAC key and its
// Authentic.
func openStore(ctx context.Context, e *redisstate.Engine) (*tokenstate.Store, []byte, error) {
	st, err := tokenstate.Open(ctx, e.Blobs(), e, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (start the gateway on this Redis state once first: it makes the MAC key)", err)
	}
	key, err := e.Blobs().Load(ctx, macKeyName)
	if err != nil {
		return nil, nil, err
	}
	return st, key, nil
}

// fill writes n opaque tokens and m revocations straight into Redis, in
// the engine's key layout and with tokenstate's record JSON, pipelined:
// through the token endpoint a million would take many minutes. The
// records are those the token endpoint writes for the client (subject,
// audience, scope, iat to the second, a one-hour lifetime); the lookups
// of the scale case, answered 200, show the gateway reads them as its own.
// It prints what Redis's memory grew by, per entry.
func fill(args []string) error {
	fs := flag.NewFlagSet("fill", flag.ExitOnError)
	rf := addRedisFlags(fs, true)
	clientID := fs.String("client-id", "", "the registered client the opaque tokens belong to (required)")
	audience := fs.String("audience", "", "the guard's audience (required)")
	n := fs.Int("opaque", 1_000_000, "opaque tokens")
	m := fs.Int("revoked", 100_000, "revocations")
	seedStr := fs.String("seed", "bench", "derives the opaque tokens (lookup must use the same)")
	lifetime := fs.Duration("lifetime", time.Hour, "lifetime of the tokens and revocations")
	samples := fs.Int("samples", 1000, "opaque keys whose MEMORY USAGE is read")
	_ = fs.Parse(args)
	if *clientID == "" || *audience == "" || *n < 1 || *m < 0 || *samples < 1 {
		return errors.New("-client-id and -audience are required; -opaque and -samples must be at least 1")
	}
	rdb, err := rf.client()
	if err != nil {
		return err
	}
	defer rdb.Close()
	e, err := rf.engine()
	if err != nil {
		return err
	}
	defer e.Close()
	ctx := context.Background()
	st, macKey, err := openStore(ctx, e)
	if err != nil {
		return err
	}
	prefix := *rf.prefix
	used := func() (int64, error) {
		info, err := rdb.Info(ctx, "memory").Result()
		if err != nil {
			return 0, err
		}
		return infoInt(info, "used_memory")
	}

	const batch = 1000
	iat := time.Now().Truncate(time.Second)
	exp := iat.Add(*lifetime)
	rec := tokenstate.Opaque{ClientID: *clientID, Subject: clients.SubjectPrefix + *clientID,
		Audience: []string{*audience}, Scope: []string{Role}, IssuedAt: iat, Expiry: exp}
	before, err := used()
	if err != nil {
		return err
	}
	start := time.Now()
	var recLen int
	for lo := 0; lo < *n; lo += batch {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := lo; i < min(lo+batch, *n); i++ {
				tok := opaqueToken(macKey, *seedStr, i)
				if !st.Authentic(tok) {
					return errors.New("a derived opaque token is not authentic to tokenstate: the layout changed")
				}
				rec.ID = tokens.NewID()
				data, err := json.Marshal(&rec)
				if err != nil {
					return err
				}
				recLen = len(data)
				// As redisstate's Put of an opaque token: SET with PXAT.
				p.Do(ctx, "SET", prefix+"opaque:"+hashID(tok), data, "PXAT", exp.UnixMilli())
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	opaqueTook := time.Since(start)
	afterOpaque, err := used()
	if err != nil {
		return err
	}

	start = time.Now()
	revoked := prefix + "revoked"
	for lo := 0; lo < *m; lo += batch {
		z := make([]redis.Z, 0, batch)
		for i := lo; i < min(lo+batch, *m); i++ {
			// As redisstate's Put of a revocation: the hash of a jti,
			// scored by the token's expiry (spread over the lifetime).
			ms := exp.Add(-time.Duration(rand.Int64N(int64(*lifetime / 2)))).UnixMilli()
			z = append(z, redis.Z{Score: float64(ms), Member: hashID(tokens.NewID())})
		}
		if err := rdb.ZAdd(ctx, revoked, z...).Err(); err != nil {
			return err
		}
	}
	revokedTook := time.Since(start)
	afterRevoked, err := used()
	if err != nil {
		return err
	}

	var usage int64
	for i := range *samples {
		j := i * (*n / *samples)
		u, err := rdb.MemoryUsage(ctx, prefix+"opaque:"+hashID(opaqueToken(macKey, *seedStr, j)), 0).Result()
		if err != nil {
			return fmt.Errorf("MEMORY USAGE of opaque token %d: %w", j, err)
		}
		usage += u
	}
	zUsage := int64(0)
	if *m > 0 {
		if zUsage, err = rdb.MemoryUsage(ctx, revoked, 0).Result(); err != nil {
			return err
		}
	}
	keysN, err := rdb.DBSize(ctx).Result()
	if err != nil {
		return err
	}
	fmt.Printf("filled %d opaque tokens in %.1fs (%.0f/s, pipelined SET ... PXAT, %d-byte records) and %d revocations in %.1fs (ZADD)\n",
		*n, opaqueTook.Seconds(), float64(*n)/opaqueTook.Seconds(), recLen, *m, revokedTook.Seconds())
	fmt.Printf("Redis used_memory %.1f MB before, %.1f MB after the opaque tokens, %.1f MB after the revocations; %d keys in the db\n",
		mb(before), mb(afterOpaque), mb(afterRevoked), keysN)
	fmt.Printf("bytes per opaque token: %d in used_memory (key, value, expiry, dict entries); %d by MEMORY USAGE (mean of %d keys)\n",
		(afterOpaque-before)/int64(*n), usage/int64(*samples), *samples)
	if *m > 0 {
		fmt.Printf("bytes per revocation: %d in used_memory; %d by MEMORY USAGE of the sorted set / %d\n",
			(afterRevoked-afterOpaque)/int64(*m), zUsage/int64(*m), *m)
	}
	return nil
}

// lookup sends n requests to url, the i-th with the (from+i)-th opaque
// token of fill, and fails unless each is let through. With -count it
// also reads Redis's command counts before and after, and prints the
// commands the gateway sent per request.
func lookup(args []string) error {
	fs := flag.NewFlagSet("lookup", flag.ExitOnError)
	rf := addRedisFlags(fs, true)
	rawURL := fs.String("url", "", "guarded URL on 127.0.0.1 (required)")
	from := fs.Int("from", 0, "index of the first token")
	n := fs.Int("n", 1000, "requests, each with its own token")
	c := fs.Int("c", 16, "concurrent requests")
	seedStr := fs.String("seed", "bench", "as given to fill")
	count := fs.Bool("count", false, "print the Redis commands per request (INFO commandstats)")
	_ = fs.Parse(args)
	if *n < 1 || *c < 1 || *from < 0 {
		return errors.New("-n and -c must be at least 1, -from at least 0")
	}
	u, err := loopbackURL(*rawURL)
	if err != nil {
		return err
	}
	rdb, err := rf.client()
	if err != nil {
		return err
	}
	defer rdb.Close()
	e, err := rf.engine()
	if err != nil {
		return err
	}
	defer e.Close()
	ctx := context.Background()
	_, macKey, err := openStore(ctx, e)
	if err != nil {
		return err
	}
	var before map[string]int64
	var beats *beatCounter
	if *count {
		if beats, err = countBeats(ctx, rdb, *rf.prefix); err != nil {
			return err
		}
		defer beats.stop()
		if before, err = commandCalls(ctx, rdb); err != nil {
			return err
		}
	}
	hc := httpClient(*c)
	var done atomic.Int64
	start := time.Now()
	err = parallel(*n, *c, func(i int) error {
		req, err := http.NewRequest(http.MethodGet, u.String(), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+opaqueToken(macKey, *seedStr, *from+i))
		if _, err := do(hc, req); err != nil {
			return err
		}
		if d := done.Add(1); d%100_000 == 0 {
			fmt.Fprintf(os.Stderr, "benchtool: lookup: %d of %d requests, %.0fs\n", d, *n, time.Since(start).Seconds())
		}
		return nil
	})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Printf("looked up %d distinct opaque tokens in %.1fs (%.0f/s), every one let through\n",
		*n, elapsed.Seconds(), float64(*n)/elapsed.Seconds())
	if *count {
		after, err := commandCalls(ctx, rdb)
		if err != nil {
			return err
		}
		fmt.Printf("Redis commands per request: %s\n", perRequest(before, after, beats.stop(), *n, elapsed))
	}
	return nil
}

// stats prints Redis's command counts ("cmd NAME CALLS") and used_memory,
// for the script to take differences.
func stats(args []string) error {
	fs := flag.NewFlagSet("stats", flag.ExitOnError)
	rf := addRedisFlags(fs, false)
	_ = fs.Parse(args)
	rdb, err := rf.client()
	if err != nil {
		return err
	}
	defer rdb.Close()
	calls, err := commandCalls(context.Background(), rdb)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(calls))
	for name := range calls {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Printf("cmd %s %d\n", name, calls[name])
	}
	return nil
}

// commandCalls reads INFO commandstats: calls per command. INFO itself
// is left out: it is benchtool's own.
func commandCalls(ctx context.Context, rdb *redis.Client) (map[string]int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	calls := map[string]int64{}
	for line := range strings.SplitSeq(info, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || name == "info" {
			continue
		}
		v, _, _ := strings.Cut(rest, ",")
		if calls[name], err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, fmt.Errorf("INFO commandstats: %q", line)
		}
	}
	return calls, nil
}

// beatCounter counts the beats the gateway's subscription publishes
// (redisstate's beat, four a second on a channel of its own), so that
// they are told apart from PUBLISHes a request would cost.
type beatCounter struct {
	ps   *redis.PubSub
	n    atomic.Int64
	done chan struct{}
}

func countBeats(ctx context.Context, rdb *redis.Client, prefix string) (*beatCounter, error) {
	ps := rdb.PSubscribe(ctx, prefix+"beat:*")
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		_ = ps.Close()
		return nil, err
	}
	b := &beatCounter{ps: ps, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for range ps.Channel() {
			b.n.Add(1)
		}
	}()
	return b, nil
}

// stop ends the count, after a moment for a beat published just before
// to arrive, and returns it; later calls return the same.
func (b *beatCounter) stop() int64 {
	select {
	case <-b.done:
	default:
		time.Sleep(20 * time.Millisecond)
		_ = b.ps.Close()
		<-b.done
	}
	return b.n.Load()
}

// perRequest formats the growth of each command's calls, divided by n.
// Apart from them: PING, which a subscription sends once a second while
// it hears nothing, and the PUBLISHes of the subscription's beats.
func perRequest(before, after map[string]int64, beats int64, n int, took time.Duration) string {
	var parts []string
	var total, pings int64
	for name, v := range after {
		d := v - before[name]
		if name == "publish" {
			d -= beats
		}
		switch {
		case d <= 0:
		case name == "ping":
			pings = d
		default:
			parts = append(parts, fmt.Sprintf("%s %.3f", strings.ToUpper(name), float64(d)/float64(n)))
			total += d
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	return fmt.Sprintf("%.3f (%s; %d commands over %d requests; besides, in %.1fs, %d PING and %d PUBLISH of the subscription's keepalive and beats)",
		float64(total)/float64(n), strings.Join(parts, ", "), total, n, took.Seconds(), pings, beats)
}

func infoInt(info, field string) (int64, error) {
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO has no %s", field)
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }
