package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Binaries built once by TestMain.
var caddyBin, iflowBin string

// buildTimeout allows for a cold build of Caddy with all standard modules.
const buildTimeout = 10 * time.Minute

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "oauthgate-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	caddyBin = filepath.Join(dir, "caddy")
	iflowBin = filepath.Join(dir, "iflow")
	build := map[string]string{caddyBin: "./cmd/caddy", iflowBin: "./integration/iflow"}
	// `make xcaddy` runs the tests against the binary xcaddy built.
	if bin := os.Getenv("OAUTHGATE_CADDY_BIN"); bin != "" {
		delete(build, caddyBin)
		caddyBin = bin
	}
	// Built without -race even under `go test -race`: a race-enabled Caddy
	// takes minutes to build, and the gateway's races are the unit tests'
	// business. The tests themselves still run with the detector.
	for out, pkg := range build {
		if err := goBuild(root, out, pkg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// moduleRoot is the directory of go.mod, wherever `go test` was started.
func moduleRoot() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

func goBuild(root, out, pkg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -o %s %s: %w\n%s", out, pkg, err, output)
	}
	return nil
}

// ---- the happy path ----

// A token from the standard Go OAuth client, with either client
// authentication style, lets GET and POST through to the backend, which sees
// the caller's identity but not the token.
func TestGateway_ClientCredentialsTokenReachesBackendWithIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, style := range []struct {
		name  string
		style oauth2.AuthStyle
	}{
		{"AuthStyleInHeader", oauth2.AuthStyleInHeader},
		{"AuthStyleInParams", oauth2.AuthStyleInParams},
	} {
		t.Run(style.name, func(t *testing.T) {
			tok := e.fetchToken(t, e.A, style.style)
			if !strings.EqualFold(tok.TokenType, "Bearer") {
				t.Errorf("token_type = %q, want Bearer", tok.TokenType)
			}
			if got := tok.Extra("scope"); got != roleMessaging {
				t.Errorf("scope = %#v, want %q", got, roleMessaging)
			}

			get := e.call(t, http.MethodGet, "/http/flow", tok.AccessToken, "")
			get.wantStatus(t, http.StatusOK)
			var probe struct{ Status, Flow, Time string }
			get.decode(t, &probe)
			if probe.Status != "ok" || probe.Flow != "/http/flow" {
				t.Errorf("GET answer = %s, want status ok for flow /http/flow", get.body)
			}
			if _, err := time.Parse(time.RFC3339, probe.Time); err != nil {
				t.Errorf("GET answer time: %v", err)
			}

			message := "<order id=\"4711\"/> via " + style.name
			post := e.call(t, http.MethodPost, "/http/flow", tok.AccessToken, message)
			post.wantStatus(t, http.StatusOK)
			var ack struct {
				MessageID string `json:"message_id"`
				Flow      string `json:"flow"`
				Received  string `json:"received"`
			}
			post.decode(t, &ack)
			if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(ack.MessageID) {
				t.Errorf("message_id = %q, want 32 hex digits", ack.MessageID)
			}
			if ack.Flow != "/http/flow" || ack.Received != message {
				t.Errorf("POST answer = %s, want flow /http/flow echoing %q", post.body, message)
			}

			e.backend.wantRequests(t,
				seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging),
				seenAs(http.MethodPost, "/http/flow", e.A, roleMessaging),
			)
		})
	}
}

