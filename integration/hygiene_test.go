package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/oauthgate/oauthgate/caddymodule/dpop/dpoptest"
)

// Secret hygiene: the harness records every client secret it creates,
// every access token it receives and every Authorization value it sends
// (sensitive, fed by addClient, registerClientWithSecret and the recording
// transport of newHTTPClient). When an environment ends, after its
// processes have stopped, every line the gateway and the backend wrote is
// searched for every recorded value (checkLogHygiene). A hit fails the
// test that owns the environment and names the kind of value, never the
// value.

// Kinds of recorded values, as a failure names them.
const (
	kindSecret        = "a client secret"
	kindToken         = "an access token"
	kindAuthorization = "an Authorization header value"
	kindGuess         = "a guessed secret"
	kindProof         = "a DPoP proof"
)

// minSensitive is the shortest value searched for. Our secrets have 43
// characters and tokens hundreds; shorter values are the deliberately
// broken ones of the forged-token tests, which would match by chance.
const minSensitive = 16

var sensitive = &sensitiveValues{kind: map[string]string{}}

// sensitiveValues is the set of recorded values, shared by every test.
type sensitiveValues struct {
	mu   sync.Mutex
	kind map[string]string // value → kind
}

func (s *sensitiveValues) add(kind, v string) {
	if len(v) < minSensitive {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.kind[v]; !ok {
		s.kind[v] = kind
	}
}

// index maps the first minSensitive bytes of every value to the values
// starting with them, so that a log is searched in one pass whatever the
// number of values (the brute-force test records tens of thousands).
func (s *sensitiveValues) index() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := make(map[string][]string, len(s.kind))
	for v := range s.kind {
		idx[v[:minSensitive]] = append(idx[v[:minSensitive]], v)
	}
	return idx
}

func (s *sensitiveValues) kindOf(v string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kind[v]
}

// find returns the recorded values that occur in line.
func find(idx map[string][]string, line string) []string {
	var hits []string
	for i := 0; i+minSensitive <= len(line); i++ {
		for _, v := range idx[line[i:i+minSensitive]] {
			if strings.HasPrefix(line[i:], v) {
				hits = append(hits, v)
			}
		}
	}
	return hits
}

// checkLogHygiene fails t for every recorded value in a line of the
// environment's logs. The report shows the line with the value replaced
// by its kind.
func (e *env) checkLogHygiene(t *testing.T) {
	t.Helper()
	logs := map[string]*lineLog{"caddy output": e.gatewayLog}
	if e.backend != nil { // nil if newEnvConfig failed before starting it
		logs["iflow stdout"], logs["iflow stderr"] = e.backend.log, e.backend.errLog
	}
	checkLogHygiene(t, logs)
}

// checkLogHygiene fails t for every recorded value in a line of logs, by
// name.
func checkLogHygiene(t *testing.T, logs map[string]*lineLog) {
	t.Helper()
	idx := sensitive.index()
	for name, log := range logs {
		for i, line := range log.allLines() {
			hits := find(idx, line)
			redacted := line
			for _, v := range hits {
				redacted = strings.ReplaceAll(redacted, v, "<"+sensitive.kindOf(v)+">")
			}
			for _, v := range hits {
				t.Errorf("%s, line %d, holds %s (%d characters, starting %.4q): %s",
					name, i+1, sensitive.kindOf(v), len(v), v, redacted)
			}
		}
	}
}

// allLines returns every line written so far, a last unterminated one
// included.
func (l *lineLog) allLines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := append([]string(nil), l.lines...)
	if len(l.partial) > 0 {
		lines = append(lines, string(l.partial))
	}
	return lines
}

// recording is the transport of the harness's HTTP clients: it records
// the Authorization values of requests and the access tokens of
// responses.
type recording struct{ base http.RoundTripper }

func (r recording) RoundTrip(req *http.Request) (*http.Response, error) {
	for _, v := range req.Header.Values("Authorization") {
		sensitive.add(kindAuthorization, v)
		if _, cred, ok := strings.Cut(v, " "); ok {
			sensitive.add(kindAuthorization, strings.TrimSpace(cred))
		}
	}
	for _, v := range req.Header.Values("DPoP") {
		sensitive.add(kindProof, v)
	}
	resp, err := r.base.RoundTrip(req)
	if err != nil || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(body, &tok) == nil {
		sensitive.add(kindToken, tok.AccessToken)
	}
	return resp, nil
}

