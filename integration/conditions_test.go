package integration

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// conditionPolicy guards /http/tenant/* with a condition on a claim and a
// header, and /http/shadow/* with one in report_only; sub is the subject
// that also holds the messaging role.
func conditionPolicy(e *env, extraSubject, when string) string {
	return fmt.Sprintf(`subjects:
  %s: [%s]
  %s: [%s]
  %s: [%s]
rules:
  - path: /http/tenant/*
    roles: [%s]
    when: %s
  - path: /http/shadow/*
    roles: [%s]
    when: request.headers["X-Tenant"][0] == "acme"
    report_only: true
  - path: /http/*
    roles: [%s]
`, e.A.Subject, roleMessaging, e.B.Subject, roleMessaging, extraSubject, roleMessaging, roleMessaging, when, roleMessaging, roleMessaging)
}

// callTenant calls path with token and, unless tenant is "", X-Tenant.
func (e *env) callTenant(t *testing.T, method, path, token, tenant string) response {
	t.Helper()
	req := newRequest(t, method, e.base+path, "")
	req.Header.Set("Authorization", "Bearer "+token)
	if tenant != "" {
		req.Header.Set("x-tenant", tenant) // sent in lower case; the condition names it X-Tenant
	}
	return send(t, e.http, req)
}

func TestConditions_ClaimAndHeaderDecideAfterTheRoles(t *testing.T) {
	x := startXSUAA(t)
	e := newEnvConfig(t, envConfig{admin: true, oauthOptions: x.trust()})
	const sender = "sb-tenant-sender!b196"
	ext := x.issuer() + "#" + sender
	policy := filepath.Join(e.dir, "policy.yaml")
	writeFile(t, policy, conditionPolicy(e, ext,
		fmt.Sprintf(`'claims.client_id == "%s" && request.headers["x-tenant"][0] == "acme" || has(claims.tenant) && claims.tenant == request.headers["X-Tenant"][0]'`, e.A.ID)))
	tokA := e.token(t, e.A)
	// The new policy is in force once A without the header is refused.
	e.eventually(t, http.MethodGet, "/http/tenant/0", tokA, http.StatusForbidden)
	tokB := e.token(t, e.B) // now with the messaging role in its scope
	e.backend.requests(t)

	// A's client_id and the right header: through, and the backend sees it.
	e.callTenant(t, http.MethodGet, "/http/tenant/1", tokA, "acme").wantStatus(t, http.StatusOK)
	e.backend.wantRequests(t, seenAs("GET", "/http/tenant/1", e.A, roleMessaging))

	// Another tenant, no header, or B with the same role: 403 naming the
	// rule, and nothing reaches the backend.
	line := e.policyLine(t, "/http/tenant/*")
	for name, r := range map[string]response{
		"another tenant": e.callTenant(t, http.MethodGet, "/http/tenant/1", tokA, "globex"),
		"no header":      e.callTenant(t, http.MethodGet, "/http/tenant/1", tokA, ""),
		"another client": e.callTenant(t, http.MethodGet, "/http/tenant/1", tokB, "acme"),
	} {
		r.wantBearerChallenge(t, http.StatusForbidden, "insufficient_scope")
		if desc := string(r.body); !strings.Contains(desc, "the condition of the policy rule at line "+line+" is false") || strings.Contains(desc, "globex") {
			t.Errorf("%s: body %s; want the rule's line %s and no value of the request", name, desc, line)
		}
	}
	e.backend.wantRequests(t)

	// An external issuer's token whose tenant claim meets the header.
	acme := x.tokenWith(t, sender, map[string]any{"tenant": "acme"}, xsappname+".ESBMessaging.send")
	e.callTenant(t, http.MethodGet, "/http/tenant/2", acme, "acme").wantStatus(t, http.StatusOK)
	e.callTenant(t, http.MethodGet, "/http/tenant/2", acme, "globex").wantBearerChallenge(t, http.StatusForbidden, "insufficient_scope")
	e.backend.wantRequests(t, backendRequest{Method: "GET", Path: "/http/tenant/2", ClientID: ext, Subject: ext, Roles: roleMessaging})

	// report_only: a false condition is logged and let through.
	from := e.gatewayLog.count()
	e.callTenant(t, http.MethodGet, "/http/shadow/1", tokB, "globex").wantStatus(t, http.StatusOK)
	// As every report-only refusal: through, but with no identity.
	e.backend.wantRequests(t, backendRequest{Method: "GET", Path: "/http/shadow/1"})
	if _, ok := e.gatewayLog.waitLine(from, logTimeout, e.gateway.done, func(l string) bool {
		return strings.Contains(l, "report only") && strings.Contains(l, "/http/shadow/1") && strings.Contains(l, `"error":"condition_false"`)
	}); !ok {
		t.Errorf("no report-only log line with reason condition_false; log:\n%s", e.gatewayLog)
	}
	m := e.scrapeMetrics(t)
	if got := m[`oauthgate_guard_decisions_total{outcome="deny",reason="condition_false",rule="`+line+`"}`]; got < 5 {
		t.Errorf("condition_false denials counted %v, want at least 5", got) // and those of eventually
	}
	if got := m[`oauthgate_guard_decisions_total{outcome="would_deny",reason="condition_false",rule="`+e.policyLine(t, "/http/shadow/*")+`"}`]; got < 1 {
		t.Errorf("condition_false would_deny counted %v, want at least 1", got)
	}

	// A policy rewritten with a broken condition is refused with its
	// line, and the last good one stays in force.
	from = e.gatewayLog.count()
	writeFile(t, policy, conditionPolicy(e, ext, `'claims.client_id == '`))
	if _, ok := e.gatewayLog.waitLine(from, reloadTimeout, e.gateway.done, func(l string) bool {
		return strings.Contains(l, "policy file refused") && strings.Contains(l, "policy.yaml:8: when: Syntax error")
	}); !ok {
		t.Fatalf("no log line refusing the broken condition with policy.yaml:8; log:\n%s", e.gatewayLog)
	}
	e.callTenant(t, http.MethodGet, "/http/tenant/3", tokA, "acme").wantStatus(t, http.StatusOK)
	e.callTenant(t, http.MethodGet, "/http/tenant/3", tokB, "acme").wantBearerChallenge(t, http.StatusForbidden, "insufficient_scope")
	e.backend.wantRequests(t, seenAs("GET", "/http/tenant/3", e.A, roleMessaging))
}