// The identity headers come from the token only: whatever a caller puts in
// X-OAuth-* is overwritten, and cannot buy access either.
func TestGateway_CallerCannotSpoofIdentityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tokenB := e.token(t, e.B)
	spoof := func(t *testing.T, method, path, token string) response {
		t.Helper()
		req := newRequest(t, method, e.base+path, "spoof")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("X-OAuth-Client-ID", e.A.ID)
		req.Header.Set("X-OAuth-Subject", e.A.Subject)
		req.Header.Set("X-OAuth-Roles", roleMessaging)
		return send(t, e.http, req)
	}

	// B claims A's identity and role in headers; the guard goes by B's token.
	spoof(t, http.MethodGet, "/http/flow", tokenB).wantBearerChallenge(t, http.StatusForbidden, "insufficient_scope")
	e.backend.wantRequests(t)

	spoof(t, http.MethodPost, "/http/orders/1", tokenB).wantStatus(t, http.StatusOK)
	e.backend.wantRequests(t, seenAs(http.MethodPost, "/http/orders/1", e.B, roleOrders))

	// On a public path there is no identity to forward, and the spoofed one
	// must not take its place. (That the headers are then empty is
	// TestGuard_PublicPathForwardsNoIdentity's business.)
	spoof(t, http.MethodGet, "/http/ping", "").wantStatus(t, http.StatusOK)
	got := e.backend.requests(t)
	if len(got) != 1 || got[0].Path != "/http/ping" {
		t.Fatalf("backend received:\n%s\nwant the one GET /http/ping", fmtRequests(got))
	}
	if r := got[0]; r.ClientID == e.A.ID || r.Subject == e.A.Subject || r.Roles == roleMessaging {
		t.Errorf("spoofed identity reached the backend: %+v", r)
	}
}

// ---- the guard ----

// Roles are per endpoint: a valid token of one client must not open an
// endpoint that requires another role. (SAP Cloud Integration let any
// client's token through to custom-role endpoints; this must never happen.)
func TestGuard_ClientWithOtherEndpointRoleIsForbidden(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tokens := map[string]string{e.A.Name: e.token(t, e.A), e.B.Name: e.token(t, e.B)}
	for _, tc := range []struct {
		name         string
		client       client
		method, path string
		body         string
		wantStatus   int
		wantBackend  []backendRequest
	}{
		{
			name:   "B with only Orders.send on a generic flow",
			client: e.B, method: http.MethodGet, path: "/http/flow",
			wantStatus: http.StatusForbidden,
		},
		{
			name:   "A with only ESBMessaging.send on the orders endpoint",
			client: e.A, method: http.MethodPost, path: "/http/orders/1", body: "<order/>",
			wantStatus: http.StatusForbidden,
		},
		{
			name:   "A with only ESBMessaging.send on the orders endpoint's own path",
			client: e.A, method: http.MethodPost, path: "/http/orders", body: "<order/>",
			wantStatus: http.StatusForbidden,
		},
		{
			name:   "B with Orders.send on the orders endpoint",
			client: e.B, method: http.MethodPost, path: "/http/orders/1", body: "<order/>",
			wantStatus:  http.StatusOK,
			wantBackend: []backendRequest{seenAs(http.MethodPost, "/http/orders/1", e.B, roleOrders)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.call(t, tc.method, tc.path, tokens[tc.client.Name], tc.body)
			// The backend first: it consumes this case's log lines even
			// when the status check below stops the subtest.
			e.backend.wantRequests(t, tc.wantBackend...)
			if tc.wantStatus == http.StatusForbidden {
				r.wantBearerChallenge(t, http.StatusForbidden, "insufficient_scope")
			} else {
				r.wantStatus(t, tc.wantStatus)
			}
		})
	}
}

// A protected path without a Bearer token is challenged and never reaches
// the backend. Basic credentials are not a token, even valid ones.
func TestGuard_RequestWithoutTokenIsChallenged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name          string
		method        string
		authorization string
	}{
		{"GET without Authorization", http.MethodGet, ""},
		{"POST without Authorization", http.MethodPost, ""},
		{"client credentials as Basic", http.MethodGet, "Basic " + base64.StdEncoding.EncodeToString([]byte(e.A.ID+":"+e.A.Secret))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, tc.method, e.base+"/http/flow", "")
			if tc.authorization != "" {
				req.Header.Set("Authorization", tc.authorization)
			}
			r := send(t, e.http, req)
			e.backend.wantRequests(t)
			r.wantBearerChallenge(t, http.StatusUnauthorized, "")
			// RFC 6750 §3.1: no error code when the request carried no
			// credentials at all.
			if h := r.header.Get("WWW-Authenticate"); tc.authorization == "" && strings.Contains(h, "error=") {
				t.Errorf("WWW-Authenticate = %q, want no error code for a request without credentials", h)
			}
		})
	}
}

