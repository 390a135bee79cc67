package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
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
// subjects that can use no rule, rule paths that can never match,
// prefixes /x/* whose bare path /x a broader rule decides differently,
// csrf rules that no sender can fetch a token from, quotas smaller
// than their rate allows in their window or never reached by it, and
// conditions that read a claim our own tokens never carry.
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
	listed := listedMethods(p.rules)
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
		if s.limit != nil {
			for _, f := range limitFindings(s.limit, "the limit of subject "+name) {
				add(s.limit.Line, "%s", f)
			}
		}
	}
	for _, r := range p.rules {
		if r.Limit != nil {
			for _, f := range limitFindings(r.Limit, "the rule's limit") {
				add(r.Limit.Line, "%s", f)
			}
		}
		if r.When != nil {
			for _, name := range r.When.Claims {
				if !slices.Contains(OwnClaims, name) {
					add(r.When.Line, "the condition reads claim %s, which tokens of this gateway never carry (fine if an external issuer's tokens do)", name)
				}
			}
		}
		for _, role := range distinctRoles(r) {
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
				for _, gap := range p.bareGaps(e, listed) {
					add(r.Line, "%s", gap)
				}
			}
		}
		if r.CSRF && len(r.Methods) > 0 && !slices.Contains(r.Methods, "GET") && !slices.Contains(r.Methods, "HEAD") {
			add(r.Line, "the rule is csrf but takes neither GET nor HEAD: a sender's fetch (X-CSRF-Token: Fetch) on its paths gets no token unless another csrf rule decides it; add GET to its methods")
		}
	}
	slices.SortFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), strings.Compare(a.Message, b.Message))
	})
	return out
}

// OwnClaims are the claims of every token the gateway's own token
// endpoint issues (tokens.Mint; "nbf" is never set). What an external
// issuer sends cannot be known from the policy, so Check only says when
// a condition reads a claim outside these.
var OwnClaims = []string{"aud", "client_id", "exp", "iat", "iss", "jti", "scope", "sub"}

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

// anyOtherMethod stands for every method no rule lists: Rule.takes
// refuses it for every rule that lists methods, as it would such a method.
const anyOtherMethod = ""

// bareGaps finds the mistake that let custom roles be bypassed in SAP
// Cloud Integration: a custom role on one endpoint, and a token of any
// client with the default role getting through. Here a prefix /x/* does
// not cover /x itself (Caddy's syntax), so the endpoint's own path falls
// to a broader rule, typically the default role's /http/*. The matcher
// itself says which rule decides /x, for each method e's rule decides
// under the prefix on e's host, so the warning agrees with what the guard
// does. /x/ meets the prefix (or an exact rule for /x), so only /x is
// looked at.
//
// Quiet when /x is decided as its author wrote it: by an exact rule for
// /x (a deliberate choice), by a rule asking for the same, or by none
// (deny). A public prefix is left alone too: whatever decides its bare
// path can only ask for more, which fails closed, and a public
// /.well-known/* under a token-protected /* is a common, deliberate shape
// that a warning would teach operators to ignore.
func (p *Policy) bareGaps(e *entry, listed []string) []string {
	r := e.rule
	bare, ok := strings.CutSuffix(e.path.raw, "/*")
	if r.Public || e.path.kind != kindPrefix || !ok || bare == "" || !Canonical(bare+"/x") {
		return nil
	}
	tries := r.Methods
	switch {
	case len(tries) == 0:
		tries = append([]string{anyOtherMethod}, listed...)
	case slices.Contains(tries, "GET") && !slices.Contains(tries, "HEAD") && slices.Contains(listed, "HEAD"):
		// HEAD meets r through its GET, but may meet a rule listing HEAD
		// on the bare path; with no such rule it decides as GET does.
		tries = append(slices.Clip(tries), "HEAD")
	}
	ix, host := p.lookupIndex(e.host), p.requestHost(e.host)
	exact := trimSlash(strings.ToLower(bare))
	var deciders []*Rule
	methods := map[*Rule][]string{}
	for _, m := range tries {
		if ix.matchPrefix(m, e.path.text) != r {
			continue // a rule for the same prefix that lists m decides; it is checked on its own
		}
		d := p.Match(m, host, bare)
		if d == nil || d.hasExact(exact) || requirement(d) == requirement(r) {
			continue
		}
		if methods[d] == nil {
			deciders = append(deciders, d)
		}
		methods[d] = append(methods[d], m)
	}
	var out []string
	for _, d := range deciders {
		req := e.host + bare
		if ms := methods[d]; ms[0] != anyOtherMethod {
			req = strings.Join(ms, " or ") + " " + req
		} else if but := slices.DeleteFunc(slices.Clone(tries), func(m string) bool { return slices.Contains(ms, m) }); len(but) > 0 {
			req += ", by any method but " + strings.Join(but, " or ") + ","
		}
		out = append(out, fmt.Sprintf("%s does not cover %s itself: %s falls to the rule at line %d (%s), which needs %s instead of %s; write path %s* or add a rule for %s",
			e, bare, req, d.Line, strings.Join(d.Paths, ", "), asks(d), asks(r), bare, bare))
	}
	return out
}

