package authserver_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

func TestToken_SAPFormIssuesVerifiableJWT(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, request{target: sapQuery, header: basic(senderID, f.senderSecret)})
	resp := okToken(t, rec)

	var members map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &members); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"access_token", "token_type", "expires_in", "scope"} {
		if _, ok := members[want]; !ok {
			t.Errorf("response lacks %q", want)
		}
	}
	if len(members) != 4 {
		t.Errorf("response members = %v, want exactly the four above (never a refresh_token)", members)
	}
	if resp.ExpiresIn != 30*60 {
		t.Errorf("expires_in = %d, want %d (the client's lifetime)", resp.ExpiresIn, 30*60)
	}
	if want := "ESBMessaging.send Orders.read"; resp.Scope != want {
		t.Errorf("scope = %q, want %q", resp.Scope, want)
	}

	c := f.verify(t, resp.AccessToken)
	if want := clients.SubjectPrefix + senderID; c.Subject != want {
		t.Errorf("sub = %q, want %q", c.Subject, want)
	}
	if c.ClientID != senderID {
		t.Errorf("client_id = %q, want %q", c.ClientID, senderID)
	}
	if c.Issuer != issuer {
		t.Errorf("iss = %q, want %q", c.Issuer, issuer)
	}
	if !slices.Equal(c.Audience, []string{audience}) {
		t.Errorf("aud = %q, want [%q]", c.Audience, audience)
	}
	if c.ID == "" {
		t.Error("jti is empty")
	}
	if want := now.Truncate(time.Second); !c.IssuedAt.Equal(want) {
		t.Errorf("iat = %v, want %v", c.IssuedAt, want)
	}
	if got := c.Expiry.Sub(c.IssuedAt); got != 30*time.Minute {
		t.Errorf("exp - iat = %v, want 30m", got)
	}
	if !slices.Equal(c.Scope, []string{"ESBMessaging.send", "Orders.read"}) {
		t.Errorf("token scope = %q, want the granted roles", c.Scope)
	}

	seg, _, _ := strings.Cut(resp.AccessToken, ".")
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("header segment: %v", err)
	}
	var hdr struct{ Alg, Typ, Kid string }
	if err := json.Unmarshal(raw, &hdr); err != nil {
		t.Fatalf("header segment: %v", err)
	}
	if hdr.Typ != "at+jwt" {
		t.Errorf("typ = %q, want at+jwt", hdr.Typ)
	}
	if hdr.Kid == "" || hdr.Kid != f.keys.Signing().ID {
		t.Errorf("kid = %q, want the signing key %q", hdr.Kid, f.keys.Signing().ID)
	}
	if hdr.Alg != "ES256" {
		t.Errorf("alg = %q, want ES256", hdr.Alg)
	}

	again := okToken(t, f.do(t, request{target: sapQuery, header: basic(senderID, f.senderSecret)}))
	if f.verify(t, again.AccessToken).ID == c.ID {
		t.Errorf("two tokens share the jti %q", c.ID)
	}
}