// A public rule lets requests through without a token, even though it is
// listed after the wildcard rule that covers the same path.
func TestGuard_PublicPathNeedsNoToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.call(t, http.MethodGet, "/http/ping", "", "")
	r.wantStatus(t, http.StatusOK)
	var probe struct{ Status, Flow string }
	r.decode(t, &probe)
	if probe.Status != "ok" || probe.Flow != "/http/ping" {
		t.Errorf("answer = %s, want status ok for flow /http/ping", r.body)
	}
	got := e.backend.requests(t)
	if len(got) != 1 || got[0].Method != http.MethodGet || got[0].Path != "/http/ping" || got[0].Authorization {
		t.Errorf("backend received:\n%s\nwant the one GET /http/ping, without Authorization", fmtRequests(got))
	}
}

// An anonymous request on a public path reaches the backend with empty
// identity headers. Caddy's header_up leaves a placeholder that is not set
// as literal text, so the guard has to set the placeholders, empty, for
// public rules; otherwise the backend sees "{http.auth.user.client_id}".
func TestGuard_PublicPathForwardsNoIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.call(t, http.MethodGet, "/http/ping", "", "").wantStatus(t, http.StatusOK)
	e.backend.wantRequests(t, backendRequest{Method: http.MethodGet, Path: "/http/ping"})
}

// Tokens that were altered, stripped, or signed by anyone but the gateway
// are invalid, and nothing of them reaches the backend.
func TestGuard_RejectsForgedTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	genuine := e.token(t, e.A)
	j := parseJWS(t, genuine)

	// The genuine token works, so each rejection below is down to the forgery.
	e.call(t, http.MethodGet, "/http/flow", genuine, "").wantStatus(t, http.StatusOK)
	e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging))

	// One character in the middle of the payload changed: still base64url,
	// but the claims are no longer the signed ones. (Not the last character:
	// its low bits may be padding that decodes to the same bytes.)
	flipped := []byte(j.rawPayload)
	mid := len(flipped) / 2
	if flipped[mid] == 'A' {
		flipped[mid] = 'B'
	} else {
		flipped[mid] = 'A'
	}
	before, _ := base64.RawURLEncoding.DecodeString(j.rawPayload)
	after, err := base64.RawURLEncoding.DecodeString(string(flipped))
	if err != nil || bytes.Equal(before, after) {
		t.Fatalf("flipping payload character %d: decodes to same bytes or fails (%v)", mid, err)
	}

	// The claims of A with B's role added, under A's genuine signature.
	escalated := maps.Clone(j.claims)
	escalated["scope"] = roleMessaging + " " + roleOrders

	// A correct ES256 signature, by a key the gateway has never seen. It
	// must verify with its own key, or the case below would prove nothing.
	foreignKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	foreign := signES256(t, foreignKey, j.rawHeader, j.rawPayload)
	point, err := foreignKey.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		t.Fatal(err)
	}
	if !verifyES256(t, parseJWS(t, foreign), map[string]any{"x": b64(point[1:33]), "y": b64(point[33:])}) {
		t.Fatal("token signed with the foreign key does not verify with that key")
	}
	none := maps.Clone(j.header)
	none["alg"] = "none"

	for _, tc := range []struct {
		name, method, path, token string
	}{
		{"payload character flipped", http.MethodGet, "/http/flow",
			j.rawHeader + "." + string(flipped) + "." + j.rawSignature},
		{"scope escalated under original signature", http.MethodPost, "/http/orders/1",
			j.rawHeader + "." + b64JSON(t, escalated) + "." + j.rawSignature},
		{"signature stripped", http.MethodGet, "/http/flow",
			j.rawHeader + "." + j.rawPayload + "."},
		{"re-signed by a foreign key under the real kid", http.MethodGet, "/http/flow",
			foreign},
		{"alg none", http.MethodGet, "/http/flow",
			b64JSON(t, none) + "." + j.rawPayload + "."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.call(t, tc.method, tc.path, tc.token, "")
			e.backend.wantRequests(t)
			r.wantBearerChallenge(t, http.StatusUnauthorized, "invalid_token")
		})
	}
}

