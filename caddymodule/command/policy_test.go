package command

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const commandPolicy = `# Who may call what.
subjects:
  oauth_client_a: [ESBMessaging.send]   # the ERP
  oauth_client_b: [Orders.send]
rules:
  - path: /http/orders*
    methods: [POST]
    roles: [Orders.send]
  - path: /http/*
    roles: [ESBMessaging.send]
`

func writePolicyFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPolicyCheck_ReportsFileLineOrOK(t *testing.T) {
	cases := []struct {
		name, policy string
		wantOut      []string // substrings of the output
		wantErr      string   // "" for success
	}{
		{"a good policy", commandPolicy, []string{"OK, 2 rules, 2 subjects"}, ""},
		{"a public rule needs no role", commandPolicy + "  - path: /x\n    public: true\n", []string{"OK, 3 rules"}, ""},
		{"a typo in a role", strings.Replace(commandPolicy, "[Orders.send]\nrules", "[Order.send]\nrules", 1),
			[]string{"policy.yaml:4: subject oauth_client_b holds role Order.send, which no rule requires"}, "finding(s)"},
		{"a prefix that leaves its own path to a broader rule", strings.Replace(commandPolicy, "/http/orders*", "/http/orders/*", 1),
			[]string{"policy.yaml:6: /http/orders/* does not cover /http/orders itself: POST /http/orders falls to the rule at line 9"}, "finding(s)"},
		{"a file that does not parse", strings.Replace(commandPolicy, "[Orders.send]\nrules", "[Orders.send\nrules", 1),
			nil, "policy.yaml:4:"},
		{"a quota its rate uses up within the day", commandPolicy + "    limit: {rate: 100/s, quota: 100000/day}\n",
			[]string{"policy.yaml:11: the rule's limit: at its rate the quota 100000/day is used up after 16m39s each day"}, "finding(s)"},
		{"a bad limit", commandPolicy + "    limit: {rate: 100}\n", nil, "policy.yaml:11: rate: want"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writePolicyFile(t, tc.policy)
			out, err := runCommand(t, policyCommand(), "", "check", path)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error = %v, want %q\n%s", err, tc.wantErr, out)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestPolicyExplain_PrintsRuleRolesAndDecisionAndExitsByIt(t *testing.T) {
	path := writePolicyFile(t, strings.Replace(commandPolicy, "oauth_client_b: [Orders.send]", "oauth_client_b: {roles: [Orders.send], limit: {quota: 500/day}}", 1)+
		"  - path: /http/limited\n    roles: [Orders.send]\n    limit: {rate: 10/s, burst: 20}\n")
	cases := []struct {
		name    string
		args    []string
		want    []string
		refused bool
	}{
		{"a client with the role", []string{"--client", "a", "--method", "get", "--path", "/http/status"},
			[]string{"rule:     line 9", "requires: any of ESBMessaging.send", "holds [ESBMessaging.send]", "decision: allow"}, false},
		{"the SAP failure: another client's role", []string{"--client", "a", "--method", "POST", "--path", "/http/orders/1"},
			[]string{"rule:     line 6", "requires: any of Orders.send", "decision: deny"}, true},
		{"a scope that leaves the role out", []string{"--subject", "oauth_client_b", "--method", "POST", "--path", "/http/orders/1", "--scope", ""},
			[]string{"holds []", "decision: deny: the token's scope leaves out"}, true},
		{"no rule", []string{"--client", "a", "--method", "GET", "--path", "/admin"},
			[]string{"rule:     none", "deny by default"}, true},
		{"the limits that count it", []string{"--client", "b", "--method", "GET", "--path", "/http/limited"},
			[]string{"decision: allow", "limit:    rule (line 13): rate 10/s, burst 20, per client; over it: 429",
				"limit:    subject (line 4): quota 500/day, per client; over it: 429"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCommand(t, policyCommand(), "", append([]string{"explain", "--policy", path}, tc.args...)...)
			if tc.refused != errors.Is(err, errRefused) || err != nil && !errors.Is(err, errRefused) {
				t.Errorf("error = %v, want refused=%v", err, tc.refused)
			}
			if !strings.HasPrefix(out, "request:  ") || strings.Contains(out, `\n`) {
				t.Errorf("output is not plain lines:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	for _, args := range [][]string{
		{"explain", "--policy", path, "--method", "GET", "--path", "/x"},
		{"explain", "--policy", path, "--client", "a", "--subject", "s", "--method", "GET", "--path", "/x"},
		{"explain", "--policy", path, "--client", "a", "--path", "/x"},
	} {
		if _, err := runCommand(t, policyCommand(), "", args...); !errors.As(err, new(usageError)) {
			t.Errorf("%v: error %v, want a usage error", args, err)
		}
	}
}

func TestRoleGrantRevoke_EditOneLineKeepCommentsAndMode(t *testing.T) {
	path := writePolicyFile(t, commandPolicy)
	out, err := runCommand(t, roleCommand(), "", "grant", "--policy", path, "oauth_client_b", "ESBMessaging.send")
	if err != nil {
		t.Fatalf("grant: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(path)
	want := strings.Replace(commandPolicy, "oauth_client_b: [Orders.send]", "oauth_client_b: [Orders.send, ESBMessaging.send]", 1)
	if string(data) != want {
		t.Errorf("after grant:\n%s\nwant:\n%s", data, want)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want the file's own 0640", st.Mode().Perm())
	}

	out, err = runCommand(t, roleCommand(), "", "grant", "--policy", path, "oauth_client_b", "ESBMessaging.send")
	if err != nil || !strings.Contains(out, "nothing changed") {
		t.Errorf("a second grant: %v, %q; want nothing changed", err, out)
	}

	if out, err := runCommand(t, roleCommand(), "", "revoke", "--policy", path, "oauth_client_b", "ESBMessaging.send"); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if data, _ := os.ReadFile(path); string(data) != commandPolicy {
		t.Errorf("after grant and revoke:\n%s\nwant the original back", data)
	}

	// Revoking a role the subject lacks fails and leaves the file alone.
	before, _ := os.ReadFile(path)
	if _, err := runCommand(t, roleCommand(), "", "revoke", "--policy", path, "oauth_client_b", "Admin"); err == nil {
		t.Error("revoking a role the subject does not hold succeeded")
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("a failed revoke changed the file")
	}
	if _, err := runCommand(t, roleCommand(), "", "grant", "oauth_client_b", "X"); !errors.As(err, new(usageError)) {
		t.Errorf("grant without --policy: %v, want a usage error", err)
	}
}
