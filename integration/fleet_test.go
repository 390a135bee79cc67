package integration

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
)

// Several gateways on one file_system storage act as one: a fleet behind
// one token URL (docs/operations.md, "Running a fleet").

// An emergency rotation (a compromised key) at one instance: the others
// accept the new key's tokens from the first one on, without waiting for
// their once-a-minute key sync.
func TestFleet_ImmediateRotationIsAcceptedByEveryInstanceAtOnce(t *testing.T) {
	t.Parallel()
	a := newEnvConfig(t, envConfig{admin: true})
	b, c := a.peer(t), a.peer(t)
	old := a.token(t, a.A)
	for _, g := range []*env{a, b, c} {
		g.call(t, http.MethodGet, "/http/flow", old, "").wantStatus(t, http.StatusOK)
	}

	rotated := time.Now()
	a.adminKeys(t, http.MethodPost, "/oauth/keys/rotate?now=1")
	tok := a.token(t, a.A)
	if parseJWS(t, tok).header["kid"] == parseJWS(t, old).header["kid"] {
		t.Fatal("A still signs with the replaced key")
	}
	asked := time.Now()
	r := b.call(t, http.MethodGet, "/http/flow", tok, "")
	accepted := time.Now()
	if r.status != http.StatusOK {
		t.Fatalf("B refused the first token of A's new key: %d %s", r.status, r.body)
	}
	t.Logf("rotation at A to acceptance at B: %v (B's request, which read the keys from storage: %v)",
		accepted.Sub(rotated).Round(time.Millisecond), accepted.Sub(asked).Round(time.Millisecond))
	c.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)
	// Tokens of the replaced key stay valid everywhere.
	for _, g := range []*env{a, b, c} {
		g.call(t, http.MethodGet, "/http/flow", old, "").wantStatus(t, http.StatusOK)
	}
	a.backend.wantRequests(t, slices.Repeat([]backendRequest{seenAs(http.MethodGet, "/http/flow", a.A, roleMessaging)}, 8)...)
}

// A storage that lost the signing keys (wiped, or replaced by an empty
// one) gets back the keys the running instances hold, rather than a new
// key that would make every token issued before invalid.
func TestFleet_StorageThatLostTheKeysGetsBackTheKeysInUse(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	b := a.peer(t)
	tok := a.token(t, a.A)
	held := storedKids(t, a)
	keysFile := filepath.Join(a.dir, "storage", filepath.FromSlash(keys.StorageKey))
	if err := os.Remove(keysFile); err != nil {
		t.Fatal(err)
	}

	for name, g := range map[string]*env{"A": a, "B": b} {
		if r := g.call(t, http.MethodGet, "/http/flow", tok, ""); r.status != http.StatusOK {
			t.Errorf("%s refused a token issued before the wipe: %d %s", name, r.status, r.body)
		}
	}
	// The scheduled key sync writes the keys back within a minute; a
	// token naming a kid B does not know makes B read the keys now, and
	// write them back before it answers.
	b.call(t, http.MethodGet, "/http/flow", unknownKidToken(t, a.issuer), "").wantBearerChallenge(t, http.StatusUnauthorized, "invalid_token")
	if _, err := os.Stat(keysFile); err != nil {
		t.Fatalf("the keys were not written back: %v", err)
	}
	if got := storedKids(t, a); !slices.Equal(got, held) {
		t.Errorf("storage holds kids %v, want the ones before the wipe %v", got, held)
	}
	const logged = "signing keys were missing from storage; wrote back the keys in use"
	// The line may reach the test's pipe just after the answer.
	if _, ok := b.gatewayLog.waitLine(0, logTimeout, b.gateway.done, func(l string) bool { return strings.Contains(l, logged) }); !ok {
		t.Errorf("B's log has no line %q", logged)
	}

	// An instance started now reads those keys: the token issued before
	// the wipe passes there, and it signs with the same key.
	c := a.peer(t)
	c.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)
	if kid, want := parseJWS(t, c.token(t, c.A)).header["kid"], parseJWS(t, tok).header["kid"]; kid != want {
		t.Errorf("the new instance signs with %v, want the key from before the wipe %v", kid, want)
	}
}

// storedKids lists the kids of the key set in e's storage, newest first.
func storedKids(t *testing.T, e *env) []string {
	t.Helper()
	set, err := keys.LoadOrCreate(t.Context(), readOnlyStorage(filepath.Join(e.dir, "storage")))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errReadOnly) {
		t.Fatalf("no key set in storage: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys() {
		kids = append(kids, k.ID)
	}
	return kids
}

// unknownKidToken is a token of issuer, in form one of the gateway's own,
// whose kid names no key there: it fails at the key lookup, before any
// signature check.
func unknownKidToken(t *testing.T, issuer string) string {
	t.Helper()
	header := b64JSON(t, map[string]string{"alg": "ES256", "typ": "at+jwt", "kid": strings.Repeat("k", 43)})
	return header + "." + b64JSON(t, map[string]string{"iss": issuer}) + "." + b64([]byte("not a signature"))
}

// TestFleet_AReloadAfterAWipeWritesBackTheKeysInUse: a config loaded while
// the storage has lost the keys must not make new ones; the keys the
// running gateway holds outlive the reload and are written back.
func TestFleet_AReloadAfterAWipeWritesBackTheKeysInUse(t *testing.T) {
	t.Parallel()
	e := newEnvConfig(t, envConfig{admin: true})
	tok := e.token(t, e.A)
	held := storedKids(t, e)
	if err := os.Remove(filepath.Join(e.dir, "storage", filepath.FromSlash(keys.StorageKey))); err != nil {
		t.Fatal(err)
	}
	e.reload(t)
	if got := storedKids(t, e); !slices.Equal(got, held) {
		t.Errorf("after the reload storage holds kids %v, want the ones in use %v", got, held)
	}
	e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)
	if kid, want := parseJWS(t, e.token(t, e.A)).header["kid"], parseJWS(t, tok).header["kid"]; kid != want {
		t.Errorf("after the reload the gateway signs with %v, want %v", kid, want)
	}
}
