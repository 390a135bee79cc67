package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
)

func TestGuardValidate_RefusesWhatCannotWork(t *testing.T) {
	cases := []struct {
		name string
		g    OAuthGuard
		want string // "" when valid
	}{
		{"the defaults", OAuthGuard{}, ""},
		{"identity headers turned off", OAuthGuard{IdentityHeaders: map[string]string{"client_id": "", "subject": ""}}, ""},
		{"an unknown identity field", OAuthGuard{IdentityHeaders: map[string]string{"email": "X-Email"}}, "unknown field email"},
		{"the identity in Authorization", OAuthGuard{IdentityHeaders: map[string]string{"subject": "authorization"}}, "cannot carry the identity"},
		{"a header name with a space", OAuthGuard{IdentityHeaders: map[string]string{"subject": "X OAuth"}}, "is not a header name"},
		{"a negative token size", OAuthGuard{MaxTokenSize: -1}, "max_token_size"},
		{"a token cache below -1", OAuthGuard{TokenCache: -2}, "token_cache"},
		{"an external URL with a port", OAuthGuard{ExternalURL: "https://api.example.com:8443"}, ""},
		{"an external URL with a path", OAuthGuard{ExternalURL: "https://api.example.com/base"}, "external_url"},
		{"an external URL without a scheme", OAuthGuard{ExternalURL: "api.example.com"}, "external_url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.g.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCaller_ExternalTokensWithoutAClientIDAreCountedByTheirSubject(t *testing.T) {
	perClient := &policy.Limit{Per: "client"}
	for _, tc := range []struct {
		name string
		d    guard.Decision
		want string
	}{
		{"one of our clients", guard.Decision{ClientID: "abc", Subject: "oauth_client_abc"}, "abc"},
		{"an external client", guard.Decision{ClientID: "https://idp#app", Subject: "https://idp#sub"}, "https://idp#app"},
		{"an external token without a client ID", guard.Decision{Subject: "https://idp#sub-1"}, "https://idp#sub-1"},
	} {
		if got := caller(perClient, &tc.d); got != tc.want {
			t.Errorf("%s: limit counted for %q, want %q", tc.name, got, tc.want)
		}
		if got := party(&tc.d); got != tc.want {
			t.Errorf("%s: CSRF tokens bound to %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestOriginalPath_IsThePathTheClientSentBeforeARewrite(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/api/http/a%2Fb", nil)
	orig := *r
	u := *r.URL
	orig.URL = &u
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.OriginalRequestCtxKey, orig))
	r.URL.Path, r.URL.RawPath = "/http/a/b", "" // what handle_path /api/* leaves
	if got := originalPath(r); got != "/api/http/a%2Fb" {
		t.Errorf("originalPath = %q, want the path as sent, /api/http/a%%2Fb", got)
	}
	if got := originalPath(httptest.NewRequest(http.MethodGet, "/x", nil)); got != "/x" {
		t.Errorf("without Caddy's original request: %q, want /x", got)
	}
}
