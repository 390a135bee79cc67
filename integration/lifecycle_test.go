package integration

import (
	"net/http"
	"net/url"
	"testing"
)

// postForm sends a client-authenticated form to one of the gateway's
// endpoints, as RFC 7009 and RFC 7662 clients do.
func (e *env) postForm(t *testing.T, path string, form url.Values, c client) response {
	t.Helper()
	req := newRequest(t, http.MethodPost, e.base+path, form.Encode())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ID, c.Secret)
	return send(t, e.http, req)
}

// tokenOfFormat fetches a token of the given format the SAP way.
func (e *env) tokenOfFormat(t *testing.T, c client, format string) string {
	t.Helper()
	r := e.tokenRequest(t, http.MethodPost, url.Values{"grant_type": {"client_credentials"}, "token_format": {format}}, nil, c.ID, c.Secret)
	r.wantStatus(t, http.StatusOK)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	r.decode(t, &tok)
	return tok.AccessToken
}

func TestGuard_RevokedTokenIsRefusedFromTheNextRequestOn(t *testing.T) {
	e := newEnv(t)
	for _, format := range []string{"jwt", "opaque"} {
		t.Run(format, func(t *testing.T) {
			tok := e.tokenOfFormat(t, e.A, format)
			e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)

			// Another client may not revoke A's token.
			e.postForm(t, "/oauth2/api/v1/revoke", url.Values{"token": {tok}}, e.B).wantStatus(t, http.StatusBadRequest)
			e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)

			e.postForm(t, "/oauth2/api/v1/revoke", url.Values{"token": {tok}}, e.A).wantStatus(t, http.StatusOK)
			e.call(t, http.MethodGet, "/http/flow", tok, "").wantBearerChallenge(t, http.StatusUnauthorized, "invalid_token")

			var intro struct {
				Active bool `json:"active"`
			}
			e.postForm(t, "/oauth2/api/v1/introspect", url.Values{"token": {tok}}, e.B).decode(t, &intro)
			if intro.Active {
				t.Error("introspection calls the revoked token active")
			}
		})
	}
}

func TestGuard_OpaqueTokenCarriesTheClientsIdentity(t *testing.T) {
	e := newEnv(t)
	tok := e.tokenOfFormat(t, e.A, "opaque")
	e.call(t, http.MethodPost, "/http/flow", tok, `{"order":1}`).wantStatus(t, http.StatusOK)
	e.call(t, http.MethodPost, "/http/orders/1", tok, `{"order":1}`).wantBearerChallenge(t, http.StatusForbidden, "insufficient_scope")
	e.backend.wantRequests(t, seenAs(http.MethodPost, "/http/flow", e.A, roleMessaging))
}

func TestGuard_LifetimeZeroTokenEndsWithTheClientsNextToken(t *testing.T) {
	neo := clientSpec{name: "neo-sender", lifetime: "0", roles: []string{roleMessaging}}
	e := newEnv(t, neo)
	c := e.clients[neo.name]
	first := e.tokenOfFormat(t, c, "jwt")
	e.call(t, http.MethodGet, "/http/flow", first, "").wantStatus(t, http.StatusOK)

	second := e.tokenOfFormat(t, c, "jwt")
	e.call(t, http.MethodGet, "/http/flow", first, "").wantBearerChallenge(t, http.StatusUnauthorized, "invalid_token")
	e.call(t, http.MethodGet, "/http/flow", second, "").wantStatus(t, http.StatusOK)
}

// The clients file is watched: disabling a client needs no reload.
func TestGuard_DisabledClientLosesItsIssuedTokens(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, e.A)
	e.call(t, http.MethodGet, "/http/flow", tok, "").wantStatus(t, http.StatusOK)
	e.setClientDisabled(t, e.A.ID)
	e.eventually(t, http.MethodGet, "/http/flow", tok, http.StatusUnauthorized)
	e.call(t, http.MethodGet, "/http/flow", tok, "").wantBearerChallenge(t, http.StatusUnauthorized, "invalid_token")
	e.tokenRequest(t, http.MethodPost, url.Values{"grant_type": {"client_credentials"}}, nil, e.A.ID, e.A.Secret).
		wantStatus(t, http.StatusUnauthorized)
	// Its neighbour is untouched.
	e.call(t, http.MethodPost, "/http/orders/1", e.token(t, e.B), "{}").wantStatus(t, http.StatusOK)
}
