package guard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

const conditionPolicy = `
subjects:
  oauth_client_sender: [Orders.send]
  oauth_client_reader: [Orders.send]
rules:
  - path: /http/orders/*
    roles: [Orders.send]
    when: claims.client_id == "sender" && request.headers["x-tenant"][0] == "acme"
  - path: /http/tenant/*
    roles: [Orders.send]
    when: claims.tenant == request.headers["X-Tenant"][0]
  - path: /http/shadow/*
    roles: [Orders.send]
    when: request.method == "GET"
    report_only: true
`

func TestCheck_ConditionDecidesAfterTheRoles(t *testing.T) {
	f := newFixture(t)
	f.state.policy = mustPolicy(t, conditionPolicy)
	cases := []struct {
		name, subject, method, path, tenant string
		wantStatus                          int // 0: allowed
	}{
		{"a caller the condition names, with the header", sender, "POST", "/http/orders/1", "acme", 0},
		{"the header in another tenant", sender, "POST", "/http/orders/1", "globex", http.StatusForbidden},
		{"the header missing", sender, "POST", "/http/orders/1", "", http.StatusForbidden},
		{"another client with the role", reader, "POST", "/http/orders/1", "acme", http.StatusForbidden},
		{"a claim our tokens lack", sender, "POST", "/http/tenant/1", "acme", http.StatusForbidden},
		{"a report_only rule's false condition is still a refusal for the handler to log", sender, "POST", "/http/shadow/1", "", http.StatusForbidden},
		{"a report_only rule's true condition", sender, "GET", "/http/shadow/1", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			r.Header.Set("Authorization", "Bearer "+f.token(t, tc.subject, func(c *tokens.Claims) { c.Scope = []string{"Orders.send"} }))
			if tc.tenant != "" {
				r.Header.Set("X-Tenant", tc.tenant)
			}
			d := f.guard.Check(r)
			if tc.wantStatus == 0 {
				if d.Err != nil {
					t.Fatalf("refused: %v", d.Err)
				}
				return
			}
			if d.Err == nil || d.Err.Status != tc.wantStatus || d.Err.Code != "insufficient_scope" || d.Err.Reason != guard.ReasonConditionFalse {
				t.Fatalf("decision = %+v, want %d insufficient_scope for a false condition", d.Err, tc.wantStatus)
			}
			if d.Rule == nil || !strings.Contains(d.Err.Description, "the condition of the policy rule at line ") ||
				strings.Contains(d.Err.Description, "globex") || strings.Contains(d.Err.Description, "acme") {
				t.Errorf("description %q: want the rule's line and no value of the request", d.Err.Description)
			}
		})
	}
}

func TestCheck_RolesRefuseBeforeTheCondition(t *testing.T) {
	f := newFixture(t)
	f.state.policy = mustPolicy(t, conditionPolicy)
	r := httptest.NewRequest("POST", "/http/orders/1", nil)
	r.Header.Set("Authorization", "Bearer "+f.token(t, sender, func(c *tokens.Claims) { c.Scope = []string{"Invoices.send"} }))
	r.Header.Set("X-Tenant", "acme")
	d := f.guard.Check(r)
	if d.Err == nil || d.Err.Reason != "" || !strings.Contains(d.Err.Description, "lacks a role") {
		t.Errorf("decision = %+v, want the role refusal, not the condition's", d.Err)
	}
}

func TestCheck_ConditionReadsAnExternalIssuersClaims(t *testing.T) {
	f := newFixture(t)
	f.state.policy = mustPolicy(t, conditionPolicy)
	f.guard.Issuers = map[string]guard.Issuer{xsuaa: testIssuer{verifierFunc: func(context.Context, string) (*tokens.Claims, error) {
		return &tokens.Claims{Issuer: xsuaa, Subject: "s", Roles: []string{"Orders.send"}, Extra: map[string]any{"tenant": "acme"}}, nil
	}}}
	tok := sign(t, f.keys.Signing().Algorithm, f.keys.Signing().Private, map[string]any{"typ": "JWT"}, []byte(`{"iss":"`+xsuaa+`"}`))
	for tenant, allowed := range map[string]bool{"acme": true, "globex": false} {
		r := httptest.NewRequest("GET", "/http/tenant/1", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("x-tenant", tenant)
		if d := f.guard.Check(r); (d.Err == nil) != allowed {
			t.Errorf("tenant %s: decision %+v, want allowed %v", tenant, d.Err, allowed)
		}
	}
}

func TestCheck_ConditionSeesTheClientIP(t *testing.T) {
	f := newFixture(t)
	f.state.policy = mustPolicy(t, `
subjects:
  oauth_client_sender: [Orders.send]
rules:
  - path: /http/*
    roles: [Orders.send]
    when: request.remote_addr == "203.0.113.7"
`)
	r := httptest.NewRequest("GET", "/http/x", nil) // httptest's peer is 192.0.2.1
	r.Header.Set("Authorization", "Bearer "+f.token(t, sender, nil))
	if d := f.guard.Check(r); d.Err == nil {
		t.Error("allowed with the connection's peer address")
	}
	f.guard.ClientIP = func(*http.Request) string { return "203.0.113.7" }
	if d := f.guard.Check(r); d.Err != nil {
		t.Errorf("refused with the client IP the server determined: %v", d.Err)
	}
}
