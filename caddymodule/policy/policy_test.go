package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// examplePolicy is the policy of the README.
const examplePolicy = `subjects:
  oauth_client_3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6: [ESBMessaging.send]
rules:
  - path: /http/orders*    # /http/orders itself too, unlike /http/orders/*
    methods: [POST]
    roles: [Orders.send]
  - path: /http/*
    roles: [ESBMessaging.send]
  - path: /http/ping
    public: true
`

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src), "p.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestParse_ExamplePolicy(t *testing.T) {
	p := mustParse(t, examplePolicy)

	if p.RuleCount() != 3 || p.SubjectCount() != 1 {
		t.Errorf("RuleCount, SubjectCount = %d, %d; want 3, 1", p.RuleCount(), p.SubjectCount())
	}
	const subject = "oauth_client_3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6"
	roles := p.Roles(subject)
	if want := []string{"ESBMessaging.send"}; !slices.Equal(roles, want) {
		t.Errorf("Roles(%s) = %q, want %q", subject, roles, want)
	}

	orders := Rule{Paths: []string{"/http/orders*"}, Methods: []string{"POST"}, Roles: []string{"Orders.send"}, Line: 4}
	http := Rule{Paths: []string{"/http/*"}, Roles: []string{"ESBMessaging.send"}, Line: 7}
	ping := Rule{Paths: []string{"/http/ping"}, Public: true, Line: 9}
	tests := map[string]struct {
		method, path string
		want         *Rule
		allowed      bool // for the example subject
	}{
		"public ping":                     {"GET", "/http/ping", &ping, true},
		"orders need Orders.send":         {"POST", "/http/orders/1", &orders, false},
		"so does the orders path itself":  {"POST", "/http/orders", &orders, false},
		"reading orders falls to /http/*": {"GET", "/http/orders/1", &http, true},
		"other flow":                      {"POST", "/http/flow", &http, true},
		"outside every rule":              {"GET", "/admin", nil, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := p.Match(tc.method, "", tc.path)
			if tc.want == nil {
				if got != nil {
					t.Fatalf("Match(%s %s) = rule at line %d, want nil", tc.method, tc.path, got.Line)
				}
				return
			}
			if got == nil {
				t.Fatalf("Match(%s %s) = nil, want rule at line %d", tc.method, tc.path, tc.want.Line)
			}
			if !slices.Equal(got.Paths, tc.want.Paths) || got.Public != tc.want.Public || got.Line != tc.want.Line ||
				!slices.Equal(got.Methods, tc.want.Methods) || !slices.Equal(got.Roles, tc.want.Roles) {
				t.Errorf("Match(%s %s) = %+v, want %+v", tc.method, tc.path, *got, *tc.want)
			}
			if a := got.Allows(roles); a != tc.allowed {
				t.Errorf("Allows(%q) = %v, want %v", roles, a, tc.allowed)
			}
		})
	}
}

// The rules are listed least specific first, so that file order cannot
// explain which rule wins. Each rule's only role names it.
const precedencePolicy = `
rules:
  - {path: "*", roles: [any]}
  - {path: "/a/*", roles: [a-wild]}
  - {path: "/a/b/*", roles: [ab-wild]}
  - {path: "/a/b/c", roles: [abc-any]}
  - {path: "/a/b/c", methods: [POST], roles: [abc-post]}
  - {path: "/x*", roles: [x-wild]}
  - {path: "/x", roles: [x-exact]}
  - {path: "/put-only", methods: [PUT], roles: [put-only]}
  - {path: "/http/*", roles: [http]}
  - {path: "/http/orders/*", roles: [orders]}
  - {path: "/Mixed/Case", roles: [mixed]}
  - {path: "/lower", methods: [delete], roles: [lower-delete]}
`

