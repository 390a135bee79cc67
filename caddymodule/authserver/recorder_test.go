package authserver_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
)

// recorder keeps what the token endpoint tells it, and whether it was
// told with the request's context (where the request's span is).
type recorder struct {
	outcomes   []authserver.TokenOutcome
	requestCtx []bool
}

type ctxKey struct{}

func (r *recorder) Token(ctx context.Context, o authserver.TokenOutcome) {
	r.outcomes = append(r.outcomes, o)
	r.requestCtx = append(r.requestCtx, ctx.Value(ctxKey{}) == "this request")
}

func TestToken_TellsTheRecorderWhatItDidWithEachRequest(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name   string
		method string
		target string
		header http.Header
		want   authserver.TokenOutcome
		// uncounted: answered before it is a token request (405)
		uncounted bool
	}{
		{name: "a token issued", target: sapQuery, header: basic(senderID, f.senderSecret),
			want: authserver.TokenOutcome{ClientID: senderID, GrantType: "client_credentials", Format: "jwt"}},
		{name: "an opaque token issued", target: authserver.TokenPath + "?grant_type=client_credentials&token_format=opaque",
			header: basic(senderID, f.senderSecret),
			want:   authserver.TokenOutcome{ClientID: senderID, GrantType: "client_credentials", Format: "opaque"}},
		{name: "a wrong secret names no client", target: sapQuery, header: basic(senderID, f.senderSecret+"x"),
			want: authserver.TokenOutcome{GrantType: "client_credentials", Error: "invalid_client"}},
		{name: "a secret sent as the client ID names no client", target: sapQuery, header: basic(f.senderSecret, senderID),
			want: authserver.TokenOutcome{GrantType: "client_credentials", Error: "invalid_client"}},
		{name: "a scope not granted names the authenticated client",
			target: sapQuery + "&scope=Orders.send", header: basic(senderID, f.senderSecret),
			want: authserver.TokenOutcome{ClientID: senderID, GrantType: "client_credentials", Error: "invalid_scope"}},
		{name: "a grant type OAuth defines is named", target: authserver.TokenPath + "?grant_type=password",
			header: basic(senderID, f.senderSecret),
			want:   authserver.TokenOutcome{GrantType: "password", Error: "unsupported_grant_type"}},
		{name: "any other grant type is other", target: authserver.TokenPath + "?grant_type=" + f.senderSecret,
			header: basic(senderID, f.senderSecret),
			want:   authserver.TokenOutcome{GrantType: "other", Error: "unsupported_grant_type"}},
		{name: "no grant type", target: authserver.TokenPath, header: basic(senderID, f.senderSecret),
			want: authserver.TokenOutcome{Error: "invalid_request"}},
		{name: "a request that does not parse", target: sapQuery + "&client_secret=" + f.senderSecret,
			want: authserver.TokenOutcome{Error: "invalid_request"}},
		{name: "a GET", method: http.MethodGet, target: sapQuery, header: basic(senderID, f.senderSecret), uncounted: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			f.srv.Metrics = rec
			t.Cleanup(func() { f.srv.Metrics = nil })
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			r := httptest.NewRequest(method, tc.target, nil)
			r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, "this request"))
			for name, vals := range tc.header {
				r.Header[name] = vals
			}
			f.srv.ServeHTTP(httptest.NewRecorder(), r)
			if tc.uncounted {
				if len(rec.outcomes) != 0 {
					t.Errorf("told %+v, want nothing", rec.outcomes)
				}
				return
			}
			if len(rec.outcomes) != 1 {
				t.Fatalf("told %d outcomes (%+v), want 1", len(rec.outcomes), rec.outcomes)
			}
			if got := rec.outcomes[0]; got != tc.want {
				t.Errorf("told %+v, want %+v", got, tc.want)
			}
			if !rec.requestCtx[0] {
				t.Error("told without the request's context, so without its span")
			}
			if o := rec.outcomes[0]; strings.Contains(o.ClientID+o.GrantType+o.Format+o.Error, f.senderSecret) {
				t.Error("the outcome holds the secret")
			}
		})
	}
}
