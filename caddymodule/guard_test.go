package caddymodule

import (
	"strings"
	"testing"
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
