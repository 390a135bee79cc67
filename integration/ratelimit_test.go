package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// specC is a third client with the messaging role: one more caller of
// the same rules as A.
var specC = clientSpec{name: "sender-c", roles: []string{roleMessaging}}

// replacePolicy writes the policy file with A, B and C's subjects (each
// with subjectExtra[name] appended to its entry if given, in the long
// form) and rules, and waits until the gateway has loaded it.
func (e *env) replacePolicy(t *testing.T, rules string, subjectLimits map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("subjects:\n")
	for _, c := range []client{e.A, e.B, e.clients[specC.name]} {
		if c.Subject == "" {
			continue // an environment without C
		}
		roles := roleMessaging
		if c == e.B {
			roles = roleOrders
		}
		if l, ok := subjectLimits[c.Name]; ok {
			fmt.Fprintf(&b, "  %s: {roles: [%s], limit: %s}\n", c.Subject, roles, l)
		} else {
			fmt.Fprintf(&b, "  %s: [%s]\n", c.Subject, roles)
		}
	}
	b.WriteString("rules:\n" + rules)
	from := e.gatewayLog.count()
	writeFile(t, filepath.Join(e.dir, "policy.yaml"), b.String())
	i, ok := e.gatewayLog.waitLine(from, reloadTimeout, e.gateway.done, func(l string) bool {
		return strings.Contains(l, "policy reloaded") || strings.Contains(l, "policy file refused")
	})
	if !ok || strings.Contains(e.gatewayLog.linesBetween(i, i+1)[0], "refused") {
		t.Fatalf("the gateway did not load the policy within %v:\n%s", reloadTimeout, b.String())
	}
}

// limitRules guard /http/* with the messaging role and limit, and keep
// the orders and ping rules of every environment.
func limitRules(limit string) string {
	return `  - path: /http/orders*
    methods: [POST]
    roles: [Orders.send]
  - path: /http/*
    roles: [ESBMessaging.send]
    limit: ` + limit + `
  - path: /http/ping
    public: true
`
}

// tooMany checks a 429 of the guard: Retry-After, the draft's headers,
// and the small JSON body with code.
func (r response) tooMany(t *testing.T, code, retryAfter, policy, state string) {
	t.Helper()
	r.wantStatus(t, http.StatusTooManyRequests)
	if got := r.header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After = %q, want %q", got, retryAfter)
	}
	if got := r.header.Get("RateLimit-Policy"); got != policy {
		t.Errorf("RateLimit-Policy = %q, want %q", got, policy)
	}
	if got := r.header.Get("RateLimit"); got != state {
		t.Errorf("RateLimit = %q, want %q", got, state)
	}
	if got := r.header.Get("WWW-Authenticate"); got != "" {
		t.Errorf("WWW-Authenticate = %q on a 429: the token is fine, the pace is not", got)
	}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error != code || body.Description == "" {
		t.Errorf("body %s (%v), want {\"error\":%q,\"error_description\":…}", r.body, err, code)
	}
}

func TestRateLimit_OverTheBurstIs429WithTheDraftHeadersAndNeverReachesTheBackend(t *testing.T) {
	e := newEnvConfig(t, envConfig{admin: true}, specC)
	c := e.clients[specC.name]
	e.replacePolicy(t, limitRules("{rate: 1/m, burst: 3}"), nil)
	tokA, tokC := e.token(t, e.A), e.token(t, c)
	e.backend.requests(t) // forget what came before

	for range 3 {
		e.call(t, http.MethodGet, "/http/flow", tokA, "").wantStatus(t, http.StatusOK)
	}
	for range 2 {
		e.call(t, http.MethodGet, "/http/flow", tokA, "").tooMany(t, "rate_limited", "60",
			`"rule-rate";q=3;w=180`, `"rule-rate";r=0;t=180`)
	}
	// Counted per client by default: C has a budget of its own.
	for range 3 {
		e.call(t, http.MethodGet, "/http/flow", tokC, "").wantStatus(t, http.StatusOK)
	}
	e.call(t, http.MethodGet, "/http/flow", tokC, "").wantStatus(t, http.StatusTooManyRequests)
	// A refusal for another reason uses up nothing: B lacks the role.
	e.call(t, http.MethodGet, "/http/flow", e.token(t, e.B), "").wantStatus(t, http.StatusForbidden)

	want := []backendRequest{}
	for range 3 {
		want = append(want, seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging))
	}
	for range 3 {
		want = append(want, seenAs(http.MethodGet, "/http/flow", c, roleMessaging))
	}
	e.backend.wantRequests(t, want...)

	m := e.scrapeMetrics(t)
	line := e.policyLine(t, "/http/*")
	key := fmt.Sprintf(`oauthgate_guard_decisions_total{outcome="deny",reason="rate_limited",rule="%s"}`, line)
	if m[key] != 3 {
		t.Errorf("%s = %v, want 3", key, m[key])
	}
	if !strings.Contains(e.gatewayLog.String(), `"error":"rate_limited"`) {
		t.Error("no log line for the refusals with error rate_limited")
	}
}