// A token stops working once its lifetime and the leeway have passed.
func TestGuard_ExpiredTokenIsRejected(t *testing.T) {
	t.Parallel()
	const lifetime = 2 * time.Second
	e := newEnv(t, clientSpec{name: "short-lived", lifetime: lifetime.String(), roles: []string{roleMessaging}})
	c := e.clients["short-lived"]

	tok := e.fetchToken(t, c, oauth2.AuthStyleInHeader)
	// clientcredentials leaves Token.ExpiresIn empty; the raw field is in Extra.
	if in, _ := tok.Extra("expires_in").(float64); in < 1 || in > lifetime.Seconds() {
		t.Errorf("expires_in = %#v, want 1..%v", tok.Extra("expires_in"), lifetime.Seconds())
	}
	j := parseJWS(t, tok.AccessToken)
	exp := j.numericClaim(t, "exp")
	if iat := j.numericClaim(t, "iat"); exp-iat != int64(lifetime/time.Second) {
		t.Fatalf("exp - iat = %d s, want the client's lifetime %v", exp-iat, lifetime)
	}

	e.call(t, http.MethodGet, "/http/flow", tok.AccessToken, "").wantStatus(t, http.StatusOK)

	// Past exp plus leeway, with a margin for exp's whole-second precision.
	time.Sleep(time.Until(time.Unix(exp, 0).Add(leeway + 500*time.Millisecond)))

	e.call(t, http.MethodGet, "/http/flow", tok.AccessToken, "").wantBearerChallenge(t, http.StatusUnauthorized, "invalid_token")
	e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", c, roleMessaging))
}

// ---- the token endpoint ----

// SAP's documented call: grant in the query, empty body, Basic auth.
func TestTokenEndpoint_IssuesTokenForSAPQueryForm(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	query := url.Values{"grant_type": {"client_credentials"}, "token_format": {"jwt"}}
	for _, tc := range []struct {
		client client
		scope  string
		path   string
	}{
		{e.A, roleMessaging, "/http/flow"},
		{e.B, roleOrders, "/http/orders/1"},
	} {
		t.Run(tc.client.Name, func(t *testing.T) {
			r := e.tokenRequest(t, http.MethodPost, query, nil, tc.client.ID, tc.client.Secret)
			r.wantStatus(t, http.StatusOK)
			r.wantNoStore(t)
			var tok struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				ExpiresIn   int64  `json:"expires_in"`
				Scope       string `json:"scope"`
			}
			r.decode(t, &tok)
			if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.Scope != tc.scope {
				t.Errorf("token response = %s, want an access_token, token_type Bearer, scope %q", r.body, tc.scope)
			}
			// The default lifetime is 60 minutes, like SAP's.
			if tok.ExpiresIn < 3599 || tok.ExpiresIn > 3600 {
				t.Errorf("expires_in = %d, want 3600", tok.ExpiresIn)
			}
			e.call(t, http.MethodPost, tc.path, tok.AccessToken, "msg").wantStatus(t, http.StatusOK)
			e.backend.wantRequests(t, seenAs(http.MethodPost, tc.path, tc.client, tc.scope))
		})
	}
}

