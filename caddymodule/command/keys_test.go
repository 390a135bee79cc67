package command

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
)

// The key schedule of a gateway with a key published ahead: newest first,
// as the admin API lists them.
var (
	keyNext    = keys.Description{ID: "kid-next", Algorithm: "ES256", Created: "2030-06-01T07:30:00Z", Activates: "2030-06-01T08:30:00Z"}
	keySigning = keys.Description{ID: "kid-signing", Algorithm: "ES256", Created: "2030-05-01T08:00:00Z", Activates: "2030-05-01T08:00:00Z",
		Retires: "2030-06-01T08:30:00Z", Signing: true}
	keyRetired = keys.Description{ID: "kid-retired", Algorithm: "RS256", Created: "2030-04-01T08:00:00Z", Activates: "2030-04-01T08:00:00Z",
		Retires: "2030-05-01T08:00:00Z", Expires: "2030-11-01T08:00:00Z"}
)

// fakeAdmin is Caddy's admin API on 127.0.0.1 as caddymodule/adminapi.go serves it:
// GET /oauth/keys lists keys; POST /oauth/keys/rotate answers with after.
type fakeAdmin struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []keys.Description
	after   []keys.Description
	rotated []string // the query of each rotation
	origin  string
}

func newFakeAdmin(t *testing.T, before, after []keys.Description) *fakeAdmin {
	t.Helper()
	a := &fakeAdmin{keys: before, after: after}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.origin = r.Header.Get("Origin")
		switch {
		case r.URL.Path == "/oauth/keys" && r.Method == http.MethodGet:
		case r.URL.Path == "/oauth/keys/rotate" && r.Method == http.MethodPost:
			a.rotated = append(a.rotated, r.URL.RawQuery)
			a.keys = a.after
		default:
			http.Error(w, `{"error":"not this"}`, http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.keys)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *fakeAdmin) address() string { return strings.TrimPrefix(a.URL, "http://") }

func (a *fakeAdmin) rotations() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.rotated...)
}

func runKeys(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCommand(t, keysCommand(), "", args...)
}

func TestKeysList_ShowsEachKeyWithItsStateAndDates(t *testing.T) {
	admin := newFakeAdmin(t, []keys.Description{keyNext, keySigning, keyRetired}, nil)
	out, err := runKeys(t, "list", "--address", admin.address())
	if err != nil {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	want := []string{
		"KID ALG STATE ACTIVATES RETIRES EXPIRES",
		"kid-next ES256 next 2030-06-01T08:30:00Z - -",
		"kid-signing ES256 signing 2030-05-01T08:00:00Z 2030-06-01T08:30:00Z -",
		"kid-retired RS256 retired 2030-04-01T08:00:00Z 2030-05-01T08:00:00Z 2030-11-01T08:00:00Z",
	}
	if got := rows(out); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if admin.origin != admin.URL {
		t.Errorf("Origin = %q, want %q as Caddy's admin API expects", admin.origin, admin.URL)
	}
	if len(admin.rotations()) != 0 {
		t.Error("keys list rotated the keys")
	}
}

func TestKeysRotate_SaysWhichKeyIsNewAndWhenItSigns(t *testing.T) {
	fresh := keys.Description{ID: "kid-fresh", Algorithm: "ES256", Created: "2030-06-01T08:00:00Z", Activates: "2030-06-01T09:00:00Z"}
	signingUntil := keySigning
	signingUntil.Retires = fresh.Activates
	freshNow := fresh
	freshNow.Activates, freshNow.Signing = fresh.Created, true
	retiredNow := keySigning
	retiredNow.Retires, retiredNow.Signing = fresh.Created, false
	tests := map[string]struct {
		before, after []keys.Description
		args          []string
		query         string
		want          []string
	}{
		"published ahead": {
			[]keys.Description{keySigning}, []keys.Description{fresh, signingUntil}, nil, "",
			[]string{"Key kid-fresh is published and signs from 2030-06-01T09:00:00Z.", "kid-fresh ES256 next"}},
		"at once": {
			[]keys.Description{keySigning}, []keys.Description{freshNow, retiredNow}, []string{"--now"}, "now=1",
			[]string{"Key kid-fresh signs from now on.", "kid-fresh ES256 signing", "kid-signing ES256 retired"}},
		"a key already waits": {
			[]keys.Description{keyNext, keySigning}, []keys.Description{keyNext, keySigning}, nil, "",
			[]string{"No new key: a key published ahead is already waiting to sign", "--now", "kid-next"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			admin := newFakeAdmin(t, tc.before, tc.after)
			out, err := runKeys(t, append([]string{"rotate", "--address", admin.address()}, tc.args...)...)
			if err != nil {
				t.Fatalf("keys rotate: %v\n%s", err, out)
			}
			if got := admin.rotations(); len(got) != 1 || got[0] != tc.query {
				t.Errorf("rotations = %q, want one with query %q", got, tc.query)
			}
			for _, w := range tc.want {
				if !strings.Contains(strings.Join(rows(out), "\n"), w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
		})
	}
}

// rows is out's lines with the runs of spaces that align the columns
// made single.
func rows(out string) []string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return lines
}

func TestKeysCommands_AdminAPIFailuresAreClearErrors(t *testing.T) {
	noApp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"the running config has no oauth app"}`, http.StatusNotFound)
	}))
	defer noApp.Close()
	notKeys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"apps":{}}`))
	}))
	defer notKeys.Close()
	closed := closedAddress(t)
	tests := map[string]struct {
		args []string
		want string
	}{
		"no oauth app":       {[]string{"list", "--address", strings.TrimPrefix(noApp.URL, "http://")}, "HTTP 404: {\"error\":\"the running config has no oauth app\"}"},
		"rotate, no app":     {[]string{"rotate", "--address", strings.TrimPrefix(noApp.URL, "http://")}, "no oauth app"},
		"not a list of keys": {[]string{"list", "--address", strings.TrimPrefix(notKeys.URL, "http://")}, `the answer is not a list of keys: {"apps":{}}`},
		"nothing listening":  {[]string{"list", "--address", closed}, "GET /oauth/keys on Caddy's admin API at " + closed},
		"a misspelt command": {[]string{"rotat"}, `unknown command "rotat"`},
		"a stray argument":   {[]string{"list", "extra"}, `unknown command "extra"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := runKeys(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q\n%s", err, tc.want, out)
			}
		})
	}
}

func TestKeysCommands_HelpNamesTheAdminAddressAndTheStates(t *testing.T) {
	for _, sub := range []string{"list", "rotate"} {
		out, err := runKeys(t, sub, "--help")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"--address", "localhost:2019", "next", "signing", "retired", "expires"} {
			if !strings.Contains(out, want) {
				t.Errorf("keys %s --help does not mention %q", sub, want)
			}
		}
	}
	if out, _ := runKeys(t, "rotate", "--help"); !strings.Contains(out, "--now") || !strings.Contains(out, "compromised") {
		t.Errorf("keys rotate --help does not explain --now:\n%s", out)
	}
}
