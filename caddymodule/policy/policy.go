// Package policy decides who may call what: the policy file maps token
// subjects to roles ("subjects") and paths to the roles they require
// ("rules"). It is SAP Cloud Integration's user-to-role assignment and
// per-endpoint "User Role" in one person-written YAML file.
//
// Matching: the most specific matching rule decides. An exact path beats
// a wildcard, a longer wildcard prefix beats a shorter one, and at equal
// path specificity a rule that lists methods beats one that does not.
// Paths match case-insensitively, like Caddy's path matcher, so changing
// the case of a URL never escapes a stricter rule. No matching rule means
// deny.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxFileSize bounds the policy file (100,000 subjects fit in ~8 MiB).
const maxFileSize = 32 << 20

// Policy is a parsed policy file. It is immutable; a changed file is a
// new Policy.
type Policy struct {
	subjects map[string][]string
	rules    []*Rule // most specific first
}

// Rule is one entry of "rules".
type Rule struct {
	// Path is an exact path ("/http/ping") or a prefix ending in "*"
	// ("/http/*"); "*" alone matches every path.
	Path string
	// Methods restricts the rule to these HTTP methods; empty means any.
	Methods []string
	// Roles allow the request if the caller holds any one of them.
	Roles []string
	// Public rules need no token at all.
	Public bool
	// Line is where the rule starts in the policy file.
	Line int

	pattern  string // lower-cased path without a trailing "*"
	wildcard bool
}

// ReadFile reads and parses the policy file at path.
func ReadFile(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
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
	p := &Policy{subjects: map[string][]string{}}
	if len(doc.Content) == 0 {
		return p, nil // an empty file denies everything
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
	if err := p.sortRules(); err != nil {
		return nil, err
	}
	return p, nil
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
		roles, err := roleList(v, "roles of "+k.Value)
		if err != nil {
			return err
		}
		p.subjects[k.Value] = roles
	}
	return nil
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

func parseRule(n *yaml.Node) (*Rule, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errAt(n, "a rule is a mapping with path and roles or public")
	}
	if err := noDuplicateKeys(n); err != nil {
		return nil, err
	}
	r := &Rule{Line: n.Line}
	var err error
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "path":
			if v.Kind != yaml.ScalarNode {
				return nil, errAt(v, "path: want a string")
			}
			r.Path = v.Value
		case "methods":
			if r.Methods, err = stringList(v, "methods"); err != nil {
				return nil, err
			}
			for j, m := range r.Methods {
				if !isToken(m) {
					return nil, errAt(v, "methods: %q is not an HTTP method", m)
				}
				r.Methods[j] = strings.ToUpper(m)
			}
		case "roles":
			if r.Roles, err = roleList(v, "roles"); err != nil {
				return nil, err
			}
		case "public":
			if err := v.Decode(&r.Public); err != nil || v.Tag != "!!bool" {
				return nil, errAt(v, "public: want true or false")
			}
		default:
			return nil, errAt(k, "unknown rule key %q (want path, methods, roles, public)", k.Value)
		}
	}
	switch {
	case r.Path == "":
		return nil, errAt(n, "rule has no path")
	case r.Path != "*" && !strings.HasPrefix(r.Path, "/"):
		return nil, errAt(n, "path %q: must start with / (or be *)", r.Path)
	case strings.Contains(strings.TrimSuffix(r.Path, "*"), "*"):
		return nil, errAt(n, "path %q: only a trailing * is supported", r.Path)
	case r.Public && len(r.Roles) > 0:
		return nil, errAt(n, "rule is public and lists roles; choose one")
	case !r.Public && len(r.Roles) == 0:
		return nil, errAt(n, "rule needs roles, or public: true")
	}
	r.wildcard = strings.HasSuffix(r.Path, "*")
	r.pattern = strings.ToLower(strings.TrimSuffix(r.Path, "*"))
	if !r.wildcard {
		r.pattern = trimSlash(r.pattern)
	}
	return r, nil
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

