package policy

import (
	"strings"
	"testing"
)

// BenchmarkConditionEval is one condition evaluated, without the guard
// around it (see guard's BenchmarkCondition for the difference a
// condition makes to a request).
func BenchmarkConditionEval(b *testing.B) {
	in := Input{
		Claims: MapClaims{"client_id": "sender"},
		Roles:  []string{"Orders.send"},
		Request: Request{Method: "POST", Path: "/http/orders/1",
			Header: map[string][]string{"X-Tenant": {"sender"}, "Accept": {"x"}, "User-Agent": {"x"}}},
	}
	for _, tc := range []struct{ name, expr string }{
		{"ClaimEquals", `claims.client_id == "sender"`},
		{"HeaderEqualsClaim", `request.headers["x-tenant"][0] == claims.client_id`},
		{"RoleIn", `"Orders.send" in roles`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := compileCondition(tc.expr, 1)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := c.Eval(&in); !ok {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConditionWorstCase is the slowest condition a policy can
// have that we know of: the two regular expressions the cost limit
// allows over request values, each scanning a header as long as a
// condition reads (conditionSizeBound) and failing at its end.
func BenchmarkConditionWorstCase(b *testing.B) {
	long := strings.Repeat("ab", conditionSizeBound/2)
	in := Input{Request: Request{Header: map[string][]string{"X-0": {long}, "X-1": {long}}}}
	c, err := compileCondition(`request.headers["X-0"][0].matches("(a|b)*c") || request.headers["X-1"][0].matches("(a|b)*c")`, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := c.Eval(&in); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
