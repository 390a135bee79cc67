package caddymodule

import (
	"strings"
	"testing"
)

func TestGuardValidate_RefusesWhatCannotWork(t *testing.T) {
	cases := []struct {
		name string
		g    Guard
		want string // "" when valid
	}{
		{"the defaults", Guard{}, ""},
		{"identity headers turned off", Guard{IdentityHeaders: map[string]string{"client_id": "", "subject": ""}}, ""},
		{"an unknown identity field", Guard{IdentityHeaders: map[string]string{"email": "X-Email"}}, "unknown field email"},
		{"the identity in Authorization", Guard{IdentityHeaders: map[string]string{"subject": "authorization"}}, "cannot carry the identity"},
		{"a header name with a space", Guard{IdentityHeaders: map[string]string{"subject": "X OAuth"}}, "is not a header name"},
		{"a negative token size", Guard{MaxTokenSize: -1}, "max_token_size"},
		{"a token cache below -1", Guard{TokenCache: -2}, "token_cache"},
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
