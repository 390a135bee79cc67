package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxEntries bounds one rule's hosts × paths: each pair is indexed on its
// own, and a typo should not cost gigabytes.
const maxEntries = 10_000

// Rule is one entry of "rules".
type Rule struct {
	// Hosts restricts the rule to these host names, lower-cased ("api.example.com",
	// "*.example.com"); empty means any host.
	Hosts []string
	// Paths are the rule's paths in Caddy's path-matcher syntax, as written.
	Paths []string
	// Methods restricts the rule to these HTTP methods, upper-cased; empty
	// means any.
	Methods []string
	// Roles allow the request if the caller holds any one of them.
	Roles []string
	// AllRoles allow the request if the caller holds every one of them.
	AllRoles []string
	// Public rules need no token at all.
	Public bool
	// ReportOnly asks the guard to let a request this rule refuses go
	// through and log the refusal: shadow mode for one rule.
	ReportOnly bool
	// When, if set, must also hold for the request to be allowed: a
	// condition over the token's claims, the caller's roles and the
	// request, evaluated after the roles are found sufficient.
	When *Condition
	// CSRF asks the guard for SAP Cloud Integration's "CSRF Protected":
	// a GET or HEAD with "X-CSRF-Token: Fetch" is answered with a token,
	// and a request of any other method but OPTIONS and TRACE needs a
	// valid one. Not on a public rule: a token is bound to the caller.
	CSRF bool
	// Limit is the rule's rate limit and quota per caller; nil for none.
	Limit *Limit
	// Binding, if not empty, demands a sender-constrained token: bound
	// in one of these ways (BindingMTLS, BindingDPoP). A bearer token is
	// refused with 401 invalid_token however many roles it carries.
	Binding []string
	// Line is where the rule starts in the policy file.
	Line int

	paths []pathSpec
}

// pathKind orders paths by specificity: a greater kind is more specific.
type pathKind uint8

const (
	kindStar    pathKind = iota // "*"
	kindPattern                 // suffix, substring or glob
	kindPrefix                  // "/a/*"
	kindExact                   // "/a"
)

type patternKind uint8

const (
	suffix patternKind = iota
	substring
	glob
)

// pathSpec is a parsed path. text is lower-cased: an exact path without a
// trailing slash, a prefix without its "*", a suffix without its leading
// "*", a substring without its two, or a whole glob.
type pathSpec struct {
	kind    pathKind
	pattern patternKind
	text    string
	literal int // characters other than "*": more is more specific
	raw     string
}

