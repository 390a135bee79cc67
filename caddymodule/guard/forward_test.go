package guard_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// verified is a decision on a verified token of the sender.
func verified(scope ...string) *guard.Decision {
	return &guard.Decision{
		Claims:   &tokens.Claims{Subject: sender, ClientID: "sender", Scope: scope},
		Subject:  sender,
		ClientID: "sender",
		Roles:    []string{"Orders.send", "Invoices.send"},
	}
}

func TestForward_ClientCopiesOfIdentityHeadersAreRemovedInEverySpelling(t *testing.T) {
	f := guard.NewForwarder(guard.ForwardOptions{IdentityHeaders: map[string]string{
		"client_id": "x-client", "subject": "X-OAuth-Subject", "roles": "", "scope": "X_Scope"}})
	cases := []struct {
		header string
		kept   bool
		why    string
	}{
		{"X-Client", false, "a configured name, in another case"},
		{"X-Oauth-Subject", false, "a configured name"},
		{"X_oauth_subject", false, "the underscore spelling of a configured name"},
		{"X_Client", false, "the underscore spelling of a configured name"},
		{"X-Scope", false, "the dash spelling of a configured X_Scope"},
		{"X_scope", false, "a configured name with an underscore"},
		{"X-Roles", true, "not an identity header here: roles is off"},
		{"X_other", true, "an underscore name that is no identity header"},
		{"Accept", true, "any other header"},
	}
	h := http.Header{}
	var want []string
	for _, tc := range cases {
		h[tc.header] = []string{tc.why}
		if tc.kept {
			want = append(want, tc.header)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header = h
	f.Forward(r, &guard.Decision{})
	var left []string
	for k := range h {
		left = append(left, k)
	}
	slices.Sort(left)
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("headers left = %v, want %v", left, want)
	}
}

func TestForward_TokenCookieGoesNoFurther(t *testing.T) {
	cases := []struct {
		name  string
		sent  []string // the Cookie header lines
		token []string // token_cookie names, one Forward each
		keep  bool     // keep_authorization
		want  []string // the Cookie header lines after; nil for none
	}{
		{"the token cookie is removed, the others kept",
			[]string{"session=t0k3n; lang=de; theme=dark"}, []string{"session"}, false,
			[]string{"lang=de; theme=dark"}},
		{"the others are kept as they were sent, in one Cookie header",
			[]string{"lang=de; theme=dark", `pref="a b"; session=again`}, []string{"session"}, false,
			[]string{`lang=de; theme=dark; pref="a b"`}},
		{"no empty Cookie header is left",
			[]string{`lang=de; theme=dark; pref="a b"`}, []string{"lang", "theme", "pref"}, false,
			nil},
		{"a Cookie header without the token cookie is left as sent",
			[]string{"lang=de;theme=dark"}, []string{"session"}, false,
			[]string{"lang=de;theme=dark"}},
		{"keep_authorization keeps the token cookie too",
			[]string{"session=t0k3n; lang=de"}, []string{"session"}, true,
			[]string{"session=t0k3n; lang=de"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header["Cookie"] = tc.sent
			for _, name := range tc.token {
				guard.NewForwarder(guard.ForwardOptions{TokenCookie: name, KeepAuthorization: tc.keep}).Forward(r, &guard.Decision{})
			}
			if got := r.Header["Cookie"]; !slices.Equal(got, tc.want) {
				t.Errorf("Cookie = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestForward_TheTokenGoesNoFurtherUnlessKept(t *testing.T) {
	cases := []struct {
		name, url, query string
		keep             bool
		wantAuth         bool
		wantRawQuery     string
	}{
		{"Authorization is removed", "/x", "", false, false, ""},
		{"keep_authorization keeps it", "/x", "", true, true, ""},
		{"a query token is removed, the rest of the query kept", "/x?a=1&access_token=t0k3n", "access_token", false, false, "a=1"},
		{"a query token is removed with keep_authorization too", "/x?access_token=t0k3n", "access_token", true, true, ""},
		{"a query without the token is left as sent", "/x?b=2&a=1", "access_token", false, false, "b=2&a=1"},
		{"an unconfigured query parameter is not the guard's", "/x?access_token=t0k3n", "", false, false, "access_token=t0k3n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.url, nil)
			r.Header.Set("Authorization", "Bearer t0k3n")
			guard.NewForwarder(guard.ForwardOptions{TokenQuery: tc.query, KeepAuthorization: tc.keep}).Forward(r, verified())
			if got := r.Header.Get("Authorization") != ""; got != tc.wantAuth {
				t.Errorf("Authorization passed on = %v, want %v", got, tc.wantAuth)
			}
			if r.URL.RawQuery != tc.wantRawQuery {
				t.Errorf("query = %q, want %q", r.URL.RawQuery, tc.wantRawQuery)
			}
		})
	}
}

func TestForward_TheBackendIsToldTheVerifiedIdentity(t *testing.T) {
	cases := []struct {
		name        string
		headers     map[string]string
		d           *guard.Decision
		wantHeaders http.Header
		wantID      guard.Identity
	}{
		{"the default headers, lists joined with commas",
			nil, verified("Orders.send", "x.read"),
			http.Header{"X-Oauth-Client-Id": {"sender"}, "X-Oauth-Subject": {sender},
				"X-Oauth-Roles": {"Orders.send,Invoices.send"}, "X-Oauth-Scope": {"Orders.send,x.read"}},
			guard.Identity{Subject: sender, ClientID: "sender", Roles: "Orders.send,Invoices.send", Scope: "Orders.send x.read"}},
		{"values a list would split are dropped from the scope",
			nil, verified("Orders.send", "a,admin", "b admin", "x.read"),
			http.Header{"X-Oauth-Client-Id": {"sender"}, "X-Oauth-Subject": {sender},
				"X-Oauth-Roles": {"Orders.send,Invoices.send"}, "X-Oauth-Scope": {"Orders.send,x.read"}},
			guard.Identity{Subject: sender, ClientID: "sender", Roles: "Orders.send,Invoices.send", Scope: "Orders.send x.read"}},
		{"configured names, one turned off, an empty value not set",
			map[string]string{"client_id": "", "subject": "x-caller", "roles": "X_Roles", "scope": "X-Scope"}, verified(),
			http.Header{"X-Caller": {sender}, "X_roles": {"Orders.send,Invoices.send"}},
			guard.Identity{Subject: sender, ClientID: "sender", Roles: "Orders.send,Invoices.send"}},
		{"no verified token, no identity",
			nil, &guard.Decision{Roles: nil},
			http.Header{}, guard.Identity{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header = http.Header{}
			id := guard.NewForwarder(guard.ForwardOptions{IdentityHeaders: tc.headers}).Forward(r, tc.d)
			if id := (guard.Identity{Subject: id.Subject, ClientID: id.ClientID, Roles: id.Roles, Scope: id.Scope}); id != tc.wantID {
				t.Errorf("Identity = %+v, want %+v", id, tc.wantID)
			}
			if len(r.Header) != len(tc.wantHeaders) {
				t.Errorf("headers = %v, want %v", r.Header, tc.wantHeaders)
			}
			for k, v := range tc.wantHeaders {
				if !slices.Equal(r.Header[k], v) {
					t.Errorf("%s = %q, want %q", k, r.Header[k], v)
				}
			}
		})
	}
}

// The guard keeps what it tells the backend about a token served from the
// token cache; every request must still be told the same, in header
// values of its own.
func TestForward_ATokenSentAgainIsToldAlikeInHeadersOfItsOwn(t *testing.T) {
	f := newFixture(t)
	f.state.verifier.v.(*tokenstate.Verifier).JWT.Cache = tokens.NewCache(0)
	tok := f.token(t, sender, nil) // scope Orders.send Invoices.send
	fw := guard.NewForwarder(guard.ForwardOptions{})
	wantID := guard.Identity{Subject: sender, ClientID: "sender", Roles: "Orders.send,Invoices.send", Scope: "Orders.send Invoices.send"}
	wantHeaders := http.Header{"X-Oauth-Client-Id": {"sender"}, "X-Oauth-Subject": {sender},
		"X-Oauth-Roles": {"Orders.send,Invoices.send"}, "X-Oauth-Scope": {"Orders.send,Invoices.send"}}
	for i := range 4 {
		r := httptest.NewRequest(http.MethodPost, "/http/orders/1", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		d := f.guard.Check(r)
		if d.Err != nil {
			t.Fatalf("request %d refused: %v", i+1, d.Err)
		}
		id := fw.Forward(r, d)
		if got := (guard.Identity{Subject: id.Subject, ClientID: id.ClientID, Roles: id.Roles, Scope: id.Scope}); got != wantID {
			t.Errorf("request %d: Identity = %+v, want %+v", i+1, got, wantID)
		}
		if v := id.Values(); v != [4]any{wantID.Subject, wantID.ClientID, wantID.Roles, wantID.Scope} {
			t.Errorf("request %d: Values = %q", i+1, v)
		}
		if len(r.Header) != len(wantHeaders) {
			t.Errorf("request %d: headers = %v, want %v", i+1, r.Header, wantHeaders)
		}
		for k, v := range wantHeaders {
			if !slices.Equal(r.Header[k], v) {
				t.Errorf("request %d: %s = %q, want %q", i+1, k, r.Header[k], v)
			}
		}
		// A later handler may change a value in place, or add one.
		for k, v := range r.Header {
			v[0] = "changed"
			r.Header[k] = append(v, "added")
		}
	}
}

func TestCheckIdentityHeader_RefusesWhatCannotCarryTheIdentity(t *testing.T) {
	cases := []struct {
		name, field, header string
		want                string // "" when valid
	}{
		{"a default name", "subject", "X-OAuth-Subject", ""},
		{"a name with an underscore", "scope", "X_Scope", ""},
		{"a field turned off", "roles", "", ""},
		{"an unknown field", "email", "X-Email", "unknown field email"},
		{"Authorization, in any case", "subject", "authorization", "cannot carry the identity"},
		{"Host", "client_id", "HOST", "cannot carry the identity"},
		{"a name with a space", "subject", "X OAuth", "is not a header name"},
		{"a name with a colon", "subject", "X-OAuth:", "is not a header name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := guard.CheckIdentityHeader(tc.field, tc.header)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("CheckIdentityHeader(%q, %q) = %v, want %q", tc.field, tc.header, err, tc.want)
			}
			if err := guard.CheckIdentityHeaders(map[string]string{"client_id": "X-OAuth-Client-ID", tc.field: tc.header}); (err == nil) != (tc.want == "") {
				t.Errorf("CheckIdentityHeaders with it = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestForward_TheDPoPProofGoesNoFurtherEvenWhenTheTokenIsKept(t *testing.T) {
	for _, keep := range []bool{false, true} {
		f := guard.NewForwarder(guard.ForwardOptions{KeepAuthorization: keep})
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "DPoP tok")
		r.Header.Add("DPoP", "a.b.c")
		r.Header.Add("Dpop", "d.e.f")
		f.Forward(r, &guard.Decision{})
		if v := r.Header.Values("DPoP"); len(v) != 0 {
			t.Errorf("keep_authorization %v: DPoP headers %q reach the backend", keep, v)
		}
	}
}

func TestForward_TheCertificateHeaderGoesNoFurther(t *testing.T) {
	f := guard.NewForwarder(guard.ForwardOptions{CertificateHeader: "x-client-cert"})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Add("X-Client-Cert", "-----BEGIN%20CERTIFICATE-----made-up")
	r.Header.Add("X-Client-Cert", "another")
	f.Forward(r, &guard.Decision{})
	if v := r.Header.Values("X-Client-Cert"); len(v) != 0 {
		t.Errorf("the certificate header %q reaches the backend", v)
	}
}
