package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// private_key_jwt (RFC 7523 §2.2): clients registered with
// `caddy oauth client add --jwks FILE` authenticate with a JWT signed by
// their key, from real client libraries and from hand-made attacks, at
// the real binary.

// kindAssertion is what the log-hygiene check calls a client assertion:
// one that reaches a log could be replayed until it expires.
const kindAssertion = "a client assertion"

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// keyClient is a client registered with a public key, and that key.
type keyClient struct {
	client
	key *ecdsa.PrivateKey
	kid string
}

// publicJWK is the JWK of key's public part with kid; with private, the
// private member "d" too.
func publicJWK(key *ecdsa.PrivateKey, kid string, private bool) map[string]any {
	pub, err := key.PublicKey.Bytes() // 0x04 ‖ x ‖ y
	if err != nil {
		panic(err)
	}
	jwk := map[string]any{"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(pub[1:33]), "y": b64(pub[33:])}
	if private {
		d, err := key.Bytes()
		if err != nil {
			panic(err)
		}
		jwk["d"] = b64(d)
	}
	return jwk
}

// addKeyClient registers a client with a fresh P-256 key through
// `caddy oauth client add --jwks`, grants it roles and restarts the
// gateway so that it knows the client.
func (e *env) addKeyClient(t *testing.T, name string, roles ...string) keyClient {
	t.Helper()
	return e.addKeyClientServedBy(t, name, nil, roles...)
}

// addKeyClientServedBy is addKeyClient; with serve, the client's JWK Set
// is not in the clients file but at the URL serve returns for it
// (--jwks-uri).
func (e *env) addKeyClientServedBy(t *testing.T, name string, serve func(jwks []byte) string, roles ...string) keyClient {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid := name + "-key-1"
	set, _ := json.Marshal(map[string]any{"keys": []any{publicJWK(key, kid, false)}})
	args := []string{"oauth", "client", "add", "--clients", e.clientsFile, "--name", name}
	if serve != nil {
		args = append(args, "--jwks-uri", serve(set))
	} else {
		jwksFile := filepath.Join(e.dir, name+".jwks.json")
		writeFile(t, jwksFile, string(set))
		args = append(args, "--jwks", jwksFile)
	}
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, args...)
	cmd.Env, cmd.Dir = e.caddyEnv, e.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("caddy %s: %v\n%s%s", strings.Join(args, " "), err, &stdout, &stderr)
	}
	c := client{Name: name}
	for _, f := range []struct {
		re  *regexp.Regexp
		dst *string
	}{{clientIDLine, &c.ID}, {subjectLine, &c.Subject}} {
		m := f.re.FindStringSubmatch(stdout.String())
		if m == nil {
			t.Fatalf("caddy %s: no %s in:\n%s", strings.Join(args, " "), f.re, &stdout)
		}
		*f.dst = m[1]
	}
	if clientSecretLine.MatchString(stdout.String()) {
		t.Fatalf("a client registered with keys was given a secret:\n%s", &stdout)
	}
	e.grant(t, c, roles...)
	e.clients[name] = c
	e.restartGateway(t)
	return keyClient{client: c, key: key, kid: kid}
}

// assertion is a client assertion of c for aud, valid for a minute,
// signed with c's key; change edits the claims before signing.
func (c keyClient) assertion(t *testing.T, aud string, change ...func(claims map[string]any)) string {
	t.Helper()
	now := time.Now().Unix()
	claims := map[string]any{"iss": c.ID, "sub": c.ID, "aud": aud, "iat": now, "exp": now + 60, "jti": b64(randomID())}
	for _, f := range change {
		f(claims)
	}
	a := signES256(t, c.key, b64JSON(t, map[string]any{"alg": "ES256", "kid": c.kid, "typ": "JWT"}), b64JSON(t, claims))
	sensitive.add(kindAssertion, a)
	return a
}

func randomID() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return b
}

// assertionRequest asks for a token with a client assertion in the body.
func (e *env) assertionRequest(t *testing.T, base, assertion string) response {
	t.Helper()
	return e.tokenRequestAt(t, base, url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {assertionType}, "client_assertion": {assertion}})
}

func (e *env) tokenRequestAt(t *testing.T, base string, form url.Values) response {
	t.Helper()
	req := newRequest(t, http.MethodPost, base+tokenPath, form.Encode())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return send(t, e.http, req)
}

