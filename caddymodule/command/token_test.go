package command

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
	"github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/storagetest"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// A secret with characters that form encoding would change: the command
// must send it as it is.
const tokenTestSecret = "s3cret:with%2B+chars"

// fakeJWT is a JWT as a server might issue it; the command decodes it
// without verifying, so the signature is no signature.
var fakeJWT = b64(`{"alg":"ES256","typ":"at+jwt","kid":"k1"}`) + "." +
	b64(`{"sub":"oauth_client_sender","scope":"ESBMessaging.send","exp":1900000000}`) + ".c2ln"

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// received is what a test token endpoint was sent.
type received struct {
	method, path, query, contentType string
	user, pass                       string
	basic                            bool
	form                             url.Values
}

// tokenEndpoint is a token endpoint on 127.0.0.1 that answers every
// request with answer and records what it received.
type tokenEndpoint struct {
	*httptest.Server
	mu   sync.Mutex
	seen []received
}

func newTokenEndpoint(t *testing.T, answer http.HandlerFunc) *tokenEndpoint {
	t.Helper()
	te := &tokenEndpoint{}
	te.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := received{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, contentType: r.Header.Get("Content-Type")}
		rc.user, rc.pass, rc.basic = r.BasicAuth()
		_ = r.ParseForm()
		rc.form = r.PostForm
		te.mu.Lock()
		te.seen = append(te.seen, rc)
		te.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(te.Close)
	return te
}

func (te *tokenEndpoint) requests() []received {
	te.mu.Lock()
	defer te.mu.Unlock()
	return append([]received(nil), te.seen...)
}

