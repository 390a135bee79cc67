package policy

import (
	"slices"
	"strings"
	"testing"
)

// Each rule's only role names it, so a test can say which rule decided.
const hostPolicy = `
rules:
  - {path: "*", roles: [any-host-star]}
  - {path: /http/*, roles: [any-host-http]}
  - {host: "*.example.com", path: /http/*, roles: [wild-http]}
  - {host: "*.example.com", path: "*", roles: [wild-star]}
  - {host: api.example.com, path: "*", roles: [api-star]}
  - {hosts: [admin.example.com, "[::1]"], paths: [/http/admin, /http/admin/*], roles: [admin]}
`

func decidedBy(t *testing.T, p *Policy, method, host, path string) string {
	t.Helper()
	r := p.Match(method, host, path)
	if r == nil {
		return "<none>"
	}
	return strings.Join(append(slices.Clone(r.Roles), r.AllRoles...), "+")
}

func TestMatch_HostsRankBeforePaths(t *testing.T) {
	p := mustParse(t, hostPolicy)
	tests := map[string]struct{ host, path, want string }{
		"exact host beats wildcard host, even with a shorter path": {"api.example.com", "/http/x", "api-star"},
		"wildcard host beats any host, even with a shorter path":   {"www.example.com", "/other", "wild-star"},
		"wildcard host with a longer path":                         {"www.example.com", "/http/x", "wild-http"},
		"port is ignored":                                          {"api.example.com:8443", "/x", "api-star"},
		"host case is ignored":                                     {"API.Example.COM", "/x", "api-star"},
		"a trailing dot is the same host":                          {"api.example.com.", "/x", "api-star"},
		"wildcard covers exactly one label, not two":               {"a.b.example.com", "/http/x", "any-host-http"},
		"wildcard does not cover the bare domain":                  {"example.com", "/http/x", "any-host-http"},
		"another host falls to the any-host rules":                 {"other.org", "/http/x", "any-host-http"},
		"no Host header uses the any-host rules":                   {"", "/x", "any-host-star"},
		"a rule's second host":                                     {"[::1]:8080", "/http/admin", "admin"},
		"a rule's second path":                                     {"admin.example.com", "/http/admin/users", "admin"},
		"an exact-host rule that does not match falls to wildcard": {"admin.example.com", "/http/x", "wild-http"},
		"an IPv6 host written another way is the same host":        {"[0:0::1]", "/http/admin", "admin"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := decidedBy(t, p, "GET", tc.host, tc.path); got != tc.want {
				t.Errorf("Match(GET %s %s) decided by %s, want %s", tc.host, tc.path, got, tc.want)
			}
		})
	}
}

const patternPolicy = `
rules:
  - {path: "*", roles: [star]}
  - {path: /api/*, roles: [api-prefix]}
  - {path: /api/v1/users, roles: [exact]}
  - {path: "*.json", roles: [json-suffix]}
  - {path: "*admins*", roles: [admin-substring]}
  - {path: /api/*/reports, roles: [reports-glob]}
  - {path: /files/*/*.pdf, roles: [pdf-glob]}
`

func TestMatch_CaddyPathSyntax(t *testing.T) {
	p := mustParse(t, patternPolicy)
	tests := map[string]struct{ path, want string }{
		"exact beats prefix":     {"/api/v1/users", "exact"},
		"prefix beats suffix":    {"/api/x.json", "api-prefix"},
		"prefix beats glob":      {"/api/v1/reports", "api-prefix"},
		"suffix":                 {"/data/x.json", "json-suffix"},
		"suffix in another case": {"/data/X.JSON", "json-suffix"},
		"substring":              {"/the-admins-page", "admin-substring"},
		"more literal characters win among patterns":   {"/files/a/admins.pdf", "pdf-glob"},
		"a glob's * does not match across a slash":     {"/files/a/b/x.pdf", "star"},
		"star catches the rest":                        {"/elsewhere", "star"},
		"longer literal pattern beats shorter pattern": {"/admins.json", "admin-substring"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := decidedBy(t, p, "GET", "", tc.path); got != tc.want {
				t.Errorf("Match(GET %s) decided by %s, want %s", tc.path, got, tc.want)
			}
		})
	}
}