// Node's openid-client 6 signs its own assertion (aud: the issuer) with
// client.PrivateKeyJwt, and its token opens the flow; over TLS, as it
// insists on.
func TestPrivateKeyJWT_NodeOpenIDClient(t *testing.T) {
	t.Parallel()
	node := nodeClients(t)
	e := newEnvConfig(t, envConfig{tls: true})
	c := e.addKeyClient(t, "sender-node-keys", roleMessaging)
	jwk, _ := json.Marshal(publicJWK(c.key, c.kid, true))
	stdout, stderr, err := node.run(t, []string{
		"ISSUER=" + e.base,
		"CLIENT_ID=" + c.ID,
		"CLIENT_PRIVATE_JWK=" + string(jwk),
		"AUTH=private_key_jwt",
		"RESOURCE_URL=" + e.base + "/http/flow",
		"NODE_EXTRA_CA_CERTS=" + e.caFile,
	}, filepath.Join(nodeClientsDir, "openid-client.mjs"))
	e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", c.client, roleMessaging))
	lines := strings.Split(strings.TrimSpace(string(stdout)), "\n")
	var res struct {
		openidClientResult
		TokenRequest struct {
			AssertionType string `json:"body_client_assertion_type"`
			Assertion     bool   `json:"body_client_assertion"`
			Secret        bool   `json:"body_client_secret"`
			Basic         bool   `json:"basic_auth"`
		} `json:"token_request"`
	}
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil || err != nil || !res.OK {
		t.Fatalf("openid-client.mjs: %v (decoding its output: %v)\nstdout:\n%s\nstderr:\n%s", err, jerr, stdout, stderr)
	}
	sensitive.add(kindToken, res.AccessToken)
	if tr := res.TokenRequest; tr.AssertionType != assertionType || !tr.Assertion || tr.Secret || tr.Basic {
		t.Errorf("token request = %+v, want a client assertion and nothing else", tr)
	}
	if res.Method != "private_key_jwt" {
		t.Errorf("method = %q", res.Method)
	}
	if res.Issuer != e.issuer || !strings.HasPrefix(res.Issuer, "https://") {
		t.Errorf("discovered issuer %q, want %q", res.Issuer, e.issuer)
	}
}

// pythonAuthlib is /usr/bin/python3 if it has Authlib and Requests.
// Outside CI (CI=true) a machine without them skips the test, as the
// Redis tests do; in CI, which installs them (.ci/run), it fails.
func pythonAuthlib(t *testing.T) string {
	t.Helper()
	const python = "/usr/bin/python3"
	err := exec.Command(python, "-c", "import authlib, requests").Run()
	if err == nil {
		return python
	}
	missing(t, python+" cannot import authlib and requests", "apt-get install python3-authlib python3-requests", err)
	return ""
}

// Python's Authlib 1.2 (Debian's) signs its assertion (aud: the token
// endpoint) with PrivateKeyJWT in an OAuth2Session, and its token opens
// the flow; over TLS, which Requests verifies against the test's CA.
func TestPrivateKeyJWT_PythonAuthlib(t *testing.T) {
	t.Parallel()
	python := pythonAuthlib(t)
	e := newEnvConfig(t, envConfig{tls: true})
	c := e.addKeyClient(t, "sender-python-keys", roleMessaging)
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join(nodeClientsDir, "authlib-client.py"))
	cmd.Env = append(os.Environ(),
		"TOKEN_URL="+e.base+tokenPath,
		"CLIENT_ID="+c.ID,
		"CLIENT_KEY_PEM="+string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"RESOURCE_URL="+e.base+"/http/flow",
		"REQUESTS_CA_BUNDLE="+e.caFile,
		"NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", c.client, roleMessaging))
	var res struct {
		OK      bool   `json:"ok"`
		Authlib string `json:"authlib"`
		Type    string `json:"token_type"`
		Error   string `json:"error"`
	}
	if jerr := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); jerr != nil || err != nil || !res.OK {
		t.Fatalf("authlib-client.py: %v (decoding its output: %v)\nstdout:\n%s\nstderr:\n%s", err, jerr, &stdout, &stderr)
	}
	t.Logf("Authlib %s got a %s token", res.Authlib, res.Type)
}