// Failed client authentication looks the same whatever failed, so that the
// endpoint does not reveal which client IDs exist; malformed requests get
// the RFC 6749 error codes. No answer may be cached.
func TestTokenEndpoint_RejectsBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clientSpec{name: "retired", roles: []string{roleMessaging}})
	retired := e.clients["retired"]
	// The retired client's credentials work until it is disabled, so its
	// rejection below is down to the flag alone.
	e.fetchToken(t, retired, oauth2.AuthStyleInHeader)
	e.setClientDisabled(t, retired.ID)
	e.restartGateway(t)

	sapQuery := url.Values{"grant_type": {"client_credentials"}, "token_format": {"jwt"}}
	for _, tc := range []struct {
		name           string
		method         string
		query, form    url.Values
		user, pass     string
		wantStatus     int
		wantError      string // RFC 6749 error code; "" for no JSON body check
		wantBasicRealm bool
	}{
		{
			name: "wrong secret", method: http.MethodPost, query: sapQuery,
			user: e.A.ID, pass: e.B.Secret,
			wantStatus: http.StatusUnauthorized, wantError: "invalid_client", wantBasicRealm: true,
		},
		{
			name: "unknown client id", method: http.MethodPost, query: sapQuery,
			user: "no-such-client", pass: e.A.Secret,
			wantStatus: http.StatusUnauthorized, wantError: "invalid_client", wantBasicRealm: true,
		},
		{
			name: "disabled client", method: http.MethodPost, query: sapQuery,
			user: retired.ID, pass: retired.Secret,
			wantStatus: http.StatusUnauthorized, wantError: "invalid_client", wantBasicRealm: true,
		},
		{
			name: "wrong secret in form body", method: http.MethodPost,
			form:       url.Values{"grant_type": {"client_credentials"}, "client_id": {e.A.ID}, "client_secret": {e.A.Secret + "x"}},
			wantStatus: http.StatusUnauthorized, wantError: "invalid_client",
		},
		{
			name: "password grant", method: http.MethodPost,
			form: url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"secret"}},
			user: e.A.ID, pass: e.A.Secret,
			wantStatus: http.StatusBadRequest, wantError: "unsupported_grant_type",
		},
		{
			name: "no grant_type", method: http.MethodPost,
			query: url.Values{"token_format": {"jwt"}},
			user:  e.A.ID, pass: e.A.Secret,
			wantStatus: http.StatusBadRequest, wantError: "invalid_request",
		},
		{
			name: "GET", method: http.MethodGet, query: sapQuery,
			user: e.A.ID, pass: e.A.Secret,
			wantStatus: http.StatusMethodNotAllowed,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.tokenRequest(t, tc.method, tc.query, tc.form, tc.user, tc.pass)
			r.wantStatus(t, tc.wantStatus)
			r.wantNoStore(t)
			if tc.wantError != "" {
				if got := r.oauthError(t); got != tc.wantError {
					t.Errorf("error = %q, want %q; body: %s", got, tc.wantError, r.body)
				}
			}
			if tc.wantBasicRealm {
				if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Basic realm=") {
					t.Errorf("WWW-Authenticate = %q, want `Basic realm=...`", h)
				}
			}
			if bytes.Contains(r.body, []byte("access_token")) {
				t.Errorf("rejected request got a token: %s", r.body)
			}
		})
	}
}

// ---- discovery ----

// The JWKS publishes the signing key as a public P-256 key, and only that.
func TestDiscovery_JWKSHasOnlyPublicES256Keys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	keys := e.jwks(t)
	for i, k := range keys {
		for field, want := range map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"} {
			if k[field] != want {
				t.Errorf("key %d: %s = %#v, want %q", i, field, k[field], want)
			}
		}
		if kid, _ := k["kid"].(string); kid == "" {
			t.Errorf("key %d: no kid", i)
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Errorf("key %d publishes private field %q", i, private)
			}
		}
	}

	kid := parseJWS(t, e.token(t, e.A)).header["kid"]
	if !slices.ContainsFunc(keys, func(k map[string]any) bool { return k["kid"] == kid }) {
		t.Errorf("token kid %#v is not in the JWKS %v", kid, keys)
	}
}