// roleList is a stringList of role names. A role travels in a token's
// space-separated "scope" and in the comma-separated roles placeholder, so
// it is an RFC 6749 scope-token without a comma.
func roleList(n *yaml.Node, what string) ([]string, error) {
	roles, err := stringList(n, what)
	if err != nil {
		return nil, err
	}
	for i, r := range roles {
		for j := 0; j < len(r); j++ {
			if c := r[j]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ',' {
				return nil, errAt(n.Content[i], "%s: %q: a role may not contain spaces, commas, quotes or backslashes", what, r)
			}
		}
	}
	return roles, nil
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

// sortRules orders rules by specificity and refuses two rules that would
// compete for the same request at the same specificity: which one wins
// would otherwise depend on their order in the file.
func (p *Policy) sortRules() error {
	sort.SliceStable(p.rules, func(i, j int) bool { return moreSpecific(p.rules[i], p.rules[j]) })
	for i := 1; i < len(p.rules); i++ {
		for j := i - 1; j >= 0 && !moreSpecific(p.rules[j], p.rules[i]); j-- {
			a, b := p.rules[j], p.rules[i]
			if a.pattern == b.pattern && methodsOverlap(a.Methods, b.Methods) {
				first, second := a, b
				if first.Line > second.Line {
					first, second = second, first
				}
				return &lineError{line: second.Line, msg: fmt.Sprintf("rule for %s overlaps the rule at line %d for the same path and methods", second.Path, first.Line)}
			}
		}
	}
	return nil
}

func moreSpecific(a, b *Rule) bool {
	if a.wildcard != b.wildcard {
		return !a.wildcard
	}
	if len(a.pattern) != len(b.pattern) {
		return len(a.pattern) > len(b.pattern)
	}
	return len(a.Methods) > 0 && len(b.Methods) == 0
}

func methodsOverlap(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	if len(a) == 0 || len(b) == 0 {
		return false // different specificity; the listed methods win
	}
	for _, m := range a {
		if slices.Contains(b, m) {
			return true
		}
	}
	return false
}

// Match returns the rule that decides a request, or nil when none does
// (deny). path must be canonical (see Canonical).
//
// Methods match case-insensitively and HEAD matches a rule that lists GET:
// frameworks upper-case methods and answer HEAD with their GET handler, so
// "post" or HEAD must not slip past a rule to a weaker one. An exact path
// also matches with a trailing slash, which most frameworks route to the
// same handler.
func (p *Policy) Match(method, path string) *Rule {
	lp := strings.ToLower(path)
	exact := trimSlash(lp)
	m := strings.ToUpper(method)
	for _, r := range p.rules {
		if r.matches(m, lp, exact) {
			return r
		}
	}
	return nil
}

// trimSlash drops a trailing slash, except from "/" itself.
func trimSlash(p string) string {
	if len(p) > 1 {
		return strings.TrimSuffix(p, "/")
	}
	return p
}

// matches takes the lower-cased path as sent, for wildcards, and without
// its trailing slash, for exact rules (whose patterns have none).
func (r *Rule) matches(method, lowerPath, exactPath string) bool {
	if r.wildcard {
		if !strings.HasPrefix(lowerPath, r.pattern) {
			return false
		}
	} else if exactPath != r.pattern {
		return false
	}
	if len(r.Methods) == 0 || slices.Contains(r.Methods, method) {
		return true
	}
	return method == "HEAD" && slices.Contains(r.Methods, "GET")
}

// Allows reports whether a caller holding roles satisfies r.
func (r *Rule) Allows(roles []string) bool {
	if r.Public {
		return true
	}
	for _, want := range r.Roles {
		if slices.Contains(roles, want) {
			return true
		}
	}
	return false
}

// Roles returns the roles the policy grants subject.
func (p *Policy) Roles(subject string) []string {
	return slices.Clone(p.subjects[subject])
}

// RolesInScope returns the roles the policy grants subject that scope also
// names: a token never carries more than it was issued for, and a role
// revoked in the policy is gone from the next request on. An empty scope
// yields no roles.
func (p *Policy) RolesInScope(subject string, scope []string) []string {
	var out []string
	for _, r := range p.subjects[subject] {
		if slices.Contains(scope, r) {
			out = append(out, r)
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
	segs := strings.Split(path[1:], "/")
	for i, s := range segs {
		switch s {
		case ".", "..":
			return false
		case "":
			if i != len(segs)-1 { // only a trailing slash may leave an empty segment
				return false
			}
		}
	}
	return true
}