func TestRateLimit_PerClaimCountsEveryCallerWithTheSameValueTogether(t *testing.T) {
	e := newEnv(t, specC)
	// Every token of the gateway has the same issuer: one budget for all.
	e.replacePolicy(t, limitRules("{rate: 1/h, burst: 4, per: 'claim:iss'}"), nil)
	tokA, tokC := e.token(t, e.A), e.token(t, e.clients[specC.name])
	e.backend.requests(t)
	ok := 0
	for i := range 8 {
		tok := tokA
		if i%2 == 1 {
			tok = tokC
		}
		if r := e.call(t, http.MethodGet, "/http/flow", tok, ""); r.status == http.StatusOK {
			ok++
		} else {
			r.wantStatus(t, http.StatusTooManyRequests)
		}
	}
	if ok != 4 {
		t.Errorf("%d of A's and C's 8 requests admitted, want the 4 of their shared budget", ok)
	}
	if got := len(e.backend.requests(t)); got != 4 {
		t.Errorf("the backend received %d requests, want 4", got)
	}
}

func TestRateLimit_PerClaimOfATrustedIssuerCountsEachTenantOnItsOwn(t *testing.T) {
	x := startXSUAA(t)
	e := newEnvConfig(t, envConfig{oauthOptions: x.trust()})
	e.replacePolicy(t, limitRules("{rate: 1/h, burst: 2, per: 'claim:tenant'}"), nil)
	role := xsappname + ".ESBMessaging.send"
	// Two senders of tenant acme share its budget; globex has its own.
	acme1 := x.tokenWith(t, "sb-acme-1!b1", map[string]any{"tenant": "acme"}, role)
	acme2 := x.tokenWith(t, "sb-acme-2!b1", map[string]any{"tenant": "acme"}, role)
	globex := x.tokenWith(t, "sb-globex!b1", map[string]any{"tenant": "globex"}, role)
	e.backend.requests(t)
	admitted := map[string]int{}
	for i, tok := range []string{acme1, acme2, acme1, acme2, globex, globex, globex} {
		name := map[bool]string{true: "acme", false: "globex"}[i < 4]
		if r := e.call(t, http.MethodGet, "/http/flow", tok, ""); r.status == http.StatusOK {
			admitted[name]++
		} else {
			r.wantStatus(t, http.StatusTooManyRequests)
		}
	}
	if admitted["acme"] != 2 || admitted["globex"] != 2 {
		t.Errorf("admitted %v, want 2 for each tenant: acme's two senders share one burst of 2", admitted)
	}
	if got := len(e.backend.requests(t)); got != 4 {
		t.Errorf("the backend received %d requests, want 4", got)
	}
}

func TestRateLimit_ASubjectsQuotaCountsAcrossRulesUntilTheUTCDayEnds(t *testing.T) {
	e := newEnv(t, specC)
	e.replacePolicy(t, limitRules("{rate: 100/s}"), map[string]string{specA.name: "{quota: 2/day}"})
	tokA := e.token(t, e.A)
	e.backend.requests(t)
	e.call(t, http.MethodGet, "/http/flow", tokA, "").wantStatus(t, http.StatusOK)
	e.call(t, http.MethodPost, "/http/events", tokA, "{}").wantStatus(t, http.StatusOK)
	r := e.call(t, http.MethodGet, "/http/flow", tokA, "")
	r.wantStatus(t, http.StatusTooManyRequests)
	var body struct{ Error string }
	_ = json.Unmarshal(r.body, &body)
	if body.Error != "quota_exceeded" {
		t.Errorf("error %q, want quota_exceeded", body.Error)
	}
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 86400 {
		t.Errorf("Retry-After %q, want the seconds until midnight UTC", r.header.Get("Retry-After"))
	}
	if st := r.header.Get("RateLimit"); !strings.Contains(st, `"subject-quota";r=0;t=`) || !strings.Contains(st, `"rule-rate";r=`) {
		t.Errorf("RateLimit = %q, want the rule's rate and the subject's spent quota", st)
	}
	// C has no quota of its own.
	e.call(t, http.MethodGet, "/http/flow", e.token(t, e.clients[specC.name]), "").wantStatus(t, http.StatusOK)
	if got := len(e.backend.requests(t)); got != 3 {
		t.Errorf("the backend received %d requests, want A's 2 and C's 1", got)
	}
}

