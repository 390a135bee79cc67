package guard_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// request builds a request to /http/orders/1 and lets mod add credentials.
func (f *fixture) decide(mod func(r *http.Request)) outcome {
	r := httptest.NewRequest(http.MethodGet, "/http/orders/1", nil)
	mod(r)
	d := f.guard.Check(r)
	if d.Err != nil {
		return outcome{nil, d.Err}
	}
	return outcome{d, nil}
}

func withQuery(r *http.Request, name, value string) {
	q := r.URL.Query()
	q.Add(name, value)
	r.URL.RawQuery = q.Encode()
}

func TestCheck_TokenSourcesAreTheHeaderUnlessConfigured(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, sender, nil)
	header := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }

	cases := []struct {
		name          string
		query, cookie string // guard configuration
		mod           func(r *http.Request)
		wantStatus    int // 0: allowed
	}{
		{"header", "", "", header, 0},
		{"query token refused when not configured", "", "",
			func(r *http.Request) { withQuery(r, "access_token", tok) }, 400},
		{"query token refused even next to a header", "", "",
			func(r *http.Request) { header(r); withQuery(r, "access_token", tok) }, 400},
		{"cookie ignored when not configured", "", "",
			func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "access_token", Value: tok}) }, 401},
		{"configured query parameter", "token", "",
			func(r *http.Request) { withQuery(r, "token", tok) }, 0},
		{"configured cookie", "", "at",
			func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "at", Value: tok}) }, 0},
		{"header and configured cookie: two tokens", "", "at",
			func(r *http.Request) { header(r); r.AddCookie(&http.Cookie{Name: "at", Value: tok}) }, 400},
		{"query parameter given twice", "token", "",
			func(r *http.Request) { withQuery(r, "token", tok); withQuery(r, "token", tok) }, 400},
		{"configured query parameter, empty", "token", "",
			func(r *http.Request) { r.URL.RawQuery = url.Values{"token": {""}}.Encode() }, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.guard.QueryParam, f.guard.Cookie = tc.query, tc.cookie
			o := f.decide(tc.mod)
			if tc.wantStatus == 0 {
				wantAllowed(t, o)
				return
			}
			if o.err == nil || o.err.Status != tc.wantStatus {
				t.Errorf("outcome = %+v, want status %d", o.err, tc.wantStatus)
			}
		})
	}
}

func TestCheck_PreflightPassesOnlyWhenAllowedAndReallyAPreflight(t *testing.T) {
	f := newFixture(t)
	preflight := func(r *http.Request) {
		r.Method = http.MethodOptions
		r.Header.Set("Origin", "https://app.example")
		r.Header.Set("Access-Control-Request-Method", "POST")
	}
	if o := f.decide(preflight); o.err == nil || o.err.Status != 401 {
		t.Errorf("preflight without AllowPreflight = %+v, want 401", o.err)
	}
	f.guard.AllowPreflight = true
	if d := wantAllowed(t, f.decide(preflight)); !d.Preflight || d.Claims != nil {
		t.Errorf("decision = %+v, want a preflight with no identity", d)
	}
	plainOptions := func(r *http.Request) { r.Method = http.MethodOptions; r.Header.Set("Origin", "https://app.example") }
	if o := f.decide(plainOptions); o.err == nil || o.err.Status != 401 {
		t.Errorf("OPTIONS without Access-Control-Request-Method = %+v, want 401: not a preflight", o.err)
	}
}
