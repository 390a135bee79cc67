package clients

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func secretIDsOf(c *Client) []string {
	var ids []string
	for _, s := range c.Secrets {
		ids = append(ids, s.ID)
	}
	return ids
}

func TestAddSecret_GivesEverySecretAUniqueID(t *testing.T) {
	// A client from a file of the previous format: secrets without IDs.
	f := fileOf(t, Client{ID: "c", Secrets: []Secret{{Hash: hashOf("a")}, {Hash: hashOf("b")}}})
	c := &f.Clients[0]
	_, s := NewSecret()
	s.ID = "taken"
	c.Secrets[0].ID = "taken"
	c.Secrets[1].ID = ""

	id, err := c.AddSecret(s)
	if err != nil {
		t.Fatalf("AddSecret: %v", err)
	}
	ids := secretIDsOf(c)
	if len(ids) != 3 || ids[2] != id || slices.Contains(ids, "") {
		t.Fatalf("secret ids = %q (new %q), want three, the new one last, none empty", ids, id)
	}
	if id == "taken" || ids[1] == "taken" || ids[1] == id {
		t.Errorf("secret ids = %q: want them unique", ids)
	}
	if err := f.validate(); err != nil {
		t.Errorf("file after AddSecret: %v", err)
	}
}

func TestAddSecret_RefusesMoreThanTheMaximum(t *testing.T) {
	c := &Client{ID: "c"}
	for i := range MaxSecretsPerClient {
		if _, err := c.AddSecret(Secret{Hash: hashOf(string(rune('a' + i)))}); err != nil {
			t.Fatalf("secret %d: %v", i+1, err)
		}
	}
	if _, err := c.AddSecret(Secret{Hash: hashOf("one too many")}); !errors.Is(err, ErrTooManySecrets) {
		t.Errorf("AddSecret beyond %d = %v, want ErrTooManySecrets", MaxSecretsPerClient, err)
	}
	if len(c.Secrets) != MaxSecretsPerClient {
		t.Errorf("client has %d secrets, want %d", len(c.Secrets), MaxSecretsPerClient)
	}
}

func TestExpireSecretsAt_NeverExtendsAnEarlierExpiry(t *testing.T) {
	soon, later := t0.Add(time.Hour), t0.Add(24*time.Hour)
	f := fileOf(t, Client{ID: "c", Secrets: []Secret{
		{ID: "none", Hash: hashOf("a")},
		{ID: "soon", Hash: hashOf("b"), Expires: soon.Format(time.RFC3339)},
		{ID: "far", Hash: hashOf("c"), Expires: t0.Add(90 * 24 * time.Hour).Format(time.RFC3339)},
		{ID: "keep", Hash: hashOf("d")},
	}})
	c := &f.Clients[0]
	changed := c.ExpireSecretsAt("keep", later.Add(300*time.Millisecond))
	if !slices.Equal(changed, []string{"none", "far"}) {
		t.Errorf("changed = %q, want [none far]", changed)
	}
	want := map[string]string{
		"none": later.Format(time.RFC3339),
		"soon": soon.Format(time.RFC3339),
		"far":  later.Format(time.RFC3339),
		"keep": "",
	}
	for _, s := range c.Secrets {
		if s.Expires != want[s.ID] {
			t.Errorf("secret %s expires %q, want %q", s.ID, s.Expires, want[s.ID])
		}
	}
}

func TestRemoveExpiredSecrets(t *testing.T) {
	past := t0.Add(-time.Hour).Format(time.RFC3339)
	tests := map[string]struct {
		secrets     []Secret
		wantRemoved []string
		wantLeft    []string
	}{
		"expired secrets go, the others stay": {
			[]Secret{{ID: "old", Hash: hashOf("a"), Expires: past}, {ID: "cur", Hash: hashOf("b")}},
			[]string{"old"}, []string{"cur"}},
		"nothing expired": {
			[]Secret{{ID: "a", Hash: hashOf("a")}, {ID: "b", Hash: hashOf("b")}},
			nil, []string{"a", "b"}},
		"all expired: the last one stays, for the file needs one": {
			[]Secret{{ID: "x", Hash: hashOf("a"), Expires: past}, {ID: "y", Hash: hashOf("b"), Expires: past}},
			[]string{"x"}, []string{"y"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := fileOf(t, Client{ID: "c", Secrets: tc.secrets})
			c := &f.Clients[0]
			removed := c.RemoveExpiredSecrets(t0)
			if !slices.Equal(removed, tc.wantRemoved) || !slices.Equal(secretIDsOf(c), tc.wantLeft) {
				t.Errorf("removed %q, left %q; want removed %q, left %q", removed, secretIDsOf(c), tc.wantRemoved, tc.wantLeft)
			}
		})
	}
}

func TestRetireSecret(t *testing.T) {
	past := t0.Add(-time.Hour).Format(time.RFC3339)
	future := t0.Add(time.Hour).Format(time.RFC3339)
	tests := map[string]struct {
		secrets  []Secret
		retire   string
		wantErr  error
		wantLeft []string
	}{
		"old secret of a rotation": {
			[]Secret{{ID: "old", Hash: hashOf("a")}, {ID: "new", Hash: hashOf("b")}}, "old", nil, []string{"new"}},
		"a secret due to expire, while another stays": {
			[]Secret{{ID: "old", Hash: hashOf("a"), Expires: future}, {ID: "new", Hash: hashOf("b")}}, "old", nil, []string{"new"}},
		"an expired secret, while an unexpired one stays": {
			[]Secret{{ID: "old", Hash: hashOf("a"), Expires: past}, {ID: "new", Hash: hashOf("b")}}, "old", nil, []string{"new"}},
		"an expired secret, when every secret has expired": {
			[]Secret{{ID: "x", Hash: hashOf("a"), Expires: past}, {ID: "y", Hash: hashOf("b"), Expires: past}}, "x", nil, []string{"y"}},
		"the only secret": {
			[]Secret{{ID: "only", Hash: hashOf("a")}}, "only", ErrLastSecret, []string{"only"}},
		"the only secret, expired": {
			[]Secret{{ID: "only", Hash: hashOf("a"), Expires: past}}, "only", ErrLastSecret, []string{"only"}},
		"the last unexpired secret": {
			[]Secret{{ID: "old", Hash: hashOf("a"), Expires: past}, {ID: "new", Hash: hashOf("b")}}, "new", ErrLastSecret, []string{"old", "new"}},
		"an unknown secret id": {
			[]Secret{{ID: "a", Hash: hashOf("a")}, {ID: "b", Hash: hashOf("b")}}, "c", ErrNoSuchSecret, []string{"a", "b"}},
		"an empty secret id never matches a secret without one": {
			[]Secret{{Hash: hashOf("a")}, {ID: "b", Hash: hashOf("b")}}, "", ErrNoSuchSecret, []string{"", "b"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := fileOf(t, Client{ID: "c", Secrets: tc.secrets})
			c := &f.Clients[0]
			err := c.RetireSecret(tc.retire, t0)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("RetireSecret = %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(secretIDsOf(c), tc.wantLeft) {
				t.Errorf("secrets left = %q, want %q", secretIDsOf(c), tc.wantLeft)
			}
		})
	}
}