func parseRule(n *yaml.Node) (*Rule, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errAt(n, "a rule is a mapping with a path and roles, all_roles or public")
	}
	if err := noDuplicateKeys(n); err != nil {
		return nil, err
	}
	r := &Rule{Line: n.Line}
	seen := map[string]bool{}
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		seen[k.Value] = true
		var err error
		switch k.Value {
		case "host", "path":
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				return nil, errAt(v, "%s: want a string", k.Value)
			}
			if k.Value == "host" {
				r.Hosts = []string{v.Value}
			} else {
				r.Paths = []string{v.Value}
			}
		case "hosts":
			r.Hosts, err = stringList(v, "hosts")
		case "paths":
			r.Paths, err = stringList(v, "paths")
		case "methods":
			r.Methods, err = methodList(v)
		case "roles":
			r.Roles, err = roleList(v, "roles")
		case "all_roles":
			r.AllRoles, err = roleList(v, "all_roles")
		case "public":
			r.Public, err = boolean(v, "public")
		case "report_only":
			r.ReportOnly, err = boolean(v, "report_only")
		case "when":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
				return nil, errAt(v, "when: want a CEL expression as a string")
			}
			r.When, err = compileCondition(v.Value, valueLine(v))
		case "csrf":
			r.CSRF, err = boolean(v, "csrf")
		case "limit":
			r.Limit, err = parseLimit(v)
		case "binding":
			r.Binding, err = bindingList(v)
		default:
			err = errAt(k, "unknown rule key %q (want host(s), path(s), methods, roles, all_roles, public, report_only, when, csrf, limit, binding)", k.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, one := range []string{"host", "path"} {
		if seen[one] && seen[one+"s"] {
			return nil, errAt(n, "rule has both %s and %ss; choose one", one, one)
		}
	}
	var kinds []string
	if r.Public {
		kinds = append(kinds, "public")
	}
	if len(r.Roles) > 0 {
		kinds = append(kinds, "roles")
	}
	if len(r.AllRoles) > 0 {
		kinds = append(kinds, "all_roles")
	}
	switch {
	case len(r.Paths) == 0:
		return nil, errAt(n, "rule has no path")
	case len(kinds) > 1:
		return nil, errAt(n, "rule has %s; choose one of roles, all_roles or public: true", strings.Join(kinds, " and "))
	case len(kinds) == 0:
		return nil, errAt(n, "rule needs roles, all_roles, or public: true")
	case r.Public && r.When != nil:
		return nil, errAt(n, "a public rule cannot have a when condition: it sees no token; give it roles")
	case r.Public && r.CSRF:
		return nil, errAt(n, "a public rule cannot have csrf: true: a CSRF token is bound to the calling client, and a public rule has none")
	case r.Public && len(r.Binding) > 0:
		return nil, errAt(n, "a public rule sees no token, so it cannot demand a binding; give it roles")
	case r.Public && r.Limit != nil:
		return nil, errAt(n, "a public rule has no caller to count: a limit needs roles or all_roles")
	case len(r.Paths)*max(len(r.Hosts), 1) > maxEntries:
		return nil, errAt(n, "rule has more than %d host and path combinations; split it", maxEntries)
	}
	for i, h := range r.Hosts {
		norm, err := parseHost(h)
		if err != nil {
			return nil, errAt(n, "%v", err)
		}
		r.Hosts[i] = norm
	}
	for _, raw := range r.Paths {
		ps, err := parsePath(raw)
		if err != nil {
			return nil, errAt(n, "%v", err)
		}
		r.paths = append(r.paths, ps)
	}
	if r.Limit != nil {
		r.Limit.Scope = "rule " + strings.Join(r.Methods, ",") + " " + strings.Join(r.Hosts, ",") + " " + strings.Join(r.Paths, ",")
	}
	return r, nil
}

// The kinds of binding a rule may demand.
const (
	BindingMTLS = "mtls" // cnf x5t#S256: bound to a TLS client certificate (RFC 8705)
	BindingDPoP = "dpop" // cnf jkt: bound to a DPoP key (RFC 9449)
)

// bindingList reads a rule's binding: a non-empty list of mtls and dpop.
func bindingList(n *yaml.Node) ([]string, error) {
	kinds, err := stringList(n, "binding")
	if err != nil {
		return nil, err
	}
	if len(kinds) == 0 {
		return nil, errAt(n, "binding: name mtls, dpop or both; an empty list would demand nothing")
	}
	for i, k := range kinds {
		switch {
		case k != BindingMTLS && k != BindingDPoP:
			return nil, errAt(n.Content[i], "binding: %q: want mtls (a certificate-bound token) or dpop (a DPoP-bound token)", k)
		case slices.Index(kinds, k) != i:
			return nil, errAt(n.Content[i], "binding: %q is listed twice", k)
		}
	}
	return kinds, nil
}

// valueLine is the line of a scalar's first character of text: a block
// scalar ("when: |") starts on the line after its indicator.
func valueLine(v *yaml.Node) int {
	if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return v.Line + 1
	}
	return v.Line
}

func methodList(n *yaml.Node) ([]string, error) {
	methods, err := stringList(n, "methods")
	if err != nil {
		return nil, err
	}
	for i, m := range methods {
		if !isToken(m) {
			return nil, errAt(n.Content[i], "methods: %q is not an HTTP method", m)
		}
		methods[i] = strings.ToUpper(m)
	}
	return methods, nil
}

