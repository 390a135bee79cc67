package policy

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"
)

// index answers Match without scanning the rules: exact paths are a map,
// prefixes a sorted list searched in O(log n), and only suffixes,
// substrings and globs, which real policies have few of, are tried one
// by one. It is built once per parse and read without locks or
// allocation.
type index struct {
	byHost  map[string]*pathIndex // exact host names
	byWild  map[string]*pathIndex // "*.example.com", under "example.com"
	anyHost pathIndex
}

type pathIndex struct {
	exact    map[string][]*entry
	prefixes []prefixNode // sorted by prefix
	patterns []*entry     // most specific first
	star     []*entry     // method-specific first
}

// prefixNode is one distinct prefix; parent is the index of the longest
// other prefix that is a prefix of this one, or -1.
type prefixNode struct {
	prefix  string
	parent  int
	entries []*entry
}

// entry is one host and path of a rule: the unit that is ranked and
// matched.
type entry struct {
	rule *Rule
	host string // normalised; "" for any host
	path pathSpec
}

func (e *entry) String() string {
	if e.host == "" {
		return e.path.raw
	}
	return e.host + " " + e.path.raw
}

// rankKey groups the entries that tie on precedence. Entries of one group
// must not be able to match the same request.
type rankKey struct {
	host     string
	kind     pathKind
	text     string // exact and prefix: the path
	literal  int    // patterns tie on their length, not their text
	specific bool   // lists methods
}

// maxPolicyEntries bounds the host and path combinations of a whole
// policy, and maxSameRankPatterns the patterns that tie on rank, whose
// overlap check is quadratic: a policy file within MaxFileSize could
// otherwise take gigabytes to index or hours to check.
const (
	maxPolicyEntries    = 200_000
	maxSameRankPatterns = 1_000
)

func (p *Policy) build() error {
	total := 0
	for _, r := range p.rules {
		total += len(r.paths) * len(hostsOrAny(r))
	}
	if total > maxPolicyEntries {
		return fmt.Errorf("the rules have %d host and path combinations, more than %d", total, maxPolicyEntries)
	}
	groups := map[rankKey][]*entry{}
	for _, r := range p.rules {
		for _, h := range hostsOrAny(r) {
			ix := p.pathIndexFor(h)
			for _, ps := range r.paths {
				e := &entry{rule: r, host: h, path: ps}
				k := rankKey{host: h, kind: ps.kind, text: ps.text, specific: len(r.Methods) > 0}
				if ps.kind == kindPattern {
					k.text, k.literal = "", ps.literal
					if len(groups[k]) == maxSameRankPatterns {
						return &lineError{line: r.Line, msg: fmt.Sprintf("more than %d patterns of the same rank as %s", maxSameRankPatterns, e)}
					}
				}
				for _, other := range groups[k] {
					if other.rule != r && methodsOverlap(other.rule.Methods, r.Methods) && pathsMayOverlap(other.path, ps) {
						return &lineError{line: r.Line, msg: fmt.Sprintf("rule for %s overlaps the rule at line %d: same rank, so neither would be more specific%s",
							e, other.rule.Line, conservativeNote(ps))}
					}
				}
				groups[k] = append(groups[k], e)
				ix.add(e)
			}
		}
	}
	p.anyHost.finish()
	for _, ix := range p.byHost {
		ix.finish()
	}
	for _, ix := range p.byWild {
		ix.finish()
	}
	return nil
}

// hostsOrAny returns r's hosts, or "" for any host.
func hostsOrAny(r *Rule) []string {
	if len(r.Hosts) == 0 {
		return []string{""}
	}
	return r.Hosts
}

func conservativeNote(ps pathSpec) string {
	if ps.kind == kindPattern {
		return " (suffixes, substrings and globs of equal length overlap unless their fixed start or end differ)"
	}
	return ""
}

func (p *Policy) pathIndexFor(host string) *pathIndex {
	if ix := p.lookupIndex(host); ix != nil {
		return ix
	}
	m, key := &p.byHost, host
	if name, ok := strings.CutPrefix(host, "*."); ok {
		m, key = &p.byWild, name
	}
	if *m == nil {
		*m = map[string]*pathIndex{}
	}
	ix := &pathIndex{}
	(*m)[key] = ix
	return ix
}

func (ix *pathIndex) add(e *entry) {
	switch e.path.kind {
	case kindExact:
		if ix.exact == nil {
			ix.exact = map[string][]*entry{}
		}
		ix.exact[e.path.text] = append(ix.exact[e.path.text], e)
	case kindPrefix:
		ix.prefixes = append(ix.prefixes, prefixNode{prefix: e.path.text, entries: []*entry{e}})
	case kindPattern:
		ix.patterns = append(ix.patterns, e)
	case kindStar:
		ix.star = append(ix.star, e)
	}
}

