package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/atomicfile"
)

// Load with faults: mixed valid and invalid traffic, bounded and on
// 127.0.0.1 only, while the gateway's surroundings change or break. Every
// answer is counted against the one answer that is right for it; a
// refusal that should have been a pass, a pass that should have been a
// refusal, a 5xx the gateway made itself and a connection dropped outside
// a config reload (see traffic.reload) are all failures.

// faultLoadVar shortens the load for local runs (a Go duration, at most the
// default); `make test` leaves it unset.
const faultLoadVar = "OAUTHGATE_FAULT_LOAD"

const (
	faultLoad         = time.Minute
	faultRewrites     = 50 // policy rewrites in faultLoad
	rewritesPerReload = 5  // a Caddy reload after every fifth rewrite
	loadWorkers       = 4
	// loadPace is each worker's interval between requests: about 80
	// requests a second in all, enough to meet every reload and rewrite
	// with requests in flight and little enough for 2 shared CPUs.
	loadPace = 50 * time.Millisecond
)

// What the backend does during a phase of a load.
const (
	backendUp int32 = iota
	backendStopping
	backendDown
)

// phase is a stretch of a load in which the right answers stay the same.
type phase struct {
	name    string // added to the probes' names in the counts
	backend int32
	// stateAway: the state engine (Redis) cannot be asked, so a probe
	// that needs it may also be answered 503.
	stateAway bool
}

// probe is one kind of request of the mixed traffic and the answers that
// are right for it.
type probe struct {
	name string
	req  func() (*http.Request, error)
	want []int
	// proxied: when allowed, the request goes on to the backend, so its
	// right answer while the backend is down is 502 instead of 200.
	proxied bool
	// needsState: deciding it asks the state engine (an opaque token the
	// instance does not hold), so 503 with Retry-After is right too
	// while the engine is away.
	needsState bool
}

// wantIn is the right answers in phase ph. While the backend is being
// stopped, a request may meet it up or down.
func (p probe) wantIn(ph *phase) []int {
	var want []int
	switch s := ph.backend; {
	case !p.proxied || s == backendUp:
		want = p.want
	case s == backendStopping:
		want = append([]int{http.StatusBadGateway}, p.want...)
	default:
		want = []int{http.StatusBadGateway}
	}
	if p.needsState && ph.stateAway {
		want = append(slices.Clone(want), http.StatusServiceUnavailable)
	}
	return want
}

// traffic sends probes from several workers and counts every answer.
type traffic struct {
	hc      *http.Client
	probes  []probe
	phase   atomic.Pointer[phase]
	reloads atomic.Int32 // odd while a config reload runs

	mu      sync.Mutex
	counts  map[string]map[int]int // probe and phase name → status (0: no answer) → count
	wrong   []string               // the first mismatches, for the report
	nWrong  int
	dropped map[string]int // errors of requests a reload left unanswered
	changed chan struct{}  // closed and replaced at every answer
}

func newTraffic(probes []probe) *traffic {
	l := &traffic{
		// The harness's client: a fresh connection per request, and every
		// Authorization value and token recorded for the log hygiene
		// check.
		hc:      newHTTPClient(nil),
		probes:  probes,
		counts:  map[string]map[int]int{},
		dropped: map[string]int{},
		changed: make(chan struct{}),
	}
	l.phase.Store(&phase{})
	return l
}

// enter starts a phase: answers are counted under its name from now on.
func (l *traffic) enter(name string, backend int32) {
	l.phase.Store(&phase{name: name, backend: backend})
}

// enterStateAway starts a phase in which the state engine is away (the
// backend is up).
func (l *traffic) enterStateAway(name string) {
	l.phase.Store(&phase{name: name, backend: backendUp, stateAway: true})
}

// reload runs a config reload. A request that overlaps it may get no
// answer at all, and that is Caddy's doing, not the gateway's: on Linux
// each config listens on a socket of its own (SO_REUSEPORT) and the old
// one is closed, so the connections still queued on it are reset or
// closed unread. Plain Caddy 2.11 with a respond-only config loses them
// the same way. Such a request was never decided, so it is counted as
// dropped rather than wrong; an answer it does get must still be right.
func (l *traffic) reload(reload func()) {
	l.reloads.Add(1)
	defer l.reloads.Add(1)
	reload()
}

