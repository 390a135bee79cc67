package integration

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SAP Cloud Integration's "CSRF Protected" option, as a rule with
// csrf: true (docs/migrating-from-sap.md, "CSRF protection").

// kindCSRF names a fetched CSRF token when a log holds one.
const kindCSRF = "a CSRF token"

// csrfRules go before the environment's usual rules: the events flow is
// CSRF protected for both clients, the legacy flow only reports.
const csrfRules = `rules:
  - path: /http/events*
    roles: [ESBMessaging.send, Orders.send]
    csrf: true
  - path: /http/legacy*
    roles: [ESBMessaging.send]
    csrf: true
    report_only: true
`

// useCSRFPolicy gives A and B their roles under csrfRules, and returns
// once the gateway enforces them.
func (e *env) useCSRFPolicy(t *testing.T) {
	t.Helper()
	writeFile(t, filepath.Join(e.dir, "policy.yaml"), fmt.Sprintf("subjects:\n  %s: [%s]\n  %s: [%s]\n%s%s",
		e.A.Subject, roleMessaging, e.B.Subject, roleOrders, csrfRules, strings.TrimPrefix(policyRules, "rules:\n")))
	e.eventually(t, http.MethodPost, "/http/events", e.token(t, e.A), http.StatusForbidden)
	e.backend.requests(t) // what reached it before the policy did
}

// csrfCall is call with an X-CSRF-Token header, unless csrf is "".
func (e *env) csrfCall(t *testing.T, method, path, token, csrf string) response {
	t.Helper()
	req := newRequest(t, method, e.base+path, "")
	req.Header.Set("Authorization", "Bearer "+token)
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	return send(t, e.http, req)
}

// fetchCSRF fetches a CSRF token as an SAP sender does, and records it
// for the log hygiene check.
func (e *env) fetchCSRF(t *testing.T, method, path, token string) string {
	t.Helper()
	return e.fetchCSRFAs(t, method, path, token, "Fetch")
}

// fetchCSRFAs is fetchCSRF with the word a sender writes for Fetch.
func (e *env) fetchCSRFAs(t *testing.T, method, path, token, word string) string {
	t.Helper()
	r := e.csrfCall(t, method, path, token, word)
	r.wantStatus(t, http.StatusOK)
	csrf := r.header.Get("X-CSRF-Token")
	if csrf == "" || strings.EqualFold(csrf, "Fetch") || strings.EqualFold(csrf, "Required") {
		t.Fatalf("%s %s with X-CSRF-Token: %s answered X-CSRF-Token %q, want a token", method, path, word, csrf)
	}
	sensitive.add(kindCSRF, csrf)
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("the fetch answer has Cache-Control %q, want no-store", cc)
	}
	if len(r.body) != 0 {
		t.Errorf("the fetch answer has a body %q, want none", r.body)
	}
	return csrf
}

// wantCSRFRequired asserts the answer SAP senders take as "fetch a
// token, then send again".
func (r response) wantCSRFRequired(t *testing.T, code string) {
	t.Helper()
	r.wantStatus(t, http.StatusForbidden)
	if got := r.header.Get("X-CSRF-Token"); got != "Required" {
		t.Errorf("X-CSRF-Token = %q, want Required", got)
	}
	if got := r.oauthError(t); got != code {
		t.Errorf("error = %q, want %q (body %s)", got, code, r.body)
	}
}