func TestToken_AcceptsEveryStandardRequestForm(t *testing.T) {
	f := newFixture(t)
	form := "application/x-www-form-urlencoded"
	cases := []struct {
		name string
		rq   request
	}{
		{"SAP form: parameters in the query, empty body, Basic auth",
			request{target: sapQuery, header: basic(senderID, f.senderSecret)}},
		{"SAP form with an explicitly empty form body",
			request{target: sapQuery, header: http.Header{"Authorization": {basicValue(senderID, f.senderSecret)}, "Content-Type": {form}}}},
		{"RFC form: grant_type in the body, Basic auth",
			request{body: "grant_type=client_credentials", header: basic(senderID, f.senderSecret)}},
		{"RFC form: client_id and client_secret in the body",
			request{body: url.Values{"grant_type": {"client_credentials"}, "client_id": {senderID}, "client_secret": {f.senderSecret}}.Encode()}},
		{"Basic scheme name in lower case",
			request{target: sapQuery, header: http.Header{"Authorization": {"basic " + strings.TrimPrefix(basicValue(senderID, f.senderSecret), "Basic ")}}}},
		{"same grant_type in the query and the body",
			request{target: sapQuery, body: "grant_type=client_credentials", header: basic(senderID, f.senderSecret)}},
		{"empty grant_type in the query counts as absent",
			request{target: authserver.TokenPath + "?grant_type=", body: "grant_type=client_credentials", header: basic(senderID, f.senderSecret)}},
		{"empty repetition of grant_type counts as absent",
			request{body: "grant_type=&grant_type=client_credentials", header: basic(senderID, f.senderSecret)}},
		{"empty repetition after grant_type counts as absent",
			request{body: "grant_type=client_credentials&grant_type=", header: basic(senderID, f.senderSecret)}},
		{"form Content-Type with a charset parameter",
			request{body: "grant_type=client_credentials", header: http.Header{
				"Authorization": {basicValue(senderID, f.senderSecret)},
				"Content-Type":  {form + "; charset=utf-8"}}}},
		{"body of exactly 16 KiB",
			request{body: padTo("grant_type=client_credentials&pad=", 16<<10), header: basic(senderID, f.senderSecret)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := okToken(t, f.do(t, tc.rq))
			if c := f.verify(t, resp.AccessToken); c.ClientID != senderID {
				t.Errorf("client_id = %q, want %q", c.ClientID, senderID)
			}
		})
	}
}

// padTo extends s with "a" to n bytes.
func padTo(s string, n int) string { return s + strings.Repeat("a", n-len(s)) }

func TestToken_BasicCredentialsWorkRawAndFormEncoded(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name string
		rq   request
	}{
		{"raw Basic credentials (SAP, curl, Postman)",
			request{target: sapQuery, header: basic(specialID, specialSecret)}},
		{"form-encoded Basic credentials (golang.org/x/oauth2, RFC 6749 §2.3.1)",
			request{target: sapQuery, header: basic(url.QueryEscape(specialID), url.QueryEscape(specialSecret))}},
		{"client_secret_post",
			request{body: "grant_type=client_credentials&client_id=" + url.QueryEscape(specialID) + "&client_secret=" + url.QueryEscape(specialSecret)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := okToken(t, f.do(t, tc.rq))
			if c := f.verify(t, resp.AccessToken); c.ClientID != specialID {
				t.Errorf("client_id = %q, want %q", c.ClientID, specialID)
			}
		})
	}

	// Both readings of a wrong secret are wrong.
	wrong := specialSecret + "x"
	for _, h := range []http.Header{basic(specialID, wrong), basic(specialID, url.QueryEscape(wrong))} {
		tokenError(t, f.do(t, request{target: sapQuery, header: h}), http.StatusUnauthorized, "invalid_client")
	}
}

func TestToken_SameAnswerForUnknownClientWrongSecretDisabledClient(t *testing.T) {
	f := newFixture(t)
	for _, via := range []string{"Basic", "body"} {
		t.Run(via, func(t *testing.T) {
			creds := func(id, secret string) request {
				if via == "Basic" {
					return request{target: sapQuery, header: basic(id, secret)}
				}
				return request{body: url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}.Encode()}
			}
			cases := []struct {
				name string
				rq   request
			}{
				{"unknown client", creds("nobody", f.senderSecret)},
				{"wrong secret", creds(senderID, f.offSecret)},
				{"empty secret", creds(senderID, "")},
				{"disabled client with its own secret", creds(offID, f.offSecret)},
			}
			var first *httptest.ResponseRecorder
			for _, tc := range cases {
				rec := f.do(t, tc.rq)
				tokenError(t, rec, http.StatusUnauthorized, "invalid_client")
				if first == nil {
					first = rec
					continue
				}
				if rec.Body.String() != first.Body.String() {
					t.Errorf("%s: body %s differs from %s: %s", tc.name, rec.Body, cases[0].name, first.Body)
				}
				for name := range first.Header() {
					if got, want := rec.Header().Values(name), first.Header().Values(name); !slices.Equal(got, want) {
						t.Errorf("%s: %s = %q, differs from %s: %q", tc.name, name, got, cases[0].name, want)
					}
				}
				if len(rec.Header()) != len(first.Header()) {
					t.Errorf("%s: headers %v differ from %s: %v", tc.name, rec.Header(), cases[0].name, first.Header())
				}
			}
		})
	}
}