// run starts the workers; each cycles through all probes, starting at its
// own. They stop at stop, after limit, or when the test ends; stop returns
// once they have. ctx ends with them.
func (l *traffic) run(t *testing.T, limit time.Duration) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	var wg sync.WaitGroup
	for w := range loadWorkers {
		wg.Go(func() {
			tick := time.NewTicker(loadPace)
			defer tick.Stop()
			for i := w; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				// The request is not tied to ctx: ending the load must
				// not turn requests in flight into failures.
				l.do(l.probes[i%len(l.probes)])
			}
		})
	}
	stop = func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(stop)
	return ctx, stop
}

// do sends one probe and counts its answer under the phase it started
// in. An answer is right if it is right in the phase the request started
// in or in the one it ended in.
func (l *traffic) do(p probe) {
	before, reloads := l.phase.Load(), l.reloads.Load()
	status, detail := 0, ""
	req, err := p.req()
	if err == nil {
		var resp *http.Response
		if resp, err = l.hc.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			status, detail = resp.StatusCode, strings.TrimSpace(string(body))
		}
	}
	if err != nil {
		detail = err.Error()
	}
	after := l.phase.Load()
	duringReload := reloads%2 == 1 || l.reloads.Load() != reloads
	want := slices.Concat(p.wantIn(before), p.wantIn(after))
	slices.Sort(want)
	want = slices.Compact(want)
	key := p.name + before.name

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts[key] == nil {
		l.counts[key] = map[int]int{}
	}
	l.counts[key][status]++
	switch {
	case status == 0 && duringReload:
		l.dropped[detail[strings.LastIndex(detail, ": ")+2:]]++
	case !slices.Contains(want, status):
		l.nWrong++
		if len(l.wrong) < 20 {
			l.wrong = append(l.wrong, fmt.Sprintf("%s: got %d, want one of %v: %.200s", key, status, want, detail))
		}
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// waitFor blocks until cond, called with the counts under the lock,
// holds.
func (l *traffic) waitFor(ctx context.Context, cond func(counts map[string]map[int]int) bool) error {
	for {
		l.mu.Lock()
		ok, changed := cond(l.counts), l.changed
		l.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// answered is a condition for waitFor: every probe has had n answers in
// the phase of that name. Waiting by counts rather than by time makes a
// slow machine wait longer, not fail.
func (l *traffic) answered(n int, phase string) func(map[string]map[int]int) bool {
	return func(counts map[string]map[int]int) bool {
		for _, p := range l.probes {
			got := 0
			for _, c := range counts[p.name+phase] {
				got += c
			}
			if got < n {
				return false
			}
		}
		return true
	}
}

// check fails t for every wrong answer and for a probe that never got
// one, and logs the counts.
func (l *traffic) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var report strings.Builder
	total := 0
	for _, key := range slices.Sorted(maps.Keys(l.counts)) {
		fmt.Fprintf(&report, "  %-70s", key)
		for _, status := range slices.Sorted(maps.Keys(l.counts[key])) {
			fmt.Fprintf(&report, " %d×%d", l.counts[key][status], status)
			total += l.counts[key][status]
		}
		report.WriteByte('\n')
	}
	t.Logf("%d answers (status 0: no answer):\n%s", total, &report)
	if len(l.dropped) > 0 {
		t.Logf("requests that overlapped a config reload and got no answer: %v", l.dropped)
	}
	for _, p := range l.probes {
		if len(l.counts[p.name]) == 0 {
			t.Errorf("probe %q was never answered", p.name)
		}
	}
	if l.nWrong > 0 {
		t.Errorf("%d wrong answers of %d; the first:\n  %s", l.nWrong, total, strings.Join(l.wrong, "\n  "))
	}
}

// ---- the traffic ----

// mixedProbes is the traffic of the load tests: the gateway's own tokens
// of both formats, allowed and refused, requests without a valid token,
// a public path and the token endpoint. With x set, tokens of that
// trusted external issuer too.
func mixedProbes(t *testing.T, e *env, x *xsuaa) []probe {
	t.Helper()
	tokA, tokB, opaqueA := e.token(t, e.A), e.token(t, e.B), e.tokenOfFormat(t, e.A, "opaque")
	j := parseJWS(t, tokA)
	// Claims of B under A's signature: no longer the signed payload.
	tampered := j.rawHeader + "." + b64JSON(t, map[string]any{"sub": e.B.Subject}) + "." + j.rawSignature
	bearer := func(tok string) string { return "Bearer " + tok }
	token := url.Values{"grant_type": {"client_credentials"}, "token_format": {"jwt"}}.Encode()

	ps := []probe{
		{name: "A's JWT on a flow its role allows", req: e.probeRequest(http.MethodGet, "/http/flow", bearer(tokA)), want: []int{200}, proxied: true},
		{name: "A's opaque token on a flow its role allows", req: e.probeRequest(http.MethodPost, "/http/flow", bearer(opaqueA)), want: []int{200}, proxied: true},
		{name: "B's JWT on the orders endpoint", req: e.probeRequest(http.MethodPost, "/http/orders/1", bearer(tokB)), want: []int{200}, proxied: true},
		{name: "public path without a token", req: e.probeRequest(http.MethodGet, "/http/ping"), want: []int{200}, proxied: true},
		{name: "B's JWT on a flow that needs another role", req: e.probeRequest(http.MethodGet, "/http/flow", bearer(tokB)), want: []int{403}},
		{name: "A's JWT on the orders endpoint", req: e.probeRequest(http.MethodPost, "/http/orders/1", bearer(tokA)), want: []int{403}},
		{name: "no token", req: e.probeRequest(http.MethodGet, "/http/flow"), want: []int{401}},
		{name: "tampered token", req: e.probeRequest(http.MethodGet, "/http/flow", bearer(tampered)), want: []int{401}},
		{name: "two Authorization headers", req: e.probeRequest(http.MethodGet, "/http/flow", bearer(tokA), bearer(tokA)), want: []int{400}},
		{name: "token request with the right secret", req: e.probeTokenRequest(token, e.A.ID, e.A.Secret), want: []int{200}},
		// After ten failures a minute from one address, the limiter
		// answers 429 instead of checking.
		{name: "token request with a wrong secret", req: e.probeTokenRequest(token, e.A.ID, e.A.Secret+"x"), want: []int{401, 429}},
	}
	if x == nil {
		return ps
	}
	const sender = "sb-order-sender!b196"
	xtok := x.token(t, sender, xsappname+".ESBMessaging.send")
	// A kid the issuer never published makes the gateway refetch its keys
	// (at most every 30 s); the signature is not even looked at.
	xj := parseJWS(t, xtok)
	unknownKid := b64JSON(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": "never-published"}) + "." + xj.rawPayload + "." + xj.rawSignature
	return append(ps,
		probe{name: "external issuer's token with the role", req: e.probeRequest(http.MethodGet, "/http/flow", bearer(xtok)), want: []int{200}, proxied: true},
		probe{name: "external issuer's token on the orders endpoint", req: e.probeRequest(http.MethodPost, "/http/orders/1", bearer(xtok)), want: []int{403}},
		probe{name: "external issuer's token with an unknown kid", req: e.probeRequest(http.MethodGet, "/http/flow", bearer(unknownKid)), want: []int{401}},
	)
}

// probeRequest returns a maker of requests to the gateway, with one
// Authorization header per value given.
func (e *env) probeRequest(method, path string, authorization ...string) func() (*http.Request, error) {
	return func() (*http.Request, error) {
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(`{"order":1}`)
		}
		req, err := http.NewRequest(method, e.base+path, body)
		if err != nil {
			return nil, err
		}
		for _, v := range authorization {
			req.Header.Add("Authorization", v)
		}
		return req, nil
	}
}

// probeTokenRequest returns a maker of token requests the SAP way: the
// parameters in the query, the client in HTTP Basic.
func (e *env) probeTokenRequest(query, id, secret string) func() (*http.Request, error) {
	return func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, e.base+tokenPath+"?"+query, nil)
		if err == nil {
			req.SetBasicAuth(id, secret)
		}
		return req, err
	}
}