func TestMatch_MostSpecificRuleWins(t *testing.T) {
	p := mustParse(t, precedencePolicy)
	tests := map[string]struct {
		method, path, want string
	}{
		"exact path beats wildcard":                         {"GET", "/x", "x-exact"},
		"wildcard matches beyond the exact path":            {"GET", "/xy", "x-wild"},
		"longer prefix beats shorter":                       {"GET", "/a/b/z", "ab-wild"},
		"shorter prefix matches outside the longer one":     {"GET", "/a/z", "a-wild"},
		"method-specific beats any-method at equal path":    {"POST", "/a/b/c", "abc-post"},
		"other method falls through to any-method rule":     {"GET", "/a/b/c", "abc-any"},
		"other method falls through to less specific path":  {"GET", "/put-only", "any"},
		"listed method matches":                             {"PUT", "/put-only", "put-only"},
		"star matches everything":                           {"DELETE", "/somewhere/else", "any"},
		"star matches the root":                             {"GET", "/", "any"},
		"uppercase path cannot escape the stricter rule":    {"GET", "/HTTP/Orders/1", "orders"},
		"mixed-case rule matches a lower-case request path": {"GET", "/mixed/case", "mixed"},
		"methods written in lower case match":               {"DELETE", "/lower", "lower-delete"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := p.Match(tc.method, "", tc.path)
			if r == nil {
				t.Fatalf("Match(%s %s) = nil, want rule %s", tc.method, tc.path, tc.want)
			}
			if r.Roles[0] != tc.want {
				t.Errorf("Match(%s %s) = rule %s (line %d), want rule %s", tc.method, tc.path, r.Roles[0], r.Line, tc.want)
			}
		})
	}
}

func TestMatch_NoMatchingRuleIsNil(t *testing.T) {
	p := mustParse(t, `
rules:
  - {path: /a, roles: [A]}
  - {path: /b/*, methods: [GET], roles: [B]}
`)
	tests := map[string]struct{ method, path string }{
		"other path":                          {"GET", "/c"},
		"exact rule does not match a subpath": {"GET", "/a/x"},
		"wildcard needs its full prefix":      {"GET", "/b"},
		"method outside the only rule's list": {"POST", "/b/x"},
		"root":                                {"GET", "/"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if r := p.Match(tc.method, "", tc.path); r != nil {
				t.Errorf("Match(%s %s) = rule at line %d, want nil", tc.method, tc.path, r.Line)
			}
		})
	}
}

func TestAllows_AnyOneRoleOrPublic(t *testing.T) {
	tests := map[string]struct {
		rule  Rule
		roles []string
		want  bool
	}{
		"holds the first role":          {Rule{Roles: []string{"A", "B"}}, []string{"A"}, true},
		"holds the second role":         {Rule{Roles: []string{"A", "B"}}, []string{"X", "B"}, true},
		"holds none of the roles":       {Rule{Roles: []string{"A", "B"}}, []string{"C"}, false},
		"holds no roles at all":         {Rule{Roles: []string{"A"}}, nil, false},
		"public rule needs no roles":    {Rule{Public: true}, nil, true},
		"rule with no roles denies":     {Rule{}, []string{"A"}, false},
		"role names are case-sensitive": {Rule{Roles: []string{"Admin"}}, []string{"admin"}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.rule.Allows(tc.roles); got != tc.want {
				t.Errorf("Allows(%q) = %v, want %v", tc.roles, got, tc.want)
			}
		})
	}
}

func TestRolesInScope_ScopeOnlyNarrows(t *testing.T) {
	p := mustParse(t, "subjects:\n  s: [A, B, C]\n")
	tests := map[string]struct {
		subject string
		scope   []string
		want    []string
	}{
		"no scope grants nothing":                    {"s", nil, nil},
		"scope narrows":                              {"s", []string{"C", "A"}, []string{"A", "C"}},
		"scope cannot add a role the policy lacks":   {"s", []string{"B", "Admin"}, []string{"B"}},
		"empty scope grants nothing":                 {"s", []string{}, nil},
		"unknown subject has no roles":               {"nobody", nil, nil},
		"unknown subject gains nothing from a scope": {"nobody", []string{"A"}, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// slices.Equal treats nil and empty alike, as a caller should.
			if got := p.RolesInScope(tc.subject, tc.scope); !slices.Equal(got, tc.want) {
				t.Errorf("RolesInScope(%q, %q) = %q, want %q", tc.subject, tc.scope, got, tc.want)
			}
		})
	}
}