func TestToken_RefusesMalformedRequests(t *testing.T) {
	f := newFixture(t)
	auth := basicValue(senderID, f.senderSecret)
	withAuth := http.Header{"Authorization": {auth}}
	cases := []struct {
		name   string
		rq     request
		status int
		code   string
	}{
		{"no credentials at all",
			request{target: sapQuery}, 401, "invalid_client"},
		{"client_id in the body without a secret",
			request{body: "grant_type=client_credentials&client_id=" + senderID}, 401, "invalid_client"},
		{"Bearer instead of Basic",
			request{target: sapQuery, header: http.Header{"Authorization": {"Bearer " + f.senderSecret}}}, 401, "invalid_client"},
		{"credentials in both the header and the body",
			request{body: "grant_type=client_credentials&client_id=" + senderID + "&client_secret=" + f.senderSecret, header: withAuth}, 400, "invalid_request"},
		{"client_id in the body besides Basic",
			request{body: "grant_type=client_credentials&client_id=" + senderID, header: withAuth}, 400, "invalid_request"},
		{"client_secret in the body besides Basic",
			request{body: "grant_type=client_credentials&client_secret=" + f.senderSecret, header: withAuth}, 400, "invalid_request"},
		{"grant_type missing",
			request{target: authserver.TokenPath, header: withAuth}, 400, "invalid_request"},
		{"grant_type password",
			request{body: "grant_type=password&username=u&password=p", header: withAuth}, 400, "unsupported_grant_type"},
		{"token_format saml",
			request{target: authserver.TokenPath + "?grant_type=client_credentials&token_format=saml", header: withAuth}, 400, "invalid_request"},
		{"query string longer than a body may be",
			request{target: sapQuery + "&x=" + strings.Repeat("a", 20<<10), header: withAuth}, 400, "invalid_request"},
		{"grant_type twice in the body",
			request{body: "grant_type=client_credentials&grant_type=client_credentials", header: withAuth}, 400, "invalid_request"},
		{"grant_type twice in the body with different values",
			request{body: "grant_type=client_credentials&grant_type=password", header: withAuth}, 400, "invalid_request"},
		{"scope twice in the body",
			request{body: "grant_type=client_credentials&scope=Orders.read&scope=ESBMessaging.send", header: withAuth}, 400, "invalid_request"},
		{"grant_type twice in the query",
			request{target: authserver.TokenPath + "?grant_type=client_credentials&grant_type=client_credentials", header: withAuth}, 400, "invalid_request"},
		{"different grant_type in the query and the body",
			request{target: sapQuery, body: "grant_type=password", header: withAuth}, 400, "invalid_request"},
		{"client_secret in the query string",
			request{target: authserver.TokenPath + "?client_secret=" + f.senderSecret, body: "grant_type=client_credentials&client_id=" + senderID}, 400, "invalid_request"},
		{"client_secret in the query string besides Basic",
			request{target: sapQuery + "&client_secret=" + f.senderSecret, header: withAuth}, 400, "invalid_request"},
		{"JSON body",
			request{target: sapQuery, body: `{"scope":"Orders.read"}`, header: http.Header{"Authorization": {auth}, "Content-Type": {"application/json"}}}, 400, "invalid_request"},
		{"form body sent as text/plain",
			request{body: "grant_type=client_credentials", header: http.Header{"Authorization": {auth}, "Content-Type": {"text/plain"}}}, 400, "invalid_request"},
		{"form body without Content-Type",
			request{body: "grant_type=client_credentials", header: http.Header{"Authorization": {auth}, "Content-Type": nil}}, 400, "invalid_request"},
		{"body over 16 KiB",
			request{body: padTo("grant_type=client_credentials&pad=", 16<<10+1), header: withAuth}, 400, "invalid_request"},
		{"bad percent-encoding in the body",
			request{body: "grant_type=client_credentials&scope=%zz", header: withAuth}, 400, "invalid_request"},
		{"bad percent-encoding in the query",
			request{target: sapQuery + "&scope=%zz", header: withAuth}, 400, "invalid_request"},
		{"Authorization with invalid base64",
			request{target: sapQuery, header: http.Header{"Authorization": {"Basic not*base64!"}}}, 400, "invalid_request"},
		{"Basic credentials without a colon",
			request{target: sapQuery, header: http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(senderID))}}}, 400, "invalid_request"},
		{"Basic credentials with an empty client ID",
			request{target: sapQuery, header: basic("", f.senderSecret)}, 400, "invalid_request"},
		{"two Authorization headers",
			request{target: sapQuery, header: http.Header{"Authorization": {auth, auth}}}, 400, "invalid_request"},
		{"Authorization header over 4 KiB",
			request{target: sapQuery, header: http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(senderID+":"+strings.Repeat("x", 4<<10)))}}}, 400, "invalid_request"},
		{"scope with a role not granted",
			request{target: sapQuery + "&scope=Admin", header: withAuth}, 400, "invalid_scope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tokenError(t, f.do(t, tc.rq), tc.status, tc.code)
		})
	}
}