// The prefix index must find the longest matching prefix among many, and
// fall back to shorter ones when the method does not fit, however the
// prefixes sort.
func TestMatch_PrefixesLongestFirstWithMethodFallback(t *testing.T) {
	p := mustParse(t, `
rules:
  - {path: /a*, roles: [a]}
  - {path: /a/b*, roles: [ab]}
  - {path: /a/b/c/*, methods: [POST], roles: [abc-post]}
  - {path: /a/bz*, roles: [abz]}
  - {path: /a/b/d*, roles: [abd]}
  - {path: /b*, roles: [b]}
`)
	tests := map[string]struct{ method, path, want string }{
		"longest prefix":                               {"POST", "/a/b/c/1", "abc-post"},
		"method does not fit: next longest":            {"GET", "/a/b/c/1", "ab"},
		"a sibling that sorts between is skipped":      {"GET", "/a/b/e", "ab"},
		"a prefix sorting after the path is not taken": {"GET", "/a/b", "ab"},
		"shortest":                 {"GET", "/a", "a"},
		"sibling prefix":           {"GET", "/a/bzz", "abz"},
		"unrelated path":           {"GET", "/c", "<none>"},
		"path before every prefix": {"GET", "/", "<none>"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := decidedBy(t, p, tc.method, "", tc.path); got != tc.want {
				t.Errorf("Match(%s %s) decided by %s, want %s", tc.method, tc.path, got, tc.want)
			}
		})
	}
}

func TestAllows_AllRoles(t *testing.T) {
	r := Rule{AllRoles: []string{"Ledger.write", "Ledger.audited"}}
	tests := map[string]struct {
		roles []string
		want  bool
	}{
		"holds both":     {[]string{"Ledger.audited", "X", "Ledger.write"}, true},
		"holds only one": {[]string{"Ledger.write"}, false},
		"holds none":     {nil, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := r.Allows(tc.roles); got != tc.want {
				t.Errorf("Allows(%q) = %v, want %v", tc.roles, got, tc.want)
			}
		})
	}
	if got := r.RequiredRoles(); !slices.Equal(got, r.AllRoles) {
		t.Errorf("RequiredRoles = %q, want the all_roles %q", got, r.AllRoles)
	}
	if got := (&Rule{Roles: []string{"A"}}).RequiredRoles(); !slices.Equal(got, []string{"A"}) {
		t.Errorf("RequiredRoles = %q, want [A]", got)
	}
}

func TestParse_RuleKeys(t *testing.T) {
	p := mustParse(t, `
rules:
  - hosts: [API.Example.com., "*.Example.com"]
    paths: [/a, /b/*]
    methods: [get]
    all_roles: [A, B]
    report_only: true
`)
	r := p.Match("GET", "api.example.com", "/b/1")
	if r == nil {
		t.Fatal("Match = nil, want the rule")
	}
	want := Rule{Hosts: []string{"api.example.com", "*.example.com"}, Paths: []string{"/a", "/b/*"},
		Methods: []string{"GET"}, AllRoles: []string{"A", "B"}, ReportOnly: true, Line: 3}
	if !slices.Equal(r.Hosts, want.Hosts) || !slices.Equal(r.Paths, want.Paths) || !slices.Equal(r.Methods, want.Methods) ||
		!slices.Equal(r.AllRoles, want.AllRoles) || r.ReportOnly != want.ReportOnly || r.Line != want.Line || r.Public || r.Roles != nil {
		t.Errorf("rule = %+v, want %+v", *r, want)
	}
}

func TestParse_CSRFRule(t *testing.T) {
	p := mustParse(t, "rules:\n  - {path: /http/events*, roles: [A], csrf: true}\n  - {path: /http/*, roles: [A]}\n")
	tests := []struct {
		name, method, path string
		want               bool
	}{
		{"a POST on a csrf rule needs a token", "POST", "/http/events", true},
		{"PUT, PATCH and DELETE need one", "PATCH", "/http/events/1", true},
		{"a method named in lower case needs one", "delete", "/http/events/1", true},
		{"an unusual method like OData's MERGE needs one", "MERGE", "/http/events/1", true},
		{"GET needs none: it is how a token is fetched", "GET", "/http/events", false},
		{"HEAD, OPTIONS and TRACE need none", "OPTIONS", "/http/events", false},
		{"a POST on a rule without csrf needs none", "POST", "/http/other", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Match(tt.method, "", tt.path).NeedsCSRFToken(tt.method); got != tt.want {
				t.Errorf("NeedsCSRFToken(%s %s) = %v, want %v", tt.method, tt.path, got, tt.want)
			}
		})
	}
}

