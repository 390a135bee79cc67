package tokens

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
)

const (
	testIssuer   = "https://gw.example"
	testAudience = "https://gw.example"
)

var now = time.Unix(1_800_000_000, 0)

func validClaims() *Claims {
	return &Claims{
		Issuer:   testIssuer,
		Subject:  "oauth_client_abc",
		ClientID: "abc",
		Audience: []string{testAudience},
		IssuedAt: now.Add(-time.Minute),
		Expiry:   now.Add(time.Hour),
		ID:       "jti-1",
		Scope:    []string{"ESBMessaging.send", "Orders.send"},
	}
}

func verifier(set *keys.Set) *Verifier {
	return &Verifier{Keys: set, Issuer: testIssuer, Audience: testAudience, Leeway: 30 * time.Second, MaxLength: 8192,
		Now: func() time.Time { return now }}
}

// signRaw signs arbitrary header and payload JSON with k, so tests can
// build tokens that Mint would never produce.
func signRaw(t *testing.T, k *keys.Key, header, payload string) string {
	t.Helper()
	var priv ecdsa.PrivateKey
	if err := jwk.Export(k.Private, &priv); err != nil {
		t.Fatal(err)
	}
	input := b64(header) + "." + b64(payload)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, &priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestMintThenVerify_RoundTripsEveryClaim(t *testing.T) {
	set := keystest.NewSet(t)
	want := validClaims()
	tok, err := Mint(set.Signing(), want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := verifier(set).Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Issuer != want.Issuer || got.Subject != want.Subject || got.ClientID != want.ClientID ||
		got.ID != want.ID || !got.IssuedAt.Equal(want.IssuedAt) || !got.Expiry.Equal(want.Expiry) ||
		strings.Join(got.Audience, ",") != testAudience || strings.Join(got.Scope, " ") != "ESBMessaging.send Orders.send" {
		t.Errorf("claims differ:\n got %+v\nwant %+v", got, want)
	}

	var h map[string]any
	seg, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err := json.Unmarshal(seg, &h); err != nil {
		t.Fatal(err)
	}
	if h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] != set.Signing().ID {
		t.Errorf("header = %v, want typ at+jwt, alg ES256, kid %s", h, set.Signing().ID)
	}
}

func TestMintThenVerify_KeepsTheConfirmation(t *testing.T) {
	set := keystest.NewSet(t)
	for _, cnf := range []Confirmation{{}, {X5tS256: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}, {JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}, {X5tS256: "a", JKT: "b"}} {
		c := validClaims()
		c.Confirmation = cnf
		tok, err := Mint(set.Signing(), c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := verifier(set).Verify(tok)
		if err != nil {
			t.Fatalf("%+v: Verify: %v", cnf, err)
		}
		if got.Confirmation != cnf || got.Confirmation.Bound() != (cnf != Confirmation{}) {
			t.Errorf("Confirmation = %+v, want %+v", got.Confirmation, cnf)
		}
		seg, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		if has := strings.Contains(string(seg), `"cnf"`); has != cnf.Bound() {
			t.Errorf("%+v: payload %s: cnf present = %v", cnf, seg, has)
		}
	}
}

func TestVerify_RefusesMalformedAndForgedTokens(t *testing.T) {
	set := keystest.NewSet(t)
	k := set.Signing()
	good, err := Mint(k, validClaims())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	hdr := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"at+jwt"}`, k.ID)
	payload := func(mod string) string {
		base := fmt.Sprintf(`"iss":%q,"sub":"oauth_client_abc","client_id":"abc","aud":%q,"iat":%d,"exp":%d,"jti":"j"`,
			testIssuer, testAudience, now.Add(-time.Minute).Unix(), now.Add(time.Hour).Unix())
		return "{" + base + mod + "}"
	}
	other := keystest.NewSet(t).Signing()

	cases := []struct {
		name, token, reason string
	}{
		{"empty", "", "not a compact JWS"},
		{"two segments", parts[0] + "." + parts[1], "not a compact JWS"},
		{"four segments", good + ".x", "not a compact JWS"},
		{"five segments (JWE)", "a.b.c.d.e", "not a compact JWS"},
		{"trailing dot", good + ".", "not a compact JWS"},
		{"signature stripped", parts[0] + "." + parts[1] + ".", "not a compact JWS"},
		{"padding", parts[0] + "=." + parts[1] + "." + parts[2], "not a compact JWS"},
		{"whitespace", parts[0] + ". " + parts[1] + "." + parts[2], "not a compact JWS"},
		{"standard base64 characters", strings.Replace(good, "-", "+", 1) + "+/", "not a compact JWS"},
		{"JSON serialization", `{"payload":"x","signatures":[]}`, "not a compact JWS"},
		{"too long", good + strings.Repeat("A", 8192), "longer than 8192"},
		{"header not JSON", b64("nope") + "." + parts[1] + "." + parts[2], "header is malformed"},
		{"alg none", b64(`{"alg":"none","kid":"`+k.ID+`","typ":"at+jwt"}`) + "." + parts[1] + ".AA", "algorithm"},
		{"alg NONE upper case", b64(`{"alg":"NONE","kid":"`+k.ID+`","typ":"at+jwt"}`) + "." + parts[1] + ".AA", "algorithm"},
		{"alg HS256 with our kid", b64(`{"alg":"HS256","kid":"`+k.ID+`","typ":"at+jwt"}`) + "." + parts[1] + "." + parts[2], "algorithm"},
		{"unknown kid", signRaw(t, k, `{"alg":"ES256","kid":"nope","typ":"at+jwt"}`, payload("")), "unknown key"},
		{"kid with path traversal", signRaw(t, k, `{"alg":"ES256","kid":"../../etc/passwd","typ":"at+jwt"}`, payload("")), "unknown key"},
		{"no kid", signRaw(t, k, `{"alg":"ES256","typ":"at+jwt"}`, payload("")), "unknown key"},
		{"typ JWT", signRaw(t, k, `{"alg":"ES256","kid":"`+k.ID+`","typ":"JWT"}`, payload("")), "type must be"},
		{"typ missing", signRaw(t, k, `{"alg":"ES256","kid":"`+k.ID+`"}`, payload("")), "type must be"},
		{"crit header", signRaw(t, k, `{"alg":"ES256","kid":"`+k.ID+`","typ":"at+jwt","crit":["exp"],"exp":1}`, payload("")), "critical"},
		{"b64 header", signRaw(t, k, `{"alg":"ES256","kid":"`+k.ID+`","typ":"at+jwt","b64":false}`, payload("")), "critical"},
		{"duplicate header member", signRaw(t, k, `{"alg":"ES256","kid":"`+k.ID+`","typ":"JWT","typ":"at+jwt"}`, payload("")), "duplicate member"},
		{"signed by another key with our kid", signRaw(t, other, hdr, payload("")), "signature is invalid"},
		{"payload tampered", parts[0] + "." + b64(payload(`,"scope":"Admin"`)) + "." + parts[2], "signature is invalid"},
		{"duplicate claim", signRaw(t, k, hdr, payload(`,"sub":"oauth_client_admin"`)), "duplicate member"},
		{"duplicate claim in another case", signRaw(t, k, hdr, payload(`,"SUB":"oauth_client_admin"`)), "names are case-sensitive"},
		{"duplicate claim spelt with an escape", signRaw(t, k, hdr, payload(`,"s\u0075b":"oauth_client_admin"`)), "duplicate member"},
		{"duplicate member in a nested object", signRaw(t, k, hdr, payload(`,"x":{"a":1,"b":[{"c":1}],"A":2}`)), "duplicate member"},
		{"data after the object", signRaw(t, k, hdr, payload("")+` {}`), "not JSON"},
		{"claim name that is not UTF-8", signRaw(t, k, hdr, payload(`,"r\xff":1,"r\ufffd":2`)), "not JSON"},
		{"duplicate claim by Unicode case folding", signRaw(t, k, hdr, payload(`,"ſub":"oauth_client_admin"`)), "names are case-sensitive"},
		{"claim spelt in another case", signRaw(t, k, hdr, strings.Replace(payload(""), `"sub"`, `"Sub"`, 1)), "names are case-sensitive"},
		{"header member spelt with the Kelvin sign", signRaw(t, k, `{"alg":"ES256","Kid":"`+k.ID+`","typ":"at+jwt"}`, payload("")), "names are case-sensitive"},
		{"exp as string", signRaw(t, k, hdr, `{"exp":"9999999999"}`), "must be JSON numbers"},
		{"exp negative", signRaw(t, k, hdr, `{"exp":-1}`), "out of range"},
		{"exp past year 9999", signRaw(t, k, hdr, `{"exp":1e300}`), "out of range"},
		{"payload not an object", signRaw(t, k, hdr, `["iss"]`), "not a JSON object"},
		{"nested JWT payload", signRaw(t, k, hdr, `"`+good+`"`), "not a JSON object"},
		{"deep nesting", signRaw(t, k, hdr, payload(`,"x":`+strings.Repeat("[", 20)+strings.Repeat("]", 20))), "nested too deeply"},
		{"sub as number", signRaw(t, k, hdr, `{"sub":7}`), "wrong type"},
		{"issuer foreign", signRaw(t, k, hdr, strings.Replace(payload(""), testIssuer, "https://evil.example", 1)), "issuer"},
		{"audience foreign", signRaw(t, k, hdr, strings.Replace(payload(""), `"aud":"`+testAudience+`"`, `"aud":["https://other"]`, 1)), "audience"},
		{"audience missing", signRaw(t, k, hdr, strings.Replace(payload(""), `"aud":"`+testAudience+`",`, "", 1)), "audience"},
		{"sub missing", signRaw(t, k, hdr, strings.Replace(payload(""), `"sub":"oauth_client_abc",`, "", 1)), `no "sub"`},
		{"client_id missing", signRaw(t, k, hdr, strings.Replace(payload(""), `"client_id":"abc",`, "", 1)), `no "client_id"`},
		{"jti missing", signRaw(t, k, hdr, strings.Replace(payload(""), `,"jti":"j"`, "", 1)), `no "jti"`},
		{"exp missing", signRaw(t, k, hdr, fmt.Sprintf(`{"iss":%q,"sub":"s","client_id":"c","aud":%q,"iat":%d,"jti":"j"}`, testIssuer, testAudience, now.Unix())), `no "exp"`},
		{"cnf not an object", signRaw(t, k, hdr, payload(`,"cnf":"abc"`)), "wrong type"},
		{"cnf null", signRaw(t, k, hdr, payload(`,"cnf":null`)), "wrong type"},
		{"cnf empty", signRaw(t, k, hdr, payload(`,"cnf":{}`)), "names no key"},
		{"cnf by a whole JWK", signRaw(t, k, hdr, payload(`,"cnf":{"jwk":{"kty":"EC"}}`)), "does not check"},
		{"cnf with another method beside jkt", signRaw(t, k, hdr, payload(`,"cnf":{"jkt":"abc","kid":"x"}`)), "does not check"},
		{"cnf jkt empty", signRaw(t, k, hdr, payload(`,"cnf":{"jkt":""}`)), "not a non-empty string"},
		{"cnf x5t#S256 a number", signRaw(t, k, hdr, payload(`,"cnf":{"x5t#S256":7}`)), "not a non-empty string"},
		{"iat missing", signRaw(t, k, hdr, fmt.Sprintf(`{"iss":%q,"sub":"s","client_id":"c","aud":%q,"exp":%d,"jti":"j"}`, testIssuer, testAudience, now.Add(time.Hour).Unix())), `no "iat"`},
	}
	v := verifier(set)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.token)
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("Verify = %v, want a *tokens.Error", err)
			}
			if !strings.Contains(te.Reason, tc.reason) {
				t.Errorf("reason %q does not mention %q", te.Reason, tc.reason)
			}
		})
	}
}

// Verify finds a token's segments by their dots and leaves the alphabet
// to the base64url decoders; a character outside it must still be
// refused as a malformed token, before anything else is said of it, and
// that refusal must not be remembered as final.
func TestVerify_ACharacterOutsideBase64urlIsAMalformedTokenWhereverItIs(t *testing.T) {
	set := keystest.NewSet(t)
	good, err := Mint(set.Signing(), validClaims())
	if err != nil {
		t.Fatal(err)
	}
	unknownKid, err := Mint(keystest.NewSet(t).Signing(), validClaims())
	if err != nil {
		t.Fatal(err)
	}
	v := verifier(set)
	v.Cache = NewCache(0)
	for _, tok := range []string{good, unknownKid} {
		dot1, dot2 := strings.IndexByte(tok, '.'), strings.LastIndexByte(tok, '.')
		for _, at := range []int{1, dot1 - 1, dot1 + 2, dot2 - 1, dot2 + 2, len(tok) - 1} {
			for _, c := range []string{" ", "\n", "\r", "=", "+", "/", "*", "\x00", "é"} {
				for _, bad := range []string{tok[:at] + c + tok[at:], tok[:at] + c + tok[at+1:]} {
					_, err := v.Verify(bad)
					if err == nil || err.Error() != errNotCompact.Reason {
						t.Errorf("%q at %d: %v, want %q", c, at, err, errNotCompact.Reason)
					}
				}
			}
		}
	}
	if n := v.Cache.refused.Len(); n != 0 {
		t.Errorf("%d malformed tokens remembered as finally refused", n)
	}
}

func TestVerify_TimeChecksHonourLeeway(t *testing.T) {
	set := keystest.NewSet(t)
	v := verifier(set) // leeway 30s
	cases := []struct {
		name   string
		mod    func(c *Claims)
		reason string // empty: valid
	}{
		{"expired beyond leeway", func(c *Claims) { c.Expiry = now.Add(-31 * time.Second) }, "expired"},
		{"expired within leeway", func(c *Claims) { c.Expiry = now.Add(-29 * time.Second) }, ""},
		{"issued in the future beyond leeway", func(c *Claims) { c.IssuedAt = now.Add(31 * time.Second) }, "future"},
		{"issued in the future within leeway", func(c *Claims) { c.IssuedAt = now.Add(29 * time.Second) }, ""},
		{"not valid yet", func(c *Claims) { c.NotBefore = now.Add(time.Minute) }, "not valid yet"},
		{"nbf within leeway", func(c *Claims) { c.NotBefore = now.Add(10 * time.Second) }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validClaims()
			tc.mod(c)
			tok, err := Mint(set.Signing(), c)
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(tok)
			switch {
			case tc.reason == "" && err != nil:
				t.Errorf("Verify = %v, want valid", err)
			case tc.reason != "" && (err == nil || !strings.Contains(err.Error(), tc.reason)):
				t.Errorf("Verify = %v, want an error mentioning %q", err, tc.reason)
			}
		})
	}
}

func TestVerify_AcceptsFractionalDatesAndAudienceArrays(t *testing.T) {
	set := keystest.NewSet(t)
	k := set.Signing()
	hdr := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"application/at+jwt"}`, k.ID)
	payload := fmt.Sprintf(`{"iss":%q,"sub":"s","client_id":"c","aud":["x",%q],"iat":%d.5,"exp":%d.25,"jti":"j","scope":""}`,
		testIssuer, testAudience, now.Unix()-60, now.Unix()+60)
	c, err := verifier(set).Verify(signRaw(t, k, hdr, payload))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.Expiry.UnixMilli() != (now.Unix()+60)*1000+250 {
		t.Errorf("exp = %v, want the fraction kept", c.Expiry)
	}
	if len(c.Scope) != 0 {
		t.Errorf("scope = %q, want none", c.Scope)
	}
}

// BenchmarkCheckObject_ManyMembers watches the strict JSON check on a
// token of many members: every refusal before the signature check is
// paid again by each junk token, so its cost must grow linearly (with
// quadratic name checks this took ~0.5 s per call).
func BenchmarkCheckObject_ManyMembers(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"iss":"x"`)
	for i := range 4000 {
		fmt.Fprintf(&sb, `,"m%d":0`, i)
	}
	sb.WriteString("}")
	data := []byte(sb.String())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := checkObject(data, nil); err != nil {
			b.Fatal(err)
		}
	}
}
