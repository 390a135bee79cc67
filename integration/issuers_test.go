package integration

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// xsuaa is a second, independent token issuer shaped like SAP XSUAA: RS256
// keys published as a JWKS over HTTP on 127.0.0.1, tokens with typ JWT and
// scope an array of "<xsappname>.<role>".
type xsuaa struct {
	srv     *httptest.Server
	key     *rsa.PrivateKey
	kid     string
	down    atomic.Bool // answer 503 instead of the keys
	fetches atomic.Int32
}

const xsappname = "it-rt-tenant!b196"

func startXSUAA(t *testing.T) *xsuaa {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	x := &xsuaa{key: key, kid: "xsuaa-key-1"}
	x.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token_keys" {
			http.NotFound(w, r)
			return
		}
		x.fetches.Add(1)
		if x.down.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{
			"kty": "RSA", "use": "sig", "alg": "RS256", "kid": x.kid,
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
		}}})
	}))
	t.Cleanup(x.srv.Close)
	return x
}

// issuer is the "iss" of the test issuer's tokens.
func (x *xsuaa) issuer() string { return x.srv.URL + "/oauth/token" }

// trust is the oauth option that makes a gateway trust this issuer.
func (x *xsuaa) trust() string {
	return fmt.Sprintf(`trust %s {
			jwks_url    %s/token_keys
			audience    %s
			token_types JWT
			role_match  suffix
		}`, x.issuer(), x.srv.URL, xsappname)
}

// token is an XSUAA client-credentials token for the given scopes.
func (x *xsuaa) token(t *testing.T, sub string, scopes ...string) string {
	t.Helper()
	return x.tokenWith(t, sub, nil, scopes...)
}

// tokenWith is token with more claims, or other values for its own.
func (x *xsuaa) tokenWith(t *testing.T, sub string, more map[string]any, scopes ...string) string {
	t.Helper()
	now := time.Now()
	header := b64JSON(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": x.kid})
	claims := map[string]any{
		"iss": x.issuer(), "sub": sub, "cid": sub, "client_id": sub, "aud": []string{xsappname, "uaa"},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "xs-" + sub, "scope": scopes,
		"zid": "tenant", "grant_type": "client_credentials",
	}
	maps.Copy(claims, more)
	payload := b64JSON(t, claims)
	sum := sha256.Sum256([]byte(header + "." + payload))
	sig, err := rsa.SignPKCS1v15(rand.Reader, x.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return header + "." + payload + "." + b64(sig)
}

func TestIssuers_XSUAATokenReachesTheBackendWithItsRoles(t *testing.T) {
	x := startXSUAA(t)
	e := newEnvConfig(t, envConfig{oauthOptions: x.trust()})
	const sender = "sb-order-sender!b196"

	ok := x.token(t, sender, xsappname+".ESBMessaging.send", "uaa.resource")
	e.call(t, http.MethodGet, "/http/flow", ok, "").wantStatus(t, http.StatusOK)
	// Its caller is named as the policy names it, in the issuer's own
	// namespace: a backend cannot mistake it for a local client.
	e.backend.wantRequests(t, backendRequest{Method: "GET", Path: "/http/flow", ClientID: x.issuer() + "#" + sender, Subject: x.issuer() + "#" + sender, Roles: "ESBMessaging.send"})

	// The same issuer's token without the role the path needs.
	orders := x.token(t, sender, xsappname+".ESBMessaging.send")
	e.call(t, http.MethodPost, "/http/orders/1", orders, "{}").wantBearerChallenge(t, http.StatusForbidden, "insufficient_scope")
	// A role that only looks like the suffix is no role.
	e.call(t, http.MethodGet, "/http/flow", x.token(t, sender, xsappname+"XESBMessaging.send"), "").
		wantBearerChallenge(t, http.StatusForbidden, "insufficient_scope")
	// The gateway's own tokens keep working next to the external ones.
	e.call(t, http.MethodGet, "/http/flow", e.token(t, e.A), "").wantStatus(t, http.StatusOK)

	// A token of an issuer nobody configured, signed by the same key.
	other := startXSUAA(t)
	other.key, other.kid = x.key, x.kid
	e.call(t, http.MethodGet, "/http/flow", other.token(t, sender, xsappname+".ESBMessaging.send"), "").
		wantBearerChallenge(t, http.StatusUnauthorized, "invalid_token")

	// The issuer goes down: the key the gateway has keeps working.
	x.down.Store(true)
	e.call(t, http.MethodGet, "/http/flow", x.token(t, sender, xsappname+".ESBMessaging.send"), "").wantStatus(t, http.StatusOK)
}

func TestIssuers_IssuerNeverReachedIs503(t *testing.T) {
	x := startXSUAA(t)
	x.down.Store(true)
	e := newEnvConfig(t, envConfig{oauthOptions: x.trust()})
	r := e.call(t, http.MethodGet, "/http/flow", x.token(t, "sb-sender", xsappname+".ESBMessaging.send"), "")
	r.wantStatus(t, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") == "" || r.header.Get("WWW-Authenticate") != "" {
		t.Errorf("headers = %v, want Retry-After and no challenge", r.header)
	}
	if code := r.oauthError(t); code != "temporarily_unavailable" {
		t.Errorf("error = %q, want temporarily_unavailable", code)
	}
	e.backend.wantRequests(t)
}

// reload makes the running gateway load its Caddyfile again.
func (e *env) reload(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, "reload", "--config", e.caddyfile, "--adapter", "caddyfile", "--address", e.admin, "--force")
	cmd.Env = e.caddyEnv
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
}

func TestIssuers_AConfigReloadKeepsTheKeysOfAnIssuerThatIsDown(t *testing.T) {
	x := startXSUAA(t)
	e := newEnvConfig(t, envConfig{admin: true, oauthOptions: x.trust()})
	tok := x.token(t, "sb-sender", xsappname+".ESBMessaging.send")
	e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)

	x.down.Store(true)
	e.reload(t)
	e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)
}