// ---- the tests ----

// For a minute, mixed traffic meets a gateway whose policy file is
// rewritten 50 times and whose configuration is reloaded 10 times. Every
// rewrite decides the traffic as before, or does not parse and must leave
// the last good policy in force; every reload changes only a response
// header. So every request has one right answer throughout, and gets it.
func TestFaults_LoadWhilePolicyIsRewrittenAndConfigReloadedDecidesEveryRequestRight(t *testing.T) {
	t.Parallel()
	duration, rewrites := faultLoad, faultRewrites
	if v := os.Getenv(faultLoadVar); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > faultLoad {
			t.Fatalf("%s=%q: want a duration up to %v", faultLoadVar, v, faultLoad)
		}
		duration = d
		rewrites = max(rewritesPerReload, int(faultRewrites*d/faultLoad))
		t.Logf("%s: %v and %d rewrites instead of %v and %d", faultLoadVar, d, rewrites, faultLoad, faultRewrites)
	}
	e := newEnvConfig(t, envConfig{admin: true, site: configGeneration(0)})
	l := newTraffic(mixedProbes(t, e, nil))
	_, stop := l.run(t, 2*faultLoad)

	// Rewrites spread evenly over the load; a slot missed because a
	// reload took long is caught up at once.
	start := time.Now()
	reloads := 0
	for i := range rewrites {
		time.Sleep(time.Until(start.Add(duration * time.Duration(i) / time.Duration(rewrites))))
		e.rewritePolicy(t, i)
		if i%rewritesPerReload == rewritesPerReload-1 {
			reloads++
			l.reload(func() { e.reloadConfig(t, reloads) })
		}
	}
	time.Sleep(time.Until(start.Add(duration))) // the last slot lasts as long as the others
	stop()
	t.Logf("%d policy rewrites and %d config reloads in %v", rewrites, reloads, time.Since(start).Round(time.Second))
	l.check(t)
}

