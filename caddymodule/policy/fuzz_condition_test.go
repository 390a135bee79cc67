package policy

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzPolicyConditions: a policy with a random "when", written inline or
// as a block, never makes Parse panic; an error names the file and a line
// of it; a condition that compiles evaluates over random claims and
// headers without panicking, explains and checks.
func FuzzPolicyConditions(f *testing.F) {
	for _, when := range []string{
		`claims.client_id == "sender"`,
		`claims.tenant == request.headers["X-Tenant"][0]`,
		`"Orders.send" in roles && request.method in ["POST", "PUT"]`,
		`has(claims.zone) && claims.zone.id == 7`,
		`request.headers.exists(h, h.startsWith("X-"))`,
		`roles.all(r, roles.all(s, r == s))`,
		`request.path.matches("^/a/[0-9]+$")`,
		`request.time < timestamp("2030-01-01T00:00:00Z")`,
		`request.query["v"][0] == "2" || request.remote_addr == "10.0.0.1"`,
		`size(claims) > 2 && claims.exists(k, k == "sub")`,
		`claims.level >= 2.5 && int(claims.level) < 10`,
		`request.methd == "GET"`,
		`claims.x +`,
		`1 / 0 == 1`,
		`"a".repeat(100)`,
		`[1, 2, 3].map(x, x * x).size() == 3`,
		"claims.a == \"b\" &&\n  claims.c == \"d\"",
		`((((((((((true))))))))))`,
		`dyn(claims)["sub"] == 'x'`,
		"'\x00' == request.path",
	} {
		f.Add(when, false, "acme", "X-Tenant")
		f.Add(when, true, "", "x-tenant")
	}
	f.Fuzz(func(t *testing.T, when string, block bool, value, header string) {
		src := "subjects:\n  s: [A]\nrules:\n  - path: /a\n    roles: [A]\n    when: "
		if block {
			src += "|\n      " + strings.ReplaceAll(when, "\n", "\n      ") + "\n"
		} else {
			src += when + "\n"
		}
		src += "  - path: /b\n    public: true\n"
		p, err := Parse([]byte(src), "fuzz.yaml")
		if err != nil {
			rest, ok := strings.CutPrefix(err.Error(), "fuzz.yaml:")
			if !ok {
				t.Fatalf("error %q does not name the file", err)
			}
			if num, _, ok := strings.Cut(rest, ":"); ok {
				if n, err := strconv.Atoi(num); err == nil && (n < 1 || n > strings.Count(src, "\n")+1) {
					t.Fatalf("error %q names line %d of a file of %d lines", rest, n, strings.Count(src, "\n"))
				}
			}
			return
		}
		r := p.Match("GET", "", "/a")
		if r == nil || r.When == nil {
			return // the YAML read "when" as something else, e.g. a comment
		}
		in := Input{
			Claims: MapClaims{"sub": "s", "tenant": value, "level": float64(len(value)), "zone": map[string]any{"id": float64(7)}},
			Roles:  []string{"A", value},
			Request: Request{Method: "GET", Host: value, Path: "/a",
				Header:   map[string][]string{header: {value}, "X-Other": {value, value}},
				RawQuery: value, RemoteAddr: value},
		}
		_, _ = r.When.Eval(&in)
		Check(p)
		_ = ExplainInput(p, "GET", "", "/a", "s", nil, &in).String()
	})
}
