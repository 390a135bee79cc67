package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

// The commands' clock in these tests.
var cmdT0 = time.Date(2030, 6, 1, 8, 0, 0, 0, time.UTC)

// runClient runs `caddy oauth client ARGS...` in process, with stdin as
// standard input, and returns what it printed.
func runClient(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	return runCommand(t, clientCommand(), stdin, args...)
}

// runCommand runs cmd with ARGS in process, at cmdT0, with stdin as
// standard input, and returns what it printed. Errors come back as the
// command returned them, before withExitStatus hands them to Caddy.
func runCommand(t *testing.T, cmd *cobra.Command, stdin string, args ...string) (string, error) {
	t.Helper()
	orig := commandNow
	commandNow = func() time.Time { return cmdT0 }
	defer func() { commandNow = orig }()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage = true
	err := cmd.Execute()
	return out.String(), err
}

var (
	idLine       = regexp.MustCompile(`(?m)^client_id:\s+(\S+)\s*$`)
	secretLine   = regexp.MustCompile(`(?m)^client_secret:\s+(\S+)\s*$`)
	subjectLine  = regexp.MustCompile(`(?m)^subject:\s+(\S+)\s*$`)
	secretIDLine = regexp.MustCompile(`(?m)^secret_id:\s+(\S+)\s*$`)
)

func field(t *testing.T, re *regexp.Regexp, out string) string {
	t.Helper()
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no line matching %s in:\n%s", re, out)
	}
	return m[1]
}

// addTestClient registers a client with a generated secret and returns its
// ID and secret.
func addTestClient(t *testing.T, path string) (id, secret string) {
	t.Helper()
	out, err := runClient(t, "", "add", "--clients", path, "--name", "sender")
	if err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	return field(t, idLine, out), field(t, secretLine, out)
}

// authAt authenticates against the file as the gateway would.
func authAt(t *testing.T, path, id, secret string, now time.Time) error {
	t.Helper()
	f, err := clients.ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	_, err = clients.NewRegistry(f).Authenticate(id, secret, clients.AuthOptions{Now: now})
	return err
}

func readClient(t *testing.T, path, id string) *clients.Client {
	t.Helper()
	f, err := clients.ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	c := f.Find(id)
	if c == nil {
		t.Fatalf("client %s not in the file", id)
	}
	return c
}

