package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestCheck_ReportsWhatThePolicyProbablyDoesNotMean(t *testing.T) {
	p := mustParse(t, `subjects:
  sender: [Orders.send]
  typo: [Orders.sned]
  ledger: [Ledger.write]
  off: {roles: [Nothing], disabled: true}
rules:
  - {path: /http/orders/*, roles: [Orders.send]}
  - {path: /http/ledger/*, all_roles: [Ledger.write, Ledger.audit]}
  - {path: /http/a//b, roles: [Orders.send]}
  - {path: /http/x/../*, roles: [Orders.send]}
  - {path: /http/orders/*/items, roles: [Orders.send]}
  - {path: "*.json;x", roles: [Orders.send]}
  - {path: "*/a/*/b", roles: [Orders.send]}
  - {path: /http/ping, public: true}
  - {path: /http/ok/*, methods: [GET], roles: [Orders.send]}
  - {path: /http/ok/*/x, methods: [HEAD], roles: [Orders.send]}
  - {path: /http/ok/*/y, methods: [POST], roles: [Orders.send]}
  - {path: /http/z/*/.., roles: [Orders.send]}
  - {path: "*/./*", roles: [Orders.send]}
  - {path: "*/.well-known*", roles: [Orders.send]}
`)
	want := []string{
		"3: subject typo can use no rule that needs a token: its roles satisfy none",
		"3: subject typo holds role Orders.sned, which no rule requires",
		"4: subject ledger can use no rule that needs a token: its roles satisfy none",
		"5: subject off holds role Nothing, which no rule requires",
		"8: no subject holds role Ledger.audit, which this rule requires (fine if an external issuer's tokens carry it)",
		"9: /http/a//b can never match: every path it matches has //, . or .. segments or ;, which the guard refuses with 400",
		"10: /http/x/../* can never match: every path it matches has //, . or .. segments or ;, which the guard refuses with 400",
		"11: /http/orders/*/items can never match: the rule at line 7 (/http/orders/*) decides every request it would match",
		"12: *.json;x can never match: every path it matches has //, . or .. segments or ;, which the guard refuses with 400",
		"13: */a/*/b can never match: paths start with / and a * in a glob does not match /",
		"16: /http/ok/*/x can never match: the rule at line 15 (/http/ok/*) decides every request it would match",
		"18: /http/z/*/.. can never match: every path it matches has //, . or .. segments or ;, which the guard refuses with 400",
		"19: */./* can never match: every path it matches has //, . or .. segments or ;, which the guard refuses with 400",
	}
	var got []string
	for _, f := range Check(p) {
		got = append(got, fmt.Sprintf("%d: %s", f.Line, f.Message))
	}
	if !slices.Equal(got, want) {
		t.Errorf("Check =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCheck_QuietOnAGoodPolicy(t *testing.T) {
	good := strings.Replace(examplePolicy, "rules:", "  oauth_client_77c1: [Orders.send]\nrules:", 1)
	if f := Check(mustParse(t, good)); len(f) != 0 {
		t.Errorf("Check(example policy) = %+v, want nothing", f)
	}
}

func TestCheck_StarShadowedByRootPrefix(t *testing.T) {
	f := Check(mustParse(t, "subjects:\n  s: [A]\nrules:\n  - {path: /*, roles: [A]}\n  - {path: \"*\", methods: [GET], roles: [A]}\n"))
	if len(f) != 1 || f[0].Line != 5 || !strings.Contains(f[0].Message, "the rule at line 4 (/*) decides") {
		t.Errorf("Check = %+v, want the * rule at line 5 shadowed by line 4", f)
	}
}

func TestExplain(t *testing.T) {
	p := mustParse(t, `subjects:
  sender: [Orders.send, ESBMessaging.send]
  off: {roles: [Orders.send], disabled: true}
  newbie: [New.send]
rules:
  - {path: /http/orders/*, methods: [POST], roles: [Orders.send]}
  - {path: /http/*, roles: [ESBMessaging.send]}
  - {path: /http/ping, public: true}
  - {path: /http/ledger/*, all_roles: [Ledger.write, Ledger.audit]}
  - {path: /http/new/*, roles: [New.send], report_only: true}
`)
	tests := map[string]struct {
		method, path, subject string
		scope                 []string
		line                  int // 0: no rule
		decision, reason      string
	}{
		"allowed by the policy's roles":    {"POST", "/http/orders/1", "sender", nil, 6, "allow", "the subject holds any of Orders.send"},
		"public":                           {"GET", "/http/ping", "nobody", nil, 8, "public", "no token is needed"},
		"no rule":                          {"GET", "/admin", "sender", nil, 0, "deny", "no rule matches"},
		"not canonical":                    {"GET", "/http//orders", "sender", nil, 0, "deny", "answers 400"},
		"unknown subject":                  {"GET", "/http/x", "nobody", nil, 7, "deny", "not in the policy"},
		"disabled subject":                 {"POST", "/http/orders/1", "off", nil, 6, "deny", "disabled"},
		"all_roles not all held":           {"GET", "/http/ledger/1", "sender", nil, 9, "deny", "does not hold all of Ledger.write, Ledger.audit"},
		"scope leaves the role out":        {"POST", "/http/orders/1", "sender", []string{"ESBMessaging.send"}, 6, "deny", "the token's scope leaves out"},
		"report_only rule lets it through": {"GET", "/http/new/1", "sender", nil, 10, "report-only", "logs the refusal and lets the request through"},
		"report_only rule that allows":     {"GET", "/http/new/1", "newbie", nil, 10, "allow", "the subject holds any of New.send"},
		"an empty scope grants nothing":    {"GET", "/http/x", "sender", []string{}, 7, "deny", "the token's scope leaves out what the rule needs: any of ESBMessaging.send"},
		"scope that names the role":        {"GET", "/http/x", "sender", []string{"ESBMessaging.send"}, 7, "allow", "holds any of ESBMessaging.send"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			x := Explain(p, tc.method, "gw.example", tc.path, tc.subject, tc.scope)
			line := 0
			if x.Rule != nil {
				line = x.Rule.Line
			}
			if line != tc.line || x.Decision != tc.decision || !strings.Contains(x.Reason, tc.reason) {
				t.Errorf("Explain = rule line %d, %s: %s; want line %d, %s: ...%s...", line, x.Decision, x.Reason, tc.line, tc.decision, tc.reason)
			}
		})
	}
}

func TestExplanation_String(t *testing.T) {
	p := mustParse(t, "subjects:\n  s: [A]\nrules:\n  - {host: gw.example, paths: [/a, /b], methods: [POST], roles: [B, C]}\n")
	got := Explain(p, "POST", "gw.example", "/a", "s", nil).String()
	want := `request:  POST gw.example/a
rule:     line 4 (paths /a, /b; hosts gw.example; methods POST)
requires: any of B, C
subject:  s holds [A]
decision: deny: the subject does not hold any of B, C
`
	if got != want {
		t.Errorf("String =\n%s\nwant\n%s", got, want)
	}
}
