package policy

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// largePolicy has 10,000 rules (6,000 exact paths, 3,000 prefixes, 900
// host-specific, 100 suffixes) and 100,000 subjects with two roles each.
var largePolicy = sync.OnceValues(func() (*Policy, error) {
	var b strings.Builder
	b.WriteString("subjects:\n")
	for i := range 100_000 {
		fmt.Fprintf(&b, "  oauth_client_%06d: [R%04d, R%04d]\n", i, i%6000, (i+1)%6000)
	}
	b.WriteString("rules:\n")
	for i := range 6000 {
		fmt.Fprintf(&b, "  - {path: /http/svc%04d/op, methods: [POST], roles: [R%04d]}\n", i, i)
	}
	for i := range 3000 {
		fmt.Fprintf(&b, "  - {path: /http/svc%04d/*, roles: [R%04d]}\n", i, i)
	}
	for i := range 900 {
		fmt.Fprintf(&b, "  - {host: h%03d.example.com, path: /http/*, roles: [R%04d]}\n", i, i)
	}
	for i := range 100 {
		fmt.Fprintf(&b, "  - {path: \"*.x%03d\", roles: [R%04d]}\n", i, i)
	}
	return Parse([]byte(b.String()), "large.yaml")
})

func benchmarkDecision(b *testing.B, p *Policy, method, host, path, subject string, scope []string) {
	b.Helper()
	if r := p.Match(method, host, path); r == nil || !r.Allows(p.RolesInScope(subject, scope)) {
		b.Fatalf("%s %s%s is not allowed for %s", method, host, path, subject)
	}
	b.ReportAllocs()
	for b.Loop() {
		r := p.Match(method, host, path)
		if r == nil || !r.Allows(p.RolesInScope(subject, scope)) {
			b.Fatal("denied")
		}
	}
}

func BenchmarkMatch_10Rules(b *testing.B) {
	p, err := Parse([]byte(`
subjects:
  oauth_client_a: [Orders.send, ESBMessaging.send]
rules:
  - {path: /http/orders/*, methods: [POST], roles: [Orders.send]}
  - {path: /http/invoices/*, roles: [Invoices.send]}
  - {path: /http/reports, methods: [GET], roles: [Reports.read]}
  - {path: /http/admin/*, roles: [Admin]}
  - {path: /http/ping, public: true}
  - {path: /http/*, roles: [ESBMessaging.send]}
  - {path: "*.json", roles: [Json]}
  - {host: api.example.com, path: /http/*, roles: [Api]}
  - {path: /health, public: true}
  - {path: "*", roles: [Admin]}
`), "small.yaml")
	if err != nil {
		b.Fatal(err)
	}
	benchmarkDecision(b, p, "POST", "gw.example.com", "/http/orders/42", "oauth_client_a", []string{"Orders.send", "ESBMessaging.send"})
}

func BenchmarkMatch_10000Rules100000Subjects(b *testing.B) {
	p, err := largePolicy()
	if err != nil {
		b.Fatal(err)
	}
	scope := []string{"R4321", "R4322"}
	b.Run("exact", func(b *testing.B) {
		benchmarkDecision(b, p, "POST", "gw.example.com", "/http/svc4321/op", "oauth_client_004321", scope)
	})
	b.Run("prefix", func(b *testing.B) {
		benchmarkDecision(b, p, "GET", "gw.example.com", "/http/svc2321/orders/42", "oauth_client_032321", []string{"R2321"})
	})
	b.Run("host", func(b *testing.B) {
		benchmarkDecision(b, p, "GET", "h321.example.com:443", "/http/anything", "oauth_client_000321", []string{"R0321"})
	})
	b.Run("suffix", func(b *testing.B) {
		benchmarkDecision(b, p, "GET", "gw.example.com", "/files/report.x042", "oauth_client_000042", []string{"R0042"})
	})
}