func TestClientAdd_PrintsIDSecretAndSubjectAsBefore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	out, err := runClient(t, "", "add", "--clients", path, "--name", "order-sender", "--description", "ERP")
	if err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	id, secret := field(t, idLine, out), field(t, secretLine, out)
	if got := field(t, subjectLine, out); got != "oauth_client_"+id {
		t.Errorf("subject = %q, want oauth_client_%s", got, id)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9._~-]{43}$`).MatchString(secret) {
		t.Errorf("client_secret %q: want 43 URL-unreserved characters", secret)
	}
	c := readClient(t, path, id)
	if s := c.Secrets[0]; s.Algorithm() != "sha256" || s.ID == "" || s.Created != cmdT0.Format(time.RFC3339) {
		t.Errorf("stored secret = %+v, want sha256 with an id, created %s", s, cmdT0.Format(time.RFC3339))
	}
	if err := authAt(t, path, id, secret, cmdT0); err != nil {
		t.Errorf("Authenticate with the printed secret: %v", err)
	}
}

func TestClientAdd_SecretStdinStoresArgon2idAndPrintsNoSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	const secret = "correct horse battery staple"
	out, err := runClient(t, secret+"\r\n", "add", "--clients", path, "--name", "legacy", "--secret-stdin")
	if err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	if secretLine.MatchString(out) || strings.Contains(out, secret) {
		t.Errorf("output shows a secret:\n%s", out)
	}
	id := field(t, idLine, out)
	if c := readClient(t, path, id); c.Secrets[0].Algorithm() != "argon2id" {
		t.Errorf("stored hash %q, want argon2id", c.Secrets[0].Hash)
	}
	if err := authAt(t, path, id, secret, cmdT0); err != nil {
		t.Errorf("Authenticate with the secret, newline dropped: %v", err)
	}
	if err := authAt(t, path, id, secret+"\r", cmdT0); err == nil {
		t.Error("the secret with the carriage return kept authenticated")
	}
}

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

func TestClientCommands_HelpDescribesEveryFlag(t *testing.T) {
	tests := map[string][]string{
		"add":           {"--clients", "--name", "--description", "--lifetime", "--secret-stdin"},
		"rotate-secret": {"--clients", "--id", "--secret-stdin", "--retire-old-after", "retire-secret"},
		"retire-secret": {"--clients", "--id", "--secret-id", "disabled"},
		"list":          {"--clients", "--json", "never", "token_lifetime"},
		"show":          {"--clients", "--id", "never"},
		"disable":       {"--clients", "--id", "a second or", "invalid_client", "refuses"},
		"enable":        {"--clients", "--id", "a second or"},
		"remove":        {"--clients", "--id", "--yes", "status 1", "policy file", "disable"},
	}
	for sub, want := range tests {
		t.Run(sub, func(t *testing.T) {
			out, err := runClient(t, "", sub, "--help")
			if err != nil {
				t.Fatalf("%s --help: %v", sub, err)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("%s --help does not mention %q:\n%s", sub, w, out)
				}
			}
		})
	}
}

func TestOAuthCommands_EveryCommandHasUsageShortLongAndExample(t *testing.T) {
	root := &cobra.Command{Use: "oauth"}
	root.AddCommand(oauthSubcommands()...)
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Use == "" || sub.Short == "" || strings.TrimSpace(sub.Long) == "" || sub.Example == "" {
				t.Errorf("%q: want Use, Short, Long and Example; have Use %q, Short %q, Long %d bytes, Example %q",
					sub.CommandPath(), sub.Use, sub.Short, len(sub.Long), sub.Example)
			}
			walk(sub)
		}
	}
	walk(root)
	if len(root.Commands()) < 3 {
		t.Errorf("oauth has %d subcommands, want client, token and keys", len(root.Commands()))
	}
}

// clientFile makes a clients file with three clients: "plain" as added by
// default; "special", with a lifetime of 0, two audiences and a second
// secret that expires in a day; "off", disabled. It returns the path and
// the file as written.
func clientFile(t *testing.T) (path string, f *clients.File) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "clients.json")
	addTestClient(t, path)
	out, err := runClient(t, "", "add", "--clients", path, "--name", "special", "--description", "with audiences",
		"--lifetime", "0", "--audience", "https://a.example", "--audience", "https://b.example")
	if err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	special := field(t, idLine, out)
	if out, err := runClient(t, "", "rotate-secret", "--clients", path, "--id", special, "--retire-old-after", "24h"); err != nil {
		t.Fatalf("rotate-secret: %v\n%s", err, out)
	}
	out, err = runClient(t, "", "add", "--clients", path, "--name", "off")
	if err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	if out, err := runClient(t, "", "disable", "--clients", path, "--id", field(t, idLine, out)); err != nil {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	f, err = clients.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, f
}

// assertNoHashes fails if out shows any stored secret hash.
func assertNoHashes(t *testing.T, out string, f *clients.File) {
	t.Helper()
	for _, c := range f.Clients {
		for _, s := range c.Secrets {
			if strings.Contains(out, s.Hash) || strings.Contains(out, strings.TrimPrefix(s.Hash, "sha256:")) {
				t.Errorf("output shows the hash of secret %s of %s:\n%s", s.ID, c.Name, out)
			}
		}
	}
	if strings.Contains(out, "sha256:") || strings.Contains(out, "$argon2id$") {
		t.Errorf("output shows a hash:\n%s", out)
	}
}

func TestClientList_ShowsEveryClientButNoHash(t *testing.T) {
	path, f := clientFile(t)
	out, err := runClient(t, "", "list", "--clients", path)
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("want a header and three rows:\n%s", out)
	}
	expires := cmdT0.Add(24 * time.Hour).Format(time.RFC3339)
	want := [][]string{
		{f.Clients[0].ID, "sender", "no", "1h0m0s", "(gateway's)", "1 (never)"},
		{f.Clients[1].ID, "special", "no", "0 (until the next token)", "https://a.example,https://b.example", "2 (until " + expires + ", never)"},
		{f.Clients[2].ID, "off", "yes", "1h0m0s", "(gateway's)", "1 (never)"},
	}
	for i, cells := range want {
		for _, c := range cells {
			if !strings.Contains(lines[i+1], c) {
				t.Errorf("row %d does not show %q: %s", i+1, c, lines[i+1])
			}
		}
	}
	assertNoHashes(t, out, f)
}

func TestClientList_JSONHasTheSameFieldsAndNoHash(t *testing.T) {
	path, f := clientFile(t)
	out, err := runClient(t, "", "list", "--clients", path, "--json")
	if err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	assertNoHashes(t, out, f)
	if strings.Contains(out, `"hash"`) {
		t.Errorf("the JSON has a hash member:\n%s", out)
	}
	var got []clientView
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not a JSON array of clients: %v\n%s", err, out)
	}
	if len(got) != 3 {
		t.Fatalf("%d clients, want 3:\n%s", len(got), out)
	}
	special := got[1]
	if special.Name != "special" || special.Description != "with audiences" || special.TokenLifetime != "0s" ||
		special.Subject != "oauth_client_"+special.ID || len(special.Audiences) != 2 || special.Disabled {
		t.Errorf("special = %+v", special)
	}
	if len(special.Secrets) != 2 || special.Secrets[0].Expires != cmdT0.Add(24*time.Hour).Format(time.RFC3339) ||
		special.Secrets[0].Expired || special.Secrets[1].Algorithm != "sha256" || special.Secrets[1].ID == "" {
		t.Errorf("special's secrets = %+v", special.Secrets)
	}
	if !got[2].Disabled || got[0].Audiences == nil {
		t.Errorf("off = %+v, sender = %+v: want off disabled and sender's audiences [] rather than null", got[2], got[0])
	}
}

func TestClientList_EmptyFileAndControlCharactersInNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	if err := os.WriteFile(path, []byte(`{"clients": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runClient(t, "", "list", "--clients", path)
	if err != nil || !strings.Contains(out, "No clients in "+path) {
		t.Errorf("list of an empty file: %v\n%s", err, out)
	}
	out, err = runClient(t, "", "list", "--clients", path, "--json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("list --json of an empty file = %q, %v; want []", out, err)
	}

	if out, err := runClient(t, "", "add", "--clients", path, "--name", "evil\x1b[2J\nfake row"); err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	for _, sub := range []string{"list", "show"} {
		args := []string{sub, "--clients", path}
		if sub == "show" {
			f, _ := clients.ReadFile(path)
			args = append(args, "--id", f.Clients[0].ID)
		}
		out, err := runClient(t, "", args...)
		if err != nil {
			t.Fatalf("%s: %v", sub, err)
		}
		if strings.ContainsAny(out, "\x1b") || !strings.Contains(out, `"evil\x1b[2J\nfake row"`) {
			t.Errorf("%s does not quote a name with control characters:\n%s", sub, out)
		}
	}
}