// requestHost returns a Host header that a rule's host (normalised)
// stands for and that no more specific rule names: for "*.example.com" a
// name under it that no rule names exactly.
func (p *Policy) requestHost(host string) string {
	name, wild := strings.CutPrefix(host, "*.")
	switch {
	case wild:
		for i := 0; ; i++ {
			if h := "x" + strconv.Itoa(i) + "." + name; p.byHost[h] == nil {
				return h
			}
		}
	case strings.Contains(host, ":"):
		return "[" + host + "]"
	}
	return host
}

// hasExact reports whether r names the exact path lp (lower-cased,
// without a trailing slash).
func (r *Rule) hasExact(lp string) bool {
	return slices.ContainsFunc(r.paths, func(ps pathSpec) bool { return ps.kind == kindExact && ps.text == lp })
}

// requirement is what r asks of a caller, equal for rules that let the
// same callers through: the order and repetition of roles do not count,
// and all_roles of one role is roles of that role. Conditions count as
// written: two rules are taken to ask the same only with the same text.
func requirement(r *Rule) string {
	if r.Public {
		return "public"
	}
	roles := distinctRoles(r)
	key := "any of "
	if len(r.AllRoles) > 0 && len(roles) > 1 {
		key = "all of "
	}
	key += strings.Join(roles, ",")
	if r.ReportOnly {
		key += " report_only"
	}
	if r.CSRF {
		key += " csrf"
	}
	if len(r.Binding) > 0 {
		key += " binding " + strings.Join(r.Binding, ",")
	}
	if r.When != nil {
		// A bare path that escapes a condition is as much a gap as
		// one that escapes a role.
		key += " when " + r.When.Text
	}
	return key
}

// asks says what r asks of a caller, for a finding.
func asks(r *Rule) string {
	if r.Public {
		return "no token"
	}
	s := needs(r)
	if r.When != nil {
		s += fmt.Sprintf(" and its condition (line %d)", r.When.Line)
	}
	if r.CSRF {
		s += " and a CSRF token"
	}
	if len(r.Binding) > 0 {
		s += " and a token bound by " + strings.Join(r.Binding, " or ")
	}
	if r.ReportOnly {
		s += " (report only)"
	}
	return s
}

func distinctRoles(r *Rule) []string {
	return slices.Compact(slices.Sorted(slices.Values(r.RequiredRoles())))
}

// listedMethods are the methods any rule lists, sorted.
func listedMethods(rules []*Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.Methods...)
	}
	slices.Sort(out)
	return slices.Compact(out)
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
	// Condition is the rule's condition's outcome: "true", "false" or
	// "error: …"; "" when it was not evaluated.
	Condition string
	// Limits are the limits that count the request if it is let through:
	// the rule's and the subject's, by what they say (never the counts:
	// those live in the running gateways).
	Limits []string
}

