package command

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

var secretIDLine = regexp.MustCompile(`(?m)^secret_id:\s+(\S+)\s*$`)

func TestClientCommands_SecretStdinRefusesBadInputWithoutWritingTheFile(t *testing.T) {
	inputs := map[string]struct{ stdin, want string }{
		"15 characters":           {strings.Repeat("a", 15) + "\n", "at least 16"},
		"empty":                   {"", "no secret on standard input"},
		"only a newline":          {"\n", "no secret on standard input"},
		"over 512 bytes":          {strings.Repeat("a", 600), "the most allowed is 512"},
		"513 bytes and a newline": {strings.Repeat("a", 513) + "\n", "the most allowed is 512"},
		"two trailing newlines":   {strings.Repeat("a", 20) + "\n\n", ""}, // accepted: only one is dropped
	}
	for name, tc := range inputs {
		t.Run("add, "+name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "clients.json")
			out, err := runClient(t, tc.stdin, "add", "--clients", path, "--name", "x", "--secret-stdin")
			if tc.want == "" {
				if err != nil {
					t.Errorf("add: %v\n%s", err, out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("add error = %v, want one containing %q", err, tc.want)
			}
			if _, statErr := os.Stat(path); !os.IsNotExist(statErr) {
				t.Errorf("the clients file was written (stat: %v)", statErr)
			}
		})
		t.Run("rotate-secret, "+name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "clients.json")
			id, _ := addTestClient(t, path)
			before, _ := os.ReadFile(path)
			out, err := runClient(t, tc.stdin, "rotate-secret", "--clients", path, "--id", id, "--secret-stdin")
			if tc.want == "" {
				if err != nil {
					t.Errorf("rotate-secret: %v\n%s", err, out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("rotate-secret error = %v, want one containing %q", err, tc.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the clients file changed")
			}
		})
	}
}

func TestClientRotateSecret_OldAndNewSecretsBothWorkUntilRetired(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	id, oldSecret := addTestClient(t, path)
	oldID := readClient(t, path, id).Secrets[0].ID

	out, err := runClient(t, "", "rotate-secret", "--clients", path, "--id", id)
	if err != nil {
		t.Fatalf("rotate-secret: %v\n%s", err, out)
	}
	newSecret, newID := field(t, secretLine, out), field(t, secretIDLine, out)
	if newSecret == oldSecret || newID == oldID {
		t.Fatalf("rotation returned the old secret or id:\n%s", out)
	}
	if !strings.Contains(out, oldID) || !strings.Contains(out, "retire-secret") {
		t.Errorf("output does not list the old secret %s and how to retire it:\n%s", oldID, out)
	}
	c := readClient(t, path, id)
	if len(c.Secrets) != 2 || c.Secrets[0].Expires != "" {
		t.Errorf("secrets = %+v, want the old one unexpired and the new one", c.Secrets)
	}
	for name, s := range map[string]string{"old": oldSecret, "new": newSecret} {
		if err := authAt(t, path, id, s, cmdT0.Add(365*24*time.Hour)); err != nil {
			t.Errorf("%s secret, a year later: %v", name, err)
		}
	}

	out, err = runClient(t, "", "retire-secret", "--clients", path, "--id", id, "--secret-id", oldID)
	if err != nil {
		t.Fatalf("retire-secret: %v\n%s", err, out)
	}
	if err := authAt(t, path, id, oldSecret, cmdT0); err == nil {
		t.Error("the retired secret still authenticates")
	}
	if err := authAt(t, path, id, newSecret, cmdT0); err != nil {
		t.Errorf("the new secret after retiring the old: %v", err)
	}
}

func TestClientRotateSecret_RetireOldAfterSetsTheExpiry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	id, oldSecret := addTestClient(t, path)
	out, err := runClient(t, "", "rotate-secret", "--clients", path, "--id", id, "--retire-old-after", "24h")
	if err != nil {
		t.Fatalf("rotate-secret: %v\n%s", err, out)
	}
	newSecret := field(t, secretLine, out)
	deadline := cmdT0.Add(24 * time.Hour)
	if c := readClient(t, path, id); c.Secrets[0].Expires != deadline.Format(time.RFC3339) || c.Secrets[1].Expires != "" {
		t.Errorf("secrets = %+v, want the old one to expire at %s and the new one never", c.Secrets, deadline.Format(time.RFC3339))
	}
	tests := map[string]struct {
		secret string
		now    time.Time
		ok     bool
	}{
		"old secret before the deadline": {oldSecret, deadline.Add(-time.Second), true},
		"old secret at the deadline":     {oldSecret, deadline, false},
		"new secret after the deadline":  {newSecret, deadline.Add(time.Hour), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := authAt(t, path, id, tc.secret, tc.now); (err == nil) != tc.ok {
				t.Errorf("Authenticate = %v, want ok=%v", err, tc.ok)
			}
		})
	}

	// A second rotation keeps the first deadline for the oldest secret and
	// gives the previous new secret the later one.
	out, err = runClient(t, "", "rotate-secret", "--clients", path, "--id", id, "--retire-old-after", "72h")
	if err != nil {
		t.Fatalf("second rotate-secret: %v\n%s", err, out)
	}
	c := readClient(t, path, id)
	want := []string{deadline.Format(time.RFC3339), cmdT0.Add(72 * time.Hour).Format(time.RFC3339), ""}
	for i, s := range c.Secrets {
		if i >= len(want) || s.Expires != want[i] {
			t.Errorf("secret %d expires %q, want %q", i, s.Expires, want)
		}
	}
}