func TestToken_ScopeIsAllGrantedRolesOrTheRequestedSubset(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name  string
		scope string // "" sends no scope parameter
		want  string // granted scope; "" means invalid_scope
	}{
		{"no scope: all granted roles", "", "ESBMessaging.send Orders.read"},
		{"empty scope counts as absent", "&scope=", "ESBMessaging.send Orders.read"},
		{"one granted role", "&scope=Orders.read", "Orders.read"},
		{"every granted role, in another order", "&scope=Orders.read+ESBMessaging.send", "ESBMessaging.send Orders.read"},
		{"a granted role twice", "&scope=Orders.read+Orders.read", "Orders.read"},
		{"a role not granted", "&scope=Admin", ""},
		{"a granted and a not granted role", "&scope=Orders.read+Admin", ""},
		{"a role of another client", "&scope=Orders.send", ""},
		{"a granted role in another case", "&scope=orders.read", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := f.do(t, request{target: sapQuery + tc.scope, header: basic(senderID, f.senderSecret)})
			if tc.want == "" {
				tokenError(t, rec, http.StatusBadRequest, "invalid_scope")
				return
			}
			resp := okToken(t, rec)
			if got := sortedFields(resp.Scope); !slices.Equal(got, sortedFields(tc.want)) {
				t.Errorf("response scope = %q, want %q", resp.Scope, tc.want)
			}
			c := f.verify(t, resp.AccessToken)
			if got := slices.Sorted(slices.Values(c.Scope)); !slices.Equal(slices.Compact(got), sortedFields(tc.want)) {
				t.Errorf("token scope = %q, want %q", c.Scope, tc.want)
			}
		})
	}
}

func TestToken_GetIs405WithAllowPost(t *testing.T) {
	f := newFixture(t)
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPut} {
		t.Run(method, func(t *testing.T) {
			rec := f.do(t, request{method: method, target: sapQuery, header: basic(senderID, f.senderSecret)})
			if rec.Code != http.StatusMethodNotAllowed {
				t.Fatalf("status = %d, want 405; body: %s", rec.Code, rec.Body)
			}
			if got := rec.Header().Get("Allow"); got != http.MethodPost {
				t.Errorf("Allow = %q, want POST", got)
			}
			if strings.Contains(rec.Body.String(), "access_token") {
				t.Errorf("405 carries a token: %s", rec.Body)
			}
		})
	}
}

