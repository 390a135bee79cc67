package tokens

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
)

func TestVerify_AcceptedTypesAreConfigurable(t *testing.T) {
	set := keystest.NewSet(t)
	k := set.Signing()
	payload := fmt.Sprintf(`{"iss":%q,"sub":"s","client_id":"c","aud":%q,"iat":%d,"exp":%d,"jti":"j"}`,
		testIssuer, testAudience, now.Unix(), now.Add(time.Hour).Unix())
	token := func(typ string) string {
		hdr := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":%q}`, k.ID, typ)
		if typ == "-" {
			hdr = fmt.Sprintf(`{"alg":"ES256","kid":%q}`, k.ID)
		}
		return signRaw(t, k, hdr, payload)
	}
	cases := []struct {
		name  string
		types []string
		typ   string // "-": no typ header
		ok    bool
	}{
		{"default accepts at+jwt", nil, "at+jwt", true},
		{"default accepts application/AT+JWT", nil, "application/AT+JWT", true},
		{"default refuses JWT", nil, "JWT", false},
		{"default refuses a token without typ", nil, "-", false},
		{"default refuses an empty typ", nil, "", false},
		{"default refuses at+jwt with a junk prefix", nil, "text/at+jwt", false},
		{"JWT list accepts JWT", []string{"JWT"}, "JWT", true},
		{"JWT list accepts jwt in lower case", []string{"JWT"}, "jwt", true},
		{"JWT list accepts application/jwt", []string{"JWT"}, "application/jwt", true},
		{"JWT list refuses at+jwt", []string{"JWT"}, "at+jwt", false},
		{"JWT list refuses a token without typ", []string{"JWT"}, "-", false},
		{"an empty entry accepts a token without typ", []string{"JWT", ""}, "-", true},
		{"an empty entry does not accept any typ", []string{""}, "at+jwt", false},
		{"an empty list accepts nothing", []string{}, "at+jwt", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := verifier(set)
			v.Types = tc.types
			_, err := v.Verify(token(tc.typ))
			switch {
			case tc.ok && err != nil:
				t.Errorf("Verify = %v, want valid", err)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), "token type must be")):
				t.Errorf("Verify = %v, want a type error", err)
			}
		})
	}
}

