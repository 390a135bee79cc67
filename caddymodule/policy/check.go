package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Finding is something "caddy oauth policy check" reports: the policy
// parses, but probably does not say what its author meant.
type Finding struct {
	Line    int
	Message string
}

// Check lists, in line order: roles subjects hold that no rule requires
// (often a typo on one side), roles rules require that no subject holds,
// subjects that can use no rule, and rule paths that can never match.
func Check(p *Policy) []Finding {
	var out []Finding
	add := func(line int, format string, args ...any) {
		out = append(out, Finding{Line: line, Message: fmt.Sprintf(format, args...)})
	}
	required := map[string]bool{}
	anyOf := map[string]bool{} // roles that alone satisfy some rule
	var allOf []*Rule
	for _, r := range p.rules {
		for _, role := range r.Roles {
			required[role], anyOf[role] = true, true
		}
		for _, role := range r.AllRoles {
			required[role] = true
		}
		if len(r.AllRoles) > 0 {
			allOf = append(allOf, r)
		}
	}
	held := map[string]bool{}
	for name, s := range p.subjects {
		for _, role := range s.roles {
			held[role] = true
			if !required[role] {
				add(s.line, "subject %s holds role %s, which no rule requires", name, role)
			}
		}
		if !s.disabled && !usable(s.roles, anyOf, allOf) {
			add(s.line, "subject %s can use no rule that needs a token: its roles satisfy none", name)
		}
	}
	for _, r := range p.rules {
		for _, role := range slices.Compact(slices.Sorted(slices.Values(r.RequiredRoles()))) {
			if !held[role] {
				add(r.Line, "no subject holds role %s, which this rule requires (fine if an external issuer's tokens carry it)", role)
			}
		}
		for _, h := range hostsOrAny(r) {
			for _, ps := range r.paths {
				e := &entry{rule: r, host: h, path: ps}
				if why := p.neverMatches(e); why != "" {
					add(r.Line, "%s can never match: %s", e, why)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), strings.Compare(a.Message, b.Message))
	})
	return out
}

func usable(roles []string, anyOf map[string]bool, allOf []*Rule) bool {
	for _, role := range roles {
		if anyOf[role] {
			return true
		}
	}
	return slices.ContainsFunc(allOf, func(r *Rule) bool { return r.Allows(roles) })
}

const refused = "every path it matches has //, . or .. segments or ;, which the guard refuses with 400"

// neverMatches says why e can never decide a request, or "".
func (p *Policy) neverMatches(e *entry) string {
	ps := &e.path
	switch ps.kind {
	case kindExact:
		if !Canonical(ps.raw) {
			return refused
		}
		return ""
	case kindPrefix:
		if !Canonical(ps.text + "x") {
			return refused
		}
		return ""
	case kindPattern:
		if ps.pattern == glob && ps.text[0] != '/' {
			return "paths start with / and a * in a glob does not match /"
		}
		// Each fixed piece sits inside a path; the last may end one.
		pieces := strings.Split(ps.text, "*")
		if !Canonical("/x"+pieces[len(pieces)-1]) ||
			slices.ContainsFunc(pieces, func(s string) bool { return !Canonical("/x" + s + "x") }) {
			return refused
		}
	}
	// A suffix, substring, glob or "*" ranks below every prefix of its
	// host; a prefix that covers all it matches, for all its methods,
	// always decides first.
	start := "/"
	if ps.kind == kindPattern {
		start, _ = ps.fixedEnds()
	}
	ix := p.lookupIndex(e.host)
	for _, n := range ix.prefixes {
		if !strings.HasPrefix(start, n.prefix) {
			continue
		}
		for _, o := range n.entries {
			if o.rule != e.rule && coversMethods(o.rule.Methods, e.rule.Methods) {
				return fmt.Sprintf("the rule at line %d (%s) decides every request it would match", o.rule.Line, o.path.raw)
			}
		}
	}
	return ""
}