// explainCondition evaluates c for an allowed request and denies it
// when c does not hold, as the guard does.
func (x *Explanation) explainCondition(c *Condition, subject string, scope []string, in *Input) {
	var use Input
	if in != nil {
		use = *in
	}
	if use.Claims == nil {
		claims := MapClaims{"sub": subject}
		if scope != nil {
			claims["scope"] = scope
		}
		use.Claims = claims
	}
	use.Roles = x.Held
	// The caller as the guard tells it for the gateway's own tokens.
	use.Subject = subject
	if id, ok := strings.CutPrefix(subject, "oauth_client_"); ok && use.ClientID == "" {
		use.ClientID = id
	}
	use.Request.Method, use.Request.Host, use.Request.Path = x.Method, x.Host, x.Path
	ok, err := c.Eval(&use)
	switch {
	case err != nil:
		x.Condition = "error: " + err.Error()
		x.Decision, x.Reason = "deny", "the subject holds "+needs(x.Rule)+", but the condition cannot be evaluated (a missing claim or header?), which the guard takes as false"
	case ok:
		x.Condition = "true"
		x.Reason += ", and the condition holds"
	default:
		x.Condition = "false"
		x.Decision, x.Reason = "deny", "the subject holds "+needs(x.Rule)+", but the condition is false"
	}
}

// Explain decides a request as the guard would for a valid token of
// subject with scope. A nil scope stands for a token issued without a
// scope parameter, which carries all the subject's roles. A condition
// sees a token whose only claims are "sub" and "scope"; ExplainInput
// gives it more.
func Explain(p *Policy, method, host, path, subject string, scope []string) Explanation {
	return ExplainInput(p, method, host, path, subject, scope, nil)
}

// ExplainInput is Explain with the claims and request a rule's condition
// reads; in's Roles are ignored (they are the subject's, as decided) and
// its request's method, host and path are those given. A nil in stands
// for the claims Explain says.
func ExplainInput(p *Policy, method, host, path, subject string, scope []string, in *Input) Explanation {
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
		if r.When != nil {
			x.explainCondition(r.When, subject, scope, in)
		}
		switch {
		case x.Decision != "allow": // the condition refused it
		case r.NeedsCSRFToken(method):
			x.Reason += "; the rule is csrf, so the request also needs a valid X-CSRF-Token, else 403 with X-CSRF-Token: Required"
		case r.CSRF && (method == "GET" || method == "HEAD"):
			x.Reason += "; the rule is csrf, so with X-CSRF-Token: Fetch the gateway answers with a token itself"
		}
		if x.Decision == "allow" && len(r.Binding) > 0 {
			x.Reason += "; the rule demands a token " + bindingWords(r.Binding) + ", else 401 invalid_token"
		}
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
	if x.Decision == "allow" {
		if r.Limit != nil {
			x.Limits = append(x.Limits, fmt.Sprintf("rule (line %d): %s", r.Limit.Line, r.Limit))
		}
		if l := p.SubjectLimit(subject); l != nil {
			x.Limits = append(x.Limits, fmt.Sprintf("subject (line %d): %s", l.Line, l))
		}
	}
	return x
}

// bindingWords says what a rule's binding demands.
func bindingWords(kinds []string) string {
	var w []string
	for _, k := range kinds {
		switch k {
		case BindingMTLS:
			w = append(w, "bound to the TLS client certificate (mtls)")
		case BindingDPoP:
			w = append(w, "bound to a DPoP key, with a proof (dpop)")
		}
	}
	return strings.Join(w, " or ")
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
		if r.When != nil {
			cond := x.Condition
			if cond == "" {
				cond = "not evaluated"
			}
			fmt.Fprintf(&b, "when:     line %d: %s: %s\n", r.When.Line, strings.Join(strings.Fields(r.When.Text), " "), cond)
		}
		if r.CSRF {
			b.WriteString("csrf:     GET or HEAD with X-CSRF-Token: Fetch gets a token; other methods but OPTIONS and TRACE need one\n")
		}
		if len(r.Binding) > 0 {
			fmt.Fprintf(&b, "binding:  %s; a bearer token gets 401 invalid_token\n", bindingWords(r.Binding))
		}
	} else {
		b.WriteString("rule:     none\n")
	}
	fmt.Fprintf(&b, "subject:  %s holds [%s]\n", x.Subject, strings.Join(x.Held, ", "))
	fmt.Fprintf(&b, "decision: %s: %s\n", x.Decision, x.Reason)
	for _, l := range x.Limits {
		fmt.Fprintf(&b, "limit:    %s; over it: 429\n", l)
	}
	return b.String()
}