func TestClientShow_DescribesOneClientButNoHash(t *testing.T) {
	path, f := clientFile(t)
	special := f.Clients[1]
	out, err := runClient(t, "", "show", "--clients", path, "--id", special.ID)
	if err != nil {
		t.Fatalf("show: %v\n%s", err, out)
	}
	for _, want := range []string{
		"client_id:      " + special.ID,
		"name:           special",
		"description:    with audiences",
		"subject:        oauth_client_" + special.ID,
		"disabled:       no",
		"token_lifetime: 0 (until the next token)",
		"audiences:      https://a.example, https://b.example",
		special.Secrets[0].ID, special.Secrets[1].ID,
		"expires " + cmdT0.Add(24*time.Hour).Format(time.RFC3339),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show does not say %q:\n%s", want, out)
		}
	}
	assertNoHashes(t, out, f)

	out, err = runClient(t, "", "show", "--clients", path, "--id", f.Clients[2].ID)
	if err != nil || !strings.Contains(out, "disabled:       yes") {
		t.Errorf("show of a disabled client: %v\n%s", err, out)
	}
}

func TestClientDisableEnable_TogglesLoginAndSaysWhatChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	id, secret := addTestClient(t, path)
	steps := []struct {
		cmd, want    string
		rewritten    bool
		canAuthAfter bool
	}{
		{"disable", "disabled in " + path, true, false},
		{"disable", "already disabled in " + path + "; nothing changed", false, false},
		{"enable", "enabled in " + path, true, true},
		{"enable", "already enabled in " + path + "; nothing changed", false, true},
	}
	for _, st := range steps {
		before, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		out, err := runClient(t, "", st.cmd, "--clients", path, "--id", id)
		if err != nil {
			t.Fatalf("%s: %v\n%s", st.cmd, err, out)
		}
		if !strings.Contains(out, st.want) {
			t.Errorf("%s says %q, want it to say %q", st.cmd, out, st.want)
		}
		after, _ := os.Stat(path)
		if rewritten := !os.SameFile(before, after); rewritten != st.rewritten {
			t.Errorf("%s: file rewritten = %v, want %v", st.cmd, rewritten, st.rewritten)
		}
		if err := authAt(t, path, id, secret, cmdT0); (err == nil) != st.canAuthAfter {
			t.Errorf("after %s, Authenticate = %v, want success %v", st.cmd, err, st.canAuthAfter)
		}
	}
}

