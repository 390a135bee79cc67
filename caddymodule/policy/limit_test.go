package policy

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParse_Limits(t *testing.T) {
	tests := map[string]struct {
		limit string
		want  Limit
	}{
		"a rate alone bursts its own count, per client": {"{rate: 100/s}",
			Limit{Rate: 100, RatePer: time.Second, Burst: 100, Per: "client"}},
		"a rate with a burst": {"{rate: 10/m, burst: 25}",
			Limit{Rate: 10, RatePer: time.Minute, Burst: 25, Per: "client"}},
		"a rate per hour": {"{rate: 3600/h}",
			Limit{Rate: 3600, RatePer: time.Hour, Burst: 3600, Per: "client"}},
		"a quota alone has no rate": {"{quota: 100000/day}",
			Limit{Quota: 100000, Window: 24 * time.Hour, Per: "client"}},
		"an hourly quota per subject": {"{quota: 500/h, per: subject}",
			Limit{Quota: 500, Window: time.Hour, Per: "subject"}},
		"both, per value of a claim": {"{rate: 5/s, burst: 1, quota: 1000/day, per: 'claim:iss'}",
			Limit{Rate: 5, RatePer: time.Second, Burst: 1, Quota: 1000, Window: 24 * time.Hour, Per: "claim", Claim: "iss"}},
		"spaces around the slash are fine": {"{rate: 100 / s}",
			Limit{Rate: 100, RatePer: time.Second, Burst: 100, Per: "client"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := mustParse(t, "rules:\n  - path: /a\n    roles: [R]\n    limit: "+tc.limit+"\n")
			got := p.Match("GET", "", "/a").Limit
			if got == nil {
				t.Fatal("the rule has no limit")
			}
			tc.want.Line, tc.want.Scope = 4, "rule   /a"
			if *got != tc.want {
				t.Errorf("limit = %+v, want %+v", *got, tc.want)
			}
		})
	}
}

func TestParse_SubjectLimitInTheLongForm(t *testing.T) {
	p := mustParse(t, `subjects:
  s1:
    roles: [R]
    limit:
      rate: 2/s
  s2: [R]
rules:
  - path: /a
    roles: [R]
`)
	l := p.SubjectLimit("s1")
	if l == nil || l.Rate != 2 || l.Burst != 2 || l.Line != 5 || l.Scope != "subject s1" {
		t.Fatalf("SubjectLimit(s1) = %+v, want rate 2/s, burst 2, at line 5, scope subject s1", l)
	}
	if l := p.SubjectLimit("s2"); l != nil {
		t.Errorf("SubjectLimit(s2) = %+v, want nil", l)
	}
	if l := p.SubjectLimit("nobody"); l != nil {
		t.Errorf("SubjectLimit(nobody) = %+v, want nil", l)
	}
	if p.Match("GET", "", "/a").Limit != nil {
		t.Error("the rule has a limit it does not name")
	}
}

func TestParse_BadLimitsNameTheirLine(t *testing.T) {
	tests := map[string]struct {
		limit string
		want  string
	}{
		"a limit that is not a mapping": {"100/s", "p.yaml:4: limit: want a mapping"},
		"neither rate nor quota":        {"{per: client}", "p.yaml:4: limit needs a rate"},
		"a rate without a unit":         {"{rate: 100}", "p.yaml:4: rate: want <number> and one of /h /m /s"},
		"a rate per day":                {"{rate: 100/day}", "p.yaml:4: rate: want"},
		"a quota per second":            {"{quota: 100/s}", "p.yaml:4: quota: want <number> and one of /day /h"},
		"a zero rate":                   {"{rate: 0/s}", `p.yaml:4: rate: "0": the count must be a whole number from 1`},
		"a negative quota":              {"{quota: -5/day}", "p.yaml:4: quota: \"-5\": the count must be"},
		"a rate past the bound":         {"{rate: 1000000001/s}", "the count must be a whole number from 1 to 1000000000"},
		"a fractional burst":            {"{rate: 1/s, burst: 1.5}", "p.yaml:4: burst: want a whole number"},
		"a burst without a rate":        {"{quota: 10/h, burst: 5}", "p.yaml:4: burst: only a rate has a burst"},
		"an unknown key":                {"{rate: 1/s, window: 1h}", `p.yaml:4: unknown limit key "window"`},
		"a key twice":                   {"{rate: 1/s, rate: 2/s}", `p.yaml:4: duplicate key "rate"`},
		"per something else":            {"{rate: 1/s, per: address}", "p.yaml:4: per: want client, subject or claim:<name>"},
		"per a claim without a name":    {"{rate: 1/s, per: 'claim:'}", `p.yaml:4: per: claim:<name>: want a claim name of at most 64 letters, digits, '_', '-', '.' or ':'`},
		"per a claim with a space":      {"{rate: 1/s, per: 'claim:ten ant'}", `p.yaml:4: per: claim:<name>: want a claim name of at most 64 letters, digits, '_', '-', '.' or ':'`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte("rules:\n  - path: /a\n    roles: [R]\n    limit: "+tc.limit+"\n"), "p.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	t.Run("a limit on a public rule", func(t *testing.T) {
		_, err := Parse([]byte("rules:\n  - path: /a\n    public: true\n    limit: {rate: 1/s}\n"), "p.yaml")
		if err == nil || !strings.Contains(err.Error(), "p.yaml:2: a public rule has no caller to count") {
			t.Errorf("Parse = %v, want the public rule refused at line 2", err)
		}
	})
	t.Run("a bad limit of a subject", func(t *testing.T) {
		_, err := Parse([]byte("subjects:\n  s: {roles: [R], limit: {rate: fast}}\n"), "p.yaml")
		if err == nil || !strings.Contains(err.Error(), "p.yaml:2: rate: want") {
			t.Errorf("Parse = %v, want the subject's limit refused at line 2", err)
		}
	})
}

