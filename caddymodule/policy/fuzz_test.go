package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// seedPolicies are the policy files under testdata/fuzz/policies.
func seedPolicies(f *testing.F) [][]byte {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "policies", "*.yaml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed policies: %v", err)
	}
	var out [][]byte
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

var seedRequests = [][3]string{
	{"GET", "api.example.com", "/a"},
	{"post", "WWW.Example.com:8443", "/B/x/"},
	{"HEAD", "[::1]:80", "/files/x/y.pdf"},
	{"GET", "", "/the-admin/x.json"},
	{"DELETE", "a.b.example.com.", "/"},
}

// FuzzParse: parsing never panics, and a policy that parses decides like
// the naive reference, explains and checks without panicking, and edits
// to a policy that holds the edit.
func FuzzParse(f *testing.F) {
	for _, data := range seedPolicies(f) {
		for _, r := range seedRequests {
			f.Add(data, r[0], r[1], r[2])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, method, host, path string) {
		p, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml:") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		checkAgainstReference(t, p, method, host, path)
		Check(p)
		_ = Explain(p, method, host, path, "a", nil).String()
		if out, err := Grant(data, "fuzz_subject", "Fuzz.role"); err == nil {
			q, err := Parse(out, "granted.yaml")
			if err != nil || !slices.Contains(q.Roles("fuzz_subject"), "Fuzz.role") && !q.Disabled("fuzz_subject") {
				t.Fatalf("Grant returned a policy that does not grant the role: %v\n%s", err, out)
			}
		}
		if out, err := Revoke(data, "a", "A"); err == nil {
			q, err := Parse(out, "revoked.yaml")
			if err != nil || slices.Contains(q.subjects["a"].roles, "A") {
				t.Fatalf("Revoke returned a policy that still grants the role: %v\n%s", err, out)
			}
		}
	})
}

// FuzzMatch: on the seed policies, Match agrees with the naive reference
// and the case of a request does not change the rule that decides it.
func FuzzMatch(f *testing.F) {
	var policies []*Policy
	for _, data := range seedPolicies(f) {
		if p, err := Parse(data, "seed.yaml"); err == nil {
			policies = append(policies, p)
		}
	}
	for i := range policies {
		for _, r := range seedRequests {
			f.Add(uint8(i), r[0], r[1], r[2])
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, method, host, path string) {
		p := policies[int(which)%len(policies)]
		r := checkAgainstReference(t, p, method, host, path)
		if isASCII(method + host + path) {
			if u := p.Match(strings.ToUpper(method), strings.ToUpper(host), strings.ToUpper(path)); u != r {
				t.Fatalf("upper-casing %s %s %s changed the rule from %v to %v", method, host, path, r, u)
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// checkAgainstReference compares Match with a scan of every host and path
// of every rule, ranked as the package documentation says.
func checkAgainstReference(t *testing.T, p *Policy, method, host, path string) *Rule {
	t.Helper()
	got := p.Match(method, host, path)
	h, lp := hostname(host), strings.ToLower(path)
	var best *Rule
	var bestRank [4]int
	for _, r := range p.rules {
		if !r.takes(method) {
			continue
		}
		for _, rh := range hostsOrAny(r) {
			hostRank := 0
			switch {
			case rh == h && rh != "":
				hostRank = 2
			case strings.HasPrefix(rh, "*."):
				label, rest, ok := strings.Cut(h, ".")
				if !ok || label == "" || rest != rh[2:] {
					continue
				}
				hostRank = 1
			case rh != "":
				continue
			}
			for _, ps := range r.paths {
				var length int
				switch ps.kind {
				case kindExact:
					if trimSlash(lp) != ps.text {
						continue
					}
				case kindPrefix:
					if !strings.HasPrefix(lp, ps.text) {
						continue
					}
					length = len(ps.text)
				case kindPattern:
					if !ps.matches(lp) {
						continue
					}
					length = ps.literal
				}
				rank := [4]int{hostRank, int(ps.kind), length, min(len(r.Methods), 1)}
				switch c := slices.Compare(rank[:], bestRank[:]); {
				case best == nil || c > 0:
					best, bestRank = r, rank
				case c == 0 && best != r:
					t.Fatalf("%s %s %s: rules at lines %d and %d tie; Parse should have refused them", method, host, path, best.Line, r.Line)
				}
			}
		}
	}
	if got != best {
		t.Fatalf("Match(%q, %q, %q) = %v, reference says %v", method, host, path, got, best)
	}
	return got
}