func (p *Policy) lookupIndex(host string) *pathIndex {
	if host == "" {
		return &p.anyHost
	}
	if name, ok := strings.CutPrefix(host, "*."); ok {
		return p.byWild[name]
	}
	return p.byHost[host]
}

// coversMethods reports whether a rule listing outer takes every method a
// rule listing inner does.
func coversMethods(outer, inner []string) bool {
	if len(outer) == 0 {
		return true
	}
	if len(inner) == 0 {
		return false
	}
	for _, m := range inner {
		if !slices.Contains(outer, m) && (m != "HEAD" || !slices.Contains(outer, "GET")) {
			return false
		}
	}
	return true
}

// Explanation is why a request would be allowed or refused, for
// "caddy oauth policy explain".
type Explanation struct {
	Method, Host, Path, Subject string
	// Rule is the rule that decides; nil when none matches.
	Rule *Rule
	// Held are the subject's roles that count: the policy's, narrowed by
	// the token's scope.
	Held []string
	// Decision is "allow", "deny", "public", or "report-only" for a
	// refusal that a report_only rule lets through.
	Decision string
	Reason   string
}

// Explain decides a request as the guard would for a valid token of
// subject with scope. A nil scope stands for a token issued without a
// scope parameter, which carries all the subject's roles.
func Explain(p *Policy, method, host, path, subject string, scope []string) Explanation {
	x := Explanation{Method: method, Host: host, Path: path, Subject: subject, Decision: "deny"}
	if scope == nil {
		x.Held = p.Roles(subject)
	} else {
		x.Held = p.RolesInScope(subject, scope)
	}
	if !Canonical(path) {
		x.Reason = "the path has //, . or .. segments, ;, a backslash or a control character: the guard answers 400 before any rule"
		return x
	}
	x.Rule = p.Match(method, host, path)
	r := x.Rule
	switch {
	case r == nil:
		x.Reason = "no rule matches: deny by default"
	case r.Public:
		x.Decision, x.Reason = "public", "the rule is public: no token is needed"
	case p.subjects[subject] == nil:
		x.Reason = "the subject is not in the policy, so it holds no roles"
	case p.Disabled(subject):
		x.Reason = "the subject is disabled in the policy"
	case r.Allows(x.Held):
		x.Decision, x.Reason = "allow", "the subject holds "+needs(r)
	default:
		x.Reason = "the subject does not hold " + needs(r)
		if scope != nil && r.Allows(p.Roles(subject)) {
			x.Reason = "the token's scope leaves out what the rule needs: " + needs(r)
		}
	}
	if x.Decision == "deny" && r != nil && r.ReportOnly {
		x.Decision = "report-only"
		x.Reason += "; the rule is report_only, so the guard logs the refusal and lets the request through"
	}
	return x
}

func needs(r *Rule) string {
	if len(r.AllRoles) > 0 {
		return "all of " + strings.Join(r.AllRoles, ", ")
	}
	return "any of " + strings.Join(r.Roles, ", ")
}

func (x Explanation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "request:  %s %s%s\n", x.Method, x.Host, x.Path)
	if r := x.Rule; r != nil {
		fmt.Fprintf(&b, "rule:     line %d (paths %s", r.Line, strings.Join(r.Paths, ", "))
		if len(r.Hosts) > 0 {
			fmt.Fprintf(&b, "; hosts %s", strings.Join(r.Hosts, ", "))
		}
		if len(r.Methods) > 0 {
			fmt.Fprintf(&b, "; methods %s", strings.Join(r.Methods, ", "))
		}
		b.WriteString(")\n")
		if !r.Public {
			fmt.Fprintf(&b, "requires: %s\n", needs(r))
		}
	} else {
		b.WriteString("rule:     none\n")
	}
	fmt.Fprintf(&b, "subject:  %s holds [%s]\n", x.Subject, strings.Join(x.Held, ", "))
	fmt.Fprintf(&b, "decision: %s: %s\n", x.Decision, x.Reason)
	return b.String()
}