// isToken reports whether s is an RFC 9110 token, the syntax of a method.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// parsePath classifies a path as Caddy's path matcher does: "*" alone,
// "*x*" substring, "*x" suffix, "x*" prefix, any other "*" a glob
// (path.Match), and no "*" exact. What Caddy would read as a glob class,
// an escape or a placeholder is refused rather than half supported.
func parsePath(raw string) (pathSpec, error) {
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < 0x20 || c == 0x7f {
			return pathSpec{}, fmt.Errorf("path %q: control characters are not allowed", raw)
		} else if strings.IndexByte(`?[\%{`, c) >= 0 {
			return pathSpec{}, fmt.Errorf("path %q: %q is not supported (only * is a wildcard)", raw, c)
		}
	}
	low := strings.ToLower(raw)
	stars := strings.Count(low, "*")
	ps := pathSpec{raw: raw, text: low, literal: len(low) - stars}
	first, last := low[0] == '*', low[len(low)-1] == '*'
	switch {
	case low[0] != '/' && !first:
		return ps, fmt.Errorf("path %q: must start with / or *", raw)
	case low == "*":
		ps.kind, ps.text = kindStar, ""
	case stars == 0:
		ps.kind, ps.text = kindExact, trimSlash(low)
	case low == "**":
		return ps, fmt.Errorf("path %q: write * for every path", raw)
	case stars == 2 && first && last:
		ps.kind, ps.pattern, ps.text = kindPattern, substring, low[1:len(low)-1]
	case stars == 1 && first:
		ps.kind, ps.pattern, ps.text = kindPattern, suffix, low[1:]
	case stars == 1 && last:
		ps.kind, ps.text = kindPrefix, low[:len(low)-1]
	default:
		ps.kind, ps.pattern = kindPattern, glob
	}
	return ps, nil
}

// parseHost normalises a rule's host: lower case, no trailing dot, an IPv6
// address without brackets. A port is refused, since the request's port
// is ignored and a rule naming one would look stricter than it is.
func parseHost(raw string) (string, error) {
	h := strings.TrimSuffix(strings.ToLower(raw), ".")
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil && a.Is6() {
		return a.String(), nil
	}
	name, wild := strings.CutPrefix(h, "*.")
	ok := name != "" && name[0] != '.' && !strings.Contains(name, "..")
	for i := 0; i < len(name) && ok; i++ {
		c := name[i]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_'
	}
	switch {
	case ok && wild:
		return "*." + name, nil
	case ok:
		return name, nil
	case strings.Contains(name, ":"):
		return "", fmt.Errorf("host %q: write the name without a port (the port is ignored)", raw)
	}
	return "", fmt.Errorf("host %q: want a host name, or *.name for one more label", raw)
}

// hostname is the lower-cased name in a request's Host: without port,
// brackets or trailing dot, so "API.example.com.:443" meets the rule for
// api.example.com.
func hostname(host string) string {
	if rest, ok := strings.CutPrefix(host, "["); ok {
		h, _, _ := strings.Cut(rest, "]")
		if a, err := netip.ParseAddr(h); err == nil {
			return a.String() // as parseHost writes the rule's
		}
		return strings.ToLower(h)
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		host = host[:i]
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// trimSlash drops a trailing slash, except from "/" itself.
func trimSlash(p string) string {
	if len(p) > 1 {
		return strings.TrimSuffix(p, "/")
	}
	return p
}

// Allows reports whether a caller holding roles satisfies r.
func (r *Rule) Allows(roles []string) bool {
	if r.Public {
		return true
	}
	if len(r.AllRoles) > 0 {
		for _, want := range r.AllRoles {
			if !slices.Contains(roles, want) {
				return false
			}
		}
		return true
	}
	for _, want := range r.Roles {
		if slices.Contains(roles, want) {
			return true
		}
	}
	return false
}

// RequiredRoles returns what r asks of a caller, for a 403's scope hint:
// any one of them, or all of them when r uses all_roles. The slice is r's
// own; do not modify it.
func (r *Rule) RequiredRoles() []string {
	if len(r.AllRoles) > 0 {
		return r.AllRoles
	}
	return r.Roles
}

// NeedsCSRFToken reports whether a request of method must carry a valid
// CSRF token under r: every method on a csrf rule but the safe ones (RFC
// 9110 §9.2.1: GET, HEAD, OPTIONS, TRACE), so that an unusual method
// (OData's MERGE, WebDAV's) is held to it too.
func (r *Rule) NeedsCSRFToken(method string) bool {
	if !r.CSRF {
		return false
	}
	switch strings.ToUpper(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return false
	}
	return true
}

// takes reports whether r applies to method. Methods match
// case-insensitively and HEAD matches a rule that lists GET: frameworks
// upper-case methods and answer HEAD with their GET handler, so "post" or
// HEAD must not slip past a rule to a weaker one.
func (r *Rule) takes(method string) bool {
	if len(r.Methods) == 0 {
		return true
	}
	for _, m := range r.Methods {
		if m == method || strings.EqualFold(m, method) {
			return true
		}
	}
	return strings.EqualFold(method, "HEAD") && slices.Contains(r.Methods, "GET")
}