func TestCSRF_FetchThenPostReachesTheBackendAndEveryOtherPostIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.useCSRFPolicy(t)
	tokA, tokB := e.token(t, e.A), e.token(t, e.B)

	// Without a token: 403 Required, and nothing reaches the backend.
	e.csrfCall(t, http.MethodPost, "/http/events", tokA, "").wantCSRFRequired(t, "csrf_required")
	e.backend.wantRequests(t)

	// The fetch is answered by the gateway, with HEAD as SAP's senders
	// do and with GET, the word in any case.
	csrfA := e.fetchCSRF(t, http.MethodHead, "/http/events", tokA)
	csrfGet := e.fetchCSRFAs(t, http.MethodGet, "/http/events/1", tokA, "fetch")
	csrfB := e.fetchCSRF(t, http.MethodHead, "/http/events", tokB)
	e.backend.wantRequests(t)

	// With its token, a client's POST, PUT and DELETE reach the backend,
	// which sees no X-CSRF-Token; so does a GET that fetches nothing.
	e.csrfCall(t, http.MethodPost, "/http/events", tokA, csrfA).wantStatus(t, http.StatusOK)
	e.csrfCall(t, http.MethodPost, "/http/events/7", tokA, csrfGet).wantStatus(t, http.StatusOK)
	e.csrfCall(t, http.MethodDelete, "/http/events/7", tokA, csrfA)
	e.csrfCall(t, http.MethodPost, "/http/events", tokB, csrfB).wantStatus(t, http.StatusOK)
	e.csrfCall(t, http.MethodGet, "/http/events", tokA, csrfA).wantStatus(t, http.StatusOK)
	e.backend.wantRequests(t,
		seenAs(http.MethodPost, "/http/events", e.A, roleMessaging),
		seenAs(http.MethodPost, "/http/events/7", e.A, roleMessaging),
		seenAs(http.MethodDelete, "/http/events/7", e.A, roleMessaging),
		seenAs(http.MethodPost, "/http/events", e.B, roleOrders),
		seenAs(http.MethodGet, "/http/events", e.A, roleMessaging),
	)

	// Another client's token, a new access token of the same client
	// (the binding is to the client, so it passes), a changed one, junk.
	e.csrfCall(t, http.MethodPost, "/http/events", tokB, csrfA).wantCSRFRequired(t, "csrf_invalid")
	e.csrfCall(t, http.MethodPost, "/http/events", tokA, csrfB).wantCSRFRequired(t, "csrf_invalid")
	changed := []byte(csrfA)
	changed[10] = map[bool]byte{true: 'B', false: 'A'}[changed[10] == 'A']
	e.csrfCall(t, http.MethodPost, "/http/events", tokA, string(changed)).wantCSRFRequired(t, "csrf_invalid")
	e.csrfCall(t, http.MethodPut, "/http/events", tokA, "Fetch").wantCSRFRequired(t, "csrf_invalid")
	e.csrfCall(t, http.MethodPatch, "/http/events", tokA, strings.Repeat("A", 5000)).wantCSRFRequired(t, "csrf_invalid")
	e.backend.wantRequests(t)
	e.csrfCall(t, http.MethodPost, "/http/events", e.token(t, e.A), csrfA).wantStatus(t, http.StatusOK)
	e.backend.wantRequests(t, seenAs(http.MethodPost, "/http/events", e.A, roleMessaging))

	// A rule without csrf passes the header on: a backend behind it may
	// do its own CSRF protection, as SAP Gateway does.
	e.csrfCall(t, http.MethodPost, "/http/flow", tokA, "Fetch").wantStatus(t, http.StatusOK)
	want := seenAs(http.MethodPost, "/http/flow", e.A, roleMessaging)
	want.CSRFToken = true
	e.backend.wantRequests(t, want)

	// A report_only csrf rule logs the refusal and lets the request
	// through, without the caller's identity, like every report-only
	// refusal.
	from := e.gatewayLog.count()
	e.csrfCall(t, http.MethodPost, "/http/legacy", tokA, "").wantStatus(t, http.StatusOK)
	e.backend.wantRequests(t, backendRequest{Method: http.MethodPost, Path: "/http/legacy"})
	if _, ok := e.gatewayLog.waitLine(from, logTimeout, e.gateway.done, func(l string) bool {
		return strings.Contains(l, "report only") && strings.Contains(l, "csrf_required") && strings.Contains(l, "/http/legacy")
	}); !ok {
		t.Errorf("no report-only log line naming csrf_required for /http/legacy; log:\n%s", e.gatewayLog)
	}
	// Each refusal is logged with its reason.
	for _, reason := range []string{`"error":"csrf_required"`, `"error":"csrf_invalid"`} {
		if !strings.Contains(e.gatewayLog.String(), reason) {
			t.Errorf("no refusal logged with %s", reason)
		}
	}
}

