package integration

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// reloadTimeout bounds how long a policy change takes to be in force: the
// gateway looks at the file every second.
const reloadTimeout = 10 * time.Second

// writePolicy replaces the environment's policy file.
func (e *env) writePolicy(t *testing.T, subjects string) {
	t.Helper()
	writeFile(t, filepath.Join(e.dir, "policy.yaml"), "subjects:\n"+subjects+policyRules)
}

// count is the number of complete lines so far.
func (l *lineLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// eventually calls method path with token until it answers want.
func (e *env) eventually(t *testing.T, method, path, token string, want int) {
	t.Helper()
	deadline := time.Now().Add(reloadTimeout)
	for {
		r := e.call(t, method, path, token, "{}")
		if r.status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s still answers %d after %v, want %d", method, path, r.status, reloadTimeout, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPolicy_ChangesApplyWithoutReloadAndABrokenFileChangesNothing(t *testing.T) {
	e := newEnv(t)
	tokA, tokB := e.token(t, e.A), e.token(t, e.B)
	e.call(t, http.MethodPost, "/http/orders/1", tokB, "{}").wantStatus(t, http.StatusOK)
	e.call(t, http.MethodGet, "/http/flow", tokB, "").wantStatus(t, http.StatusForbidden)

	// Revoke B's role and grant A the messaging role only: B is refused
	// from then on, with the token it already holds.
	e.writePolicy(t, fmt.Sprintf("  %s: [%s]\n", e.A.Subject, roleMessaging))
	e.eventually(t, http.MethodPost, "/http/orders/1", tokB, http.StatusForbidden)

	// A file that does not parse is refused with its line, and the last
	// good policy stays: A still gets in, B still does not.
	from := e.gatewayLog.count()
	writeFile(t, filepath.Join(e.dir, "policy.yaml"), "subjects:\n  "+e.B.Subject+": [Orders.send\nrules: []\n")
	_, ok := e.gatewayLog.waitLine(from, reloadTimeout, e.gateway.done, func(l string) bool {
		return strings.Contains(l, "policy file refused") && strings.Contains(l, "policy.yaml:2: ")
	})
	if !ok {
		t.Fatalf("no log line refusing the broken policy with its file:line; log:\n%s", e.gatewayLog)
	}
	e.call(t, http.MethodGet, "/http/flow", tokA, "").wantStatus(t, http.StatusOK)
	e.call(t, http.MethodPost, "/http/orders/1", tokB, "{}").wantStatus(t, http.StatusForbidden)

	// A subject disabled in the policy is refused from the next request
	// on, whatever roles it holds.
	e.writePolicy(t, fmt.Sprintf("  %s: {roles: [%s], disabled: true}\n  %s: [%s]\n", e.A.Subject, roleMessaging, e.B.Subject, roleOrders))
	e.eventually(t, http.MethodGet, "/http/flow", tokA, http.StatusUnauthorized)
	e.call(t, http.MethodPost, "/http/orders/1", tokB, "{}").wantStatus(t, http.StatusOK)
}

func TestPolicy_RuleInReportOnlyLetsItsRefusalsThrough(t *testing.T) {
	e := newEnv(t)
	writeFile(t, filepath.Join(e.dir, "policy.yaml"), fmt.Sprintf(`subjects:
  %s: [%s]
rules:
  - path: /http/legacy/*
    roles: [Legacy.call]
    report_only: true
  - path: /http/*
    roles: [%s]
`, e.A.Subject, roleMessaging, roleMessaging))
	tokB := e.token(t, e.B)
	from := e.gatewayLog.count()
	// The new rule is in force once /http/legacy answers differently from
	// /http/*: B has neither role, and only the legacy rule lets it pass.
	e.eventually(t, http.MethodGet, "/http/legacy/x", tokB, http.StatusOK)
	e.call(t, http.MethodGet, "/http/flow", tokB, "").wantStatus(t, http.StatusForbidden)
	if _, ok := e.gatewayLog.waitLine(from, logTimeout, e.gateway.done, func(l string) bool {
		return strings.Contains(l, "report only") && strings.Contains(l, "/http/legacy/x")
	}); !ok {
		t.Errorf("no report-only log line for the legacy request; log:\n%s", e.gatewayLog)
	}
}
