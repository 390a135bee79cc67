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
  - {path: /http/events/*, roles: [ESBMessaging.send], csrf: true}
`)
	tests := map[string]struct {
		method, path, subject string
		scope                 []string
		line                  int // 0: no rule
		decision, reason      string
	}{
		"allowed by the policy's roles":          {"POST", "/http/orders/1", "sender", nil, 6, "allow", "the subject holds any of Orders.send"},
		"public":                                 {"GET", "/http/ping", "nobody", nil, 8, "public", "no token is needed"},
		"no rule":                                {"GET", "/admin", "sender", nil, 0, "deny", "no rule matches"},
		"not canonical":                          {"GET", "/http//orders", "sender", nil, 0, "deny", "answers 400"},
		"unknown subject":                        {"GET", "/http/x", "nobody", nil, 7, "deny", "not in the policy"},
		"disabled subject":                       {"POST", "/http/orders/1", "off", nil, 6, "deny", "disabled"},
		"all_roles not all held":                 {"GET", "/http/ledger/1", "sender", nil, 9, "deny", "does not hold all of Ledger.write, Ledger.audit"},
		"scope leaves the role out":              {"POST", "/http/orders/1", "sender", []string{"ESBMessaging.send"}, 6, "deny", "the token's scope leaves out"},
		"report_only rule lets it through":       {"GET", "/http/new/1", "sender", nil, 10, "report-only", "logs the refusal and lets the request through"},
		"report_only rule that allows":           {"GET", "/http/new/1", "newbie", nil, 10, "allow", "the subject holds any of New.send"},
		"a POST on a csrf rule needs a token":    {"POST", "/http/events/1", "sender", nil, 11, "allow", "also needs a valid X-CSRF-Token, else 403 with X-CSRF-Token: Required"},
		"a GET on a csrf rule can fetch a token": {"GET", "/http/events/1", "sender", nil, 11, "allow", "with X-CSRF-Token: Fetch the gateway answers with a token itself"},
		"an empty scope grants nothing":          {"GET", "/http/x", "sender", []string{}, 7, "deny", "the token's scope leaves out what the rule needs: any of ESBMessaging.send"},
		"scope that names the role":              {"GET", "/http/x", "sender", []string{"ESBMessaging.send"}, 7, "allow", "holds any of ESBMessaging.send"},
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

func TestExplanation_StringOfACSRFRule(t *testing.T) {
	p := mustParse(t, "subjects:\n  s: [A]\nrules:\n  - {path: /a, roles: [A], csrf: true}\n")
	got := Explain(p, "POST", "", "/a", "s", nil).String()
	if want := "csrf:     GET or HEAD with X-CSRF-Token: Fetch gets a token; other methods but OPTIONS and TRACE need one\n"; !strings.Contains(got, want) {
		t.Errorf("String =\n%s\nwant a line %q", got, want)
	}
}

func TestCheck_CSRF(t *testing.T) {
	tests := []struct {
		name  string
		rules string
		want  []string
	}{
		{"a csrf rule for POST only is flagged: no sender can fetch a token from it",
			"  - {path: /x*, methods: [POST], roles: [A], csrf: true}\n",
			[]string{"4: the rule is csrf but takes neither GET nor HEAD: a sender's fetch (X-CSRF-Token: Fetch) on its paths gets no token unless another csrf rule decides it; add GET to its methods"}},
		{"a csrf rule for GET and POST is not flagged", "  - {path: /x*, methods: [GET, POST], roles: [A], csrf: true}\n", nil},
		{"a csrf rule for any method is not flagged", "  - {path: /x*, roles: [A], csrf: true}\n", nil},
		{"a bare path that falls to a rule without csrf is flagged",
			"  - {path: /x/*, roles: [A], csrf: true}\n  - {path: /*, roles: [A]}\n",
			[]string{"4: /x/* does not cover /x itself: /x falls to the rule at line 5 (/*), which needs any of A instead of any of A and a CSRF token;"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(mustParse(t, "subjects:\n  s: [A]\nrules:\n"+tt.rules))
			var msgs []string
			for _, f := range got {
				msgs = append(msgs, fmt.Sprintf("%d: %s", f.Line, f.Message))
			}
			if len(msgs) != len(tt.want) {
				t.Fatalf("Check = %q, want %q", msgs, tt.want)
			}
			for i := range msgs {
				if !strings.HasPrefix(msgs[i], tt.want[i]) {
					t.Errorf("finding %d = %q, want %q…", i, msgs[i], tt.want[i])
				}
			}
		})
	}
}

func TestCheck_PrefixWhoseBarePathFallsToAnotherRule(t *testing.T) {
	const readme = `  - {path: /http/orders/*, methods: [POST], roles: [Orders.send]}
  - {path: /http/*, roles: [ESBMessaging.send]}
  - {path: /http/ping, public: true}
`
	tests := []struct {
		name  string
		rules string // from line 2 on, one rule a line
		want  []string
	}{
		{"an orders prefix whose bare path falls to a broader rule with other roles is flagged with both lines", readme,
			[]string{"2: /http/orders/* does not cover /http/orders itself: POST /http/orders falls to the rule at line 3 (/http/*), which needs any of ESBMessaging.send instead of any of Orders.send; write path /http/orders* or add a rule for /http/orders"}},
		{"a prefix whose bare path has its own exact rule is not flagged",
			readme + "  - {path: /http/orders, methods: [POST], roles: [Orders.admin]}\n", nil},
		{"an exact rule for the bare path that does not take the prefix's method does not cover it",
			readme + "  - {path: /http/orders, methods: [GET], roles: [Orders.read]}\n",
			[]string{"2: /http/orders/* does not cover /http/orders itself: POST /http/orders falls to the rule at line 3"}},
		{"a prefix written /x* is not flagged", strings.Replace(readme, "/http/orders/*", "/http/orders*", 1), nil},
		{"a rule whose other path is the bare path is not flagged",
			strings.Replace(readme, "path: /http/orders/*", "paths: [/http/orders/*, /http/orders]", 1), nil},
		{"bare path decided by a rule with the same roles is not flagged",
			"  - {path: /x/*, roles: [A, B]}\n  - {path: /*, roles: [B, A, A]}\n", nil},
		{"all_roles of one role asks the same as roles of it",
			"  - {path: /x/*, all_roles: [A]}\n  - {path: /*, roles: [A]}\n", nil},
		{"bare path that no rule matches is not flagged", "  - {path: /http/orders/*, roles: [A]}\n  - {path: /other/*, roles: [B]}\n", nil},
		{"the root prefix has no bare path to leave out", "  - {path: /*, roles: [A]}\n  - {path: \"*\", methods: [POST], roles: [B]}\n", nil},
		{"bare path decided by a public rule is flagged", "  - {path: /x/*, roles: [A]}\n  - {path: /*, public: true}\n",
			[]string{"2: /x/* does not cover /x itself: /x falls to the rule at line 3 (/*), which needs no token instead of any of A; write path /x* or add a rule for /x"}},
		{"bare path decided by a rule with fewer roles is flagged: the endpoint would ask two things",
			"  - {path: /x/*, roles: [A, B]}\n  - {path: /*, roles: [A]}\n",
			[]string{"2: /x/* does not cover /x itself: /x falls to the rule at line 3 (/*), which needs any of A instead of any of A, B"}},
		{"all of two roles is not any of them", "  - {path: /x/*, roles: [A, B]}\n  - {path: /*, all_roles: [A, B]}\n",
			[]string{"which needs all of A, B instead of any of A, B"}},
		{"a public prefix whose bare path needs a token is not flagged: it fails closed",
			"  - {path: /.well-known/*, public: true}\n  - {path: /*, roles: [A]}\n", nil},
		{"a report_only rule deciding the bare path is flagged even with the same roles",
			"  - {path: /x/*, roles: [A]}\n  - {path: /*, roles: [A], report_only: true}\n",
			[]string{"2: /x/* does not cover /x itself: /x falls to the rule at line 3 (/*), which needs any of A (report only) instead of any of A;"}},
		{"a report_only prefix is flagged before it is enforced",
			"  - {path: /x/*, roles: [A], report_only: true}\n  - {path: /*, roles: [B]}\n",
			[]string{"which needs any of B instead of any of A (report only);"}},
		{"a POST prefix whose bare path only a GET rule names is not flagged",
			"  - {path: /x/*, methods: [POST], roles: [A]}\n  - {path: /x*, methods: [GET], roles: [B]}\n", nil},
		{"a POST prefix is checked with POST against a POST rule",
			"  - {path: /x/*, methods: [POST], roles: [A]}\n  - {path: /*, methods: [POST], roles: [B]}\n  - {path: /*, methods: [GET], roles: [A]}\n",
			[]string{"2: /x/* does not cover /x itself: POST /x falls to the rule at line 3 (/*)"}},
		{"a prefix for any method is flagged once for each rule deciding its bare path, naming the methods",
			"  - {path: /x/*, roles: [A]}\n  - {path: /*, roles: [B]}\n  - {path: /x*, methods: [DELETE, PUT], roles: [C]}\n  - {path: /y, methods: [PATCH], roles: [A]}\n",
			[]string{
				"2: /x/* does not cover /x itself: /x, by any method but DELETE or PUT, falls to the rule at line 3 (/*), which needs any of B",
				"2: /x/* does not cover /x itself: DELETE or PUT /x falls to the rule at line 4 (/x*), which needs any of C",
			}},
		{"each method is judged for the rule that decides it under the prefix",
			"  - {path: /x/*, roles: [A]}\n  - {path: /x/*, methods: [POST], roles: [B]}\n  - {path: /*, roles: [A]}\n",
			[]string{"3: /x/* does not cover /x itself: POST /x falls to the rule at line 4 (/*), which needs any of A instead of any of B"}},
		{"a method a same-prefix rule decides is judged by that rule, not by the prefix for other methods",
			"  - {path: /x/*, roles: [C]}\n  - {path: /x/*, methods: [POST], roles: [A]}\n  - {path: /*, methods: [POST], roles: [A]}\n", nil},
		{"methods the bare path's own rule takes are named as the exception",
			"  - {path: /x/*, roles: [A]}\n  - {path: /x, methods: [GET, HEAD], roles: [C]}\n  - {path: /*, roles: [B]}\n",
			[]string{"2: /x/* does not cover /x itself: /x, by any method but GET or HEAD, falls to the rule at line 4 (/*), which needs any of B instead of any of A;"}},
		{"a GET prefix is tried with HEAD when a rule lists HEAD",
			"  - {path: /x/*, methods: [GET], roles: [A]}\n  - {path: /x*, methods: [HEAD], roles: [B]}\n  - {path: /*, roles: [A]}\n",
			[]string{"2: /x/* does not cover /x itself: HEAD /x falls to the rule at line 3 (/x*)"}},
		{"a host prefix whose bare path falls to a rule for any host is flagged, naming the host",
			"  - {host: api.example.com, path: /x/*, roles: [A]}\n  - {path: /*, roles: [B]}\n",
			[]string{"2: api.example.com /x/* does not cover /x itself: api.example.com/x falls to the rule at line 3 (/*), which needs any of B instead of any of A; write path /x* or add a rule for /x"}},
		{"a host prefix whose bare path has an exact rule on that host is not flagged",
			"  - {host: api.example.com, path: /x/*, roles: [A]}\n  - {host: API.example.com., path: /x/, roles: [C]}\n  - {path: /*, roles: [B]}\n", nil},
		{"an exact rule on another host does not cover the bare path",
			"  - {host: api.example.com, path: /x/*, roles: [A]}\n  - {host: www.example.com, path: /x, roles: [A]}\n  - {path: /*, roles: [B]}\n",
			[]string{"2: api.example.com /x/* does not cover /x itself: api.example.com/x falls to the rule at line 4 (/*)"}},
		{"a wildcard-host prefix is checked for a name under it that no rule names",
			"  - {host: \"*.example.com\", path: /x/*, roles: [A]}\n  - {host: x0.example.com, path: /x, roles: [A]}\n  - {path: /*, roles: [B]}\n",
			[]string{"2: *.example.com /x/* does not cover /x itself: *.example.com/x falls to the rule at line 4 (/*)"}},
		{"an IPv6 host prefix is checked on that host",
			"  - {host: \"[::1]\", path: /x/*, roles: [A]}\n  - {host: \"::1\", path: /x*, methods: [GET], roles: [A]}\n  - {path: /*, roles: [B]}\n",
			[]string{"2: ::1 /x/* does not cover /x itself: ::1/x, by any method but GET, falls to the rule at line 4 (/*)"}},
		{"a prefix for any host is judged by the rules for any host",
			"  - {path: /x/*, roles: [A]}\n  - {host: api.example.com, path: /*, roles: [B]}\n  - {path: /*, roles: [A]}\n", nil},
		{"a rule with several paths is flagged for each prefix that leaves its bare path out",
			"  - {paths: [/a/*, /b/*, /c*, /d/*, /d], roles: [A]}\n  - {path: /*, roles: [B]}\n",
			[]string{"2: /a/* does not cover /a itself", "2: /b/* does not cover /b itself"}},
		{"a prefix in capitals is suggested as written", "  - {path: /HTTP/Orders/*, roles: [A]}\n  - {path: /http/*, roles: [B]}\n",
			[]string{"2: /HTTP/Orders/* does not cover /HTTP/Orders itself: /HTTP/Orders falls to the rule at line 3 (/http/*), which needs any of B instead of any of A; write path /HTTP/Orders* or add a rule for /HTTP/Orders"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, f := range Check(mustParse(t, "rules:\n"+tc.rules)) {
				if strings.Contains(f.Message, "itself:") {
					got = append(got, fmt.Sprintf("%d: %s", f.Line, f.Message))
				}
			}
			ok := len(got) == len(tc.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.Contains(got[i], tc.want[i])
			}
			if !ok {
				t.Errorf("Check =\n%s\nwant findings containing\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// The check looks at the bare path only: with a trailing slash it meets
// the prefix, as the guard decides it.
func TestCheck_BarePathWithTrailingSlashMeetsThePrefix(t *testing.T) {
	p := mustParse(t, "rules:\n  - {path: /http/orders/*, methods: [POST], roles: [Orders.send]}\n  - {path: /http/*, roles: [ESBMessaging.send]}\n")
	for _, path := range []string{"/http/orders/", "/HTTP/Orders/"} {
		if r := p.Match("POST", "", path); r == nil || r.Line != 2 {
			t.Errorf("Match(POST %s) = %+v, want the orders rule at line 2", path, r)
		}
	}
}
