package clients

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// hashOf is the stored form of secret, computed independently of the code
// under test.
func hashOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func mustParse(t *testing.T, data string) *File {
	t.Helper()
	f, err := Parse([]byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

var (
	secretRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43}$`)
	hashRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	idRE     = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

func TestNewSecret_IsRandomURLSafeAndVerifies(t *testing.T) {
	s1, st1 := NewSecret()
	s2, st2 := NewSecret()
	for _, s := range []string{s1, s2} {
		if !secretRE.MatchString(s) {
			t.Errorf("secret %q: want 43 URL-unreserved characters", s)
		}
	}
	for _, st := range []Secret{st1, st2} {
		if !hashRE.MatchString(st.Hash) {
			t.Errorf("stored hash %q: want sha256: and 64 lower-case hex digits", st.Hash)
		}
	}
	if s1 == s2 || st1.Hash == st2.Hash {
		t.Errorf("two calls returned the same secret or hash: %q, %q", s1, st1.Hash)
	}
	if st1.Hash != hashOf(s1) {
		t.Errorf("stored hash = %q, want SHA-256 of the secret %q", st1.Hash, hashOf(s1))
	}
	if strings.Contains(st1.Hash, s1) {
		t.Error("stored form contains the secret in clear")
	}

	// The stored form, as written to and read back from a file, verifies
	// the secret and only it.
	f := mustParse(t, fmt.Sprintf(`{"clients": [{"id": "c", "name": "c", "secrets": [{"hash": %q}]}]}`, st1.Hash))
	reg := NewRegistry(f)
	if _, err := reg.Authenticate("c", s1, AuthOptions{}); err != nil {
		t.Errorf("Authenticate with the new secret: %v", err)
	}
	if _, err := reg.Authenticate("c", s2, AuthOptions{}); err == nil {
		t.Error("Authenticate with another new secret succeeded")
	}
}

func TestNewID_IsRandomHex(t *testing.T) {
	a, b := NewID(), NewID()
	for _, id := range []string{a, b} {
		if !idRE.MatchString(id) {
			t.Errorf("id %q: want 32 lower-case hex digits", id)
		}
		if !validID(id) {
			t.Errorf("id %q does not pass the file's own id check", id)
		}
	}
	if a == b {
		t.Errorf("two calls returned the same id %q", a)
	}
}

func TestAuthenticate_OnlyTheRightSecretOfAnEnabledClient(t *testing.T) {
	long512 := strings.Repeat("s", MaxSecretLen)
	long513 := strings.Repeat("s", MaxSecretLen+1)
	reg := NewRegistry(mustParse(t, fmt.Sprintf(`{"clients": [
		{"id": "app", "name": "app", "secrets": [{"hash": %q}, {"hash": %q}]},
		{"id": "off", "name": "off", "secrets": [{"hash": %q}], "disabled": true},
		{"id": "edge", "name": "edge", "secrets": [{"hash": %q}]},
		{"id": "long", "name": "long", "secrets": [{"hash": %q}]}
	]}`, hashOf("first"), hashOf("second"), hashOf("off-secret"), hashOf(long512), hashOf(long513))))
	if reg.Len() != 4 {
		t.Fatalf("Len = %d, want 4", reg.Len())
	}

	tests := map[string]struct {
		id, secret string
		ok         bool
	}{
		"right secret":                        {"app", "first", true},
		"client's second secret":              {"app", "second", true},
		"secret of exactly the maximum size":  {"edge", long512, true},
		"wrong secret":                        {"app", "third", false},
		"empty secret":                        {"app", "", false},
		"another client's secret":             {"app", "off-secret", false},
		"unknown id":                          {"nobody", "first", false},
		"id in another case":                  {"APP", "first", false},
		"disabled client with its secret":     {"off", "off-secret", false},
		"over-long secret, even if it hashes": {"long", long513, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := reg.Authenticate(tc.id, tc.secret, AuthOptions{})
			if tc.ok {
				if err != nil || c == nil || c.ID != tc.id {
					t.Errorf("Authenticate = %v, %v; want client %q", c, err, tc.id)
				}
				return
			}
			// The same error value for every failure: callers must not be
			// able to tell the reasons apart.
			if err != ErrAuthentication || c != nil {
				t.Errorf("Authenticate = %v, %v; want nil, ErrAuthentication", c, err)
			}
		})
	}
}

func TestParse_Errors(t *testing.T) {
	client := func(fields string) string {
		return `{"clients": [{"id": "a", "name": "a", "secrets": [{"hash": "` + hashOf("x") + `"}]` + fields + `}]}`
	}
	tests := map[string]struct {
		data, want string
	}{
		"syntax error reports line and column": {
			"{\n  \"clients\": [\n    {\"id\": \"a\",, }\n  ]\n}", "line 3, column 16"},
		"syntax error on the first line": {
			`{"clients": x}`, "line 1, column 13"},
		"wrong value type reports line and column": {
			"{\"clients\": [\n  {\"id\": 5}]}", "line 2, column 10"},
		"unknown field": {
			client(`, "secret": "plain"`), `unknown field "secret"`},
		"missing secrets": {
			`{"clients": [{"id": "a", "name": "a"}]}`, "no credential"},
		"empty secrets": {
			`{"clients": [{"id": "a", "name": "a", "secrets": []}]}`, "no credential"},
		"hash of unknown format": {
			`{"clients": [{"id": "a", "secrets": [{"hash": "md5:0cc175b9c0f1b6a831c399e269772661"}]}]}`, "hash: unknown format"},
		"hash too short": {
			`{"clients": [{"id": "a", "secrets": [{"hash": "sha256:abcd"}]}]}`, "64 hex digits"},
		"hash not hex": {
			`{"clients": [{"id": "a", "secrets": [{"hash": "sha256:` + strings.Repeat("z", 64) + `"}]}]}`, "64 hex digits"},
		"id with a colon": {
			strings.Replace(client(""), `"id": "a"`, `"id": "a:b"`, 1), `id "a:b"`},
		"id with a space": {
			strings.Replace(client(""), `"id": "a"`, `"id": "a b"`, 1), `id "a b"`},
		"empty id": {
			strings.Replace(client(""), `"id": "a"`, `"id": ""`, 1), `id ""`},
		"id over 64 characters": {
			strings.Replace(client(""), `"id": "a"`, `"id": "`+strings.Repeat("a", 65)+`"`, 1), "1 to 64 characters"},
		"duplicate ids": {
			`{"clients": [
				{"id": "a", "secrets": [{"hash": "` + hashOf("x") + `"}]},
				{"id": "a", "secrets": [{"hash": "` + hashOf("y") + `"}]}]}`, `duplicate id "a"`},
		"negative token_lifetime": {
			client(`, "token_lifetime": "-5m"`), "must not be negative"},
		"empty audience": {
			client(`, "audiences": ["https://a", ""]`), "audiences: entry 2 is empty"},
		"audience listed twice": {
			client(`, "audiences": ["https://a", "https://a"]`), "listed twice"},
		"token_lifetime without unit": {
			client(`, "token_lifetime": "60"`), "token_lifetime"},
		"token_lifetime not a duration": {
			client(`, "token_lifetime": "forever"`), "token_lifetime"},
		"second JSON object": {
			client("") + ` {}`, "after the JSON object"},
		"trailing garbage": {
			client("") + "\nx", "after the JSON object"},
		"trailing closing brace": {
			client("") + "}", "after the JSON object"},
		"trailing closing bracket": {
			client("") + "]", "after the JSON object"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f, err := Parse([]byte(tc.data))
			if err == nil {
				t.Fatalf("Parse = %+v, want error", f)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParse_TokenLifetime(t *testing.T) {
	tests := map[string]struct {
		field string
		want  time.Duration
	}{
		"absent means the default":   {"", DefaultTokenLifetime},
		"explicit value honoured":    {`, "token_lifetime": "12h"`, 12 * time.Hour},
		"zero: until the next token": {`, "token_lifetime": "0"`, 0},
		"sub-minute value":           {`, "token_lifetime": "90s"`, 90 * time.Second},
	}
	if DefaultTokenLifetime != 60*time.Minute {
		t.Errorf("DefaultTokenLifetime = %v, want 60m", DefaultTokenLifetime)
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := mustParse(t, `{"clients": [{"id": "a", "secrets": [{"hash": "`+hashOf("x")+`"}]`+tc.field+`}]}`)
			if got := f.Find("a").Lifetime(); got != tc.want {
				t.Errorf("Lifetime = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReadFile_ErrorsNameThePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	if err := os.WriteFile(path, []byte(`{"clients": [{"id": "a:b"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadFile error = %v, want it to name %s", err, path)
	}
	if _, err := ReadFileOrEmpty(path); err == nil {
		t.Error("ReadFileOrEmpty of an invalid file succeeded, want error")
	}
}

func TestReadFile_MissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	_, err := ReadFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile error = %v, want fs.ErrNotExist", err)
	}
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadFile error = %v, want it to name %s", err, path)
	}

	f, err := ReadFileOrEmpty(path)
	if err != nil || f == nil || len(f.Clients) != 0 {
		t.Errorf("ReadFileOrEmpty = %+v, %v; want an empty File", f, err)
	}
}

