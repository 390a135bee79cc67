package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
)

// fuzzKey is an ES256 key for the fuzz targets only. It is fixed so that
// the committed seed corpus (testdata/fuzz) can hold tokens it signed,
// which stay valid because the verifier's clock is fixed too.
const fuzzKey = `{"alg":"ES256","kty":"EC","crv":"P-256",` +
	`"x":"jsx8YqWxz0sB17O6Pyl_lPWAkLIoCfNE2mskXRS4S4Q",` +
	`"y":"1HDsphym5WTnYrL1AX7Ym7yFl2iBr117eFBZfXYsWSM",` +
	`"d":"tFPteftlwYE9Vw2G54OMrWVSTqaLqwv_3G2pExdbnVY"}`

// fuzzSet loads fuzzKey the way the gateway loads its keys, from storage.
func fuzzSet(tb testing.TB) *keys.Set {
	tb.Helper()
	st := keystest.NewStorage()
	if err := st.Store(context.Background(), keys.StorageKey, []byte(`{"keys":[`+fuzzKey+`]}`)); err != nil {
		tb.Fatal(err)
	}
	set, err := keys.LoadOrCreate(context.Background(), st)
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

// FuzzVerify feeds Verify arbitrary strings. It must never panic, must
// fail with an *Error that does not repeat the token (the malformed-token
// one for whatever splitCompact refuses), and may accept a
// token only if crypto/ecdsa (not jwx, which Verify uses) finds the key's
// signature on it and the claims hold up.
func FuzzVerify(f *testing.F) {
	set := fuzzSet(f)
	v := verifier(set)
	pub := publicKey(f, set.Signing())
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if _, _, _, ok := splitCompact(token); !ok && (err == nil || err.Error() != errNotCompact.Reason) {
			t.Fatalf("a token splitCompact refuses was refused with %v, want %q: %q", err, errNotCompact.Reason, token)
		}
		if err != nil {
			wantSafeError(t, err, token)
			return
		}
		if !signedBy(token, pub) {
			t.Fatalf("Verify accepted a token the key did not sign: %q", token)
		}
		wantValidClaims(t, v, c)
	})
}

// FuzzVerifySigned signs arbitrary header and payload text with the key,
// so that the fuzzer gets past the signature into the header and claim
// checks. An accepted token must name the key and algorithm, be an
// access token, carry no critical extension, and have valid claims as
// encoding/json reads them too: the two parsers must not disagree.
func FuzzVerifySigned(f *testing.F) {
	set := fuzzSet(f)
	k := set.Signing()
	v := verifier(set)
	f.Fuzz(func(t *testing.T, header, payload string) {
		token := signRaw(t, k, header, payload)
		c, err := v.Verify(token)
		if err != nil {
			wantSafeError(t, err, token)
			return
		}
		var h, p map[string]any
		if json.Unmarshal([]byte(header), &h) != nil || json.Unmarshal([]byte(payload), &p) != nil {
			t.Fatalf("Verify accepted JSON that encoding/json refuses:\nheader %q\npayload %q", header, payload)
		}
		typ, _ := memberOf(t, h, "typ").(string)
		if memberOf(t, h, "alg") != "ES256" || memberOf(t, h, "kid") != k.ID || memberOf(t, h, "crit") != nil ||
			!(strings.EqualFold(typ, Type) || strings.EqualFold(typ, "application/"+Type)) {
			t.Fatalf("Verify accepted header %q", header)
		}
		for name, got := range map[string]string{"iss": c.Issuer, "sub": c.Subject, "client_id": c.ClientID, "jti": c.ID} {
			if want := memberOf(t, p, name); want != got {
				t.Fatalf("claim %s: Verify read %q, encoding/json reads %#v, in payload %q", name, got, want, payload)
			}
		}
		wantValidClaims(t, v, c)
	})
}