// finish sorts what add collected: every list most specific first, and
// the prefixes by value with one node per distinct prefix.
func (ix *pathIndex) finish() {
	for _, es := range ix.exact {
		slices.SortStableFunc(es, byMethods)
	}
	slices.SortStableFunc(ix.star, byMethods)
	slices.SortStableFunc(ix.patterns, func(a, b *entry) int {
		return cmp.Or(cmp.Compare(b.path.literal, a.path.literal), byMethods(a, b))
	})
	slices.SortStableFunc(ix.prefixes, func(a, b prefixNode) int { return strings.Compare(a.prefix, b.prefix) })
	merged := ix.prefixes[:0]
	for _, n := range ix.prefixes {
		if last := len(merged) - 1; last >= 0 && merged[last].prefix == n.prefix {
			merged[last].entries = append(merged[last].entries, n.entries...)
			continue
		}
		merged = append(merged, n)
	}
	ix.prefixes = slices.Clip(merged)
	// In sorted order the strings that start with a prefix follow it
	// directly, so a stack of the prefixes still open finds each parent.
	var open []int
	for i := range ix.prefixes {
		n := &ix.prefixes[i]
		slices.SortStableFunc(n.entries, byMethods)
		for len(open) > 0 && !strings.HasPrefix(n.prefix, ix.prefixes[open[len(open)-1]].prefix) {
			open = open[:len(open)-1]
		}
		n.parent = -1
		if len(open) > 0 {
			n.parent = open[len(open)-1]
		}
		open = append(open, i)
	}
}

// byMethods puts rules that list methods before rules that do not.
func byMethods(a, b *entry) int {
	anyMethod := func(e *entry) int { return min(len(e.rule.Methods), 1) ^ 1 }
	return cmp.Compare(anyMethod(a), anyMethod(b))
}

// Match returns the rule that decides a request, or nil when none does
// (deny). host is the request's Host (a port is ignored); path must be
// canonical (see Canonical). An exact path also matches with a trailing
// slash, which most frameworks route to the same handler.
//
// Match does not allocate unless host or path has upper-case letters.
func (p *Policy) Match(method, host, path string) *Rule {
	lp := strings.ToLower(path)
	if len(p.byHost) > 0 || len(p.byWild) > 0 {
		h := hostname(host)
		if ix := p.byHost[h]; ix != nil {
			if r := ix.match(method, lp); r != nil {
				return r
			}
		}
		if i := strings.IndexByte(h, '.'); i > 0 {
			if ix := p.byWild[h[i+1:]]; ix != nil {
				if r := ix.match(method, lp); r != nil {
					return r
				}
			}
		}
	}
	return p.anyHost.match(method, lp)
}

// match decides for one host; lp is the lower-cased path.
func (ix *pathIndex) match(method, lp string) *Rule {
	for _, e := range ix.exact[trimSlash(lp)] {
		if e.rule.takes(method) {
			return e.rule
		}
	}
	if r := ix.matchPrefix(method, lp); r != nil {
		return r
	}
	for _, e := range ix.patterns {
		if e.rule.takes(method) && e.path.matches(lp) {
			return e.rule
		}
	}
	for _, e := range ix.star {
		if e.rule.takes(method) {
			return e.rule
		}
	}
	return nil
}

// matchPrefix finds the greatest prefix not above lp. Every prefix of lp
// in the list lies between that one and lp, so it is also a prefix of
// that one: the parents of that node that are no longer than the part it
// shares with lp are exactly the prefixes of lp, longest first.
func (ix *pathIndex) matchPrefix(method, lp string) *Rule {
	lo, hi := 0, len(ix.prefixes)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ix.prefixes[mid].prefix <= lp {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	i := lo - 1
	if i < 0 {
		return nil
	}
	shared := commonPrefix(ix.prefixes[i].prefix, lp)
	for ; i >= 0; i = ix.prefixes[i].parent {
		n := &ix.prefixes[i]
		if len(n.prefix) > shared {
			continue
		}
		for _, e := range n.entries {
			if e.rule.takes(method) {
				return e.rule
			}
		}
	}
	return nil
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// matches applies a suffix, substring or glob pattern to a lower-cased
// path, as Caddy's path matcher does.
func (ps *pathSpec) matches(lp string) bool {
	switch ps.pattern {
	case suffix:
		return strings.HasSuffix(lp, ps.text)
	case substring:
		return strings.Contains(lp, ps.text)
	}
	ok, _ := path.Match(ps.text, lp) // parsePath refused what makes a bad pattern
	return ok
}

// fixedEnds returns what every path a pattern matches starts and ends
// with. Paths start with "/" even where the pattern does not say so.
func (ps *pathSpec) fixedEnds() (start, end string) {
	switch ps.pattern {
	case suffix:
		return "/", ps.text
	case substring:
		return "/", ""
	}
	start = ps.text[:strings.IndexByte(ps.text, '*')]
	end = ps.text[strings.LastIndexByte(ps.text, '*')+1:]
	if start == "" {
		start = "/"
	}
	return start, end
}

// pathsMayOverlap is called for paths of equal rank: equal exact paths
// and prefixes always overlap (the rank key holds the text), and
// patterns unless provably disjoint.
func pathsMayOverlap(a, b pathSpec) bool {
	if a.kind != kindPattern {
		return true
	}
	as, ae := a.fixedEnds()
	bs, be := b.fixedEnds()
	compatible := func(x, y string, has func(string, string) bool) bool { return has(x, y) || has(y, x) }
	return compatible(as, bs, strings.HasPrefix) && compatible(ae, be, strings.HasSuffix)
}

// methodsOverlap reports whether one request method could match both
// method lists, counting a GET as also taking HEAD.
func methodsOverlap(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	expand := func(ms []string) []string {
		if slices.Contains(ms, "GET") {
			return append(slices.Clip(ms), "HEAD")
		}
		return ms
	}
	a, b = expand(a), expand(b)
	for _, m := range a {
		if slices.Contains(b, m) {
			return true
		}
	}
	return false
}