// respond answers with status, a JSON body and extra headers.
func respond(status int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

const okJWTResponse = `{"access_token":"` + "%s" + `","token_type":"Bearer","expires_in":3600,"scope":"ESBMessaging.send"}`

func jwtResponse() http.HandlerFunc {
	return respond(http.StatusOK, strings.Replace(okJWTResponse, "%s", fakeJWT, 1))
}

func runTokenCommand(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	return runCommand(t, tokenCommand(), stdin, args...)
}

func TestToken_SendsThePostmanFormWithBasicAuthAndShowsTheDecodedToken(t *testing.T) {
	te := newTokenEndpoint(t, jwtResponse())
	t.Setenv("OAUTH_CLIENT_SECRET", tokenTestSecret)
	out, err := runTokenCommand(t, "", "--url", te.URL+"/oauth2/api/v1/token", "--client-id", "sender")
	if err != nil {
		t.Fatalf("token: %v\n%s", err, out)
	}
	seen := te.requests()
	if len(seen) != 1 {
		t.Fatalf("%d requests, want 1", len(seen))
	}
	r := seen[0]
	if r.method != http.MethodPost || r.path != "/oauth2/api/v1/token" || r.query != "" ||
		r.contentType != "application/x-www-form-urlencoded" {
		t.Errorf("request = %s %s?%s (%s), want a form POST to the URL", r.method, r.path, r.query, r.contentType)
	}
	if !r.basic || r.user != "sender" || r.pass != tokenTestSecret {
		t.Errorf("Basic credentials = %q:%q (present %v), want sender and the secret as it is", r.user, r.pass, r.basic)
	}
	if got := r.form.Encode(); got != "grant_type=client_credentials" {
		t.Errorf("form = %s, want grant_type=client_credentials only", got)
	}

	lines := strings.Split(out, "\n")
	if lines[0] != fakeJWT {
		t.Errorf("first line = %q, want the token alone", lines[0])
	}
	for _, want := range []string{
		"token_type: Bearer\n", "expires_in: 3600\n", "scope:      ESBMessaging.send\n",
		"header (decoded, not verified):\n{\n  \"alg\": \"ES256\",",
		"claims (decoded, not verified):\n{\n  \"sub\": \"oauth_client_sender\",",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not show %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, tokenTestSecret) {
		t.Error("the output shows the secret")
	}
}

func TestToken_AsksForScopeAudienceAndFormatOnlyWhenGiven(t *testing.T) {
	te := newTokenEndpoint(t, respond(http.StatusOK, `{"access_token":"opaqueRef_123","token_type":"Bearer","expires_in":60}`))
	t.Setenv("OAUTH_CLIENT_SECRET", tokenTestSecret)
	out, err := runTokenCommand(t, "", "--url", te.URL, "--client-id", "sender",
		"--scope", "Orders.send ESBMessaging.send", "--audience", "https://gw.example/http", "--format", "opaque")
	if err != nil {
		t.Fatalf("token: %v\n%s", err, out)
	}
	want := url.Values{"grant_type": {"client_credentials"}, "scope": {"Orders.send ESBMessaging.send"},
		"audience": {"https://gw.example/http"}, "token_format": {"opaque"}}
	if got := te.requests()[0].form.Encode(); got != want.Encode() {
		t.Errorf("form = %s, want %s", got, want.Encode())
	}
	if !strings.HasPrefix(out, "opaqueRef_123\n") || !strings.Contains(out, "The token is opaque: nothing to decode.") {
		t.Errorf("output for an opaque token:\n%s", out)
	}
	if strings.Contains(out, "scope:") {
		t.Errorf("output shows a scope the server did not send:\n%s", out)
	}
}

func TestToken_QuietPrintsTheTokenAlone(t *testing.T) {
	te := newTokenEndpoint(t, jwtResponse())
	t.Setenv("OAUTH_CLIENT_SECRET", tokenTestSecret)
	out, err := runTokenCommand(t, "", "--url", te.URL, "--client-id", "sender", "--quiet")
	if err != nil || out != fakeJWT+"\n" {
		t.Errorf("token --quiet = %q, %v; want the token and a newline", out, err)
	}
}

func TestToken_TakesTheSecretFromTheNamedVariableOrStandardInput(t *testing.T) {
	tests := map[string]struct {
		env   map[string]string
		stdin string
		args  []string
		want  string
	}{
		"OAUTH_CLIENT_SECRET by default": {env: map[string]string{"OAUTH_CLIENT_SECRET": "from-default"}, want: "from-default"},
		"--secret-env names another": {env: map[string]string{"OAUTH_CLIENT_SECRET": "not this", "SENDER_SECRET": "from-named"},
			args: []string{"--secret-env", "SENDER_SECRET"}, want: "from-named"},
		"--secret-stdin, newline dropped": {env: map[string]string{"OAUTH_CLIENT_SECRET": "not this"}, stdin: "from stdin\r\n",
			args: []string{"--secret-stdin"}, want: "from stdin"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			te := newTokenEndpoint(t, jwtResponse())
			out, err := runTokenCommand(t, tc.stdin, append([]string{"--url", te.URL, "--client-id", "sender"}, tc.args...)...)
			if err != nil {
				t.Fatalf("token: %v\n%s", err, out)
			}
			if got := te.requests()[0].pass; got != tc.want {
				t.Errorf("secret sent = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestToken_RefusesAnEmptyOrOverlongSecretOnStandardInput(t *testing.T) {
	te := newTokenEndpoint(t, jwtResponse())
	for stdin, want := range map[string]string{
		"":                       "no secret on standard input",
		"\n":                     "no secret on standard input",
		strings.Repeat("a", 600): "longer than 512 bytes",
	} {
		_, err := runTokenCommand(t, stdin, "--url", te.URL, "--client-id", "sender", "--secret-stdin")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("stdin of %d bytes: error = %v, want one containing %q", len(stdin), err, want)
		}
	}
	if n := len(te.requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

func TestToken_AnswersOtherThanATokenFailWithWhatTheServerSaid(t *testing.T) {
	tests := map[string]struct {
		answer http.HandlerFunc
		want   []string
	}{
		"invalid_client": {
			respond(http.StatusUnauthorized, `{"error":"invalid_client","error_description":"Client authentication failed"}`, "WWW-Authenticate", `Basic realm="oauthgate"`),
			[]string{"the token endpoint refused: invalid_client: Client authentication failed (HTTP 401)"}},
		"invalid_scope with an error_uri": {
			respond(http.StatusBadRequest, `{"error":"invalid_scope","error_description":"not a role of the client: Orders.send","error_uri":"https://gw.example/doc"}`),
			[]string{"invalid_scope: not a role of the client: Orders.send (HTTP 400, see https://gw.example/doc)"}},
		"rate limited": {
			respond(http.StatusTooManyRequests, `{"error":"invalid_client","error_description":"too many failures"}`, "Retry-After", "30"),
			[]string{"HTTP 429", "Retry-After: 30"}},
		"a description with a terminal escape": {
			respond(http.StatusUnauthorized, `{"error":"invalid_client","error_description":"bad\u001b[2Jclear"}`),
			[]string{`"bad\x1b[2Jclear"`}},
		"a proxy's error page": {
			respond(http.StatusBadGateway, `<html>upstream down</html>`),
			[]string{"answered HTTP 502, not an OAuth error response: <html>upstream down</html>"}},
		"a redirect": {
			respond(http.StatusFound, ``, "Location", "/elsewhere"),
			[]string{"redirects (HTTP 302) to /elsewhere", "not followed"}},
		"200 with HTML": {
			respond(http.StatusOK, `<html>login page</html>`),
			[]string{"answered HTTP 200 but not with a token response", "<html>login page</html>"}},
		"200 without a token": {
			respond(http.StatusOK, `{"token_type":"Bearer"}`),
			[]string{"without an access_token"}},
		"a token with an escape": {
			respond(http.StatusOK, `{"access_token":"abc\u001b[2J","token_type":"Bearer"}`),
			[]string{"characters no token has"}},
		"an endless answer": {
			respond(http.StatusOK, `{"access_token":"`+strings.Repeat("a", maxTokenResponse)+`"}`),
			[]string{"larger than 65536 bytes"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			te := newTokenEndpoint(t, tc.answer)
			t.Setenv("OAUTH_CLIENT_SECRET", tokenTestSecret)
			out, err := runTokenCommand(t, "", "--url", te.URL+"/token", "--client-id", "sender")
			if err == nil {
				t.Fatalf("token succeeded:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if errors.As(err, new(usageError)) {
				t.Error("a refusal counts as a usage error (exit status 2), want 1")
			}
			if strings.ContainsRune(err.Error(), 0x1b) || strings.Contains(err.Error()+out, tokenTestSecret) {
				t.Errorf("error or output carries an escape or the secret: %q\n%s", err, out)
			}
			if n := len(te.requests()); n != 1 {
				t.Errorf("%d requests, want 1 (no retry, no redirect followed)", n)
			}
		})
	}
}

func TestToken_UnreachableOrSilentServerIsAClearError(t *testing.T) {
	t.Setenv("OAUTH_CLIENT_SECRET", tokenTestSecret)
	addr := closedAddress(t)
	_, err := runTokenCommand(t, "", "--url", "http://"+addr+"/token", "--client-id", "sender")
	if err == nil || !strings.Contains(err.Error(), "requesting a token from http://"+addr+"/token") ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Errorf("nothing listening: error = %v", err)
	}

	release := make(chan struct{})
	te := newTokenEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		select { // answers never; gives up when the client does
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	_, err = runTokenCommand(t, "", "--url", te.URL, "--client-id", "sender", "--timeout", "50ms")
	if err == nil || !strings.Contains(err.Error(), "no answer from "+te.URL+" within 50ms (--timeout)") {
		t.Errorf("silent server: error = %v", err)
	}
}

func TestToken_UsageErrorsSendNothing(t *testing.T) {
	te := newTokenEndpoint(t, jwtResponse())
	tests := map[string]struct {
		env  string
		args []string
		want string
	}{
		"no --url":                         {tokenTestSecret, []string{"--client-id", "sender"}, "--url is required"},
		"no --client-id":                   {tokenTestSecret, []string{"--url", te.URL}, "--client-id is required"},
		"no secret in the variable":        {"", []string{"--url", te.URL, "--client-id", "sender"}, "no client secret: $OAUTH_CLIENT_SECRET is unset or empty"},
		"plain http to another host":       {tokenTestSecret, []string{"--url", "http://gw.example/token", "--client-id", "sender"}, "plain http would send the client secret unencrypted"},
		"credentials in the URL":           {tokenTestSecret, []string{"--url", "https://sender:pw@gw.example/token", "--client-id", "sender"}, "must not hold credentials"},
		"not a URL of a host":              {tokenTestSecret, []string{"--url", "gw.example/token", "--client-id", "sender"}, "want an absolute https URL"},
		"another scheme":                   {tokenTestSecret, []string{"--url", "ftp://gw.example/token", "--client-id", "sender"}, "want an absolute https URL"},
		"a fragment":                       {tokenTestSecret, []string{"--url", "https://gw.example/token#x", "--client-id", "sender"}, "has a fragment"},
		"an unknown format":                {tokenTestSecret, []string{"--url", te.URL, "--client-id", "sender", "--format", "saml"}, `--format "saml": want jwt or opaque`},
		"a zero timeout":                   {tokenTestSecret, []string{"--url", te.URL, "--client-id", "sender", "--timeout", "0s"}, "--timeout must be positive"},
		"--secret-env with --secret-stdin": {tokenTestSecret, []string{"--url", te.URL, "--client-id", "sender", "--secret-env", "X", "--secret-stdin"}, "exclude each other"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Setenv("OAUTH_CLIENT_SECRET", tc.env)
			_, err := runTokenCommand(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
			if !errors.As(err, new(usageError)) {
				t.Errorf("error %v is not a usage error (exit status 2)", err)
			}
		})
	}
	if n := len(te.requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

func TestToken_HelpSaysWhereTheSecretComesFromAndWhatIsPrinted(t *testing.T) {
	out, err := runTokenCommand(t, "", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--url", "--client-id", "--scope", "--audience", "--format", "--secret-env",
		"OAUTH_CLIENT_SECRET", "--secret-stdin", "never a flag", "--quiet", "head -1", "--timeout",
		"decoded, NOT verified", "Exit status", "Send as Basic Auth header"} {
		if !strings.Contains(out, want) {
			t.Errorf("token --help does not mention %q", want)
		}
	}
}

// gatewayState is an authserver.State over real snapshots.
type gatewayState struct {
	clients *clients.Registry
	keys    *keys.Set
	policy  *policy.Policy
}

func (s *gatewayState) Clients() *clients.Registry    { return s.clients }
func (s *gatewayState) Keys() *keys.Set               { return s.keys }
func (s *gatewayState) Roles(subject string) []string { return s.policy.Roles(subject) }

func TestToken_AgainstTheGatewaysOwnTokenEndpoint(t *testing.T) {
	secret, stored := clients.NewSecret()
	f := &clients.File{Clients: []clients.Client{{ID: "sender", Name: "Sender", Secrets: []clients.Secret{stored}}}}
	path := t.TempDir() + "/clients.json"
	if err := clients.WriteFile(path, f); err != nil {
		t.Fatal(err)
	}
	f, err := clients.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte("subjects:\n  oauth_client_sender: [ESBMessaging.send]\nrules:\n  - path: /http/*\n    roles: [ESBMessaging.send]\n"), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set := keystest.NewSet(t)
	st := storagetest.New()
	store, err := tokenstate.Open(context.Background(), st, state.StorageEntries(st, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	const issuer = "https://gw.example"
	srv := &authserver.Server{
		State:       &gatewayState{clients: clients.NewRegistry(f), keys: set, policy: pol},
		Tokens:      store,
		Verifier:    &tokenstate.Verifier{JWT: &tokens.Verifier{Keys: set, Issuer: issuer, IgnoreAudience: true}, State: store},
		MaxLifetime: time.Hour, Issuer: issuer, Audience: issuer, Realm: "oauthgate", Log: zap.NewNop(),
	}
	gw := httptest.NewServer(srv)
	defer gw.Close()

	t.Setenv("OAUTH_CLIENT_SECRET", secret)
	out, err := runTokenCommand(t, "", "--url", gw.URL+authserver.TokenPath, "--client-id", "sender")
	if err != nil {
		t.Fatalf("token: %v\n%s", err, out)
	}
	tok, _, _ := strings.Cut(out, "\n")
	claims, err := (&tokens.Verifier{Keys: set, Issuer: issuer, Audience: issuer}).Verify(tok)
	if err != nil {
		t.Fatalf("the printed token does not verify: %v", err)
	}
	for _, want := range []string{"scope:      ESBMessaging.send", `"sub": "oauth_client_sender"`, `"typ": "at+jwt"`, `"jti": "` + claims.ID + `"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not show %q:\n%s", want, out)
		}
	}

	t.Setenv("OAUTH_CLIENT_SECRET", secret+"x")
	_, err = runTokenCommand(t, "", "--url", gw.URL+authserver.TokenPath, "--client-id", "sender")
	if err == nil || !strings.Contains(err.Error(), "the token endpoint refused: invalid_client") {
		t.Errorf("wrong secret: error = %v, want invalid_client", err)
	}
}
