package policy

import (
	"slices"
	"strings"
	"testing"
)

func TestParse_Binding(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string
		wantErr   string
	}{
		{"mtls", "rules:\n  - {path: /a, roles: [R], binding: [mtls]}\n", []string{"mtls"}, ""},
		{"either, in the written order", "rules:\n  - {path: /a, roles: [R], binding: [dpop, mtls]}\n", []string{"dpop", "mtls"}, ""},
		{"an unknown kind", "rules:\n  - {path: /a, roles: [R]}\n  - {path: /b, roles: [R], binding: [bearer]}\n", nil, `p.yaml:3: binding: "bearer": want mtls`},
		{"a kind twice", "rules:\n  - {path: /a, roles: [R], binding: [mtls, mtls]}\n", nil, `p.yaml:2: binding: "mtls" is listed twice`},
		{"an empty list", "rules:\n  - {path: /a, roles: [R], binding: []}\n", nil, "p.yaml:2: binding: name mtls, dpop or both"},
		{"not a list", "rules:\n  - {path: /a, roles: [R], binding: mtls}\n", nil, "p.yaml:2: binding: want a list"},
		{"on a public rule", "rules:\n  - path: /a\n    public: true\n    binding: [mtls]\n", nil, "p.yaml:2: a public rule sees no token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.src), "p.yaml")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Match("GET", "", "/a").Binding; !slices.Equal(got, tc.want) {
				t.Errorf("Binding = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestExplain_ShowsTheBindingARuleDemands(t *testing.T) {
	p := mustParse(t, "subjects:\n  s: [R]\nrules:\n  - path: /a\n    roles: [R]\n    binding: [mtls, dpop]\n    report_only: true\n")
	x := Explain(p, "GET", "", "/a", "s", nil)
	out := x.String()
	for _, want := range []string{
		"binding:  bound to the TLS client certificate (mtls) or bound to a DPoP key, with a proof (dpop); a bearer token gets 401 invalid_token\n",
		"decision: allow: the subject holds any of R; the rule demands a token bound to the TLS client certificate (mtls) or bound to a DPoP key, with a proof (dpop), else 401 invalid_token",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Explain =\n%s\nwant it to contain\n%s", out, want)
		}
	}
}