// The RFC 8414 metadata points clients at this gateway's endpoints.
func TestDiscovery_MetadataDescribesEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.call(t, http.MethodGet, metadataPath, "", "")
	r.wantStatus(t, http.StatusOK)
	var md struct {
		Issuer              string   `json:"issuer"`
		TokenEndpoint       string   `json:"token_endpoint"`
		JWKSURI             string   `json:"jwks_uri"`
		GrantTypesSupported []string `json:"grant_types_supported"`
	}
	r.decode(t, &md)
	if md.Issuer != e.base {
		t.Errorf("issuer = %q, want %q", md.Issuer, e.base)
	}
	if want := e.base + tokenPath; md.TokenEndpoint != want {
		t.Errorf("token_endpoint = %q, want %q", md.TokenEndpoint, want)
	}
	if !slices.Contains(md.GrantTypesSupported, "client_credentials") {
		t.Errorf("grant_types_supported = %q, want client_credentials in it", md.GrantTypesSupported)
	}
	// jwks_uri must lead to the key set the gateway serves.
	if !strings.HasPrefix(md.JWKSURI, e.base+"/") {
		t.Fatalf("jwks_uri = %q, want a URL under %s", md.JWKSURI, e.base)
	}
	viaMetadata := decodeJWKS(t, send(t, e.http, newRequest(t, http.MethodGet, md.JWKSURI, "")))
	if direct := e.jwks(t); !jsonEqual(t, viaMetadata, direct) {
		t.Errorf("jwks_uri serves %v, want the JWKS %v", viaMetadata, direct)
	}
}

// An access token is an RFC 9068 JWT signed with ES256 by the published key,
// carrying the client's identity and roles.
func TestToken_IsES256JWTSignedByPublishedKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := time.Now().Add(-leeway)
	raw := e.token(t, e.A)
	j := parseJWS(t, raw)

	for field, want := range map[string]string{"alg": "ES256", "typ": "at+jwt"} {
		if j.header[field] != want {
			t.Errorf("header %s = %#v, want %q", field, j.header[field], want)
		}
	}
	kid, _ := j.header["kid"].(string)
	if kid == "" {
		t.Fatalf("header has no kid: %v", j.header)
	}

	for claim, want := range map[string]string{
		"iss": e.base, "sub": e.A.Subject, "client_id": e.A.ID, "scope": roleMessaging,
	} {
		if j.claims[claim] != want {
			t.Errorf("claim %s = %#v, want %q", claim, j.claims[claim], want)
		}
	}
	switch aud := j.claims["aud"].(type) {
	case string:
		if aud != e.base {
			t.Errorf("aud = %q, want %q", aud, e.base)
		}
	case []any:
		if !slices.Contains(aud, any(e.base)) {
			t.Errorf("aud = %v, want it to contain %q", aud, e.base)
		}
	default:
		t.Errorf("aud = %#v, want %q", aud, e.base)
	}
	iat, exp := j.numericClaim(t, "iat"), j.numericClaim(t, "exp")
	if iat < before.Unix() || iat > time.Now().Add(leeway).Unix() {
		t.Errorf("iat = %d, want about now (%d)", iat, time.Now().Unix())
	}
	if exp-iat != 3600 {
		t.Errorf("exp - iat = %d s, want the default 3600", exp-iat)
	}
	jti, _ := j.claims["jti"].(string)
	if jti == "" {
		t.Errorf("no jti: %v", j.claims)
	}
	if other, _ := parseJWS(t, e.token(t, e.A)).claims["jti"].(string); other == jti {
		t.Errorf("two tokens share jti %q", jti)
	}

	keys := e.jwks(t)
	i := slices.IndexFunc(keys, func(k map[string]any) bool { return k["kid"] == kid })
	if i < 0 {
		t.Fatalf("kid %q not in JWKS %v", kid, keys)
	}
	if !verifyES256(t, j, keys[i]) {
		t.Errorf("signature does not verify with JWKS key %q", kid)
	}
}

// ---- operations ----