func TestParse_AcceptsPatternsThatCannotMeet(t *testing.T) {
	tests := map[string]string{
		"suffixes of equal length":             "rules:\n  - {path: \"*.json\", roles: [A]}\n  - {path: \"*.yaml\", roles: [B]}\n",
		"globs with different fixed starts":    "rules:\n  - {path: /a/*/x, roles: [A]}\n  - {path: /b/*/x, roles: [B]}\n",
		"globs with different fixed ends":      "rules:\n  - {path: /a/*/x, roles: [A]}\n  - {path: /a/*/y, roles: [B]}\n",
		"same path on different hosts":         "rules:\n  - {host: a.example, path: /a, roles: [A]}\n  - {host: b.example, path: /a, roles: [B]}\n",
		"same path on exact and wildcard host": "rules:\n  - {host: a.example, path: /a, roles: [A]}\n  - {host: \"*.example\", path: /a, roles: [B]}\n",
		"one rule listing a path twice":        "rules:\n  - {paths: [/a, /A/], roles: [A]}\n",
	}
	for name, src := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(src), "p.yaml"); err != nil {
				t.Errorf("Parse: %v", err)
			}
		})
	}
}

func TestSubjects_DisabledHoldsNothing(t *testing.T) {
	p := mustParse(t, `
subjects:
  on: [A]
  long: {roles: [A, B]}
  off: {roles: [A], disabled: true}
  bare: {disabled: false}
`)
	tests := map[string]struct {
		subject  string
		roles    []string
		disabled bool
	}{
		"short form":                      {"on", []string{"A"}, false},
		"long form":                       {"long", []string{"A", "B"}, false},
		"disabled":                        {"off", nil, true},
		"long form without roles":         {"bare", nil, false},
		"unknown subject is not disabled": {"nobody", nil, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := p.Roles(tc.subject); !slices.Equal(got, tc.roles) {
				t.Errorf("Roles = %q, want %q", got, tc.roles)
			}
			if got := p.RolesInScope(tc.subject, []string{"A", "B"}); !slices.Equal(got, tc.roles) {
				t.Errorf("RolesInScope = %q, want %q", got, tc.roles)
			}
			if got := p.Disabled(tc.subject); got != tc.disabled {
				t.Errorf("Disabled = %v, want %v", got, tc.disabled)
			}
		})
	}
}

func TestRolesFromClaim(t *testing.T) {
	p := mustParse(t, `
subjects:
  s: [ESBMessaging.send]
rules:
  - {path: /a, roles: [send]}
  - {path: /b, all_roles: [Orders.read]}
`)
	tests := map[string]struct {
		values []string
		prefix string
		want   []string
	}{
		"equal values": {[]string{"ESBMessaging.send", "Orders.read", "unknown"}, "", []string{"ESBMessaging.send", "Orders.read"}},
		"without a prefix a prefixed value is no use": {[]string{"app!t1.ESBMessaging.send"}, "", nil},
		"XSUAA scope of our app":                      {[]string{"app!t1.Orders.read"}, "app!t1", []string{"Orders.read"}},
		"only our app's prefix is cut, once":          {[]string{"app!t1.ESBMessaging.send"}, "app!t1", []string{"ESBMessaging.send"}},
		"another app's scope grants nothing":          {[]string{"other!t5.Orders.read", "app!t1x.Orders.read"}, "app!t1", nil},
		"an equal value also counts":                  {[]string{"send"}, "app", []string{"send"}},
		"no dot before the role":                      {[]string{"appsend"}, "app", nil},
		"a role is returned once":                     {[]string{"app.send", "app.send", "send"}, "app", []string{"send"}},
		"unknown roles are never returned":            {[]string{"app.Admin", "Admin"}, "app", nil},
		"a trailing dot names nothing":                {[]string{"app."}, "app", nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := p.RolesFromClaim(tc.values, tc.prefix); !slices.Equal(got, tc.want) {
				t.Errorf("RolesFromClaim(%q, %q) = %q, want %q", tc.values, tc.prefix, got, tc.want)
			}
		})
	}
}

func TestMatch_DoesNotAllocate(t *testing.T) {
	p := mustParse(t, patternPolicy+`
  - {host: api.example.com, path: "*", roles: [api-star]}
  - {host: "*.example.com", path: /http/*, roles: [wild-http]}
`)
	for _, req := range [][3]string{
		{"GET", "api.example.com:443", "/http/x"},
		{"POST", "www.example.com", "/api/v1/users/"},
		{"get", "", "/files/a/x.pdf"},
	} {
		if n := testing.AllocsPerRun(100, func() { p.Match(req[0], req[1], req[2]) }); n != 0 {
			t.Errorf("Match(%q) allocates %v times, want 0", req, n)
		}
	}
}
