package command

import (
	"errors"
	"strings"
	"testing"
)

const conditionCommandPolicy = `subjects:
  oauth_client_a: [Orders.send]
rules:
  - path: /http/orders/*
    roles: [Orders.send]
    when: claims.tenant == request.headers["x-tenant"][0] && claims.level >= 2
  - path: /http/own/*
    roles: [Orders.send]
    when: claims.client_id == "a" && "Orders.send" in claims.scope && request.remote_addr.startsWith("10.") && request.query["v"][0] == "2"
`

func TestPolicyExplain_EvaluatesConditionsForTheGivenClaims(t *testing.T) {
	path := writePolicyFile(t, conditionCommandPolicy)
	base := []string{"explain", "--policy", path, "--client", "a", "--method", "POST"}
	cases := []struct {
		name    string
		args    []string
		want    []string
		refused bool
	}{
		{"claims and a header that meet the condition",
			[]string{"--path", "/http/orders/1", "--claim", "tenant=acme", "--claim", "level=3", "--header", "X-Tenant=acme"},
			[]string{`when:     line 6: claims.tenant == request.headers["x-tenant"][0] && claims.level >= 2: true`, "decision: allow"}, false},
		{"a header of another tenant",
			[]string{"--path", "/http/orders/1", "--claim", "tenant=acme", "--claim", "level=3", "--header", "x-tenant=globex"},
			[]string{": false", "decision: deny: the subject holds any of Orders.send, but the condition is false"}, true},
		{"a JSON number below the bound",
			[]string{"--path", "/http/orders/1", "--claim", "tenant=acme", "--claim", "level=1", "--header", "X-Tenant=acme"},
			[]string{": false", "decision: deny"}, true},
		{"a claim not given",
			[]string{"--path", "/http/orders/1", "--header", "X-Tenant=acme"},
			[]string{": error: no such key", "cannot be evaluated"}, true},
		{"the gateway's own claims, the query and the remote address",
			[]string{"--path", "/http/own/1", "--query", "v=2", "--remote-addr", "10.0.0.5"},
			[]string{": true", "decision: allow"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCommand(t, policyCommand(), "", append(base, tc.args...)...)
			if tc.refused != errors.Is(err, errRefused) || err != nil && !errors.Is(err, errRefused) {
				t.Errorf("error = %v, want refused=%v\n%s", err, tc.refused, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	for _, bad := range []string{"--claim=tenant", "--header=X-Tenant"} {
		if _, err := runCommand(t, policyCommand(), "", append(base, "--path", "/http/orders/1", bad)...); !errors.As(err, new(usageError)) {
			t.Errorf("%s: error %v, want a usage error", bad, err)
		}
	}
}

func TestPolicyCheck_ConditionsNamingClaimsOurTokensLack(t *testing.T) {
	path := writePolicyFile(t, conditionCommandPolicy)
	out, err := runCommand(t, policyCommand(), "", "check", path)
	if err == nil || !strings.Contains(err.Error(), "2 finding(s)") {
		t.Errorf("error = %v, want 2 findings\n%s", err, out)
	}
	for _, w := range []string{
		"policy.yaml:6: the condition reads claim level, which tokens of this gateway never carry (fine if an external issuer's tokens do)",
		"policy.yaml:6: the condition reads claim tenant,",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	bad := writePolicyFile(t, strings.Replace(conditionCommandPolicy, ">= 2", ">=", 1))
	if _, err := runCommand(t, policyCommand(), "", "check", bad); err == nil || !strings.Contains(err.Error(), "policy.yaml:6: when: Syntax error") {
		t.Errorf("a broken condition: error %v, want policy.yaml:6: when: Syntax error", err)
	}
}