// Every way to misuse a client assertion, against the running gateway:
// each is refused with 401 invalid_client, counts as a failed
// authentication, and the client's own good assertion still works.
func TestPrivateKeyJWT_AttacksAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.addKeyClient(t, "sender-keys", roleMessaging)
	other := e.addKeyClient(t, "other-keys", roleMessaging)
	aud := e.issuer + tokenPath

	replayed := c.assertion(t, aud)
	e.assertionRequest(t, e.base, replayed).wantStatus(t, http.StatusOK)

	header := func(h map[string]any) string { return b64JSON(t, h) }
	claims := func() string {
		now := time.Now().Unix()
		return b64JSON(t, map[string]any{"iss": c.ID, "sub": c.ID, "aud": aud, "iat": now, "exp": now + 60, "jti": b64(randomID())})
	}
	hmacWithPublicKey := func() string {
		// The forger knows the public key (the JWKS) and hopes the server
		// verifies HS256 with it as the HMAC key.
		pub, _ := json.Marshal(publicJWK(c.key, c.kid, false))
		input := header(map[string]any{"alg": "HS256", "kid": c.kid}) + "." + claims()
		m := hmac.New(sha256.New, pub)
		m.Write([]byte(input))
		return input + "." + b64(m.Sum(nil))
	}
	// Each with the reason the gateway's log gives (the client is told
	// only that authentication failed).
	attacks := []struct {
		name, assertion, logged string
	}{
		{"a replayed assertion", replayed, "the jti was used before"},
		{"alg none", header(map[string]any{"alg": "none", "kid": c.kid}) + "." + claims() + ".", "not a compact JWS"},
		{"alg none with a signature", header(map[string]any{"alg": "none", "kid": c.kid}) + "." + claims() + ".AAAA", `algorithm \"none\" is not allowed`},
		{"HMAC keyed with the client's public key", hmacWithPublicKey(), `algorithm \"HS256\" is not allowed`},
		{"another audience", c.assertion(t, "https://other-server.example/token"), "aud is not"},
		{"expired", c.assertion(t, aud, func(m map[string]any) { m["exp"] = time.Now().Add(-10 * time.Minute).Unix() }), "has expired"},
		{"exp an hour ahead", c.assertion(t, aud, func(m map[string]any) { m["exp"] = time.Now().Add(time.Hour).Unix() }), "more than 5m0s ahead"},
		{"iss is not sub", c.assertion(t, aud, func(m map[string]any) { m["sub"] = other.ID }), "iss and sub"},
		{"signed by another client's key", keyClient{client: c.client, key: other.key, kid: c.kid}.assertion(t, aud), "signature is invalid"},
		{"oversized", c.assertion(t, aud, func(m map[string]any) { m["pad"] = strings.Repeat("x", 9<<10) }), "longer than 8192 bytes"},
	}
	next := 0 // the gateway's log line after the last refusal seen
	for _, a := range attacks {
		resp := e.assertionRequest(t, e.base, a.assertion)
		// The log line comes through a pipe, maybe after the response.
		i, ok := e.gatewayLog.waitLine(next, 5*time.Second, e.gateway.done, func(l string) bool {
			return strings.Contains(l, "client assertion refused")
		})
		if !ok {
			t.Fatalf("%s: no refusal in the gateway's log", a.name)
		}
		if l := e.gatewayLog.linesBetween(i, i+1)[0]; !strings.Contains(l, a.logged) {
			t.Errorf("%s: the gateway's log says %s, want %q", a.name, l, a.logged)
		}
		next = i + 1
		if resp.status != http.StatusUnauthorized || resp.oauthError(t) != "invalid_client" {
			t.Errorf("%s: %d %s, want 401 invalid_client", a.name, resp.status, resp.body)
		}
		if strings.Contains(string(resp.body), "access_token") {
			t.Errorf("%s: a token was issued", a.name)
		}
	}
	// Beyond the body limit, the request itself is refused.
	huge := c.assertion(t, aud, func(m map[string]any) { m["pad"] = strings.Repeat("x", 20<<10) })
	e.assertionRequest(t, e.base, huge).wantStatus(t, http.StatusBadRequest)

	// The client's own assertion still works: failures do not lock out
	// a client that proves its key.
	e.assertionRequest(t, e.base, c.assertion(t, e.issuer)).wantStatus(t, http.StatusOK)
	// The failures counted: more of them from this address soon get 429.
	var last int
	for range 3 {
		if last = e.assertionRequest(t, e.base, c.assertion(t, "https://other-server.example/")).status; last == http.StatusTooManyRequests {
			break
		}
	}
	if last != http.StatusTooManyRequests {
		t.Errorf("after %d failed assertions, a further one got %d, want 429", len(attacks)+3, last)
	}
}