func TestRateLimit_ReportOnlyLogsTheRefusalAndLetsTheCallerThroughAsItself(t *testing.T) {
	e := newEnvConfig(t, envConfig{admin: true})
	e.replacePolicy(t, `  - path: /http/*
    roles: [ESBMessaging.send]
    report_only: true
    limit: {rate: 1/h, burst: 1}
`, nil)
	tokA := e.token(t, e.A)
	e.backend.requests(t)
	for range 3 {
		e.call(t, http.MethodGet, "/http/flow", tokA, "").wantStatus(t, http.StatusOK)
	}
	// The backend is told who calls: a caller over its limit is still
	// the caller the token says.
	want := seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging)
	e.backend.wantRequests(t, want, want, want)
	key := fmt.Sprintf(`oauthgate_guard_decisions_total{outcome="would_deny",reason="rate_limited",rule="%s"}`, e.policyLine(t, "/http/*"))
	if m := e.scrapeMetrics(t); m[key] != 2 {
		t.Errorf("%s = %v, want 2", key, m[key])
	}
	if n := strings.Count(e.gatewayLog.String(), "request would be refused (report only)"); n != 2 {
		t.Errorf("%d report-only log lines, want 2", n)
	}
}

func TestRedisFleet_RateLimitsCountAcrossTheFleetWithinTheStatedBound(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	fleet := newRedisFleet(t, redisState(r.url(), sealingKeys(t)), 2, specC)
	a, b := fleet[0], fleet[1]
	const burst, sent = 20, 200
	a.replacePolicy(t, limitRules(fmt.Sprintf("{rate: 1/h, burst: %d}", burst)), nil)
	b.waitPolicy(t)
	tok := a.token(t, a.A)
	a.backend.requests(t)

	// Four senders, two at each instance, as fast as they can.
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		g := fleet[i%2]
		wg.Go(func() {
			for range sent / 4 {
				switch res := g.callFromGoroutine(t, "/http/flow", tok); res.status {
				case http.StatusOK:
					admitted.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
				default:
					t.Errorf("status %d", res.status)
				}
			}
		})
	}
	wg.Wait()
	n := admitted.Load()
	t.Logf("two instances admitted %d of %d requests against a burst of %d (overshoot %d; the stated bound is one burst per other instance)", n, sent, burst, n-burst)
	if n < burst || n > 2*burst {
		t.Errorf("%d admitted, want between the burst %d and %d", n, burst, 2*burst)
	}
	if got := len(a.backend.requests(t)); int64(got) != n {
		t.Errorf("the backend received %d requests, want the %d admitted", got, n)
	}
	// The fleet knows now: both refuse.
	for _, g := range fleet {
		g.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusTooManyRequests)
	}
}

// waitPolicy waits until e's gateway has loaded the policy file that a
// peer's replacePolicy wrote: they share it.
func (e *env) waitPolicy(t *testing.T) {
	t.Helper()
	if _, ok := e.gatewayLog.waitLine(0, reloadTimeout, e.gateway.done, func(l string) bool {
		return strings.Contains(l, "policy reloaded")
	}); !ok {
		t.Fatalf("the peer did not reload the policy within %v", reloadTimeout)
	}
}