// configGeneration is the site directive that tells a config from the
// one before: it changes nothing a decision depends on.
func configGeneration(n int) string { return fmt.Sprintf("header X-Config-Generation %d", n) }

// rewritePolicy writes the n-th variant of the policy and waits until the
// gateway has read it: in force if it is good, refused with its file and
// line if not.
func (e *env) rewritePolicy(t *testing.T, n int) {
	t.Helper()
	text, broken := equivalentPolicy(n, e.A, e.B)
	from := e.gatewayLog.count()
	// Replaced, not rewritten in place, as `caddy oauth policy` and git
	// do: a file caught half-written is a different policy.
	if err := atomicfile.Write(filepath.Join(e.dir, "policy.yaml"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	i, ok := e.gatewayLog.waitLine(from, reloadTimeout, e.gateway.done, func(l string) bool {
		return strings.Contains(l, "policy reloaded") || strings.Contains(l, "policy file refused")
	})
	if !ok {
		t.Fatalf("rewrite %d: the gateway did not read the policy within %v", n, reloadTimeout)
	}
	line := e.gatewayLog.linesBetween(i, i+1)[0]
	switch refused := strings.Contains(line, "policy file refused"); {
	case broken && !refused:
		t.Errorf("rewrite %d: a broken policy was put in force: %s\n%s", n, line, text)
	case !broken && refused:
		t.Errorf("rewrite %d: a good policy was refused: %s\n%s", n, line, text)
	case broken && !strings.Contains(line, "policy.yaml:"):
		t.Errorf("rewrite %d: refusal without file:line: %s", n, line)
	}
}

// equivalentPolicy is the n-th rewrite of the policy: a text that decides
// the load's requests as the environment's own policy does, with comments,
// reordered subjects and rules, another syntax, unrelated subjects and
// rules, conditions that hold for every request the roles allow, limits
// of a rule and of a subject that the load never reaches; or, every
// fifth time, a file that must be refused, in turn because it does not
// parse, because two rules collide, and because a condition does not
// compile or a limit does not parse.
func equivalentPolicy(n int, a, b client) (text string, broken bool) {
	var p strings.Builder
	fmt.Fprintf(&p, "# rewrite %d\n", n)
	switch n % rewritesPerReload {
	case 0:
		fmt.Fprintf(&p, "subjects:\n  %s: [%s]\n  %s: [%s]\n%s", a.Subject, roleMessaging, b.Subject, roleOrders, policyRules)
	case 1:
		fmt.Fprintf(&p, `subjects:
  oauth_client_unrelated-%d: [Other.role]
  %s: [%s]   # orders only
  %s: [%s]
rules:
  - path: /http/ping
    public: true
  - path: /http/*
    roles: [%s]
    limit: {rate: 1000000/s, quota: 1000000000/day}
  - path: /http/orders*
    methods: [POST]
    roles: [%s]
    when: claims.client_id == "%s" && request.method == "POST"
`, n, b.Subject, roleOrders, a.Subject, roleMessaging, roleMessaging, roleOrders, b.ID)
	case 2:
		broken = true
		switch n % (3 * rewritesPerReload) {
		case 2:
			fmt.Fprintf(&p, "subjects:\n  %s: [%s\n%s", a.Subject, roleMessaging, policyRules)
		case 7:
			fmt.Fprintf(&p, "subjects:\n  %s: [%s]\n%s  - path: /http/*\n    roles: [Other.role]\n", a.Subject, roleMessaging, policyRules)
		default:
			bad := "when: claims.client_id =="
			if n/(3*rewritesPerReload)%2 == 1 {
				bad = "limit: {rate: 10/fortnight}"
			}
			fmt.Fprintf(&p, "subjects:\n  %s: [%s]\n%s  - path: /http/broken-%d\n    roles: [%s]\n    %s\n", a.Subject, roleMessaging, policyRules, n, roleMessaging, bad)
		}
	case 3:
		fmt.Fprintf(&p, `subjects:
  %s: {roles: [%s], limit: {rate: 1000000/s, burst: 1000000}}
  %s:
    - %s
%s  - path: /http/unrelated-%d
    roles: [Other.role]
    when: '"Other.role" in roles && request.headers["X-Unrelated"][0] == "x"'
  - path: /http/orders/*
    methods: [PUT, DELETE]
    roles: [Other.role]
`, a.Subject, roleMessaging, b.Subject, roleOrders, policyRules, n)
	default:
		fmt.Fprintf(&p, "subjects:\n  %s: [%s]\n  %s: [%s]\n  oauth_client_gone-%d: {roles: [%s], disabled: true}\n%s  - path: /other/*\n    methods: [GET]\n    public: true\n",
			b.Subject, roleOrders, a.Subject, roleMessaging, n, roleMessaging, policyRules)
	}
	return p.String(), broken
}

// reloadConfig changes the config generation to n and reloads it the way
// an operator does, with `caddy reload`, then checks the new config
// answers.
func (e *env) reloadConfig(t *testing.T, n int) {
	t.Helper()
	data, err := os.ReadFile(e.caddyfile)
	if err != nil {
		t.Fatal(err)
	}
	old := configGeneration(n - 1)
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("Caddyfile has no %q:\n%s", old, data)
	}
	data = bytes.Replace(data, []byte(old), []byte(configGeneration(n)), 1)
	if err := atomicfile.Write(e.caddyfile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, "reload", "--config", e.caddyfile, "--adapter", "caddyfile", "--address", e.admin)
	cmd.Env, cmd.Dir = e.caddyEnv, e.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reload %d: caddy reload: %v\n%s", n, err, out)
	}
	r := e.call(t, http.MethodGet, "/http/ping", "", "")
	if got, want := r.header.Get("X-Config-Generation"), fmt.Sprint(n); got != want {
		t.Fatalf("after reload %d: X-Config-Generation = %q, want %q", n, got, want)
	}
}