func TestReadFile_RefusesOversizedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, maxFileSize+1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ReadFile error = %v, want a size error", err)
	}
}

// dirEntries lists the names in dir, to catch leftover temporary files.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func validFile() *File {
	return &File{Clients: []Client{
		{ID: "a", Name: "A", Description: "first", Secrets: []Secret{{Hash: hashOf("sa")}}, TokenLifetime: "2h"},
		{ID: "b", Name: "B", Secrets: []Secret{{Hash: hashOf("sb1")}, {Hash: hashOf("sb2")}}, Disabled: true},
	}}
}

func TestWriteFile_RoundTripsOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "clients.json")
	// An existing, world-readable file is replaced by an owner-only one.
	if err := os.WriteFile(path, []byte(`{"clients": []}`), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := WriteFile(path, validFile()); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	want := validFile()
	if len(got.Clients) != len(want.Clients) {
		t.Fatalf("read %d clients, want %d", len(got.Clients), len(want.Clients))
	}
	for i, g := range got.Clients {
		w := want.Clients[i]
		if g.ID != w.ID || g.Name != w.Name || g.Description != w.Description ||
			g.TokenLifetime != w.TokenLifetime || g.Disabled != w.Disabled ||
			!slices.EqualFunc(g.Secrets, w.Secrets, func(a, b Secret) bool { return a.Hash == b.Hash }) {
			t.Errorf("client %d = %+v, want %+v", i, g, w)
		}
	}
	if _, err := NewRegistry(got).Authenticate("a", "sa", AuthOptions{}); err != nil {
		t.Errorf("Authenticate after round trip: %v", err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode = %v, want 0600", perm)
	}
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"clients.json"}) {
		t.Errorf("directory holds %q, want only clients.json", names)
	}
}