func TestParse_ErrorsNameFileAndLine(t *testing.T) {
	tests := map[string]struct {
		src      string
		wantLine string // "p.yaml:N: "
		wantMsg  string
	}{
		"unknown top-level key": {
			"subjects: {}\nrole: []\n",
			"p.yaml:2: ", `unknown key "role"`},
		"unknown rule key": {
			"rules:\n  - path: /a\n    role: [A]\n",
			"p.yaml:3: ", `unknown rule key "role"`},
		"rule without path": {
			"rules:\n  - path: /a\n    roles: [A]\n  - roles: [A]\n",
			"p.yaml:4: ", "rule has no path"},
		"path not starting with /": {
			"rules:\n  - path: a/b\n    roles: [A]\n",
			"p.yaml:2: ", "must start with /"},
		"public with roles": {
			"rules:\n  - path: /a\n    public: true\n    roles: [A]\n",
			"p.yaml:2: ", "rule has public and roles; choose one"},
		"rule with neither roles nor public": {
			"rules:\n  - path: /a\n    public: false\n",
			"p.yaml:2: ", "needs roles, all_roles, or public: true"},
		"bad method": {
			"rules:\n  - path: /a\n    methods: [GET, \"PO ST\"]\n    roles: [A]\n",
			"p.yaml:3: ", `"PO ST" is not an HTTP method`},
		"public as a string": {
			"rules:\n  - path: /a\n    public: \"yes\"\n",
			"p.yaml:3: ", "public: want true or false"},
		"subject's roles not a list": {
			"subjects:\n  a: [R]\n  b: R\n",
			"p.yaml:3: ", "roles of b: want a list"},
		"YAML syntax error": {
			"subjects:\n  a: [R]\nrules:\n  - path: /a: b\n",
			"p.yaml:4: ", "mapping values are not allowed"},
		"duplicate subject": {
			"subjects:\n  a: [R]\n  a: [Admin]\n",
			"p.yaml:3: ", `duplicate key "a"`},
		"duplicate rule key": {
			"rules:\n  - path: /public\n    path: /admin\n    public: true\n",
			"p.yaml:3: ", `duplicate key "path"`},
		"duplicate top-level key": {
			"subjects:\n  a: [R]\nsubjects:\n  a: [Admin]\n",
			"p.yaml:3: ", `duplicate key "subjects"`},
		"two any-method rules for one path": {
			"rules:\n  - path: /a\n    roles: [A]\n  - path: /b\n    roles: [B]\n  - path: /a\n    public: true\n",
			"p.yaml:6: ", "overlaps the rule at line 2"},
		"overlapping methods on one path in another case": {
			"rules:\n  - path: /x/*\n    methods: [GET]\n    roles: [A]\n  - path: /X/*\n    methods: [post, get]\n    roles: [B]\n",
			"p.yaml:5: ", "overlaps the rule at line 2"},
		"roles and all_roles": {
			"rules:\n  - {path: /a, roles: [A], all_roles: [B]}\n", "p.yaml:2: ", "rule has roles and all_roles; choose one"},
		"path and paths": {
			"rules:\n  - {path: /a, paths: [/b], roles: [A]}\n", "p.yaml:2: ", "both path and paths"},
		"host and hosts": {
			"rules:\n  - {host: a.example, hosts: [b.example], path: /a, roles: [A]}\n", "p.yaml:2: ", "both host and hosts"},
		"host with a port": {
			"rules:\n  - {host: \"a.example:8443\", path: /a, roles: [A]}\n", "p.yaml:2: ", "without a port"},
		"host wildcard in the middle": {
			"rules:\n  - {host: \"a.*.example\", path: /a, roles: [A]}\n", "p.yaml:2: ", "want a host name"},
		"host star alone": {
			"rules:\n  - {host: \"*\", path: /a, roles: [A]}\n", "p.yaml:2: ", "want a host name"},
		"empty host label": {
			"rules:\n  - {host: a..example, path: /a, roles: [A]}\n", "p.yaml:2: ", "want a host name"},
		"glob class": {
			"rules:\n  - {path: \"/a/[ab]\", roles: [A]}\n", "p.yaml:2: ", `'[' is not supported`},
		"question mark": {
			"rules:\n  - {path: \"/a?\", roles: [A]}\n", "p.yaml:2: ", `'?' is not supported`},
		"percent escape": {
			"rules:\n  - {path: \"/a%2F\", roles: [A]}\n", "p.yaml:2: ", `'%' is not supported`},
		"placeholder": {
			"rules:\n  - {path: \"/{http.vars.x}\", roles: [A]}\n", "p.yaml:2: ", `'{' is not supported`},
		"two stars alone": {
			"rules:\n  - {path: \"**\", roles: [A]}\n", "p.yaml:2: ", "write * for every path"},
		"prefix not starting with slash": {
			"rules:\n  - {path: \"a/*\", roles: [A]}\n", "p.yaml:2: ", "must start with / or *"},
		"empty paths list": {
			"rules:\n  - {paths: [], roles: [A]}\n", "p.yaml:2: ", "rule has no path"},
		"csrf as a string": {
			"rules:\n  - {path: /a, roles: [A], csrf: \"yes\"}\n", "p.yaml:2: ", "csrf: want true or false"},
		"csrf on a public rule": {
			"rules:\n  - {path: /a, roles: [A]}\n  - path: /b\n    public: true\n    csrf: true\n", "p.yaml:3: ", "a public rule cannot have csrf: true"},
		"report_only as a string": {
			"rules:\n  - {path: /a, roles: [A], report_only: \"yes\"}\n", "p.yaml:2: ", "report_only: want true or false"},
		"same host and path twice": {
			"rules:\n  - {host: a.example, path: /a, roles: [A]}\n  - {host: A.EXAMPLE, path: /a, roles: [B]}\n",
			"p.yaml:3: ", "a.example /a overlaps the rule at line 2"},
		"same wildcard host and prefix twice": {
			"rules:\n  - {host: \"*.a.example\", path: /a/*, roles: [A]}\n  - {hosts: [x.example, \"*.a.example\"], path: /a/*, roles: [B]}\n",
			"p.yaml:3: ", "overlaps the rule at line 2"},
		"GET and HEAD on one path": {
			"rules:\n  - {path: /a, methods: [GET], roles: [A]}\n  - {path: /a, methods: [HEAD], roles: [B]}\n",
			"p.yaml:3: ", "overlaps the rule at line 2"},
		"a suffix and a substring of equal length": {
			"rules:\n  - {path: \"*.json\", roles: [A]}\n  - {path: \"*admin*\", roles: [B]}\n",
			"p.yaml:3: ", "overlaps the rule at line 2: same rank, so neither would be more specific (suffixes, substrings and globs of equal length"},
		"two any-host stars": {
			"rules:\n  - {path: \"*\", roles: [A]}\n  - {path: \"*\", roles: [B]}\n", "p.yaml:3: ", "overlaps the rule at line 2"},
		"unknown subject key": {
			"subjects:\n  s: {roles: [A], enabled: false}\n", "p.yaml:2: ", `unknown key "enabled" for subject s`},
		"disabled as a string": {
			"subjects:\n  s: {disabled: \"yes\"}\n", "p.yaml:2: ", "disabled: want true or false"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := Parse([]byte(tc.src), "p.yaml")
			if err == nil {
				t.Fatalf("Parse = %v, want error", p)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tc.wantLine) || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("error = %q, want %q... containing %q", msg, tc.wantLine, tc.wantMsg)
			}
		})
	}
}

