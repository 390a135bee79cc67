package guard_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	statepkg "github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/storagetest"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

const (
	issuer   = "https://gw.example"
	audience = "https://gw.example/http"
	leeway   = 30 * time.Second

	sender = "oauth_client_sender" // holds Orders.send and Invoices.send
	reader = "oauth_client_reader" // holds Orders.read
)

var start = time.Unix(1_800_000_000, 0)

const testPolicy = `
subjects:
  oauth_client_sender: [Orders.send, Invoices.send]
  oauth_client_reader: [Orders.read]
rules:
  - path: /health
    public: true
  - path: /http/orders/*
    roles: [Orders.send]
  - path: /http/invoices/*
    roles: [Invoices.send]
  - path: /http/reports
    methods: [GET]
    roles: [Orders.read, Reports.read]
`

func mustPolicy(t testing.TB, yaml string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(yaml), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// countingVerifier counts the calls that reach the real verifier, so a
// test can tell a refusal before verification from one after it.
type countingVerifier struct {
	v     guard.Verifier
	calls int
}

func (c *countingVerifier) Verify(ctx context.Context, tok string) (*tokens.Claims, error) {
	c.calls++
	return c.v.Verify(ctx, tok)
}

// state is a guard.PolicySource whose policy can be swapped like a reload
// does.
type state struct {
	verifier *countingVerifier
	policy   *policy.Policy
}

func (s *state) Policy() *policy.Policy { return s.policy }

type fixture struct {
	guard  *guard.Guard
	state  *state
	keys   *keys.Set
	tokens *tokenstate.Store
	now    time.Time // the verifier's clock
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{keys: keystest.NewSet(t), now: start}
	v := &tokens.Verifier{
		Keys:     f.keys,
		Issuer:   issuer,
		Audience: audience,
		Leeway:   leeway,
		Now:      func() time.Time { return f.now },
	}
	st := storagetest.New()
	store, err := tokenstate.Open(context.Background(), st, statepkg.StorageEntries(st, func() time.Time { return f.now }), func() time.Time { return f.now })
	if err != nil {
		t.Fatal(err)
	}
	f.tokens = store
	f.state = &state{verifier: &countingVerifier{v: &tokenstate.Verifier{JWT: v, State: store}}, policy: mustPolicy(t, testPolicy)}
	f.guard = &guard.Guard{Policy: f.state, Verifier: f.state.verifier}
	return f
}

// claims are valid claims for subject, scoped to every role it holds.
func claims(subject string) *tokens.Claims {
	scope := map[string][]string{
		sender: {"Orders.send", "Invoices.send"},
		reader: {"Orders.read"},
	}[subject]
	return &tokens.Claims{
		Issuer:   issuer,
		Subject:  subject,
		ClientID: strings.TrimPrefix(subject, "oauth_client_"),
		Audience: []string{audience},
		IssuedAt: start.Add(-time.Minute),
		Expiry:   start.Add(time.Hour),
		ID:       tokens.NewID(),
		Scope:    scope,
	}
}

// mint signs c with the fixture's signing key.
func (f *fixture) mint(t testing.TB, c *tokens.Claims) string {
	t.Helper()
	tok, err := tokens.Mint(f.keys.Signing(), c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// token is a valid token for subject after edit changes its claims.
func (f *fixture) token(t testing.TB, subject string, edit func(*tokens.Claims)) string {
	t.Helper()
	c := claims(subject)
	if edit != nil {
		edit(c)
	}
	return f.mint(t, c)
}

// outcome is what Check returned.
type outcome struct {
	id  *guard.Decision // nil when refused
	err *oautherr.Error
}

// check runs the guard on method and path with the given Authorization
// header values (none, one, or several).
func (f *fixture) check(method, path string, authorization ...string) outcome {
	r := httptest.NewRequest(method, "/", nil)
	r.URL.Path = path // as is: httptest would not clean it, but be explicit
	for _, a := range authorization {
		r.Header.Add("Authorization", a)
	}
	d := f.guard.Check(r)
	if d.Err != nil {
		return outcome{nil, d.Err}
	}
	return outcome{d, nil}
}

// segments splits a compact JWS.
func segments(t *testing.T, tok string) (hdr, payload, sig string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	return parts[0], parts[1], parts[2]
}

func b64JSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

func payloadOf(t *testing.T, tok string) []byte {
	t.Helper()
	_, p, _ := segments(t, tok)
	data, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// sign builds a JWS over payload with the given protected header members.
func sign(t *testing.T, alg jwa.SignatureAlgorithm, key any, header map[string]any, payload []byte) string {
	t.Helper()
	h := jws.NewHeaders()
	for name, v := range header {
		if err := h.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}

// wantErr asserts a refusal and returns it.
func wantErr(t *testing.T, o outcome, status int, code string) *oautherr.Error {
	t.Helper()
	if o.err == nil {
		t.Fatalf("allowed (identity %+v), want %d %q", o.id, status, code)
	}
	if o.id != nil {
		t.Errorf("refused but returned identity %+v", o.id)
	}
	if o.err.Status != status || o.err.Code != code {
		t.Errorf("refused with %d %q (%q), want %d %q", o.err.Status, o.err.Code, o.err.Description, status, code)
	}
	return o.err
}

// wantAllowed asserts that the request is allowed and returns the identity.
func wantAllowed(t *testing.T, o outcome) *guard.Decision {
	t.Helper()
	if o.err != nil {
		t.Fatalf("refused with %d %q: %s", o.err.Status, o.err.Code, o.err.Description)
	}
	if o.id == nil {
		t.Fatal("nil identity and nil error")
	}
	return o.id
}