func TestClientRemove_RefusesWithoutYesAndRemindsOfThePolicy(t *testing.T) {
	path, f := clientFile(t)
	gone, kept := f.Clients[1], f.Clients[0]
	before, _ := os.ReadFile(path)

	out, err := runClient(t, "", "remove", "--clients", path, "--id", gone.ID)
	if err == nil || errors.As(err, new(usageError)) {
		t.Fatalf("remove without --yes: error %v, want a refusal (exit status 1)", err)
	}
	for _, want := range []string{"nothing removed", `"special"`, gone.ID, "2 secret(s)", "--yes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %q", err, want)
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the clients file changed without --yes")
	}

	out, err = runClient(t, "", "remove", "--clients", path, "--id", gone.ID, "--yes")
	if err != nil {
		t.Fatalf("remove --yes: %v\n%s", err, out)
	}
	for _, want := range []string{"removed from " + path, "oauth_client_" + gone.ID, "policy file"} {
		if !strings.Contains(out, want) {
			t.Errorf("remove says %q, want it to say %q", out, want)
		}
	}
	after, err := clients.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Find(gone.ID) != nil || after.Find(kept.ID) == nil || len(after.Clients) != 2 {
		t.Errorf("clients after remove: %+v, want all but %s", after.Clients, gone.ID)
	}
}

func TestClientCommands_ErrorsSayWhyAndLeaveTheFileAlone(t *testing.T) {
	path, f := clientFile(t)
	id := f.Clients[0].ID
	missing := filepath.Join(t.TempDir(), "missing.json")
	tests := map[string]struct {
		args  []string
		want  string
		usage bool
	}{
		"list without --clients":     {[]string{"list"}, "--clients is required", true},
		"list of a missing file":     {[]string{"list", "--clients", missing}, "no such file", false},
		"show without --id":          {[]string{"show", "--clients", path}, "--id is required", true},
		"show an unknown client":     {[]string{"show", "--clients", path, "--id", "nobody"}, `no client with id "nobody"`, false},
		"disable without --clients":  {[]string{"disable", "--id", id}, "--clients is required", true},
		"disable an unknown client":  {[]string{"disable", "--clients", path, "--id", "nobody"}, `no client with id "nobody"`, false},
		"enable without --id":        {[]string{"enable", "--clients", path}, "--id is required", true},
		"remove an unknown client":   {[]string{"remove", "--clients", path, "--id", "nobody", "--yes"}, `no client with id "nobody"`, false},
		"remove without --id":        {[]string{"remove", "--clients", path, "--yes"}, "--id is required", true},
		"add without --name":         {[]string{"add", "--clients", path}, "--name is required", true},
		"rotate without --clients":   {[]string{"rotate-secret", "--id", id}, "--clients is required", true},
		"retire without --secret-id": {[]string{"retire-secret", "--clients", path, "--id", id}, "--secret-id is required", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before, _ := os.ReadFile(path)
			out, err := runClient(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q\n%s", err, tc.want, out)
			}
			if usage := errors.As(err, new(usageError)); usage != tc.usage {
				t.Errorf("usage error (exit status 2) = %v, want %v", usage, tc.usage)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the clients file changed")
			}
		})
	}
}