// FuzzMintVerify mints tokens with arbitrary claim values: every token
// Mint makes with the required claims present verifies and gives back
// exactly what was minted; without them, Verify says which is missing.
func FuzzMintVerify(f *testing.F) {
	set := fuzzSet(f)
	v := verifier(set)
	f.Add("oauth_client_abc", "abc", "jti-1", "ESBMessaging.send Orders.send", "", int64(3600))
	f.Add("", "abc", "jti-1", "", "https://other.example", int64(1))
	f.Add("s\u2028<&>\"\\", "c\x00", "\U0001F600", "  a\tb\n", "https://gw.example", int64(-5))
	f.Fuzz(func(t *testing.T, sub, clientID, jti, scope, aud string, lifetime int64) {
		for _, s := range []string{sub, clientID, jti, scope, aud} {
			if !utf8.ValidString(s) {
				t.Skip("JSON replaces invalid UTF-8; such claims cannot round-trip")
			}
		}
		const maxLifetime = 50 * 365 * 24 * 3600 // seconds; keeps exp before year 9999
		want := &Claims{
			Issuer:   testIssuer,
			Subject:  sub,
			ClientID: clientID,
			Audience: []string{testAudience},
			IssuedAt: now,
			Expiry:   now.Add(time.Duration(1+(lifetime%maxLifetime+maxLifetime)%maxLifetime) * time.Second),
			ID:       jti,
			Scope:    strings.Fields(scope),
		}
		if aud != "" {
			want.Audience = append(want.Audience, aud)
		}
		tok, err := Mint(set.Signing(), want)
		if errors.Is(err, ErrTooLong) {
			// Mint refuses a token a guard would refuse; JSON escapes a
			// character to at most 6 bytes, so short claims never are.
			if n := len(sub) + len(clientID) + len(jti) + len(scope) + len(aud); n < 800 {
				t.Fatalf("Mint refused %d bytes of claims as too long: %v", n, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		got, err := v.Verify(tok)
		missing := map[string]bool{"sub": sub == "", "client_id": clientID == "", "jti": jti == ""}
		if missing["sub"] || missing["client_id"] || missing["jti"] {
			if err == nil || !strings.Contains(err.Error(), "has no") {
				t.Fatalf("Verify = %v, want a missing-claim error for %v", err, missing)
			}
			return
		}
		if err != nil {
			t.Fatalf("Verify refused a minted token: %v", err)
		}
		if got.Issuer != want.Issuer || got.Subject != want.Subject || got.ClientID != want.ClientID || got.ID != want.ID ||
			!got.IssuedAt.Equal(want.IssuedAt) || !got.Expiry.Equal(want.Expiry) || !got.NotBefore.IsZero() ||
			!slices.Equal(got.Audience, want.Audience) || !slices.Equal(got.Scope, want.Scope) {
			t.Fatalf("claims changed in the round trip:\n got %+v\nwant %+v", got, want)
		}
	})
}

// wantSafeError asserts that err is an *Error whose text, which goes back
// to the client, does not repeat the token.
func wantSafeError(t *testing.T, err error, token string) {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) {
		t.Fatalf("Verify = %T %v, want a *tokens.Error", err, err)
	}
	if len(token) >= 16 && strings.Contains(te.Reason, token) {
		t.Fatalf("the error repeats the token: %q", te.Reason)
	}
}

// wantValidClaims asserts every claim check on claims Verify returned.
func wantValidClaims(t *testing.T, v *Verifier, c *Claims) {
	t.Helper()
	at := v.Now()
	switch {
	case c.Issuer != v.Issuer:
		t.Fatalf("accepted issuer %q", c.Issuer)
	case !slices.Contains(c.Audience, v.Audience):
		t.Fatalf("accepted audience %q", c.Audience)
	case c.Subject == "" || c.ClientID == "" || c.ID == "":
		t.Fatalf("accepted claims without sub, client_id or jti: %+v", c)
	case !at.Before(c.Expiry.Add(v.Leeway)):
		t.Fatalf("accepted an expired token: exp %v", c.Expiry)
	case c.IssuedAt.After(at.Add(v.Leeway)):
		t.Fatalf("accepted a token issued in the future: iat %v", c.IssuedAt)
	case c.NotBefore.After(at.Add(v.Leeway)):
		t.Fatalf("accepted a token not valid yet: nbf %v", c.NotBefore)
	}
}

// memberOf returns the member of a JSON object whose name matches name the
// way encoding/json matches struct fields (case-insensitively). Two
// such members are a duplicate that Verify must have refused.
func memberOf(t *testing.T, obj map[string]any, name string) any {
	t.Helper()
	var found []string
	for n := range obj {
		if strings.EqualFold(n, name) {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 0:
		return nil
	case 1:
		return obj[found[0]]
	}
	t.Fatalf("Verify accepted duplicate members %q", found)
	return nil
}

func publicKey(tb testing.TB, k *keys.Key) *ecdsa.PublicKey {
	tb.Helper()
	var pub ecdsa.PublicKey
	if err := jwk.Export(k.Public, &pub); err != nil {
		tb.Fatal(err)
	}
	return &pub
}

// signedBy reports whether token is a compact JWS with a valid ES256
// signature by pub (RFC 7518 §3.4: r||s over header.payload).
func signedBy(token string, pub *ecdsa.PublicKey) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return false
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	return ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}
