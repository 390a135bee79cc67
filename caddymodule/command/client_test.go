package command

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

// runClient runs `caddy oauth client ARGS...` in process, with stdin as
// standard input, and returns what it printed.
func runClient(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	return runCommand(t, clientCommand(), stdin, args...)
}

var (
	idLine      = regexp.MustCompile(`(?m)^client_id:\s+(\S+)\s*$`)
	secretLine  = regexp.MustCompile(`(?m)^client_secret:\s+(\S+)\s*$`)
	subjectLine = regexp.MustCompile(`(?m)^subject:\s+(\S+)\s*$`)
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

func TestClientAdd_WithKeys(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwksFile := func(raw any) string {
		k, err := jwk.Import(raw)
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, "erp-1")
		b, _ := json.Marshal(map[string]any{"keys": []jwk.Key{k}})
		p := filepath.Join(t.TempDir(), "keys.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	public, private := jwksFile(&priv.PublicKey), jwksFile(priv)
	tests := map[string]struct {
		args    []string
		wantErr string // "" = added
		check   func(t *testing.T, c *clients.Client)
	}{
		"an inline JWK Set": {args: []string{"--jwks", public}, check: func(t *testing.T, c *clients.Client) {
			if len(c.Secrets) != 0 || !slices.Equal(c.KeyIDs(), []string{"erp-1"}) || !c.Accepts(clients.MethodPrivateKeyJWT) {
				t.Errorf("client = %+v, want keys erp-1 and no secret", c)
			}
		}},
		"a JWKS URL": {args: []string{"--jwks-uri", "https://erp.example/jwks.json"}, check: func(t *testing.T, c *clients.Client) {
			if len(c.Secrets) != 0 || c.JWKSURI != "https://erp.example/jwks.json" {
				t.Errorf("client = %+v, want the URL and no secret", c)
			}
		}},
		"both":                     {args: []string{"--jwks", public, "--jwks-uri", "https://erp.example/"}, wantErr: "one way"},
		"keys and a chosen secret": {args: []string{"--jwks", public, "--secret-stdin"}, wantErr: "no secret"},
		"a private key":            {args: []string{"--jwks", private}, wantErr: "private key members"},
		"a cleartext URL":          {args: []string{"--jwks-uri", "http://erp.example/jwks.json"}, wantErr: "https"},
		"a file that is not there": {args: []string{"--jwks", filepath.Join(t.TempDir(), "none.json")}, wantErr: "no such file"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "clients.json")
			out, err := runClient(t, "", append([]string{"add", "--clients", path, "--name", "erp"}, tc.args...)...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one with %q; out:\n%s", err, tc.wantErr, out)
				}
				if _, statErr := os.Stat(path); statErr == nil {
					t.Error("a refused add wrote the clients file")
				}
				return
			}
			if err != nil {
				t.Fatalf("add: %v\n%s", err, out)
			}
			if secretLine.MatchString(out) {
				t.Errorf("a client with keys got a secret:\n%s", out)
			}
			f, err := clients.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, f.Find(field(t, idLine, out)))
		})
	}
}