func TestJWKS_PublishesThePublicSigningKeyOnly(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, request{method: http.MethodGet, target: authserver.JWKSPath})
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/jwk-set+json" {
		t.Errorf("Content-Type = %q, want application/jwk-set+json", got)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatalf("body is not a JWK Set: %v; %s", err, rec.Body)
	}
	found := false
	for _, k := range set.Keys {
		if k["kid"] == f.keys.Signing().ID {
			found = true
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("published key %v has private member %q", k["kid"], private)
			}
		}
	}
	if !found {
		t.Errorf("JWK Set lacks the signing key %q: %s", f.keys.Signing().ID, rec.Body)
	}
}

func TestJWKSAndMetadata_RefuseOtherMethodsThanGet(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{authserver.JWKSPath, authserver.MetadataPath} {
		for _, method := range []string{http.MethodPost, http.MethodDelete} {
			t.Run(method+" "+path, func(t *testing.T) {
				rec := f.do(t, request{method: method, target: path})
				if rec.Code != http.StatusMethodNotAllowed {
					t.Fatalf("status = %d, want 405", rec.Code)
				}
				if allow := rec.Header().Get("Allow"); !strings.Contains(allow, http.MethodGet) {
					t.Errorf("Allow = %q, want it to list GET", allow)
				}
				if strings.Contains(rec.Body.String(), f.keys.Signing().ID) {
					t.Errorf("405 body carries the key set: %s", rec.Body)
				}
			})
		}
	}
}

