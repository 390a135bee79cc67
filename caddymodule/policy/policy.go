// Package policy decides who may call what: the policy file maps token
// subjects to roles ("subjects") and requests to the roles they require
// ("rules"). It is SAP Cloud Integration's user-to-role assignment and
// per-endpoint "User Role" in one person-written YAML file.
//
// # Rules
//
// A rule matches a request by host, path and method, and then either
// needs any one of its roles, all of its all_roles, or nothing (public):
//
//	rules:
//	  - hosts: [api.example.com, "*.api.example.com"]  # or host:; omitted: any host
//	    paths: [/http/orders/*, /http/order]          # or path:
//	    methods: [POST]                               # omitted: any method
//	    roles: [Orders.send, Orders.admin]            # any one of these
//	  - path: /http/ledger/*
//	    all_roles: [Ledger.write, Ledger.audited]     # all of these
//	  - path: /http/ping
//	    public: true                                  # no token at all
//	    report_only: false                            # true: decide, log, let through
//	  - path: /http/events*
//	    roles: [ESBMessaging.send]
//	    csrf: true                                    # SAP's "CSRF Protected"
//	  - path: /http/payments/*
//	    roles: [Payments.send]
//	    binding: [mtls, dpop]                         # a sender-constrained token only
//
// A host is an exact name or "*.example.com" for exactly one more label;
// the request's port and a trailing dot are ignored. Paths use Caddy's
// path-matcher syntax: "/a/b" exact (also matching "/a/b/"), "/a/*"
// prefix, "*.json" suffix, "*admin*" substring, "/a/*/b" a glob whose *
// stays within one segment, and "*" for every path. Hosts, paths and
// methods match case-insensitively, so a change of case never escapes a
// stricter rule; HEAD also matches a rule that lists GET.
//
// # Precedence
//
// Exactly one rule decides a request: the most specific one that matches
// it. Specificity is compared in this order, each step deciding only
// when the earlier ones tie:
//
//  1. host: an exact host beats a "*." host, which beats a rule for any
//     host;
//  2. path: an exact path beats a prefix, a longer prefix beats a shorter
//     one, a prefix beats a suffix, substring or glob, among those more
//     literal characters beat fewer, and "*" comes last;
//  3. method: a rule that lists methods beats one that does not.
//
// A rule whose methods do not include the request's does not match, so
// the next most specific rule decides. No matching rule means deny. Two
// rules that tie on all three steps and could match the same request are
// an error naming both lines: their order in the file must never matter.
// For suffixes, substrings and globs of equal length the check is
// conservative: they are taken to overlap unless their fixed starts or
// ends differ.
//
// A rule's hosts and paths are alternatives: each pair is ranked on its
// own, as if it were a rule of its own with the same line.
//
// The host is the request's Host header, which the client chooses: host
// rules tell apart the sites one guard serves, they authenticate nothing.
// A caller can always pick the most lenient host its request reaches.
//
// # Conditions
//
// A rule's "when" is a CEL expression that must also hold, checked after
// the caller's roles satisfy the rule:
//
//	rules:
//	  - path: /http/tenants/*
//	    roles: [Tenant.send]
//	    when: claims.tenant == request.headers["X-Tenant"][0]
//
// It reads claims (the verified token's, a map; scope and aud always
// lists), roles (the caller's, as the guard decided them) and request
// (method, host, path, headers, query, remote_addr, time). Headers are
// found by any case of their name. It is compiled and type-checked with
// the policy, so a mistake is file:line; a request field that does not
// exist is refused too. An absent claim or header is an evaluation
// error, which denies like false. The limits that keep every condition
// cheap are on MaxConditionLength and MaxConditionCost.
//
// # Subjects
//
// A subject is a token's "sub". It holds a list of roles, or in the long
// form a mapping that can also disable it:
//
//	subjects:
//	  oauth_client_3f9a: [ESBMessaging.send]
//	  oauth_client_77c1: {roles: [Orders.send], disabled: true}
//
// A disabled subject holds no roles, from the next request on.
//
// # Limits
//
// A rule, and a subject in its long form, may limit how many requests a
// caller makes:
//
//	rules:
//	  - path: /http/orders*
//	    roles: [Orders.send]
//	    limit: {rate: 100/s, burst: 200, quota: 100000/day, per: client}
//	subjects:
//	  oauth_client_3f9a: {roles: [ESBMessaging.send], limit: {rate: 10/s}}
//
// rate is <n>/s, /m or /h, a token bucket that holds burst requests
// (default: n) and refills at the rate; quota is <n>/h or /day, counted
// in fixed windows of UTC time (a day's quota starts afresh at 00:00
// UTC). per says whose requests share a budget: each client's (the
// default), each subject's, or each value of a claim (claim:iss,
// claim:aud, claim:tenant: a string or number claim, the first audience
// for aud). A rule's limit counts the requests
// that rule decides; a subject's counts all of that subject's requests
// through the guard, whatever rule decides them. When both apply, both
// count, independently: a request must fit in each, and one refused by
// either uses up neither. A public rule cannot have a limit: it has no
// caller to count.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/oauthgate/oauthgate/caddymodule/filewatch"
)

