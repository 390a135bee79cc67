package weburl_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/weburl"
)

func TestIsLoopback_AnyLoopbackAddressOrTheNameLocalhost(t *testing.T) {
	cases := []struct {
		name, host string
		want       bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"another address of 127.0.0.0/8", "127.1.2.3", true},
		{"the IPv6 loopback", "::1", true},
		{"the IPv6 loopback written out", "0:0:0:0:0:0:0:1", true},
		{"127.0.0.1 mapped into IPv6", "::ffff:127.0.0.1", true},
		{"the name localhost", "localhost", true},
		{"a name under localhost's domain", "localhost.example.com", false},
		{"a name that ends in localhost", "notlocalhost", false},
		{"the unspecified address", "0.0.0.0", false},
		{"a private address", "10.0.0.1", false},
		{"an address next to 127.0.0.0/8", "128.0.0.1", false},
		{"a public name", "gateway.example.com", false},
		{"no host", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := weburl.IsLoopback(tc.host); got != tc.want {
				t.Errorf("IsLoopback(%q) = %v, want %v", tc.host, got, tc.want)
			}
		})
	}
}

func TestCheck_AcceptsHTTPSAndLoopbackHTTPOnly(t *testing.T) {
	cases := []struct {
		name, raw string
		want      string // a part of the error; empty: accepted
		cleartext bool   // refused by Check, accepted by Parse
	}{
		{"https to a name", "https://idp.example/jwks", "", false},
		{"https with a port and a query", "https://idp.example:8443/token?tenant=a", "", false},
		{"http to 127.0.0.1", "http://127.0.0.1:8080/jwks", "", false},
		{"http to another loopback address", "http://127.0.0.2/jwks", "", false},
		{"http to ::1", "http://[::1]:8080/jwks", "", false},
		{"http to localhost", "http://localhost/jwks", "", false},
		{"http to a name", "http://idp.example/jwks", "must be https", true},
		{"http to a private address", "http://10.0.0.1/jwks", "must be https", true},
		{"http to a name that starts with localhost", "http://localhost.example.com/jwks", "must be https", true},
		{"a relative URL", "/jwks", "not an absolute URL", false},
		{"a host without a scheme", "idp.example/jwks", "not an absolute URL", false},
		{"a scheme without a host", "file:///etc/jwks", "not an absolute URL", false},
		{"another scheme", "ftp://idp.example/jwks", "not an http or https URL", false},
		{"a URL that does not parse", "https://idp.example/%zz", "not an absolute URL", false},
		{"a user and a password", "https://user:pass@idp.example/jwks", "must not contain credentials", false},
		{"a user name alone", "https://user@idp.example/jwks", "must not contain credentials", false},
		{"a fragment", "https://idp.example/jwks#keys", "has a fragment", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := weburl.Check(tc.raw)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check(%q) = %v, want it accepted", tc.raw, err)
			case tc.want == "" && u.String() != tc.raw:
				t.Errorf("Check(%q) = %q, want the URL unchanged", tc.raw, u)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Check(%q) = %v, want an error containing %q", tc.raw, err, tc.want)
			}
			if got := errors.Is(err, weburl.ErrCleartext); got != tc.cleartext {
				t.Errorf("Check(%q): ErrCleartext = %v, want %v", tc.raw, got, tc.cleartext)
			}
			if u, err := weburl.Parse(tc.raw); tc.cleartext && (err != nil || !weburl.Cleartext(u)) {
				t.Errorf("Parse(%q) = %v, want it accepted as cleartext", tc.raw, err)
			}
		})
	}
}

func TestParse_DoesNotRepeatAPasswordInItsError(t *testing.T) {
	for _, raw := range []string{"https://user:s3cret@idp.example/jwks", "ftp://user:s3cret@idp.example/", "http://user:s3cret@idp.example/#x"} {
		_, err := weburl.Parse(raw)
		if !errors.Is(err, weburl.ErrUserInfo) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Parse(%q) = %v, want ErrUserInfo without the password", raw, err)
		}
	}
}
