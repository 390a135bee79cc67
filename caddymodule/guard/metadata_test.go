package guard_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/guard"
)

func TestResourceMetadataURL_IsOnTheHostOfTheRequest(t *testing.T) {
	cases := []struct {
		name string
		tls  bool
		want string
	}{
		{"plain HTTP", false, "http://api.example:8080/.well-known/oauth-protected-resource"},
		{"TLS", true, "https://api.example:8080/.well-known/oauth-protected-resource"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/http/orders", nil)
			r.Host = "api.example:8080"
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if got := guard.ResourceMetadataURL(r); got != tc.want {
				t.Errorf("ResourceMetadataURL = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServeResourceMetadata_NamesTheResourceAndItsIssuer(t *testing.T) {
	res := guard.Resource{ID: audience, Issuer: issuer, Name: "orders"}
	withQuery := res
	withQuery.TokenQuery = true
	withDPoP := res
	withDPoP.DPoPAlgs = []string{"ES256", "EdDSA"}
	cases := []struct {
		name     string
		method   string
		res      guard.Resource
		status   int
		wantBody string
	}{
		{"GET, the token in the header only", http.MethodGet, res, http.StatusOK,
			`{"resource":"https://gw.example/http","authorization_servers":["https://gw.example"],"bearer_methods_supported":["header"],"resource_name":"orders"}`},
		{"GET, the token in the query too", http.MethodGet, withQuery, http.StatusOK,
			`{"resource":"https://gw.example/http","authorization_servers":["https://gw.example"],"bearer_methods_supported":["header","query"],"resource_name":"orders"}`},
		{"GET, with the DPoP proof algorithms", http.MethodGet, withDPoP, http.StatusOK,
			`{"resource":"https://gw.example/http","authorization_servers":["https://gw.example"],"bearer_methods_supported":["header"],"resource_name":"orders","dpop_signing_alg_values_supported":["ES256","EdDSA"]}`},
		{"no name, none said", http.MethodGet, guard.Resource{ID: audience, Issuer: issuer}, http.StatusOK,
			`{"resource":"https://gw.example/http","authorization_servers":["https://gw.example"],"bearer_methods_supported":["header"]}`},
		{"POST is not allowed", http.MethodPost, res, http.StatusMethodNotAllowed, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			guard.ServeResourceMetadata(w, httptest.NewRequest(tc.method, guard.ResourceMetadataPath, nil), tc.res)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d", w.Code, tc.status)
			}
			if tc.status != http.StatusOK {
				if got := w.Header().Get("Allow"); got != "GET, HEAD" {
					t.Errorf("Allow = %q, want GET, HEAD", got)
				}
				return
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			if got := w.Body.String(); got != tc.wantBody+"\n" {
				t.Errorf("body = %s, want %s", got, tc.wantBody)
			}
		})
	}
}