func TestVerify_ExternalProfile(t *testing.T) {
	set := keystest.NewSet(t)
	k := set.Signing()
	hdr := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"JWT"}`, k.ID)
	base := fmt.Sprintf(`"iss":%q,"sub":"sb-sender!t1","aud":["uaa",%q],"exp":%d`,
		testIssuer, testAudience, now.Add(time.Hour).Unix())
	without := func(member string) string { return strings.Replace(base, member, `"x":0`, 1) }

	cases := []struct {
		name       string
		claims     string // the JSON object's members
		rolesClaim string
		reason     string // empty: valid
		client     string
		scope      []string
		roles      []string
	}{
		{name: "iss, sub, aud and exp suffice", claims: base},
		{name: "client_id is the client", claims: base + `,"client_id":"a","cid":"b","azp":"c"`, client: "a"},
		{name: "cid is the client without client_id (XSUAA)", claims: base + `,"cid":"b","azp":"c"`, client: "b"},
		{name: "azp is the client without client_id or cid (OpenID Connect)", claims: base + `,"azp":"c"`, client: "c"},
		{name: "scope as a space-separated string", claims: base + `,"scope":"a.read  a.write"`, scope: []string{"a.read", "a.write"}},
		{name: "scope as an array of strings", claims: base + `,"scope":["app!t1.Send","uaa.resource"]`, scope: []string{"app!t1.Send", "uaa.resource"}},
		{name: "scope as a number is refused", claims: base + `,"scope":7`, reason: "malformed"},
		{name: "scope array with a number is refused", claims: base + `,"scope":["a",7]`, reason: "malformed"},
		{name: "roles from the scope array", claims: base + `,"scope":["app!t1.Send","uaa.resource"]`, rolesClaim: "scope",
			scope: []string{"app!t1.Send", "uaa.resource"}, roles: []string{"app!t1.Send", "uaa.resource"}},
		{name: "roles from a space-separated string", claims: base + `,"roles":"Send Read"`, rolesClaim: "roles", roles: []string{"Send", "Read"}},
		{name: "roles from a nested claim", claims: base + `,"realm_access":{"roles":["Send"]}`, rolesClaim: "realm_access.roles", roles: []string{"Send"}},
		{name: "roles from a namespaced claim with dots", claims: base + `,"https://example.com/roles":["Send"]`, rolesClaim: "https://example.com/roles", roles: []string{"Send"}},
		{name: "no roles when the claim is absent", claims: base, rolesClaim: "roles"},
		{name: "no roles when the claim is null", claims: base + `,"roles":null`, rolesClaim: "roles"},
		{name: "no roles when the path goes through a string", claims: base + `,"realm_access":"x"`, rolesClaim: "realm_access.roles"},
		{name: "roles claim of the wrong type is refused", claims: base + `,"roles":{"Send":true}`, rolesClaim: "roles", reason: "must be a string or an array"},
		{name: "roles array with a number is refused", claims: base + `,"roles":["Send",1]`, rolesClaim: "roles", reason: "must be a string or an array"},
		{name: "roles are not read unless asked for", claims: base + `,"roles":7`},
		{name: "sub missing", claims: without(`"sub":"sb-sender!t1"`), reason: `no "sub"`},
		{name: "exp missing", claims: strings.Replace(base, `,"exp"`, `,"x"`, 1), reason: `no "exp"`},
		{name: "aud missing", claims: without(fmt.Sprintf(`"aud":["uaa",%q]`, testAudience)), reason: "audience"},
		{name: "iss foreign", claims: strings.Replace(base, testIssuer, "https://evil.example", 1), reason: "issuer"},
		{name: "expired", claims: strings.Replace(base, fmt.Sprint(now.Add(time.Hour).Unix()), fmt.Sprint(now.Add(-time.Hour).Unix()), 1), reason: "expired"},
		{name: "iat, when present, must not be in the future", claims: base + fmt.Sprintf(`,"iat":%d`, now.Add(time.Hour).Unix()), reason: "future"},
		{name: "nbf, when present, must have passed", claims: base + fmt.Sprintf(`,"nbf":%d`, now.Add(time.Hour).Unix()), reason: "not valid yet"},
		{name: "duplicate claims are refused", claims: base + `,"cid":"a","cid":"b"`, reason: "duplicate member"},
		{name: "duplicate nested claims are refused", claims: base + `,"realm_access":{"roles":["a"],"roles":["b"]}`, rolesClaim: "realm_access.roles", reason: "duplicate member"},
		{name: "deep nesting is refused", claims: base + `,"x":` + strings.Repeat("[", 20) + strings.Repeat("]", 20), reason: "nested too deeply"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := verifier(set)
			v.Types, v.External, v.RolesClaim = []string{"JWT"}, true, tc.rolesClaim
			c, err := v.Verify(signRaw(t, k, hdr, "{"+tc.claims+"}"))
			if tc.reason != "" {
				var te *Error
				if !errors.As(err, &te) || !strings.Contains(te.Reason, tc.reason) {
					t.Fatalf("Verify = %v, want a *tokens.Error mentioning %q", err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Subject != "sb-sender!t1" || c.ClientID != tc.client || !slices.Equal(c.Scope, tc.scope) || !slices.Equal(c.Roles, tc.roles) {
				t.Errorf("got sub %q client %q scope %q roles %q, want client %q scope %q roles %q",
					c.Subject, c.ClientID, c.Scope, c.Roles, tc.client, tc.scope, tc.roles)
			}
		})
	}
}

func TestVerify_LocalTokensKeepTheStrictProfile(t *testing.T) {
	set := keystest.NewSet(t)
	k := set.Signing()
	hdr := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"at+jwt"}`, k.ID)
	base := fmt.Sprintf(`"iss":%q,"sub":"oauth_client_abc","aud":%q,"iat":%d,"exp":%d,"jti":"j"`,
		testIssuer, testAudience, now.Unix(), now.Add(time.Hour).Unix())
	cases := []struct{ name, claims, reason string }{
		{"cid does not stand in for client_id", base + `,"cid":"abc"`, `no "client_id"`},
		{"azp does not stand in for client_id", base + `,"azp":"abc"`, `no "client_id"`},
		{"scope as an array is refused", base + `,"client_id":"abc","scope":["a"]`, "wrong type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := verifier(set)
			v.RolesClaim = "scope" // ignored without External
			_, err := v.Verify(signRaw(t, k, hdr, "{"+tc.claims+"}"))
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("Verify = %v, want an error mentioning %q", err, tc.reason)
			}
		})
	}

	v := verifier(set)
	v.RolesClaim = "scope"
	c, err := v.Verify(signRaw(t, k, hdr, "{"+base+`,"client_id":"abc","scope":"a b"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Roles != nil {
		t.Errorf("roles of a local token = %q, want nil: its roles come from the policy", c.Roles)
	}
}

func TestPeekIssuer(t *testing.T) {
	set := keystest.NewSet(t)
	good, err := Mint(set.Signing(), validClaims())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	with := func(claims string) string { return parts[0] + "." + b64(claims) + "." + parts[2] }
	cases := []struct {
		name, token, iss string
	}{
		{"a minted token", good, testIssuer},
		{"an unsigned claim is read all the same", with(`{"iss":"https://other.example"}`), "https://other.example"},
		{"not a compact JWS", "a.b", ""},
		{"padding", parts[0] + "." + parts[1] + "=." + parts[2], ""},
		{"claims not JSON", with(`iss`), ""},
		{"no iss", with(`{"sub":"x"}`), ""},
		{"empty iss", with(`{"iss":""}`), ""},
		{"iss a number", with(`{"iss":1}`), ""},
		{"iss twice", with(`{"iss":"https://a.example","iss":"https://b.example"}`), ""},
		{"iss twice in other cases", with(`{"iss":"https://a.example","ISS":"https://b.example"}`), ""},
		{"longer than 64 KiB", with(`{"iss":"x","pad":"` + strings.Repeat("a", 64<<10) + `"}`), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			iss, ok := PeekIssuer(tc.token)
			if iss != tc.iss || ok != (tc.iss != "") {
				t.Errorf("PeekIssuer = %q, %v; want %q, %v", iss, ok, tc.iss, tc.iss != "")
			}
		})
	}
}

func FuzzPeekIssuer(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2d3LmV4YW1wbGUifQ.AA")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		iss, ok := PeekIssuer(token)
		if ok != (iss != "") || ok && len(token) > maxPeekLength {
			t.Errorf("PeekIssuer(%q) = %q, %v", token, iss, ok)
		}
	})
}

func TestVerify_ExternalKeepsTheOtherClaims(t *testing.T) {
	set := keystest.NewSet(t)
	k := set.Signing()
	hdr := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"JWT"}`, k.ID)
	base := fmt.Sprintf(`"iss":%q,"sub":"s","aud":%q,"exp":%d,"scope":"a b"`, testIssuer, testAudience, now.Add(time.Hour).Unix())
	v := verifier(set)
	v.External, v.Types = true, []string{"JWT"}

	c, err := v.Verify(signRaw(t, k, hdr, "{"+base+`,"tenant":"acme","zone":{"id":7}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Extra["tenant"] != "acme" || c.Extra["zone"].(map[string]any)["id"] != float64(7) || len(c.Extra) != 2 {
		t.Errorf("Extra = %v; want tenant and zone only", c.Extra)
	}
	if c, err = v.Verify(signRaw(t, k, hdr, "{"+base+"}")); err != nil || c.Extra != nil {
		t.Errorf("Extra of a token with only registered claims = %v, %v; want nil", c.Extra, err)
	}
	v.External, v.Types = false, nil
	own := signRaw(t, k, fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"at+jwt"}`, k.ID),
		fmt.Sprintf(`{%s,"client_id":"c","iat":%d,"jti":"j","tenant":"acme"}`, base, now.Unix()))
	if c, err = v.Verify(own); err != nil || c.Extra != nil {
		t.Errorf("Extra of our own profile = %v, %v; want nil", c.Extra, err)
	}
}
