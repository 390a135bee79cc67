package caddymodule

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestGuard_ClientCopiesOfIdentityHeadersAreRemovedInEverySpelling(t *testing.T) {
	g := new(Guard)
	g.headers, g.aliases = resolveHeaders(map[string]string{"client_id": "x-client", "subject": "X-OAuth-Subject", "roles": "", "scope": "X_Scope"})
	h := http.Header{
		"X-Client":        {"spoofed"},
		"X-Oauth-Subject": {"spoofed"},
		"X_oauth_subject": {"spoofed"},
		"X_Client":        {"spoofed"},
		"X-Scope":         {"spoofed: the dash spelling of a configured X_Scope"},
		"X_scope":         {"spoofed"},
		"X-Roles":         {"kept: not an identity header here"},
		"X_other":         {"kept"},
		"Accept":          {"kept"},
	}
	g.stripIdentityHeaders(h)
	var left []string
	for k := range h {
		left = append(left, k)
	}
	slices.Sort(left)
	if want := []string{"Accept", "X-Roles", "X_other"}; !slices.Equal(left, want) {
		t.Errorf("headers left = %v, want %v", left, want)
	}
}

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

func TestGuard_TokenCookieGoesNoFurther(t *testing.T) {
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", "session=t0k3n; lang=de; theme=dark")
	dropCookie(r, "session")
	if got := r.Header.Get("Cookie"); got != "lang=de; theme=dark" {
		t.Errorf("Cookie = %q, want the others only", got)
	}
	r.Header.Add("Cookie", `pref="a b"; session=again`)
	dropCookie(r, "session")
	if got := r.Header.Get("Cookie"); got != `lang=de; theme=dark; pref="a b"` {
		t.Errorf("Cookie = %q, want the others as they were sent", got)
	}
	dropCookie(r, "lang")
	dropCookie(r, "theme")
	dropCookie(r, "pref")
	if _, ok := r.Header["Cookie"]; ok {
		t.Errorf("an empty Cookie header is left: %q", r.Header.Get("Cookie"))
	}
}

func TestListable_DropsValuesAListWouldSplit(t *testing.T) {
	got := listable([]string{"Orders.send", "a,admin", "b admin", "x.read"})
	if want := []string{"Orders.send", "x.read"}; !slices.Equal(got, want) {
		t.Errorf("listable = %q, want %q", got, want)
	}
}
