package integration

import (
	"net/http"
	"strings"
	"testing"
)

func TestGuard_ChallengePointsAtProtectedResourceMetadata(t *testing.T) {
	e := newEnv(t)
	r := e.call(t, http.MethodGet, "/http/flow", "", "")
	r.wantStatus(t, http.StatusUnauthorized)
	metaURL := e.base + "/.well-known/oauth-protected-resource"
	if ch := r.header.Get("WWW-Authenticate"); !strings.Contains(ch, `resource_metadata="`+metaURL+`"`) {
		t.Errorf("challenge %q does not point at %s", ch, metaURL)
	}

	// The document is there without a route of its own in the Caddyfile,
	// and names the token issuer.
	doc := send(t, e.http, newRequest(t, http.MethodGet, metaURL, ""))
	doc.wantStatus(t, http.StatusOK)
	var md struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		BearerMethods        []string `json:"bearer_methods_supported"`
	}
	doc.decode(t, &md)
	if md.Resource != e.base || len(md.AuthorizationServers) != 1 || md.AuthorizationServers[0] != e.base ||
		strings.Join(md.BearerMethods, ",") != "header" {
		t.Errorf("metadata = %+v", md)
	}
}

func TestGuard_TokenInTheQueryStringIsRefused(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, e.A)
	r := e.call(t, http.MethodGet, "/http/flow?access_token="+tok, "", "")
	r.wantBearerChallenge(t, http.StatusBadRequest, "invalid_request")
	e.backend.wantRequests(t)
}

func TestGuard_ConfiguredQueryTokenWorksAndIsNotForwarded(t *testing.T) {
	e := newEnvConfig(t, envConfig{guardOptions: "token_query access_token"})
	tok := e.token(t, e.A)
	e.call(t, http.MethodGet, "/http/flow?access_token="+tok, "", "").wantStatus(t, http.StatusOK)
	for _, req := range e.backend.requests(t) {
		if strings.Contains(req.Path, tok) {
			t.Error("the token reached the backend in the URL")
		}
	}
}

func TestGuard_ReportOnlyLetsDeniedRequestsThroughAndSaysSo(t *testing.T) {
	e := newEnvConfig(t, envConfig{guardOptions: "report_only"})
	// B lacks the role of /http/flow: denied, but only reported.
	e.call(t, http.MethodGet, "/http/flow", e.token(t, e.B), "").wantStatus(t, http.StatusOK)
	e.call(t, http.MethodGet, "/http/flow", "", "").wantStatus(t, http.StatusOK)
	// A denied request goes through without an identity.
	e.backend.wantRequests(t,
		backendRequest{Method: http.MethodGet, Path: "/http/flow"},
		backendRequest{Method: http.MethodGet, Path: "/http/flow"})
	if !strings.Contains(e.gatewayLog.String(), "request would be refused (report only)") {
		t.Error("the gateway did not log what it would have refused")
	}
}

func TestGuard_PreflightPassesWhenAllowed(t *testing.T) {
	e := newEnvConfig(t, envConfig{guardOptions: "allow_preflight"})
	req := newRequest(t, http.MethodOptions, e.base+"/http/flow", "")
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	// iflow answers OPTIONS with 405, which proves the request reached it.
	send(t, e.http, req).wantStatus(t, http.StatusMethodNotAllowed)
}