// The signing key lives in Caddy's storage, so tokens outlive a restart.
func TestGateway_TokenSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.token(t, e.A)
	kid := parseJWS(t, tok).header["kid"]
	e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)

	e.restartGateway(t)

	e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)
	if !slices.ContainsFunc(e.jwks(t), func(k map[string]any) bool { return k["kid"] == kid }) {
		t.Errorf("kid %#v no longer in the JWKS after restart", kid)
	}
	e.backend.wantRequests(t,
		seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging),
		seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging),
	)
}

// SAP's own example, verbatim: curl with Basic auth and the grant in the
// query. curl is required; CI installs it.
func TestSAP_CurlClientCredentialsFlow(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("this test needs curl on PATH (CI installs it): %v", err)
	}
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "-sS",
		"--noproxy", "*", // the gateway is local; never go through a proxy from the environment
		"--max-time", "10",
		"-X", "POST", "-u", e.A.ID+":"+e.A.Secret,
		e.base+tokenPath+"?grant_type=client_credentials&token_format=jwt")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl: %v\nstderr: %s\nstdout: %s", err, &stderr, out)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(out, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("curl got %s, want a token response (%v)", out, err)
	}
	if tok.TokenType != "Bearer" {
		t.Errorf("token_type = %q, want Bearer", tok.TokenType)
	}
	e.call(t, http.MethodGet, "/http/flow", tok.AccessToken, "").wantStatus(t, http.StatusOK)
	e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging))
}

// `caddy oauth client add` keeps only a hash of the secret it prints, and
// records what it was told.
func TestClientAdd_StoresOnlySecretHash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	environ := caddyEnviron(t, dir)
	file := filepath.Join(dir, "clients.json") // does not exist yet
	erp := addClient(t, environ, file, "--name", "erp", "--description", "Orders from S/4HANA", "--lifetime", "2s")
	crm := addClient(t, environ, file, "--name", "crm")
	if erp.ID == crm.ID || erp.Secret == crm.Secret {
		t.Fatalf("two clients share an ID or secret: %+v %+v", erp, crm)
	}

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []client{erp, crm} {
		if bytes.Contains(data, []byte(c.Secret)) {
			t.Errorf("clients file contains the secret of %s in clear", c.Name)
		}
	}
	var f struct {
		Clients []storedClient `json:"clients"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("clients file: %v\n%s", err, data)
	}
	if len(f.Clients) != 2 {
		t.Fatalf("clients file has %d clients, want 2:\n%s", len(f.Clients), data)
	}
	for _, c := range f.Clients {
		if len(c.Secrets) != 1 || !strings.HasPrefix(c.Secrets[0].Hash, "sha256:") {
			t.Errorf("client %s: secrets = %+v, want one sha256: hash", c.ID, c.Secrets)
		}
		if c.Disabled {
			t.Errorf("client %s is disabled on creation", c.ID)
		}
	}
	i := slices.IndexFunc(f.Clients, func(c storedClient) bool { return c.ID == erp.ID })
	if i < 0 {
		t.Fatalf("client %s not in the clients file:\n%s", erp.ID, data)
	}
	got := f.Clients[i]
	if got.Name != "erp" || got.Description != "Orders from S/4HANA" {
		t.Errorf("client %s: name %q, description %q; want erp, %q", erp.ID, got.Name, got.Description, "Orders from S/4HANA")
	}
	if d, err := time.ParseDuration(got.TokenLifetime); err != nil || d != 2*time.Second {
		t.Errorf("token_lifetime = %q, want 2s", got.TokenLifetime)
	}
}

// storedClient is an entry of the clients file, as far as the tests read it.
type storedClient struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Description   string `json:"description"`
	TokenLifetime string `json:"token_lifetime"`
	Disabled      bool   `json:"disabled"`
	Secrets       []struct {
		Hash string `json:"hash"`
	} `json:"secrets"`
}

// jsonEqual compares two values by their JSON encoding.
func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}