func TestWriteFile_ReplacesExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.json")
	if err := WriteFile(path, validFile()); err != nil {
		t.Fatal(err)
	}
	next := &File{Clients: []Client{{ID: "c", Name: "C", Secrets: []Secret{{Hash: hashOf("sc")}}}}}
	if err := WriteFile(path, next); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Clients) != 1 || got.Clients[0].ID != "c" {
		t.Errorf("file holds %+v, want only client c", got.Clients)
	}
}

func TestWriteFile_RefusesInvalidClientsAndKeepsTheOldFile(t *testing.T) {
	sec := []Secret{{Hash: hashOf("s")}}
	tests := map[string]Client{
		"id with a colon":    {ID: "a:b", Secrets: sec},
		"no credential":      {ID: "n"},
		"bad hash":           {ID: "h", Secrets: []Secret{{Hash: "plain-secret"}}},
		"bad token lifetime": {ID: "l", Secrets: sec, TokenLifetime: "-1h"},
		"duplicate id":       {ID: "a", Secrets: sec},
	}
	for name, bad := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "clients.json")
			if err := WriteFile(path, validFile()); err != nil {
				t.Fatal(err)
			}
			old, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			f := validFile()
			f.Clients = append(f.Clients, bad)
			if err := WriteFile(path, f); err == nil {
				t.Fatal("WriteFile succeeded, want error")
			}
			now, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(now, old) {
				t.Errorf("file changed after a refused write: %v\n%s", err, now)
			}
			if names := dirEntries(t, dir); !slices.Equal(names, []string{"clients.json"}) {
				t.Errorf("directory holds %q, want only clients.json", names)
			}
		})
	}
}

func TestWriteFile_FailedWriteLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	// The target is a non-empty directory: the final rename must fail.
	path := filepath.Join(dir, "clients.json")
	if err := os.MkdirAll(filepath.Join(path, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, validFile()); err == nil {
		t.Fatal("WriteFile over a directory succeeded, want error")
	}
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"clients.json"}) {
		t.Errorf("directory holds %q, want only clients.json", names)
	}
}