// TestCaddyMain is not a test of its own: TestOAuthCommands_ExitStatus
// runs this test binary as the caddy command, through caddycmd.Main.
func TestCaddyMain(t *testing.T) {
	args := os.Getenv("OAUTHGATE_TEST_CADDY_ARGS")
	if args == "" {
		t.Skip("runs only as the caddy process of TestOAuthCommands_ExitStatus")
	}
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		t.Fatal(err)
	}
	os.Args = append([]string{"caddy"}, argv...)
	caddycmd.Main()
	os.Exit(0)
}

func TestOAuthCommands_ExitStatus(t *testing.T) {
	path, f := clientFile(t)
	id := f.Clients[0].ID
	tests := map[string]struct {
		args   []string
		status int
		stderr string
	}{
		"a listing":                        {[]string{"client", "list", "--clients", path}, 0, ""},
		"help":                             {[]string{"client", "remove", "--help"}, 0, ""},
		"an unknown flag":                  {[]string{"client", "list", "--clients", path, "--bogus"}, 2, "unknown flag: --bogus"},
		"a bad flag value":                 {[]string{"client", "add", "--clients", path, "--name", "x", "--lifetime", "soon"}, 2, "invalid argument"},
		"a missing required flag":          {[]string{"client", "list"}, 2, "--clients is required (see caddy oauth client list --help)"},
		"a stray argument":                 {[]string{"client", "show", "--clients", path, "--id", id, "extra"}, 2, "unknown command"},
		"a misspelt subcommand":            {[]string{"client", "lsit"}, 2, "unknown command"},
		"a misspelt command":               {[]string{"tokn"}, 2, "unknown command"},
		"an unknown client":                {[]string{"client", "show", "--clients", path, "--id", "nobody"}, 1, `no client with id`},
		"remove without --yes":             {[]string{"client", "remove", "--clients", path, "--id", id}, 1, "nothing removed"},
		"token without a secret":           {[]string{"token", "--url", "https://gw.example/token", "--client-id", id, "--secret-env", "OAUTHGATE_TEST_UNSET"}, 2, "no client secret"},
		"keys with nothing at the address": {[]string{"keys", "list", "--address", closedAddress(t)}, 1, "connection refused"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			argv, _ := json.Marshal(append([]string{"oauth"}, tc.args...))
			cmd := exec.Command(os.Args[0], "-test.run=^TestCaddyMain$")
			cmd.Env = append(os.Environ(), "OAUTHGATE_TEST_CADDY_ARGS="+string(argv))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			status := 0
			if exit, ok := errors.AsType[*exec.ExitError](err); ok {
				status = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if status != tc.status {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", status, tc.status, &stdout, &stderr)
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr does not say %q:\n%s", tc.stderr, &stderr)
			}
		})
	}
	t.Cleanup(func() { // after the parallel subtests
		if after, _ := clients.ReadFile(path); after == nil || len(after.Clients) != len(f.Clients) {
			t.Error("a command that failed changed the clients file")
		}
	})
}

// closedAddress is a 127.0.0.1 address where nothing listens.
func closedAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