// Known failure (except "stray colon"): for most syntax errors yaml.v3
// v3.0.1 reports the 0-based line where the enclosing block began, and no
// line at all when that is line 1, instead of the line at fault.
func TestParse_SyntaxErrorNamesTheOffendingLine(t *testing.T) {
	tests := map[string]struct {
		src      string
		wantLine string
	}{
		"stray colon":           {"subjects:\n  a: [R]\nrules:\n  - path: /a: b\n", "p.yaml:4: "},
		"stray colon on line 1": {"subjects: a: b\n", "p.yaml:1: "},
		"extra bracket":         {"subjects:\n  a: [R]\n  b: [S]]\n", "p.yaml:3: "},
		"bad indentation":       {"rules:\n  - path: /a\n   public: true\n", "p.yaml:3: "},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "p.yaml")
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantLine) {
				t.Errorf("error = %v, want prefix %q", err, tc.wantLine)
			}
		})
	}
}

func TestParse_AcceptsRulesThatDoNotCompete(t *testing.T) {
	tests := map[string]string{
		"same path, disjoint methods": "rules:\n  - {path: /a, methods: [GET], roles: [A]}\n  - {path: /a, methods: [POST], roles: [B]}\n",
		"same path, methods and any":  "rules:\n  - {path: /a, methods: [GET], roles: [A]}\n  - {path: /a, roles: [B]}\n",
		"exact and wildcard":          "rules:\n  - {path: /a, roles: [A]}\n  - {path: /a*, roles: [B]}\n",
	}
	for name, src := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(src), "p.yaml"); err != nil {
				t.Errorf("Parse: %v", err)
			}
		})
	}
}