// The token lives csrf_token_lifetime; each answer is counted under its
// own outcome and reason.
func TestCSRF_AnExpiredTokenIsRefusedAndEachAnswerIsCounted(t *testing.T) {
	t.Parallel()
	e := newEnvConfig(t, envConfig{admin: true, guardOptions: "csrf_token_lifetime 2s"})
	e.useCSRFPolicy(t) // its last POST is the one csrf_required
	tok := e.token(t, e.A)
	csrf := e.fetchCSRF(t, http.MethodHead, "/http/events", tok)
	e.csrfCall(t, http.MethodPost, "/http/events", tok, csrf).wantStatus(t, http.StatusOK)
	time.Sleep(3 * time.Second)
	r := e.csrfCall(t, http.MethodPost, "/http/events", tok, csrf)
	r.wantCSRFRequired(t, "csrf_invalid")
	if !strings.Contains(string(r.body), "expired") {
		t.Errorf("body %s does not say the token expired", r.body)
	}
	e.csrfCall(t, http.MethodPost, "/http/legacy", tok, "").wantStatus(t, http.StatusOK)
	e.backend.wantRequests(t,
		seenAs(http.MethodPost, "/http/events", e.A, roleMessaging),
		backendRequest{Method: http.MethodPost, Path: "/http/legacy"})

	events, legacy := e.policyLine(t, "/http/events*"), e.policyLine(t, "/http/legacy*")
	got := e.scrapeMetrics(t)
	for sample, want := range map[string]float64{
		`oauthgate_guard_decisions_total{outcome="csrf_fetch",reason="ok",rule="` + events + `"}`:            1,
		`oauthgate_guard_decisions_total{outcome="allow",reason="ok",rule="` + events + `"}`:                 1,
		`oauthgate_guard_decisions_total{outcome="deny",reason="csrf_required",rule="` + events + `"}`:       1,
		`oauthgate_guard_decisions_total{outcome="deny",reason="csrf_invalid",rule="` + events + `"}`:        1,
		`oauthgate_guard_decisions_total{outcome="would_deny",reason="csrf_required",rule="` + legacy + `"}`: 1,
	} {
		if v, ok := got[sample]; !ok || v != want {
			t.Errorf("%s = %v (present: %v), want %v", sample, v, ok, want)
		}
	}
}

// A fleet on one storage shares the CSRF key: a token fetched at one
// instance passes at another, as a load balancer sends the two requests.
func TestCSRF_ATokenFetchedAtOneInstancePassesAtAnotherOnSharedStorage(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	b := a.peer(t)
	a.useCSRFPolicy(t)
	b.eventually(t, http.MethodPost, "/http/events", b.token(t, b.A), http.StatusForbidden)
	a.backend.requests(t)
	crossFetch(t, a, b)
}

func TestCSRF_ATokenFetchedAtOneInstancePassesAtAnotherOnRedis(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	a := newEnvConfig(t, envConfig{ownStorage: true, oauthOptions: redisState(r.url(), sealingKeys(t))})
	b := a.peer(t) // a storage of its own: the key can only come through Redis
	a.useCSRFPolicy(t)
	b.eventually(t, http.MethodPost, "/http/events", b.token(t, b.A), http.StatusForbidden)
	a.backend.requests(t)
	crossFetch(t, a, b)
	// The key rests sealed in Redis, never as its 32 bytes in clear.
	blob, err := r.do(t, "GET", "oauthgate:blob:oauthgate/csrf_key")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := blob.(string); len(s) <= 32 {
		t.Errorf("the CSRF key in Redis has %d bytes; want it sealed, longer than the key", len(s))
	}
}

// crossFetch fetches at each of a and b and posts at the other.
func crossFetch(t *testing.T, a, b *env) {
	t.Helper()
	tok := a.token(t, a.A)
	b.csrfCall(t, http.MethodPost, "/http/events", tok, a.fetchCSRF(t, http.MethodHead, "/http/events", tok)).wantStatus(t, http.StatusOK)
	a.csrfCall(t, http.MethodPost, "/http/events", tok, b.fetchCSRF(t, http.MethodGet, "/http/events", tok)).wantStatus(t, http.StatusOK)
	a.backend.wantRequests(t,
		seenAs(http.MethodPost, "/http/events", a.A, roleMessaging),
		seenAs(http.MethodPost, "/http/events", a.A, roleMessaging))
}