func TestClientRotateSecret_SecretStdin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	id, oldSecret := addTestClient(t, path)
	const chosen = "a long secret a person chose"
	out, err := runClient(t, chosen+"\n", "rotate-secret", "--clients", path, "--id", id, "--secret-stdin", "--retire-old-after", "0s")
	if err != nil {
		t.Fatalf("rotate-secret: %v\n%s", err, out)
	}
	if secretLine.MatchString(out) || strings.Contains(out, chosen) {
		t.Errorf("output shows a secret:\n%s", out)
	}
	newID := field(t, secretIDLine, out)
	c := readClient(t, path, id)
	if s := c.Secrets[1]; s.ID != newID || s.Algorithm() != "argon2id" {
		t.Errorf("new secret = %+v, want id %s, argon2id", s, newID)
	}
	if err := authAt(t, path, id, chosen, cmdT0); err != nil {
		t.Errorf("the chosen secret: %v", err)
	}
	if err := authAt(t, path, id, oldSecret, cmdT0); err == nil {
		t.Error("the old secret still works after --retire-old-after 0s")
	}
}

func TestClientRotateSecret_GivesIDsToSecretsOfAnOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	oldSecret, stored := clients.NewSecret()
	// As written before secrets had IDs and dates.
	old := `{"clients": [{"id": "legacy", "name": "L", "secrets": [{"hash": "` + stored.Hash + `"}], "token_lifetime": "1h0m0s"}]}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runClient(t, "", "rotate-secret", "--clients", path, "--id", "legacy")
	if err != nil {
		t.Fatalf("rotate-secret: %v\n%s", err, out)
	}
	c := readClient(t, path, "legacy")
	if len(c.Secrets) != 2 || c.Secrets[0].ID == "" || c.Secrets[0].ID == c.Secrets[1].ID {
		t.Errorf("secrets = %+v, want two with distinct ids", c.Secrets)
	}
	if !strings.Contains(out, c.Secrets[0].ID) {
		t.Errorf("output does not name the old secret's new id %s:\n%s", c.Secrets[0].ID, out)
	}
	if err := authAt(t, path, "legacy", oldSecret, cmdT0); err != nil {
		t.Errorf("the old secret after the rotation: %v", err)
	}
}

func TestClientRotateSecret_RemovesExpiredSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	id, _ := addTestClient(t, path)
	if out, err := runClient(t, "", "rotate-secret", "--clients", path, "--id", id, "--retire-old-after", "0s"); err != nil {
		t.Fatalf("rotate-secret: %v\n%s", err, out)
	}
	expiredID := readClient(t, path, id).Secrets[0].ID
	out, err := runClient(t, "", "rotate-secret", "--clients", path, "--id", id)
	if err != nil {
		t.Fatalf("rotate-secret: %v\n%s", err, out)
	}
	c := readClient(t, path, id)
	if len(c.Secrets) != 2 || c.Secrets[0].ID == expiredID {
		t.Errorf("secrets = %+v, want the expired one %s gone", c.Secrets, expiredID)
	}
	if !strings.Contains(out, "Removed expired secrets: "+expiredID) {
		t.Errorf("output does not say the expired secret was removed:\n%s", out)
	}
}

func TestClientRotateAndRetire_ErrorsLeaveTheFileAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	id, _ := addTestClient(t, path)
	onlyID := readClient(t, path, id).Secrets[0].ID
	missing := filepath.Join(t.TempDir(), "missing.json")
	tests := map[string]struct {
		args []string
		want string
	}{
		"rotate without --clients":         {[]string{"rotate-secret", "--id", id}, "--clients is required"},
		"rotate without --id":              {[]string{"rotate-secret", "--clients", path}, "--id is required"},
		"rotate an unknown client":         {[]string{"rotate-secret", "--clients", path, "--id", "nobody"}, `no client with id "nobody"`},
		"rotate in a missing file":         {[]string{"rotate-secret", "--clients", missing, "--id", id}, "no such file"},
		"rotate with a negative duration":  {[]string{"rotate-secret", "--clients", path, "--id", id, "--retire-old-after", "-1h"}, "must not be negative"},
		"rotate with a bad duration":       {[]string{"rotate-secret", "--clients", path, "--id", id, "--retire-old-after", "soon"}, "invalid argument"},
		"rotate with a stray argument":     {[]string{"rotate-secret", "--clients", path, "--id", id, "extra"}, "unknown command"},
		"retire without --secret-id":       {[]string{"retire-secret", "--clients", path, "--id", id}, "--secret-id is required"},
		"retire without --id":              {[]string{"retire-secret", "--clients", path, "--secret-id", onlyID}, "--id is required"},
		"retire an unknown client":         {[]string{"retire-secret", "--clients", path, "--id", "nobody", "--secret-id", onlyID}, `no client with id "nobody"`},
		"retire an unknown secret":         {[]string{"retire-secret", "--clients", path, "--id", id, "--secret-id", "ffffffff"}, "its secrets are: " + onlyID},
		"retire the only secret":           {[]string{"retire-secret", "--clients", path, "--id", id, "--secret-id", onlyID}, `"disabled": true`},
		"retire the only secret, the hint": {[]string{"retire-secret", "--clients", path, "--id", id, "--secret-id", onlyID}, "rotate-secret --clients " + path},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before, _ := os.ReadFile(path)
			out, err := runClient(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q\n%s", err, tc.want, out)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the clients file changed")
			}
		})
	}
}

func TestClientRotateSecret_RefusesANinthSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	id, _ := addTestClient(t, path)
	for i := 1; i < clients.MaxSecretsPerClient; i++ {
		if out, err := runClient(t, "", "rotate-secret", "--clients", path, "--id", id); err != nil {
			t.Fatalf("rotation %d: %v\n%s", i, err, out)
		}
	}
	before, _ := os.ReadFile(path)
	_, err := runClient(t, "", "rotate-secret", "--clients", path, "--id", id)
	if err == nil || !strings.Contains(err.Error(), "retire one first") {
		t.Errorf("ninth secret: error = %v, want one saying to retire a secret first", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the clients file changed")
	}
}
