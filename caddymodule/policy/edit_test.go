package policy

import (
	"strings"
	"testing"
)

// editBase has the layouts people write: comments everywhere, flow and
// block lists, the long form, an empty list.
const editBase = `# Who may call what.
subjects:                              # who has which role
  oauth_client_a: [ESBMessaging.send]  # ERP
  oauth_client_b:
    - Orders.send   # since 2024
    - Orders.read
  oauth_client_c: {roles: [X], disabled: true}
  oauth_client_d: []
  "oauth client e": {disabled: true}
# rules below
rules:
  - path: /http/*
    roles: [ESBMessaging.send, Orders.send]
`

// edited returns editBase with old replaced by new, once.
func edited(t *testing.T, old, new string) string {
	t.Helper()
	if strings.Count(editBase, old) != 1 {
		t.Fatalf("%q is not in editBase exactly once", old)
	}
	return strings.Replace(editBase, old, new, 1)
}

func TestGrant_EditsOnlyTheLineItMust(t *testing.T) {
	tests := map[string]struct {
		subject, role string
		want          string
	}{
		"flow list keeps its comment": {"oauth_client_a", "Orders.send",
			edited(t, "[ESBMessaging.send]  # ERP", "[ESBMessaging.send, Orders.send]  # ERP")},
		"block list gets a line like the last": {"oauth_client_b", "Invoices.send",
			edited(t, "    - Orders.read\n", "    - Orders.read\n    - Invoices.send\n")},
		"long form list": {"oauth_client_c", "Y",
			edited(t, "{roles: [X], disabled: true}", "{roles: [X, Y], disabled: true}")},
		"long form without roles": {"oauth client e", "Y",
			edited(t, `"oauth client e": {disabled: true}`, `"oauth client e": {roles: [Y], disabled: true}`)},
		"empty list": {"oauth_client_d", "Y",
			edited(t, "oauth_client_d: []", "oauth_client_d: [Y]")},
		"new subject goes after the last one": {"oauth_client_new", "Orders.send",
			edited(t, "  \"oauth client e\": {disabled: true}\n", "  \"oauth client e\": {disabled: true}\n  oauth_client_new: [Orders.send]\n")},
		"new subject that needs quotes": {"new client", "Y",
			edited(t, "  \"oauth client e\": {disabled: true}\n", "  \"oauth client e\": {disabled: true}\n  \"new client\": [Y]\n")},
		"a role that needs quotes": {"oauth_client_d", "!Y",
			edited(t, "oauth_client_d: []", `oauth_client_d: ["!Y"]`)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Grant([]byte(editBase), tc.subject, tc.role)
			if err != nil {
				t.Fatalf("Grant: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("Grant =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestGrant_OtherLayouts(t *testing.T) {
	tests := map[string]struct{ src, want string }{
		"empty file":           {"", "subjects:\n  s: [R]\n"},
		"comments only":        {"# policy\n", "# policy\nsubjects:\n  s: [R]\n"},
		"no final newline":     {"# policy", "# policy\nsubjects:\n  s: [R]\n"},
		"no subjects key":      {"# head\nrules: []\n", "# head\nsubjects:\n  s: [R]\nrules: []\n"},
		"empty flow subjects":  {"subjects: {}\n", "subjects: {s: [R]}\n"},
		"flow subjects":        {"subjects: {a: [X]}\n", "subjects: {s: [R], a: [X]}\n"},
		"multi-line flow list": {"subjects:\n  a: [X,\n    Y]\n", "subjects:\n  a: [X,\n    Y]\n  s: [R]\n"},
		"non-ASCII before the list": {"subjects:\n  ä: [X]\n  s: [Q] # ü\n",
			"subjects:\n  ä: [X]\n  s: [Q, R] # ü\n"},
		"quoted roles": {"subjects:\n  s: ['X''s', \"Y]\"]\n", "subjects:\n  s: ['X''s', \"Y]\", R]\n"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Grant([]byte(tc.src), "s", "R")
			if err != nil {
				t.Fatalf("Grant: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("Grant =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestGrant_HeldRoleChangesNothing(t *testing.T) {
	got, err := Grant([]byte(editBase), "oauth_client_b", "Orders.read")
	if err != nil || string(got) != editBase {
		t.Errorf("Grant of a held role = %v, changed: %v; want no change", err, string(got) != editBase)
	}
}

func TestRevoke_EditsOnlyTheLineItMust(t *testing.T) {
	tests := map[string]struct {
		src, subject, role string
		want               string
	}{
		"block item goes with its line and comment": {editBase, "oauth_client_b", "Orders.send",
			edited(t, "    - Orders.send   # since 2024\n", "")},
		"last block item leaves an empty list": {"subjects:\n  s:\n    - A  # note\n", "s", "A", "subjects:\n  s:\n    []  # note\n"},
		"only flow item":                       {editBase, "oauth_client_a", "ESBMessaging.send", edited(t, "[ESBMessaging.send]", "[]")},
		"long form":                            {editBase, "oauth_client_c", "X", edited(t, "{roles: [X], disabled", "{roles: [], disabled")},
		"first of a flow list":                 {"subjects:\n  s: [A, B, C]\n", "s", "A", "subjects:\n  s: [B, C]\n"},
		"middle of a flow list":                {"subjects:\n  s: [A, B, C]\n", "s", "B", "subjects:\n  s: [A, C]\n"},
		"last of a flow list":                  {"subjects:\n  s: [A, B, C] # x\n", "s", "C", "subjects:\n  s: [A, B] # x\n"},
		"every copy of the role":               {"subjects:\n  s: [A, B, A]\n", "s", "A", "subjects:\n  s: [B]\n"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Revoke([]byte(tc.src), tc.subject, tc.role)
			if err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("Revoke =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestGrantRevoke_Refuse(t *testing.T) {
	tests := map[string]struct {
		grant              bool
		src, subject, role string
		wantErr            string
	}{
		"revoke a role not held":   {false, editBase, "oauth_client_a", "Orders.send", "does not hold role Orders.send"},
		"revoke from nobody":       {false, editBase, "nobody", "A", "subject nobody is not in the policy"},
		"grant a bad role name":    {true, editBase, "oauth_client_a", "a,b", "a role may not contain"},
		"grant to an empty name":   {true, editBase, "", "A", "want printable text"},
		"grant to a control char":  {true, editBase, "a\nb", "A", "want printable text"},
		"grant in a broken policy": {true, "subjects: [\n", "s", "A", "must be valid before it is edited"},
		"a tagged role":            {true, "subjects:\n  s: [!!str A]\n", "s", "B", "edit it by hand"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			edit := Revoke
			if tc.grant {
				edit = Grant
			}
			got, err := edit([]byte(tc.src), tc.subject, tc.role)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v (result %q), want one containing %q", err, got, tc.wantErr)
			}
		})
	}
}