func TestMetadata_DescribesTheEndpoints(t *testing.T) {
	cases := []struct {
		name   string
		issuer string
	}{
		{"issuer without trailing slash", "https://gw.example"},
		{"issuer with trailing slash", "https://gw.example/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.srv.Issuer = tc.issuer
			rec := f.do(t, request{method: http.MethodGet, target: authserver.MetadataPath})
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200", rec.Code)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			var md struct {
				Issuer        string   `json:"issuer"`
				TokenEndpoint string   `json:"token_endpoint"`
				JWKSURI       string   `json:"jwks_uri"`
				GrantTypes    []string `json:"grant_types_supported"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &md); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if md.Issuer != tc.issuer {
				t.Errorf("issuer = %q, want %q", md.Issuer, tc.issuer)
			}
			if want := "https://gw.example/oauth2/api/v1/token"; md.TokenEndpoint != want {
				t.Errorf("token_endpoint = %q, want %q", md.TokenEndpoint, want)
			}
			if want := "https://gw.example/.well-known/jwks.json"; md.JWKSURI != want {
				t.Errorf("jwks_uri = %q, want %q", md.JWKSURI, want)
			}
			if !slices.Equal(md.GrantTypes, []string{"client_credentials"}) {
				t.Errorf("grant_types_supported = %q, want [client_credentials]", md.GrantTypes)
			}
		})
	}
}

func TestServeHTTP_LeavesOtherPathsToTheCaller(t *testing.T) {
	f := newFixture(t)
	for _, target := range []string{
		"/",
		"/http/orders",
		authserver.TokenPath + "/",
		"/oauth2/api/v1/token2",
		"/.well-known/jwks.json.bak",
		"/.well-known/openid-configuration",
	} {
		t.Run(target, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, target+"?grant_type=client_credentials", nil)
			r.Header.Set("Authorization", basicValue(senderID, f.senderSecret))
			if f.srv.Serves(r.URL.Path) {
				t.Fatal("Serves = true, want false: the request is another handler's")
			}
			rec := httptest.NewRecorder()
			if f.srv.ServeHTTP(rec, r); rec.Code != http.StatusNotFound {
				t.Errorf("ServeHTTP answered %d, want 404 for a path that is not an endpoint", rec.Code)
			}
		})
	}
}

func TestToken_NeverLogsOrEchoesTheSecretOrTheToken(t *testing.T) {
	f := newFixture(t)
	secret := f.senderSecret
	withAuth := basic(senderID, secret)
	requests := []request{
		{target: sapQuery, header: withAuth},
		{body: "grant_type=client_credentials&client_id=" + senderID + "&client_secret=" + secret},
		{target: sapQuery, header: basic("nobody", secret)},
		{target: sapQuery, header: basic(offID, secret)},
		{target: sapQuery + "&client_secret=" + secret, header: withAuth},
		{body: "grant_type=client_credentials&client_secret=" + secret, header: withAuth},
		{body: "grant_type=password&password=" + secret, header: withAuth},
		{target: sapQuery + "&scope=Admin", header: withAuth},
		{target: sapQuery, header: http.Header{"Authorization": {"Bearer " + secret}}},
		{target: sapQuery, header: http.Header{"Authorization": {withAuth.Get("Authorization") + "*"}}},
		{target: sapQuery, body: `{"client_secret":"` + secret + `"}`, header: http.Header{"Content-Type": {"application/json"}}},
		{method: http.MethodGet, target: sapQuery, header: withAuth},
	}
	var issued []string
	for i, rq := range requests {
		rec := f.do(t, rq)
		if strings.Contains(rec.Body.String(), secret) {
			t.Errorf("request %d: response body contains the secret: %s", i, rec.Body)
		}
		for name, vals := range rec.Header() {
			if strings.Contains(strings.Join(vals, " "), secret) {
				t.Errorf("request %d: response header %s contains the secret", i, name)
			}
		}
		if rec.Code == http.StatusOK {
			issued = append(issued, okToken(t, rec).AccessToken)
		}
	}
	if len(issued) != 2 {
		t.Fatalf("%d tokens issued, want 2 (the first two requests)", len(issued))
	}

	logs := f.logs.String()
	for _, want := range []string{"token issued", "token request refused"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q; is the logger wired? logs:\n%s", want, logs)
		}
	}
	leaks := map[string]string{
		"the secret":                secret,
		"the Basic credentials":     strings.TrimPrefix(withAuth.Get("Authorization"), "Basic "),
		"the first access token":    issued[0],
		"the second access token":   issued[1],
		"the first token's sig":     issued[0][strings.LastIndex(issued[0], ".")+1:],
		"the second token's claims": strings.Split(issued[1], ".")[1],
	}
	for what, s := range leaks {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %s", what)
		}
	}
}

// The token endpoint writes its answer without encoding/json's
// reflection: the bytes must be the ones encoding/json writes.
func TestTokenResponse_AppendJSONWritesWhatEncodingJSONWrites(t *testing.T) {
	for name, r := range map[string]authserver.TokenResponse{
		"as the endpoint answers": {AccessToken: "eyJh.eyJp.c2ln", TokenType: "Bearer", ExpiresIn: int64(3600), Scope: "ESBMessaging.send Orders.send"},
		"no scope, lifetime 0":    {AccessToken: "opaque_token-1", TokenType: "Bearer", ExpiresIn: int64(0)},
		"roles that need escapes": {AccessToken: "t", TokenType: "Bearer", ExpiresIn: int64(-1), Scope: `R&D.<send> "quoted" ünï` + "\u2028\xff"},
		"expires_in of a client":  {AccessToken: "t", TokenType: "bearer", ExpiresIn: "3600", Scope: "s"},
		"expires_in absent":       {AccessToken: "t", TokenType: "Bearer"},
		"expires_in a float":      {AccessToken: "t", TokenType: "Bearer", ExpiresIn: 3599.5},
	} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := r.AppendJSON(nil); err != nil || string(got) != string(want) {
			t.Errorf("%s: got %s (%v), want %s", name, got, err, want)
		}
	}
}