func TestParse_EmptyFileDeniesEverything(t *testing.T) {
	for name, src := range map[string]string{"empty": "", "comment only": "# nothing yet\n"} {
		t.Run(name, func(t *testing.T) {
			p := mustParse(t, src)
			if r := p.Match("GET", "", "/"); r != nil {
				t.Errorf("Match(GET /) = rule at line %d, want nil", r.Line)
			}
			if r := p.Match("GET", "", "/http/ping"); r != nil {
				t.Errorf("Match(GET /http/ping) = rule at line %d, want nil", r.Line)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	tests := map[string]struct {
		path string
		want bool
	}{
		"root":                  {"/", true},
		"plain path":            {"/a/b", true},
		"trailing slash":        {"/a/b/", true},
		"dot inside a segment":  {"/a/b.c/..d", true},
		"leading empty segment": {"//a", false},
		"inner empty segment":   {"/a//b", false},
		"dot segment":           {"/a/./b", false},
		"dot-dot segment":       {"/a/../b", false},
		"dot-dot at the root":   {"/..", false},
		"trailing dot-dot":      {"/a/..", false},
		"relative":              {"a/b", false},
		"empty":                 {"", false},
		"backslash":             {`/a\..\b`, false},
		"path parameter":        {"/http/admin;x", false},
		"path parameter inside": {"/http/orders;x/1", false},
		"NUL":                   {"/a\x00b", false},
		"newline":               {"/a\nb", false},
		"DEL":                   {"/a\x7fb", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Canonical(tc.path); got != tc.want {
				t.Errorf("Canonical(%q) = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

func TestReadFile_UsesThePathInErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("subjects: {}\nrole: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("ReadFile error = %v, want prefix %q", err, path+":2: ")
	}
}

func TestReadFile_ReadsAValidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(examplePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	if r := p.Match("GET", "", "/http/ping"); r == nil || !r.Public {
		t.Errorf("Match(GET /http/ping) = %+v, want the public rule", r)
	}
}

func TestReadFile_MissingFile(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile error = %v, want fs.ErrNotExist", err)
	}
}

// The oversized file is sparse, so it costs no disk space; reading it costs
// one 32 MiB buffer, which is cheap enough to test the bound for real.
func TestReadFile_RefusesOversizedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, MaxFileSize+1); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(path)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ReadFile error = %v, want a size error", err)
	}
}

func TestRoles_ReturnsACopy(t *testing.T) {
	p := mustParse(t, "subjects:\n  s: [A, B]\n")
	p.Roles("s")[0] = "Admin"
	if got := p.Roles("s"); !slices.Equal(got, []string{"A", "B"}) {
		t.Errorf("Roles after a caller changed the result = %q, want [A B]", got)
	}
}

// A broad role must not reach a stricter rule's resource by a spelling of
// the request that the backend treats as the same resource.
func TestMatch_SpellingsOfTheSameRequestHitTheSameRule(t *testing.T) {
	p := mustParse(t, `
rules:
  - {path: /http/admin, roles: [Admin]}
  - {path: /http/orders/*, methods: [POST], roles: [Orders]}
  - {path: /http/report, methods: [GET], roles: [Reports]}
  - {path: /http/*, roles: [Broad]}
`)
	tests := map[string]struct {
		method, path, want string
	}{
		"lower-case method":                  {"post", "/http/orders/1", "Orders"},
		"mixed-case method":                  {"Post", "/http/orders/1", "Orders"},
		"HEAD on a GET rule":                 {"HEAD", "/http/report", "Reports"},
		"exact rule with a trailing slash":   {"GET", "/http/admin/", "Admin"},
		"exact rule in upper case":           {"GET", "/HTTP/ADMIN", "Admin"},
		"other method still falls through":   {"PUT", "/http/orders/1", "Broad"},
		"wildcard does not cover its parent": {"POST", "/http/orders", "Broad"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := p.Match(tc.method, "", tc.path)
			if r == nil || r.Roles[0] != tc.want {
				t.Errorf("Match(%s %s) = %v, want the %s rule", tc.method, tc.path, r, tc.want)
			}
		})
	}
}

func TestParse_ExactPathsWithAndWithoutTrailingSlashOverlap(t *testing.T) {
	_, err := Parse([]byte("rules:\n  - {path: /a, roles: [A]}\n  - {path: /a/, roles: [B]}\n"), "p.yaml")
	if err == nil || !strings.Contains(err.Error(), "p.yaml:3:") {
		t.Errorf("Parse = %v, want an overlap error at line 3", err)
	}
}

func TestParse_RoleNamesAreScopeTokens(t *testing.T) {
	for name, src := range map[string]string{
		"space in a subject's role": "subjects:\n  s: [ok, \"two words\"]\n",
		"comma in a rule's role":    "rules:\n  - path: /a\n    roles:\n      - \"a,b\"\n",
		"quote in a role":           "subjects:\n  s: ['say\"hi']\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(src), "p.yaml")
			if err == nil || !strings.Contains(err.Error(), "a role may not contain") {
				t.Errorf("Parse = %v, want a role-name error", err)
			}
		})
	}
	if _, err := Parse([]byte("subjects:\n  s: [ESBMessaging.send, xsapp!t1.Orders-read_v2]\n"), "p.yaml"); err != nil {
		t.Errorf("ordinary role names refused: %v", err)
	}
}

// A policy small enough to be read can still describe more than an index
// should hold, or more same-rank patterns than the overlap check should
// compare pairwise: both are refused, quickly.
func TestParse_RefusesPoliciesTooLargeToIndex(t *testing.T) {
	var combos strings.Builder
	combos.WriteString("rules:\n")
	for r := range 21 { // 21 rules of 100 hosts x 100 paths: 210,000
		combos.WriteString("  - hosts: [")
		for h := range 100 {
			fmt.Fprintf(&combos, "h%d-%d.example,", r, h)
		}
		combos.WriteString("]\n    paths: [")
		for p := range 100 {
			fmt.Fprintf(&combos, "/r%d/p%d,", r, p)
		}
		combos.WriteString("]\n    public: true\n")
	}
	var patterns strings.Builder
	patterns.WriteString("rules:\n")
	for i := range 1001 {
		fmt.Fprintf(&patterns, "  - {path: \"/x/*/%04d\", public: true}\n", i)
	}
	for name, tc := range map[string]struct{ policy, want string }{
		"too many host and path combinations": {combos.String(), "host and path combinations"},
		"too many patterns of one rank":       {patterns.String(), "patterns of the same rank"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.policy), "policy.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want one that says %q", err, tc.want)
			}
		})
	}
}
