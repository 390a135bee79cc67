package authserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/bruteforce"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	statepkg "github.com/oauthgate/oauthgate/caddymodule/state"
)

const (
	keyClientID = "keyed"    // registered with an inline JWK Set only
	offKeysID   = "off-keys" // the same, disabled
	uriClientID = "by-uri"   // registered with a jwks_uri only
	kid         = "client-1" // the kid of the client's key
)

// clientKey is a client's ES256 key pair.
type clientKey struct {
	priv *ecdsa.PrivateKey
	kid  string
}

func newClientKey(t *testing.T, kid string) *clientKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &clientKey{priv, kid}
}

// jwks is the public JWK Set of the keys.
func jwks(t *testing.T, ks ...*clientKey) json.RawMessage {
	t.Helper()
	var list []jwk.Key
	for _, k := range ks {
		j, err := jwk.Import(&k.priv.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		_ = j.Set(jwk.KeyIDKey, k.kid)
		list = append(list, j)
	}
	b, err := json.Marshal(map[string]any{"keys": list})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64json(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// assertion is a client assertion of client signed by k; change, if
// given, edits the claims first.
func (k *clientKey) assertion(client string, change ...func(map[string]any)) string {
	claims := map[string]any{"iss": client, "sub": client, "aud": issuer + authserver.TokenPath,
		"jti": base64.RawURLEncoding.EncodeToString(randomBytes(12)), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	for _, c := range change {
		c(claims)
	}
	input := b64json(map[string]any{"alg": "ES256", "kid": k.kid}) + "." + b64json(claims)
	d := sha256.Sum256([]byte(input))
	r, s, _ := ecdsa.Sign(rand.Reader, k.priv, d[:])
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// assertionBody is a form body that authenticates by client assertion.
func assertionBody(a string, extra ...string) string {
	v := url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion": {a}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v.Encode()
}

// withKeyClients adds the clients "keyed" (inline keys of key) and
// "by-uri" (keys at jwksURI, if given) to the fixture, and a replay table.
func withKeyClients(t *testing.T, f *fixture, key *clientKey, jwksURI string) {
	t.Helper()
	_, senderStored := clients.NewSecret()
	cs := []clients.Client{
		{ID: senderID, Name: "Sender", Secrets: []clients.Secret{senderStored}},
		{ID: keyClientID, Name: "Keyed", JWKS: jwks(t, key)},
		{ID: offKeysID, Name: "Off", JWKS: jwks(t, key), Disabled: true},
	}
	if jwksURI != "" {
		cs = append(cs, clients.Client{ID: uriClientID, Name: "By URI", JWKSURI: jwksURI})
	}
	st := f.srv.State.(*state)
	st.clients = registry(t, nil, cs...)
	f.srv.Once = statepkg.NewMemoryOnce(0, func() time.Time { return now })
}

func TestToken_PrivateKeyJWT(t *testing.T) {
	key, other := newClientKey(t, kid), newClientKey(t, kid)
	tests := map[string]struct {
		body   func() string
		status int
		code   string // "" = a token
	}{
		"an assertion for the token endpoint": {func() string {
			return "grant_type=client_credentials&" + assertionBody(key.assertion(keyClientID))
		}, 200, ""},
		"an assertion for the issuer": {func() string {
			return "grant_type=client_credentials&" + assertionBody(key.assertion(keyClientID, func(c map[string]any) { c["aud"] = issuer }))
		}, 200, ""},
		"with the same client_id": {func() string {
			return "grant_type=client_credentials&" + assertionBody(key.assertion(keyClientID), "client_id", keyClientID)
		}, 200, ""},
		"with another client_id": {func() string {
			return "grant_type=client_credentials&" + assertionBody(key.assertion(keyClientID), "client_id", senderID)
		}, 401, "invalid_client"},
		"signed by another key of the same kid": {func() string {
			return "grant_type=client_credentials&" + assertionBody(other.assertion(keyClientID))
		}, 401, "invalid_client"},
		"for a client that has only a secret": {func() string {
			return "grant_type=client_credentials&" + assertionBody(key.assertion(senderID))
		}, 401, "invalid_client"},
		"for a disabled client": {func() string {
			return "grant_type=client_credentials&" + assertionBody(key.assertion(offKeysID))
		}, 401, "invalid_client"},
		"for a client that does not exist": {func() string {
			return "grant_type=client_credentials&" + assertionBody(key.assertion("nobody"))
		}, 401, "invalid_client"},
		"expired": {func() string {
			return "grant_type=client_credentials&" + assertionBody(key.assertion(keyClientID, func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }))
		}, 401, "invalid_client"},
		"not a JWT": {func() string {
			return "grant_type=client_credentials&" + assertionBody("not-a-jwt")
		}, 401, "invalid_client"},
		"an oversized assertion": {func() string {
			return "grant_type=client_credentials&" + assertionBody(key.assertion(keyClientID, func(c map[string]any) { c["x"] = strings.Repeat("x", 9000) }))
		}, 401, "invalid_client"},
		"another assertion type": {func() string {
			return "grant_type=client_credentials&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:saml2-bearer&client_assertion=x"
		}, 400, "invalid_request"},
		"a type without an assertion": {func() string {
			return "grant_type=client_credentials&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
		}, 400, "invalid_request"},
		"an assertion and a secret": {func() string {
			return "grant_type=client_credentials&client_secret=s&" + assertionBody(key.assertion(keyClientID))
		}, 400, "invalid_request"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			withKeyClients(t, f, key, "")
			rec := f.do(t, request{body: tc.body()})
			if tc.code == "" {
				tok := okToken(t, rec)
				if c := f.verify(t, tok.AccessToken); c.ClientID != keyClientID {
					t.Errorf("client_id = %q, want %q", c.ClientID, keyClientID)
				}
				return
			}
			e := tokenError(t, rec, tc.status, tc.code)
			if tc.status == 401 && e.Description != "client authentication failed" {
				t.Errorf("description = %q: it must not say which check failed", e.Description)
			}
		})
	}
}

func TestToken_PrivateKeyJWTWithBasicIsRefused(t *testing.T) {
	f := newFixture(t)
	withKeyClients(t, f, newClientKey(t, kid), "")
	rec := f.do(t, request{target: sapQuery, body: assertionBody("a.b.c"), header: basic(keyClientID, "x")})
	tokenError(t, rec, 400, "invalid_request")
	rec = f.do(t, request{target: sapQuery + "&client_assertion=a.b.c"})
	tokenError(t, rec, 400, "invalid_request")
	// A keys-only client has no secret, so none authenticates it.
	rec = f.do(t, request{target: sapQuery, header: basic(keyClientID, "")})
	tokenError(t, rec, 401, "invalid_client")
}

func TestToken_AReplayedAssertionIsRefused(t *testing.T) {
	f := newFixture(t)
	key := newClientKey(t, kid)
	withKeyClients(t, f, key, "")
	body := "grant_type=client_credentials&" + assertionBody(key.assertion(keyClientID))
	okToken(t, f.do(t, request{body: body}))
	tokenError(t, f.do(t, request{body: body}), 401, "invalid_client")
	if !strings.Contains(f.logs.String(), "replay") {
		t.Errorf("the log does not say the assertion was a replay:\n%s", f.logs)
	}
	if !strings.Contains(f.logs.String(), `"msg":"token request refused","client_id":"`+keyClientID+`"`) {
		t.Errorf("the refusal's audit line does not name the client the assertion claims:\n%s", f.logs)
	}
	if strings.Contains(f.logs.String(), strings.Split(body, "client_assertion=")[1][:40]) {
		t.Errorf("the log holds the assertion:\n%s", f.logs)
	}
}

type brokenOnce struct{}

func (brokenOnce) First(context.Context, string, string, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}

func TestToken_AnAssertionIsNotCheckedWithoutTheReplayTable(t *testing.T) {
	f := newFixture(t)
	key := newClientKey(t, kid)
	withKeyClients(t, f, key, "")
	f.srv.Once = brokenOnce{}
	rec := f.do(t, request{body: "grant_type=client_credentials&" + assertionBody(key.assertion(keyClientID))})
	tokenError(t, rec, http.StatusServiceUnavailable, "temporarily_unavailable")
}

func TestToken_FailedAssertionsCountInTheFailureLimit(t *testing.T) {
	f := newFixture(t)
	key, other := newClientKey(t, kid), newClientKey(t, kid)
	withKeyClients(t, f, key, "")
	f.srv.Limiter = bruteforce.New(bruteforce.Config{PerAddress: bruteforce.Rate{Failures: 3, Per: time.Minute}})
	for range 3 {
		tokenError(t, f.do(t, request{body: "grant_type=client_credentials&" + assertionBody(other.assertion(keyClientID))}), 401, "invalid_client")
	}
	rec := f.do(t, request{body: "grant_type=client_credentials&" + assertionBody(other.assertion(keyClientID))})
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("status = %d after 3 failures, want 429; body %s", rec.Code, rec.Body)
	}
}

func TestToken_ARestrictedClientCannotUseItsSecret(t *testing.T) {
	f := newFixture(t)
	key := newClientKey(t, kid)
	secret, stored := clients.NewSecret()
	f.srv.State.(*state).clients = registry(t, nil, clients.Client{ID: keyClientID, Name: "k",
		Secrets: []clients.Secret{stored}, JWKS: jwks(t, key), TokenEndpointAuthMethod: clients.MethodPrivateKeyJWT})
	f.srv.Once = statepkg.NewMemoryOnce(0, nil)
	tokenError(t, f.do(t, request{target: sapQuery, header: basic(keyClientID, secret)}), 401, "invalid_client")
	okToken(t, f.do(t, request{body: "grant_type=client_credentials&" + assertionBody(key.assertion(keyClientID))}))
}

func TestIntrospectAndRevoke_AcceptAnAssertion(t *testing.T) {
	f := newFixture(t)
	key := newClientKey(t, kid)
	withKeyClients(t, f, key, "")
	tok := okToken(t, f.do(t, request{body: "grant_type=client_credentials&" + assertionBody(key.assertion(keyClientID))}))
	rec := f.do(t, request{target: authserver.IntrospectPath,
		body: assertionBody(key.assertion(keyClientID, func(c map[string]any) { c["aud"] = issuer }), "token", tok.AccessToken)})
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"active":true`) {
		t.Fatalf("introspection: %d %s", rec.Code, rec.Body)
	}
	rec = f.do(t, request{target: authserver.RevokePath,
		body: assertionBody(key.assertion(keyClientID), "token", tok.AccessToken)})
	if rec.Code != 200 {
		t.Fatalf("revocation: %d %s", rec.Code, rec.Body)
	}
	rec = f.do(t, request{target: authserver.IntrospectPath, body: assertionBody("x.y.z", "token", tok.AccessToken)})
	tokenError(t, rec, 401, "invalid_client")
}

func TestToken_PrivateKeyJWTWithKeysByURL(t *testing.T) {
	first, rotated := newClientKey(t, "first"), newClientKey(t, "rotated")
	var set atomic.Value
	set.Store(jwks(t, first))
	var fetches atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		_, _ = w.Write(set.Load().(json.RawMessage))
	}))
	defer ts.Close()
	f := newFixture(t)
	withKeyClients(t, f, first, ts.URL+"/jwks.json")
	clock := now
	f.srv.Now = func() time.Time { return clock }

	okToken(t, f.do(t, request{body: "grant_type=client_credentials&" + assertionBody(first.assertion(uriClientID))}))
	okToken(t, f.do(t, request{body: "grant_type=client_credentials&" + assertionBody(first.assertion(uriClientID))}))
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d fetches for two assertions, want 1", n)
	}
	// The client rotates: an unknown kid makes the gateway refetch, but
	// not more often than every 30 seconds.
	set.Store(jwks(t, rotated))
	tokenError(t, f.do(t, request{body: "grant_type=client_credentials&" + assertionBody(rotated.assertion(uriClientID))}), 401, "invalid_client")
	clock = clock.Add(31 * time.Second)
	okToken(t, f.do(t, request{body: "grant_type=client_credentials&" + assertionBody(rotated.assertion(uriClientID, func(c map[string]any) {
		c["iat"], c["exp"] = clock.Unix(), clock.Add(time.Minute).Unix()
	}))}))
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

func TestMetadata_ListsPrivateKeyJWT(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, request{method: http.MethodGet, target: authserver.MetadataPath})
	var md map[string][]string
	_ = json.Unmarshal(rec.Body.Bytes(), &md)
	for _, name := range []string{"token_endpoint", "introspection_endpoint", "revocation_endpoint"} {
		if !slices.Contains(md[name+"_auth_methods_supported"], "private_key_jwt") {
			t.Errorf("%s_auth_methods_supported = %q, want private_key_jwt among them", name, md[name+"_auth_methods_supported"])
		}
		algs := md[name+"_auth_signing_alg_values_supported"]
		if !slices.Contains(algs, "ES256") || slices.ContainsFunc(algs, func(a string) bool { return a == "none" || strings.HasPrefix(a, "HS") }) {
			t.Errorf("%s_auth_signing_alg_values_supported = %q", name, algs)
		}
	}
}
