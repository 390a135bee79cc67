package caddymodule

import (
	"net/http"
	"slices"
	"testing"
)

func TestGuard_ClientCopiesOfIdentityHeadersAreRemovedInEverySpelling(t *testing.T) {
	g := &Guard{headers: resolveHeaders(map[string]string{"client_id": "x-client", "subject": "X-OAuth-Subject", "roles": ""})}
	h := http.Header{
		"X-Client":        {"spoofed"},
		"X-Oauth-Subject": {"spoofed"},
		"X_oauth_subject": {"spoofed"},
		"X_Client":        {"spoofed"},
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
