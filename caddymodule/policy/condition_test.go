package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// conditionPolicy has one rule whose when is given, on line 5.
func conditionPolicy(when string) string {
	return "subjects:\n  s: [A]\nrules:\n  - path: /a\n    when: " + when + "\n    roles: [A]\n"
}

func TestParse_ConditionErrorsNameTheLine(t *testing.T) {
	tests := map[string]struct {
		src      string
		wantLine string
		wantMsg  string
	}{
		"a syntax error":            {conditionPolicy(`'claims.x =='`), "p.yaml:5: ", "when: Syntax error"},
		"an undeclared variable":    {conditionPolicy(`'claim.x == "a"'`), "p.yaml:5: ", "undeclared reference to 'claim'"},
		"not a bool":                {conditionPolicy(`'claims.x'`), "p.yaml:5: ", "of type dyn, want bool"},
		"a number":                  {conditionPolicy(`1`), "p.yaml:5: ", "want a CEL expression as a string"},
		"an empty expression":       {conditionPolicy(`"  "`), "p.yaml:5: ", "want a CEL expression"},
		"a misspelt request field":  {conditionPolicy(`'request.methd == "GET"'`), "p.yaml:5: ", `request has no field "methd"`},
		"a misspelt field by index": {conditionPolicy(`'request["pth"] == "/a"'`), "p.yaml:5: ", `request has no field "pth"`},
		"a wrong type": {conditionPolicy(`'request.method == 1 && roles == "A"'`), "p.yaml:5: ",
			"no matching overload"},
		"nested iteration too costly": {conditionPolicy(`'roles.all(r, roles.all(s, r != s))'`), "p.yaml:5: ",
			"could cost up to"},
		"too long": {conditionPolicy(`'` + strings.Repeat(`request.path == "/a" || `, 100) + `true'`), "p.yaml:5: ",
			"longer than 2048 characters"},
		"too deeply nested": {conditionPolicy(`'` + strings.Repeat("(", 60) + "true" + strings.Repeat(")", 60) + `'`), "p.yaml:5: ",
			"when: "},
		"the error on the second line of a block": {
			"rules:\n  - path: /a\n    roles: [A]\n    when: |\n      claims.client_id == \"a\" &&\n        claims.x ==\n", "p.yaml:6: ", "Syntax error"},
		"a condition on a public rule": {"rules:\n  - path: /a\n    public: true\n    when: 'request.method == \"GET\"'\n",
			"p.yaml:2: ", "a public rule cannot have a when condition"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "p.yaml")
			if err == nil {
				t.Fatal("Parse accepted the policy")
			}
			if !strings.HasPrefix(err.Error(), tc.wantLine) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error = %q, want %q... containing %q", err, tc.wantLine, tc.wantMsg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestCondition_Eval(t *testing.T) {
	base := Input{
		Claims:   MapClaims{"client_id": "sender", "tenant": "acme", "level": float64(3), "scope": []string{"A", "B"}},
		Roles:    []string{"A"},
		ClientID: "https://idp#sender", Subject: "https://idp#s",
		Request: Request{
			Method: "POST", Host: "API.example.com:8443", Path: "/a/1",
			Header:     map[string][]string{"X-Tenant": {"acme"}, "X-Multi": {"1", "2"}, "X-Long": {strings.Repeat("a", conditionSizeBound+1)}},
			RawQuery:   "page=2&q=x&long=" + strings.Repeat("a", conditionSizeBound+1),
			RemoteAddr: "10.1.2.3",
			Time:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		},
	}
	tests := map[string]struct {
		expr    string
		want    bool
		wantErr string
	}{
		"a claim equal to a literal":                 {`claims.client_id == "sender"`, true, ""},
		"a claim unequal to a literal":               {`claims.client_id == "other"`, false, ""},
		"a claim equal to a header":                  {`claims.tenant == request.headers["X-Tenant"][0]`, true, ""},
		"a header named in lower case":               {`request.headers["x-tenant"][0] == "acme"`, true, ""},
		"a header named in upper case":               {`request.headers["X-TENANT"][0] == "acme"`, true, ""},
		"a header's later value":                     {`"2" in request.headers["x-multi"]`, true, ""},
		"a header that is absent, tested with in":    {`"x-other" in request.headers`, false, ""},
		"a header that is absent, read":              {`request.headers["X-Other"][0] == "a"`, false, "no such key"},
		"a header longer than conditions read":       {`request.headers["X-Long"][0].startsWith("a")`, false, "no such key"},
		"a header longer than conditions read, in":   {`"x-long" in request.headers`, false, ""},
		"a query value longer than conditions read":  {`request.query["long"][0] != ""`, false, "no such key"},
		"a claim that is absent, tested with has":    {`has(claims.region) && claims.region == "eu"`, false, ""},
		"a claim that is absent, read":               {`claims.region == "eu"`, false, "no such key"},
		"a number claim against an int":              {`claims.level >= 3`, true, ""},
		"a role":                                     {`"A" in roles && !("B" in roles)`, true, ""},
		"the caller as the backend is told":          {`client_id == "https://idp#sender" && subject == "https://idp#s"`, true, ""},
		"a scope":                                    {`"B" in claims.scope`, true, ""},
		"the method":                                 {`request.method == "POST"`, true, ""},
		"the host without port, in lower case":       {`request.host == "api.example.com"`, true, ""},
		"the path":                                   {`request.path.startsWith("/a/")`, true, ""},
		"a query parameter":                          {`request.query["page"][0] == "2"`, true, ""},
		"the remote address":                         {`request.remote_addr.startsWith("10.")`, true, ""},
		"the time":                                   {`request.time < timestamp("2026-06-01T00:00:00Z")`, true, ""},
		"the hour of the time":                       {`request.time.getHours() == 3`, true, ""},
		"the hour of the time in a time zone":        {`request.time.getHours("Europe/Berlin") == 4`, true, ""},
		"every header, iterated":                     {`request.headers.exists(h, h == "X-Tenant")`, true, ""},
		"the number of claims":                       {`size(claims) == 4`, true, ""},
		"a header value of the wrong type for a int": {`request.headers["X-Tenant"][0] > 1`, false, "no such overload"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := compileCondition(tc.expr, 1)
			if err != nil {
				t.Fatal(err)
			}
			in := base
			got, err := c.Eval(&in)
			if got != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Eval(%s) = %v, %v; want %v, %q", tc.expr, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestCondition_NoTokenMeansNoClaims(t *testing.T) {
	c, err := compileCondition(`claims.client_id == "sender"`, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Eval(&Input{}); ok || err == nil {
		t.Errorf("Eval without claims = %v, %v; want false and an error", ok, err)
	}
}

func TestCondition_ErrorsNeverQuoteValues(t *testing.T) {
	c, err := compileCondition(`claims[request.headers["X-Key"][0]] == "x"`, 1)
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Claims: MapClaims{}, Request: Request{Header: map[string][]string{"X-Key": {"secret-value-123"}}}}
	if _, err := c.Eval(&in); err == nil || strings.Contains(err.Error(), "secret-value-123") {
		t.Errorf("error = %v; want one that does not quote the header", err)
	}
}

func TestCondition_RegularExpressionsOverRequestValuesAreCountedByWhatTheyScan(t *testing.T) {
	re := func(n int) string {
		var parts []string
		for i := range n {
			parts = append(parts, fmt.Sprintf(`request.headers["X-%d"][0].matches("(a|b)*c")`, i))
		}
		return strings.Join(parts, " || ")
	}
	if _, err := compileCondition(re(2), 1); err != nil {
		t.Errorf("two regular expressions over headers: %v", err)
	}
	if _, err := compileCondition(re(3), 1); err == nil || !strings.Contains(err.Error(), "could cost up to") {
		t.Errorf("three regular expressions over headers: %v, want refused for their cost", err)
	}
}

func TestCondition_RuntimeCostIsLimited(t *testing.T) {
	// Estimated with 100 roles, this passes; a token with 5,000 roles
	// meets the runtime limit instead of taking its time.
	c, err := compileCondition(`roles.exists(r, r.startsWith("zzz") && r.endsWith("zzz"))`, 1)
	if err != nil {
		t.Fatal(err)
	}
	many := make([]string, 5000)
	for i := range many {
		many[i] = "role"
	}
	ok, err := c.Eval(&Input{Roles: many})
	if ok || err == nil || !strings.Contains(err.Error(), "cost") {
		t.Errorf("Eval over 5000 roles = %v, %v; want false and a cost limit error", ok, err)
	}
}

func TestCondition_NamesTheClaimsItReads(t *testing.T) {
	p := mustParse(t, conditionPolicy(`'claims.tenant == request.headers["X-Tenant"][0] && claims["client_id"] != "" && has(claims.zone)'`))
	r := p.Match("GET", "", "/a")
	if r == nil || r.When == nil {
		t.Fatal("the rule lost its condition")
	}
	if want := []string{"client_id", "tenant", "zone"}; !slices.Equal(r.When.Claims, want) || r.When.Line != 5 {
		t.Errorf("Claims, Line = %q, %d; want %q, 5", r.When.Claims, r.When.Line, want)
	}
}

func TestExplain_EvaluatesTheCondition(t *testing.T) {
	p := mustParse(t, `subjects:
  sender: [A]
rules:
  - path: /t/*
    roles: [A]
    when: claims.tenant == request.headers["X-Tenant"][0]
  - path: /shadow/*
    roles: [A]
    when: 'claims.sub == "other"'
    report_only: true
  - path: /own/*
    roles: [A]
    when: 'claims.sub == "sender"'
`)
	acme := &Input{
		Claims:  MapClaims{"sub": "sender", "tenant": "acme"},
		Request: Request{Header: map[string][]string{"X-Tenant": {"acme"}}},
	}
	other := &Input{
		Claims:  MapClaims{"sub": "sender", "tenant": "acme"},
		Request: Request{Header: map[string][]string{"X-Tenant": {"globex"}}},
	}
	tests := map[string]struct {
		path                        string
		in                          *Input
		decision, condition, reason string
	}{
		"a condition that holds":               {"/t/1", acme, "allow", "true", "and the condition holds"},
		"a condition that is false":            {"/t/1", other, "deny", "false", "but the condition is false"},
		"a claim not given":                    {"/t/1", nil, "deny", "error: no such key", "cannot be evaluated"},
		"a false condition of a report_only":   {"/shadow/1", nil, "report-only", "false", "lets the request through"},
		"the subject is a claim without flags": {"/own/1", nil, "allow", "true", "holds"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			x := ExplainInput(p, "GET", "", tc.path, "sender", nil, tc.in)
			if x.Decision != tc.decision || !strings.HasPrefix(x.Condition, tc.condition) || !strings.Contains(x.Reason, tc.reason) {
				t.Errorf("ExplainInput = %s (condition %s): %s; want %s (%s): ...%s...", x.Decision, x.Condition, x.Reason, tc.decision, tc.condition, tc.reason)
			}
			if s := x.String(); !strings.Contains(s, "when:     line ") || !strings.Contains(s, ": "+x.Condition+"\n") {
				t.Errorf("String lacks the condition's line and outcome:\n%s", s)
			}
		})
	}
}

func TestCheck_ConditionReadingAClaimOurTokensLack(t *testing.T) {
	p := mustParse(t, `subjects:
  sender: [A]
rules:
  - path: /a
    roles: [A]
    when: claims.tenant == "acme" && claims.client_id == "sender" && "A" in claims.scope
`)
	f := Check(p)
	if len(f) != 1 || f[0].Line != 6 || !strings.Contains(f[0].Message, "reads claim tenant, which tokens of this gateway never carry (fine if an external issuer's tokens do)") {
		t.Errorf("Check = %+v; want one finding at line 6 about tenant", f)
	}
}

func TestCheck_PrefixWhoseBarePathEscapesItsCondition(t *testing.T) {
	p := mustParse(t, `subjects:
  sender: [A]
rules:
  - path: /http/orders/*
    roles: [A]
    when: claims.client_id == "sender"
  - path: /http/*
    roles: [A]
`)
	f := Check(p)
	if len(f) != 1 || f[0].Line != 4 || !strings.Contains(f[0].Message,
		"/http/orders/* does not cover /http/orders itself: /http/orders falls to the rule at line 7 (/http/*), which needs any of A instead of any of A and its condition (line 6)") {
		t.Errorf("Check = %+v; want the bare path that escapes the condition", f)
	}
}