// The backend stops while traffic flows: from then on every request the
// gateway lets through gets 502 from the reverse proxy, every request it
// refuses keeps its 401, 403 or 400, the token endpoint keeps issuing
// tokens, and nothing is a 500.
func TestFaults_BackendStoppedMidRunGives502ToAllowedRequestsOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := newTraffic(mixedProbes(t, e, nil))
	ctx, stop := l.run(t, time.Minute)

	const stopped = " (backend stopped)"
	if err := l.waitFor(ctx, l.answered(2, "")); err != nil {
		t.Fatalf("waiting for answers with the backend up: %v", err)
	}
	l.enter(" (backend stopping)", backendStopping)
	if err := e.backend.proc.stop(); err != nil {
		t.Fatal(err)
	}
	l.enter(stopped, backendDown)
	if err := l.waitFor(ctx, l.answered(2, stopped)); err != nil {
		t.Fatalf("waiting for answers with the backend stopped: %v", err)
	}
	stop()
	l.check(t)
}

// A trusted external issuer's JWKS endpoint goes down after the gateway
// fetched its keys. Under load, its tokens keep being decided as before:
// while the gateway meets the outage (a token naming an unknown kid makes
// it ask again, at most every 30 s) and after a config reload, which must
// not forget keys that cannot be fetched again.
func TestFaults_ExternalIssuerTokensKeepWorkingWhileItsJWKSIsDown(t *testing.T) {
	t.Parallel()
	x := startXSUAA(t)
	e := newEnvConfig(t, envConfig{admin: true, oauthOptions: x.trust(), site: configGeneration(0)})
	e.call(t, http.MethodGet, "/http/flow", x.token(t, "sb-probe", xsappname+".ESBMessaging.send"), "").wantStatus(t, http.StatusOK)
	x.down.Store(true)
	fetched := x.fetches.Load()

	l := newTraffic(mixedProbes(t, e, x))
	ctx, stop := l.run(t, 2*time.Minute)

	if err := l.waitFor(ctx, func(map[string]map[int]int) bool { return x.fetches.Load() > fetched }); err != nil {
		t.Fatalf("the gateway did not ask the JWKS endpoint again: %v", err)
	}
	const reloaded = " (from a config reload on)"
	l.enter(reloaded, backendUp)
	l.reload(func() { e.reloadConfig(t, 1) })
	if err := l.waitFor(ctx, l.answered(2, reloaded)); err != nil {
		t.Fatalf("waiting for answers after the reload: %v", err)
	}
	stop()
	l.check(t)
}