// A client with keys only has no secret that could authenticate it, and
// the metadata announces the method.
func TestPrivateKeyJWT_AKeysOnlyClientHasNoSecretAndTheMetadataSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.addKeyClient(t, "sender-keys-only", roleMessaging)
	e.tokenRequest(t, http.MethodPost, url.Values{"grant_type": {"client_credentials"}}, nil, c.ID, "").
		wantStatus(t, http.StatusUnauthorized)
	var md map[string]any
	e.call(t, http.MethodGet, "/.well-known/oauth-authorization-server", "", "").decode(t, &md)
	for _, name := range []string{"token_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported"} {
		if !strings.Contains(stringOf(md[name]), "private_key_jwt") {
			t.Errorf("%s = %v, want private_key_jwt", name, md[name])
		}
	}
	if algs := stringOf(md["token_endpoint_auth_signing_alg_values_supported"]); !strings.Contains(algs, "ES256") || strings.Contains(algs, "HS") || strings.Contains(algs, "none") {
		t.Errorf("token_endpoint_auth_signing_alg_values_supported = %s", algs)
	}
}

func stringOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// A client whose keys are at its jwks_uri (here a loopback http server,
// which the rule for such URLs allows): the gateway fetches them once,
// and an assertion by a key the URL does not publish is refused.
func TestPrivateKeyJWT_KeysFetchedFromTheClientsJWKSURI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var fetches atomic.Int32
	c := e.addKeyClientServedBy(t, "sender-jwks-uri", func(jwks []byte) string {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fetches.Add(1)
			w.Header().Set("Content-Type", "application/jwk-set+json")
			_, _ = w.Write(jwks)
		}))
		t.Cleanup(ts.Close)
		return ts.URL + "/jwks.json"
	}, roleMessaging)
	for range 2 {
		tok := e.assertionRequest(t, e.base, c.assertion(t, e.issuer))
		tok.wantStatus(t, http.StatusOK)
		var r struct {
			AccessToken string `json:"access_token"`
		}
		tok.decode(t, &r)
		sensitive.add(kindToken, r.AccessToken)
		e.call(t, http.MethodGet, "/http/flow", r.AccessToken, "").wantStatus(t, http.StatusOK)
	}
	e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", c.client, roleMessaging),
		seenAs(http.MethodGet, "/http/flow", c.client, roleMessaging))
	if n := fetches.Load(); n != 1 {
		t.Errorf("the JWK Set was fetched %d times for two assertions, want once", n)
	}
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	resp := e.assertionRequest(t, e.base, keyClient{client: c.client, key: stranger, kid: "not-published"}.assertion(t, e.issuer))
	if resp.status != http.StatusUnauthorized || resp.oauthError(t) != "invalid_client" {
		t.Errorf("an assertion by a key the URL does not publish: %d %s, want 401 invalid_client", resp.status, resp.body)
	}
}

// A fleet shares one replay table through Redis: an assertion accepted
// by one instance is a replay at every other.
func TestRedisFleet_AClientAssertionIsAcceptedOnceAcrossTheFleet(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	a := newRedisFleet(t, redisState(r.url(), sealingKeys(t)), 1)[0]
	c := a.addKeyClient(t, "sender-fleet-keys", roleMessaging)
	b := a.peer(t)

	first := c.assertion(t, a.issuer)
	a.assertionRequest(t, a.base, first).wantStatus(t, http.StatusOK)
	resp := a.assertionRequest(t, b.base, first)
	if resp.status != http.StatusUnauthorized || resp.oauthError(t) != "invalid_client" {
		t.Errorf("the same assertion at the second instance: %d %s, want 401 invalid_client", resp.status, resp.body)
	}
	// A fresh one is fine there.
	a.assertionRequest(t, b.base, c.assertion(t, a.issuer)).wantStatus(t, http.StatusOK)
}
