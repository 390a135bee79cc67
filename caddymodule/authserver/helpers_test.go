package authserver_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	statepkg "github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/storagetest"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

const (
	issuer = "https://gw.example"
	// The audience differs from the issuer so that mixing them up shows.
	audience = "https://gw.example/http"
	realm    = "oauthgate-test"

	senderID  = "sender"
	offID     = "off"
	specialID = "special.client-1"

	// specialSecret has every character that form encoding changes; the
	// "%2B" reads as "+" once form-decoded, so the raw and the decoded
	// readings differ.
	specialSecret = "p+q%r:s/t=u%2Bv"
)

// now has a fractional second: issued tokens must truncate it.
var now = time.Unix(1_800_000_000, 500_000_000)

const testPolicy = `
subjects:
  oauth_client_sender: [ESBMessaging.send, Orders.read]
  oauth_client_off: [ESBMessaging.send]
  oauth_client_special.client-1: [ESBMessaging.send]
rules:
  - path: /http/*
    roles: [ESBMessaging.send]
`

// state is an authserver.State over real snapshots.
type state struct {
	clients *clients.Registry
	keys    *keys.Set
	policy  *policy.Policy
}

func (s *state) Clients() *clients.Registry    { return s.clients }
func (s *state) Keys() *keys.Set               { return s.keys }
func (s *state) Roles(subject string) []string { return s.policy.Roles(subject) }

type fixture struct {
	srv      *authserver.Server
	keys     *keys.Set
	verifier *tokens.Verifier
	logs     *bytes.Buffer
	tokens   *tokenstate.Store

	senderSecret string // of the enabled client "sender", lifetime 30m
	offSecret    string // of the disabled client "off"
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	set := keystest.NewSet(t)
	senderSecret, senderStored := clients.NewSecret()
	offSecret, offStored := clients.NewSecret()
	reg := registry(t, nil,
		clients.Client{ID: senderID, Name: "Sender", Secrets: []clients.Secret{senderStored}, TokenLifetime: "30m"},
		clients.Client{ID: offID, Name: "Off", Secrets: []clients.Secret{offStored}, Disabled: true},
		clients.Client{ID: specialID, Name: "Special", Secrets: []clients.Secret{hashOf(specialSecret)}},
	)
	pol, err := policy.Parse([]byte(testPolicy), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := zap.New(zapcore.NewCore(
		zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(&logs), zap.DebugLevel))
	clock := func() time.Time { return now }
	st := storagetest.New()
	store, err := tokenstate.Open(context.Background(), st, statepkg.StorageEntries(st, clock), clock)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{
		srv: &authserver.Server{
			State:       &state{clients: reg, keys: set, policy: pol},
			Tokens:      store,
			Verifier:    &tokenstate.Verifier{JWT: &tokens.Verifier{Keys: set, Issuer: issuer, IgnoreAudience: true, Now: clock}, State: store},
			MaxLifetime: 180 * 24 * time.Hour,
			Issuer:      issuer,
			Audience:    audience,
			Realm:       realm,
			Now:         clock,
			Log:         log,
		},
		tokens:       store,
		keys:         set,
		verifier:     &tokens.Verifier{Keys: set, Issuer: issuer, Audience: audience, Now: clock},
		logs:         &logs,
		senderSecret: senderSecret,
		offSecret:    offSecret,
	}
}

// hashOf is the stored form of a secret, built by hand.
func hashOf(secret string) clients.Secret {
	sum := sha256.Sum256([]byte(secret))
	return clients.Secret{Hash: "sha256:" + hex.EncodeToString(sum[:])}
}

// registry validates cs the way the clients file is validated; cache may
// be nil.
func registry(t *testing.T, cache *clients.Cache, cs ...clients.Client) *clients.Registry {
	t.Helper()
	data, err := json.Marshal(clients.File{Clients: cs})
	if err != nil {
		t.Fatal(err)
	}
	f, err := clients.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return clients.NewRegistry(f, cache)
}

// request describes one request to the server.
type request struct {
	method string // default POST
	target string // path and query; default the token path
	// body is sent as application/x-www-form-urlencoded unless header
	// says otherwise.
	body string
	// header replaces request headers; a nil value deletes one.
	header http.Header
}

func (f *fixture) do(t *testing.T, rq request) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	r := httptest.NewRequest(cmp.Or(rq.method, http.MethodPost), cmp.Or(rq.target, authserver.TokenPath), body)
	if rq.body != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for name, vals := range rq.header {
		if vals == nil {
			r.Header.Del(name)
			continue
		}
		r.Header[http.CanonicalHeaderKey(name)] = vals
	}
	rec := httptest.NewRecorder()
	if !f.srv.Serves(r.URL.Path) {
		t.Fatalf("%s %s: Serves reported the path as not its own", r.Method, r.URL)
	}
	f.srv.ServeHTTP(rec, r)
	return rec
}

// basic is the Authorization header of HTTP Basic credentials, sent as
// they are (no form encoding).
func basic(id, secret string) http.Header {
	return http.Header{"Authorization": {basicValue(id, secret)}}
}

func basicValue(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

// sapQuery is SAP Cloud Integration's token request.
const sapQuery = authserver.TokenPath + "?grant_type=client_credentials&token_format=jwt"

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// okToken asserts a successful token response and returns it.
func okToken(t *testing.T, rec *httptest.ResponseRecorder) tokenResponse {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200; body: %s", rec.Code, rec.Body)
	}
	assertJSONNoStore(t, rec)
	var resp tokenResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("body is not JSON: %v; body: %s", err, rec.Body)
	}
	if resp.AccessToken == "" {
		t.Fatalf("no access_token; body: %s", rec.Body)
	}
	if resp.TokenType != "Bearer" {
		t.Errorf("token_type = %q, want Bearer", resp.TokenType)
	}
	return resp
}

type errorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// tokenError asserts an RFC 6749 §5.2 error response and returns it.
func tokenError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) errorResponse {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body: %s", rec.Code, status, rec.Body)
	}
	assertJSONNoStore(t, rec)
	var resp errorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("body is not JSON: %v; body: %s", err, rec.Body)
	}
	if resp.Error != code {
		t.Errorf("error = %q, want %q (description %q)", resp.Error, code, resp.Description)
	}
	if resp.Description == "" {
		t.Errorf("error_description is empty")
	}
	if strings.Contains(rec.Body.String(), "access_token") {
		t.Errorf("an error response carries an access_token: %s", rec.Body)
	}
	got := rec.Header().Values("WWW-Authenticate")
	if status == http.StatusUnauthorized {
		if want := `Basic realm="` + realm + `"`; !slices.Equal(got, []string{want}) {
			t.Errorf("WWW-Authenticate = %q, want [%q]", got, want)
		}
	} else if len(got) != 0 {
		t.Errorf("WWW-Authenticate = %q on a %d, want none", got, status)
	}
	return resp
}

func assertJSONNoStore(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	for name, want := range map[string]string{
		"Content-Type":  "application/json",
		"Cache-Control": "no-store",
		"Pragma":        "no-cache",
	} {
		if got := rec.Header().Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

// verify checks tok with a verifier of the same keys, issuer and audience.
func (f *fixture) verify(t *testing.T, tok string) *tokens.Claims {
	t.Helper()
	c, err := f.verifier.Verify(tok)
	if err != nil {
		t.Fatalf("issued token does not verify: %v", err)
	}
	return c
}

// sortedFields is a space-separated list as a sorted set.
func sortedFields(s string) []string {
	f := strings.Fields(s)
	slices.Sort(f)
	return slices.Compact(f)
}