// MaxFileSize bounds the policy file (100,000 subjects fit in ~8 MiB).
const MaxFileSize = 32 << 20

// Policy is a parsed policy file. It is immutable; a changed file is a
// new Policy, so a request decided against one snapshot never sees half
// of another.
type Policy struct {
	subjects map[string]*subject
	rules    []*Rule // in file order
	known    map[string]struct{}
	index
}

type subject struct {
	roles    []string
	disabled bool
	limit    *Limit
	line     int
}

// ReadFile reads and parses the policy file at path.
func ReadFile(path string) (*Policy, error) {
	data, err := filewatch.Read(path, MaxFileSize)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse parses a policy; errors read "name:line: message".
func Parse(data []byte, name string) (*Policy, error) {
	p, err := parse(data)
	if err != nil {
		var le *lineError
		if errors.As(err, &le) {
			return nil, fmt.Errorf("%s:%d: %s", name, le.line, le.msg)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

func errAt(n *yaml.Node, format string, args ...any) error {
	return &lineError{line: n.Line, msg: fmt.Sprintf(format, args...)}
}

func parse(data []byte) (*Policy, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(data, err)
	}
	p := &Policy{subjects: map[string]*subject{}, known: map[string]struct{}{}}
	if len(doc.Content) == 0 {
		return p, p.build() // an empty file denies everything
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, errAt(top, "want a mapping with subjects and rules")
	}
	if err := noDuplicateKeys(top); err != nil {
		return nil, err
	}
	for i := 0; i < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		var err error
		switch k.Value {
		case "subjects":
			err = p.parseSubjects(v)
		case "rules":
			err = p.parseRules(v)
		default:
			err = errAt(k, "unknown key %q (want subjects or rules)", k.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, s := range p.subjects {
		p.addKnown(s.roles)
	}
	for _, r := range p.rules {
		p.addKnown(r.Roles)
		p.addKnown(r.AllRoles)
	}
	return p, p.build()
}

func (p *Policy) addKnown(roles []string) {
	for _, r := range roles {
		p.known[r] = struct{}{}
	}
}

// syntaxError places a YAML syntax error on the line a person has to fix.
// yaml.v3 reports the line where the enclosing block starts, which for an
// extra bracket or a bad indent is often line 1; the first line at which a
// prefix of the file stops parsing is the right one. Binary search keeps
// this to a few parses even for a large file, and only on the error path.
func syntaxError(data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if _, after, found := strings.Cut(rest, ": "); found {
			msg = after
		}
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	good, bad := 0, len(lines) // lines[:good] parse, lines[:bad] do not
	for bad-good > 1 {
		mid := good + (bad-good)/2
		var n yaml.Node
		if yaml.Unmarshal(bytes.Join(lines[:mid], nil), &n) == nil {
			good = mid
		} else {
			bad = mid
		}
	}
	return &lineError{line: bad, msg: msg}
}

func (p *Policy) parseSubjects(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errAt(n, "subjects: want a mapping from subject to a list of roles")
	}
	if err := noDuplicateKeys(n); err != nil {
		return err
	}
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "" {
			return errAt(k, "empty subject")
		}
		s, err := parseSubject(k.Value, v)
		if err != nil {
			return err
		}
		s.line = k.Line
		p.subjects[k.Value] = s
	}
	return nil
}

// parseSubject takes "name: [roles]" or "name: {roles: [...], disabled: true}".
func parseSubject(name string, v *yaml.Node) (*subject, error) {
	if v.Kind != yaml.MappingNode {
		roles, err := roleList(v, "roles of "+name)
		return &subject{roles: roles}, err
	}
	if err := noDuplicateKeys(v); err != nil {
		return nil, err
	}
	s := &subject{}
	for i := 0; i < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		var err error
		switch k.Value {
		case "roles":
			s.roles, err = roleList(val, "roles of "+name)
		case "disabled":
			s.disabled, err = boolean(val, "disabled")
		case "limit":
			if s.limit, err = parseLimit(val); err == nil {
				s.limit.Scope = "subject " + name
			}
		default:
			err = errAt(k, "unknown key %q for subject %s (want roles, disabled, limit)", k.Value, name)
		}
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (p *Policy) parseRules(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return errAt(n, "rules: want a list of rules")
	}
	for _, rn := range n.Content {
		r, err := parseRule(rn)
		if err != nil {
			return err
		}
		p.rules = append(p.rules, r)
	}
	return nil
}

// noDuplicateKeys refuses a mapping that names a key twice. yaml.v3 keeps
// both keys when it decodes into a Node, and the later one would silently
// replace a subject's roles or a rule's path.
func noDuplicateKeys(n *yaml.Node) error {
	first := make(map[string]int, len(n.Content)/2)
	for i := 0; i < len(n.Content); i += 2 {
		k := n.Content[i]
		if line, ok := first[k.Value]; ok {
			return errAt(k, "duplicate key %q (first at line %d)", k.Value, line)
		}
		first[k.Value] = k.Line
	}
	return nil
}

func boolean(n *yaml.Node, what string) (bool, error) {
	var b bool
	if err := n.Decode(&b); err != nil || n.Tag != "!!bool" {
		return false, errAt(n, "%s: want true or false", what)
	}
	return b, nil
}

// stringList accepts a YAML list of non-empty strings.
func stringList(n *yaml.Node, what string) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, errAt(n, "%s: want a list, e.g. [A, B]", what)
	}
	out := make([]string, 0, len(n.Content))
	for _, e := range n.Content {
		if e.Kind != yaml.ScalarNode || e.Value == "" {
			return nil, errAt(e, "%s: want non-empty strings", what)
		}
		out = append(out, e.Value)
	}
	return out, nil
}

// roleList is a stringList of role names.
func roleList(n *yaml.Node, what string) ([]string, error) {
	roles, err := stringList(n, what)
	if err != nil {
		return nil, err
	}
	for i, r := range roles {
		if !isRoleName(r) {
			return nil, errAt(n.Content[i], "%s: %q: a role may not contain spaces, commas, quotes or backslashes", what, r)
		}
	}
	return roles, nil
}

// isRoleName reports whether r can be a role. A role travels in a token's
// space-separated "scope" and in the comma-separated roles placeholder, so
// it is an RFC 6749 scope-token without a comma.
func isRoleName(r string) bool {
	for i := 0; i < len(r); i++ {
		if c := r[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ',' {
			return false
		}
	}
	return r != ""
}

// RuleCount and SubjectCount size the policy, for a summary line.
func (p *Policy) RuleCount() int    { return len(p.rules) }
func (p *Policy) SubjectCount() int { return len(p.subjects) }

// Roles returns the roles the policy grants subject; none when the
// subject is disabled.
func (p *Policy) Roles(subject string) []string {
	s := p.subjects[subject]
	if s == nil || s.disabled {
		return nil
	}
	return slices.Clone(s.roles)
}

// SubjectLimit returns the limit the policy sets on subject's requests,
// nil for none.
func (p *Policy) SubjectLimit(subject string) *Limit {
	if s := p.subjects[subject]; s != nil {
		return s.limit
	}
	return nil
}

// Disabled reports whether the policy disables subject. Roles already
// holds nothing for it; this lets a refusal say why.
func (p *Policy) Disabled(subject string) bool {
	s := p.subjects[subject]
	return s != nil && s.disabled
}

// RolesInScope returns the roles the policy grants subject that scope also
// names: a token never carries more than it was issued for, and a role
// revoked in the policy is gone from the next request on. An empty scope
// yields no roles.
func (p *Policy) RolesInScope(subject string, scope []string) []string {
	s := p.subjects[subject]
	if s == nil || s.disabled {
		return nil
	}
	var out []string
	for _, r := range s.roles {
		if slices.Contains(scope, r) {
			if out == nil {
				out = make([]string, 0, len(s.roles))
			}
			out = append(out, r)
		}
	}
	return out
}

// RolesFromClaim returns the roles named anywhere in the policy that a
// token claim's values name: a value equal to a role, or, with a prefix,
// the prefix, a dot and the role, as SAP XSUAA writes scopes
// ("<xsappname>.<role>"). The prefix is exactly our own app's: an XSUAA
// token also carries the scopes of other apps ("otherapp!t5.Orders.admin"),
// which must grant nothing here. Only roles the policy knows are
// returned, so a claim cannot invent one.
func (p *Policy) RolesFromClaim(values []string, prefix string) []string {
	var out []string
	add := func(r string) {
		if _, ok := p.known[r]; ok && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	for _, v := range values {
		add(v)
		if prefix == "" {
			continue
		}
		if r, ok := strings.CutPrefix(v, prefix+"."); ok {
			add(r)
		}
	}
	return out
}

// Canonical reports whether path is free of what lets a request name one
// path to the policy and another to the backend: empty segments ("//"),
// "." and "..", backslashes, ";" (path parameters, which Tomcat and others
// strip before routing) and control characters. The guard refuses such
// paths instead of cleaning them, because the backend would receive the
// uncleaned form.
func Canonical(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x20 || c == 0x7f || c == '\\' || c == ';' {
			return false
		}
	}
	for rest := path[1:]; ; {
		seg, after, more := strings.Cut(rest, "/")
		switch seg {
		case ".", "..":
			return false
		case "":
			if more { // only a trailing slash may leave an empty segment
				return false
			}
		}
		if !more {
			return true
		}
		rest = after
	}
}