func TestCheck_QuotasAgainstTheirRate(t *testing.T) {
	tests := map[string]struct {
		limit string
		want  string // "" for no finding
	}{
		"a quota used up within the day": {"{rate: 100/s, quota: 100000/day}",
			"p.yaml:6: the rule's limit: at its rate the quota 100000/day is used up after 16m39s each day, and the caller is refused for the rest of it"},
		"a quota the rate never reaches": {"{rate: 1/m, quota: 100000/day}",
			"p.yaml:6: the rule's limit: its quota 100000/day is never reached: its rate admits at most 1441 a day; drop the quota or lower it"},
		"an hourly quota against its rate": {"{rate: 10/s, burst: 1, quota: 3601/h}",
			"p.yaml:6: the rule's limit: at its rate the quota 3601/h is used up after 6m0s each hour, and the caller is refused for the rest of it"},
		"per a claim our tokens never carry": {"{rate: 1/s, per: 'claim:tennant'}",
			"p.yaml:6: the rule's limit counts per claim tennant, which tokens of this gateway never carry: they all share one budget (fine if an external issuer's tokens carry it)"},
		"per a claim our tokens carry": {"{rate: 1/s, per: 'claim:aud'}", ""},
		"a rate alone":                 {"{rate: 1/s}", ""},
		"a quota alone":                {"{quota: 10/day}", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := mustParse(t, "subjects:\n  s: [R]\nrules:\n  - path: /a\n    roles: [R]\n    limit: "+tc.limit+"\n")
			var got []string
			for _, f := range Check(p) {
				got = append(got, "p.yaml:"+strconv.Itoa(f.Line)+": "+f.Message)
			}
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("Check = %q, want nothing", got)
			case tc.want != "" && (len(got) != 1 || got[0] != tc.want):
				t.Errorf("Check = %q, want [%q]", got, tc.want)
			}
		})
	}
	t.Run("a subject's limit too", func(t *testing.T) {
		p := mustParse(t, "subjects:\n  s: {roles: [R], limit: {rate: 1/s, quota: 60/h}}\nrules:\n  - path: /a\n    roles: [R]\n")
		fs := Check(p)
		if len(fs) != 1 || fs[0].Line != 2 || !strings.Contains(fs[0].Message, "the limit of subject s: at its rate the quota 60/h is used up after 59s each hour") {
			t.Errorf("Check = %+v, want the subject's quota flagged at line 2", fs)
		}
	})
}

func TestExplain_ShowsTheLimitsThatCount(t *testing.T) {
	p := mustParse(t, `subjects:
  s: {roles: [R], limit: {quota: 1000/day}}
  t: [R]
rules:
  - path: /a
    roles: [R]
    limit: {rate: 10/s, burst: 20, per: 'claim:iss'}
  - path: /b
    roles: [R]
`)
	x := Explain(p, "GET", "", "/a", "s", nil)
	want := "decision: allow: the subject holds any of R\n" +
		"limit:    rule (line 7): rate 10/s, burst 20, per value of claim iss; over it: 429\n" +
		"limit:    subject (line 2): quota 1000/day, per client; over it: 429\n"
	if !strings.HasSuffix(x.String(), want) {
		t.Errorf("Explain(/a, s) =\n%s\nwant it to end with\n%s", x, want)
	}
	if x := Explain(p, "GET", "", "/b", "t", nil); len(x.Limits) != 0 {
		t.Errorf("Explain(/b, t).Limits = %q, want none", x.Limits)
	}
	if x := Explain(p, "GET", "", "/a", "nobody", nil); len(x.Limits) != 0 {
		t.Errorf("a refused request: Limits = %q, want none (it is never counted)", x.Limits)
	}
}

func TestLimit_ScopeSurvivesAMoveButNotAChangeOfWhatTheRuleCovers(t *testing.T) {
	scope := func(src, path string) string {
		t.Helper()
		return mustParse(t, src).Match("GET", "", path).Limit.Scope
	}
	before := scope("rules:\n  - path: /a*\n    roles: [R]\n    limit: {rate: 1/s}\n", "/a")
	moved := scope("rules:\n  - path: /b\n    roles: [R]\n  - path: /a*\n    roles: [R]\n    limit: {rate: 5/s}\n", "/a")
	if before != moved {
		t.Errorf("scope %q after the rule moved and its rate changed, want %q: the counts go on", moved, before)
	}
	if other := scope("rules:\n  - path: /a*\n    methods: [GET]\n    roles: [R]\n    limit: {rate: 1/s}\n", "/a"); other == before {
		t.Errorf("scope %q for a rule that now covers other requests, want a new one", other)
	}
}

func TestGrant_KeepsASubjectsLimit(t *testing.T) {
	src := "subjects:\n  a: {roles: [R], limit: {quota: 10/day}}\nrules:\n  - path: /a\n    roles: [R, S]\n"
	out, err := Grant([]byte(src), "a", "S")
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, string(out))
	if l := p.SubjectLimit("a"); l == nil || l.Quota != 10 || !slices.Contains(p.Roles("a"), "S") {
		t.Errorf("after Grant: roles %q, limit %+v; want S granted and the quota kept\n%s", p.Roles("a"), l, out)
	}
}