// Caddy's storage becomes unwritable where the gateway keeps token state
// (opaque tokens, revocations). What needs a write is refused with 503
// temporarily_unavailable, saying that the gateway cannot store it, and the
// log says why; JWTs are still issued, and the guard decides as before.
func TestFaults_UnwritableStorageRefusesWhatNeedsAWriteAndTheGuardKeepsWorking(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tokA, tokB := e.token(t, e.A), e.token(t, e.B)
	e.call(t, http.MethodGet, "/http/flow", tokA, "").wantStatus(t, http.StatusOK)

	// Tests run as root, so permissions stop nothing: a regular file where
	// a directory of the token state must be makes every write under it
	// fail.
	state := filepath.Join(e.dir, "storage", "oauthgate", "tokens")
	for _, dir := range []string{"opaque", "revoked"} {
		if err := os.RemoveAll(filepath.Join(state, dir)); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(state, dir), "not a directory\n")
	}
	from := e.gatewayLog.count()

	for _, tc := range []struct {
		name string
		resp response
	}{
		{"opaque token request", e.tokenRequest(t, http.MethodPost,
			url.Values{"grant_type": {"client_credentials"}, "token_format": {"opaque"}}, nil, e.A.ID, e.A.Secret)},
		{"revocation of a JWT", e.postForm(t, "/oauth2/api/v1/revoke", url.Values{"token": {tokA}}, e.A)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.resp
			r.wantStatus(t, http.StatusServiceUnavailable)
			r.wantNoStore(t)
			if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("Retry-After = %q, want a positive number of seconds", ra)
			}
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			r.decode(t, &body)
			if body.Error != "temporarily_unavailable" {
				t.Errorf("error = %q, want temporarily_unavailable; body: %s", body.Error, r.body)
			}
			if !strings.Contains(strings.ToLower(body.Description), "stor") {
				t.Errorf("error_description = %q, want it to say that the gateway cannot store it", body.Description)
			}
			if bytes.Contains(r.body, []byte("access_token")) {
				t.Errorf("a refused request got a token: %s", r.body)
			}
		})
	}
	for _, what := range []string{"issuing access token", "revoking token"} {
		if _, ok := e.gatewayLog.waitLine(from, logTimeout, e.gateway.done, func(l string) bool {
			return strings.Contains(l, what) && strings.Contains(l, "storing token state") && strings.Contains(l, "not a directory")
		}); !ok {
			t.Errorf("no log line %q naming the storage failure; log:\n%s", what, e.gatewayLog)
		}
	}

	// Everything that needs no write goes on as before.
	e.call(t, http.MethodGet, "/http/flow", e.token(t, e.A), "").wantStatus(t, http.StatusOK)
	e.call(t, http.MethodPost, "/http/orders/1", tokB, "{}").wantStatus(t, http.StatusOK)
	e.call(t, http.MethodGet, "/http/flow", tokB, "").wantBearerChallenge(t, http.StatusForbidden, "insufficient_scope")
	e.call(t, http.MethodGet, "/http/flow", "", "").wantBearerChallenge(t, http.StatusUnauthorized, "")
	var intro struct {
		Active bool `json:"active"`
	}
	e.postForm(t, "/oauth2/api/v1/introspect", url.Values{"token": {tokA}}, e.B).decode(t, &intro)
	if !intro.Active {
		t.Error("introspection calls a valid token inactive while storage is unwritable")
	}
}