func TestRedisFleet_WhileRedisIsDownEachInstanceCountsOnItsOwnAndSaysSo(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	fleet := newRedisFleet(t, redisState(r.url(), sealingKeys(t)), 2, specC)
	a, b := fleet[0], fleet[1]
	a.replacePolicy(t, limitRules("{quota: 10/day}"), nil)
	b.waitPolicy(t)
	tok := a.token(t, a.A)
	admitted := func(g *env, n int) int {
		ok := 0
		for range n {
			switch res := g.call(t, http.MethodGet, "/http/flow", tok, ""); res.status {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
			default:
				t.Fatalf("status %d: a limit must never turn into another answer", res.status)
			}
		}
		return ok
	}
	if got := admitted(a, 4); got != 4 {
		t.Fatalf("A admitted %d, want 4", got)
	}
	time.Sleep(300 * time.Millisecond) // a sync or two: Redis holds the 4

	from := a.gatewayLog.count()
	r.stop(t)
	// A knows the caller's 4 and admits the 6 left; B, which never saw
	// the caller and cannot ask, counts on its own: the fleet admits up
	// to a quota per instance while Redis is away, and nothing fails.
	if got := admitted(a, 10); got != 6 {
		t.Errorf("A with Redis down: %d admitted, want the 6 left of the fleet's 10", got)
	}
	if got := admitted(b, 12); got != 10 {
		t.Errorf("B with Redis down: %d admitted, want its own 10", got)
	}
	if _, ok := a.gatewayLog.waitLine(from, 5*time.Second, a.gateway.done, func(l string) bool {
		return strings.Contains(l, "rate limits: the fleet's counts cannot be read or added to; counting per instance until they can")
	}); !ok {
		t.Error("A did not log that it counts on its own")
	}

	from = a.gatewayLog.count()
	r.start(t)
	admitted(a, 1) // a caller in use: the next sync reaches Redis
	if _, ok := a.gatewayLog.waitLine(from, 10*time.Second, a.gateway.done, func(l string) bool {
		return strings.Contains(l, "rate limits: counting across the fleet again")
	}); !ok {
		t.Error("A did not log that it counts with the fleet again")
	}
}

func TestRateLimit_APolicyRewrittenUnderLoadNeverAnswersAnythingButAllowOrLimit(t *testing.T) {
	e := newEnv(t, specC)
	e.replacePolicy(t, limitRules("{rate: 1000/s}"), nil)
	tok := e.token(t, e.A)
	e.backend.requests(t)

	// Limits that change, a file that does not parse, a limit on the
	// subject, the limit gone: every few tens of milliseconds.
	versions := []string{
		"subjects:\n  " + e.A.Subject + ": [" + roleMessaging + "]\nrules:\n" + limitRules("{rate: 1/h, burst: 5}"),
		"subjects:\n  " + e.A.Subject + ": {roles: [" + roleMessaging + "], limit: {quota: 3/h}}\nrules:\n" + limitRules("{rate: 1000/s}"),
		"subjects:\n  " + e.A.Subject + ": [" + roleMessaging + "]\nrules:\n" + limitRules("{rate: 1000/s, quota: 7/day}"),
		"subjects:\n  " + e.A.Subject + ": [" + roleMessaging + "\nrules: [",
		"subjects:\n  " + e.A.Subject + ": [" + roleMessaging + "]\nrules:\n  - path: /http/*\n    roles: [" + roleMessaging + "]\n",
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(40 * time.Millisecond):
			}
			// Not writeFile: t.Fatal belongs to the test's goroutine.
			if err := os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(versions[i%len(versions)]), 0o600); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var ok, limited atomic.Int64
	for range 4 {
		wg.Go(func() {
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				switch r := e.callFromGoroutine(t, "/http/flow", tok); r.status {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
				default:
					t.Errorf("status %d under a changing policy: %s", r.status, r.body)
				}
			}
		})
	}
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d allowed, %d limited while the policy changed", ok.Load(), limited.Load())
	if got := int64(len(e.backend.requests(t))); got != ok.Load() {
		t.Errorf("the backend received %d requests, want the %d allowed", got, ok.Load())
	}
}

// callFromGoroutine is a GET of path with token, for the test's other
// goroutines: a failed exchange is an error of the test, status 0, and
// not a t.Fatal, which belongs to the test's own goroutine.
func (e *env) callFromGoroutine(t *testing.T, path, token string) response {
	req, err := http.NewRequest(http.MethodGet, e.base+path, nil)
	if err != nil {
		t.Error(err)
		return response{}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", path, err)
		return response{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

func TestRateLimit_AConfigReloadGivesNoCallerAFreshBudget(t *testing.T) {
	e := newEnvConfig(t, envConfig{admin: true})
	e.replacePolicy(t, limitRules("{rate: 1/h, burst: 2, quota: 5/day}"), nil)
	tok := e.token(t, e.A)
	for range 2 {
		e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)
	}
	e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusTooManyRequests)
	e.reload(t)
	e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusTooManyRequests)
}
