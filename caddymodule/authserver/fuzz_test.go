package authserver_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
)

// FuzzTokenRequest sends the token endpoint arbitrary query strings,
// bodies, content types and Authorization headers (one per line). Whatever
// arrives, the endpoint must not panic or fail with a 5xx, must answer
// in RFC 6749 §5 JSON that is never cached, and may issue a token only to
// the one client whose secret an input can know (specialSecret is fixed,
// the other secrets are random), never writing that secret or the token
// into its log.
func FuzzTokenRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, query, body, contentType, authorization string) {
		fx := newFixture(t)
		r := httptest.NewRequest(http.MethodPost, authserver.TokenPath, strings.NewReader(body))
		r.URL.RawQuery = query // set directly: NewRequest panics on targets it cannot parse
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if authorization != "" {
			r.Header["Authorization"] = strings.Split(authorization, "\n")
		}
		rec := httptest.NewRecorder()
		fx.srv.ServeHTTP(rec, r)

		if rec.Code >= 500 {
			t.Fatalf("status %d for a client's request; body: %s", rec.Code, rec.Body)
		}
		assertJSONNoStore(t, rec)
		var resp struct {
			AccessToken string `json:"access_token"`
			Error       string `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("status %d, body is not JSON: %s", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK {
			codes := []string{"invalid_request", "invalid_client", "unsupported_grant_type", "invalid_scope", "invalid_target"}
			if !slices.Contains(codes, resp.Error) || resp.AccessToken != "" {
				t.Fatalf("status %d, body %s: want an RFC 6749 error without a token", rec.Code, rec.Body)
			}
			if basic := rec.Header().Get("WWW-Authenticate"); (rec.Code == http.StatusUnauthorized) != strings.HasPrefix(basic, "Basic ") {
				t.Fatalf("status %d with WWW-Authenticate %q: want a Basic challenge exactly on 401", rec.Code, basic)
			}
			return
		}
		c, err := fx.srv.Verifier.Verify(r.Context(), resp.AccessToken)
		if err != nil {
			t.Fatalf("the issued token does not verify: %v", err)
		}
		if c.ClientID != specialID {
			t.Fatalf("issued a token to %q, whose secret no input can know", c.ClientID)
		}
		if logs := fx.logs.String(); strings.Contains(logs, specialSecret) || strings.Contains(logs, resp.AccessToken) {
			t.Fatal("the log holds the client secret or the issued token")
		}
	})
}