// With Caddy's debug logging and an access log on, as an operator chasing
// a problem would run it, every way of sending a secret or a token still
// leaves none of them in the log: not in the token endpoint's audit lines,
// not in the guard's decisions, not in Caddy's access log (which redacts
// Authorization) or the reverse proxy's debug lines.
func TestHygiene_DebugAndAccessLogsHoldNoSecretOrToken(t *testing.T) {
	t.Parallel()
	// The access log as docs/operations.md recommends it: Caddy redacts
	// Authorization, but records a DPoP proof (and a CSRF token) unless
	// filtered.
	e := newEnvConfig(t, envConfig{global: "debug", site: "log {\n\t\tformat filter {\n\t\t\twrap json\n\t\t\tfields {\n\t\t\t\trequest>headers>Dpop delete\n\t\t\t\trequest>headers>X-Csrf-Token delete\n\t\t\t\tresp_headers>X-Csrf-Token delete\n\t\t\t}\n\t\t}\n\t}"})

	byHeader := e.token(t, e.A)
	e.fetchToken(t, e.B, oauth2.AuthStyleInParams) // the secret in the form body
	opaque := e.tokenOfFormat(t, e.A, "opaque")
	sap := url.Values{"grant_type": {"client_credentials"}}
	key := dpoptest.NewKey("ES256")
	bound := e.dpopToken(t, e.A, key)
	flowProof := func() string {
		return key.Proof(dpoptest.Options{Method: http.MethodGet, URL: e.base + "/http/flow", AccessToken: bound})
	}
	wrongSecret := e.A
	wrongSecret.Secret += "x"
	for _, r := range []struct {
		name string
		resp response
		want int
	}{
		{"wrong secret", e.tokenRequest(t, http.MethodPost, sap, nil, e.A.ID, e.A.Secret+"x"), http.StatusUnauthorized},
		{"secret sent as the client ID", e.tokenRequest(t, http.MethodPost, sap, nil, e.A.Secret, e.A.ID), http.StatusUnauthorized},
		{"wrong secret in the body", e.tokenRequest(t, http.MethodPost, nil,
			url.Values{"grant_type": {"client_credentials"}, "client_id": {e.B.ID}, "client_secret": {e.A.Secret}}, "", ""), http.StatusUnauthorized},
		{"token request with a token as client ID", e.tokenRequest(t, http.MethodPost, sap, nil, byHeader, e.A.Secret), http.StatusUnauthorized},
		{"JWT through the guard", e.call(t, http.MethodGet, "/http/flow", byHeader, ""), http.StatusOK},
		{"opaque token through the guard", e.call(t, http.MethodPost, "/http/flow", opaque, "x"), http.StatusOK},
		{"token without the role", e.call(t, http.MethodPost, "/http/orders/1", byHeader, "x"), http.StatusForbidden},
		{"token altered", e.call(t, http.MethodGet, "/http/flow", byHeader+"x", ""), http.StatusUnauthorized},
		{"introspection", e.postForm(t, "/oauth2/api/v1/introspect", url.Values{"token": {byHeader}}, e.B), http.StatusOK},
		{"revocation", e.postForm(t, "/oauth2/api/v1/revoke", url.Values{"token": {opaque}}, e.A), http.StatusOK},
		{"revoked token through the guard", e.call(t, http.MethodGet, "/http/flow", opaque, ""), http.StatusUnauthorized},
		// A proof is logged nowhere: neither one spent, nor one refused,
		// nor one the token endpoint never got to (the secret was wrong).
		{"DPoP-bound token through the guard", e.dpopCall(t, http.MethodGet, "/http/flow", "DPoP", bound, flowProof()), http.StatusOK},
		{"DPoP proof for another method", e.dpopCall(t, http.MethodPost, "/http/flow", "DPoP", bound, flowProof()), http.StatusUnauthorized},
		{"DPoP token request with a wrong secret", e.dpopTokenRequest(t, wrongSecret,
			key.Proof(dpoptest.Options{Method: http.MethodPost, URL: e.issuer + tokenPath})), http.StatusUnauthorized},
	} {
		if r.resp.status != r.want {
			t.Errorf("%s: status %d, want %d; body: %s", r.name, r.resp.status, r.want, r.resp.body)
		}
	}
	// The search when the environment ends proves something only if the
	// logs hold the lines that would carry a leak.
	if err := e.gateway.stop(); err != nil {
		t.Fatal(err)
	}
	out := e.gatewayLog.String()
	for _, want := range []string{`"logger":"http.log.access`, `"token issued"`, `"token request refused"`, `"request allowed"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the gateway log has no %s line; is debug or access logging off?", want)
		}
	}
}
