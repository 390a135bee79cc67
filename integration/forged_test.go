package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
)

// Forged and broken tokens against the running gateway. Every case but
// the controls changes one thing about a token that is otherwise valid,
// and most are signed with the gateway's own private key: a claim check
// is only tested by a token whose signature is right. Each gets the
// status the README documents, and none reaches the backend:
//
//	400 invalid_request     the request is malformed (RFC 6750 §3.1):
//	                        empty or over-long token, two Authorization
//	                        headers, a token in the query string
//	401 invalid_token       the token fails a check
//	403 insufficient_scope  the token is genuine but grants nothing here
//	431                     the headers exceed Caddy's limit (16 KiB by
//	                        default): refused before any handler runs
func TestForged_TokensAreRefusedWithTheDocumentedStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	genuine := e.token(t, e.A)
	g := parseJWS(t, genuine)
	f := newForger(t, e)
	if g.header["kid"] != f.kid {
		t.Fatalf("the key read from storage is %q, tokens are signed by %v", f.kid, g.header["kid"])
	}

	// Another issuer: its own key, published at its own jku and x5u. The
	// gateway must never fetch them; the server counts what it serves.
	other := newAttacker(t)
	var fetched atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"keys":[%s]}`, other.jwk)
	}))
	t.Cleanup(srv.Close)
	otherClaims := f.claims("iss", `"`+srv.URL+`"`)

	now := time.Now().Unix()
	bearer := func(tok string) []string { return []string{"Bearer " + tok} }

	type tc struct {
		name          string
		authorization []string
		status        int
	}
	cases := []tc{
		// Controls: what the forgeries below are variations of.
		{"control: token minted with the gateway's key", bearer(f.sign(f.header(), f.claims())), http.StatusOK},
		{"control: token from the token endpoint", bearer(genuine), http.StatusOK},
		{"bearer in lower case", []string{"bearer " + genuine}, http.StatusOK},
		{"BEARER in upper case", []string{"BEARER " + genuine}, http.StatusOK},
		{"jku, x5u, jwk, x5c pointing elsewhere are ignored", bearer(f.sign(f.header(
			"jku", `"`+srv.URL+`/jwks"`, "x5u", `"`+srv.URL+`/cert"`, "jwk", other.jwk, "x5c", `["`+other.cert+`"]`), f.claims())), http.StatusOK},
		{"exp fractional (RFC 7519 NumericDate)", bearer(f.sign(f.header(), f.claims("exp", fmt.Sprintf("%d.5", now+3600)))), http.StatusOK},

		// Algorithm.
		{"alg none, signature empty", bearer(b64([]byte(f.header("alg", `"none"`))) + "." + g.rawPayload + "."), http.StatusUnauthorized},
		{"HS256 keyed with the public key as PEM", bearer(f.hs256(f.publicPEM)), http.StatusUnauthorized},
		{"HS256 keyed with the public key as JWK bytes", bearer(f.hs256(f.publicJWK)), http.StatusUnauthorized},

		// Key selection.
		{"unknown kid", bearer(f.sign(f.header("kid", `"no-such-key"`), f.claims())), http.StatusUnauthorized},
		{"no kid", bearer(f.sign(f.header("kid", ""), f.claims())), http.StatusUnauthorized},
		{"kid with path traversal", bearer(f.sign(f.header("kid", `"../../../../etc/passwd"`), f.claims())), http.StatusUnauthorized},
		{"kid naming the key file", bearer(f.sign(f.header("kid", `"../oauthgate/signing_keys.json"`), f.claims())), http.StatusUnauthorized},
		{"kid with SQL injection", bearer(f.sign(f.header("kid", `"' OR '1'='1"`), f.claims())), http.StatusUnauthorized},
		{"kid with shell injection", bearer(f.sign(f.header("kid", `"$(touch /tmp/pwned)"`), f.claims())), http.StatusUnauthorized},
		{"kid with control characters", bearer(f.sign(f.header("kid", `"\u0000\r\nX-Injected: 1"`), f.claims())), http.StatusUnauthorized},
		{"another issuer's key under the gateway's kid", bearer(other.sign(f.header(), otherClaims)), http.StatusUnauthorized},
		{"another key under the gateway's kid, the gateway's claims", bearer(other.sign(f.header(), f.claims())), http.StatusUnauthorized},
		{"another key, embedded as jwk", bearer(other.sign(f.header("kid", `"`+other.kid+`"`, "jwk", other.jwk), f.claims())), http.StatusUnauthorized},
		{"another key, published at jku", bearer(other.sign(f.header("kid", `"`+other.kid+`"`, "jku", `"`+srv.URL+`/jwks"`), f.claims())), http.StatusUnauthorized},
		{"another key, published at x5u", bearer(other.sign(f.header("kid", `"`+other.kid+`"`, "x5u", `"`+srv.URL+`/cert"`), f.claims())), http.StatusUnauthorized},
		{"another key, certificate in x5c", bearer(other.sign(f.header("kid", `"`+other.kid+`"`, "x5c", `["`+other.cert+`"]`), f.claims())), http.StatusUnauthorized},

		// Header.
		{"unknown crit header", bearer(f.sign(f.header("crit", `["urn:example:x"]`, "urn:example:x", "1"), f.claims())), http.StatusUnauthorized},
		{"typ JWT", bearer(f.sign(f.header("typ", `"JWT"`), f.claims())), http.StatusUnauthorized},
		{"typ missing", bearer(f.sign(f.header("typ", ""), f.claims())), http.StatusUnauthorized},
		{"duplicate header member", bearer(f.sign(strings.Replace(f.header(), `{`, `{"kid":"no-such-key",`, 1), f.claims())), http.StatusUnauthorized},

		// Dates (leeway 1s).
		{"exp past", bearer(f.sign(f.header(), f.claims("exp", fmt.Sprint(now-60)))), http.StatusUnauthorized},
		{"nbf in the future", bearer(f.sign(f.header(), f.claims("nbf", fmt.Sprint(now+3600)))), http.StatusUnauthorized},
		{"iat in the future", bearer(f.sign(f.header(), f.claims("iat", fmt.Sprint(now+3600)))), http.StatusUnauthorized},
		{"exp huge", bearer(f.sign(f.header(), f.claims("exp", "1e300"))), http.StatusUnauthorized},
		{"exp negative", bearer(f.sign(f.header(), f.claims("exp", "-1"))), http.StatusUnauthorized},
		{"exp a string", bearer(f.sign(f.header(), f.claims("exp", fmt.Sprintf(`"%d"`, now+3600)))), http.StatusUnauthorized},
		{"exp missing", bearer(f.sign(f.header(), f.claims("exp", ""))), http.StatusUnauthorized},

		// Claims.
		{"aud missing", bearer(f.sign(f.header(), f.claims("aud", ""))), http.StatusUnauthorized},
		{"aud foreign", bearer(f.sign(f.header(), f.claims("aud", `["https://other.example"]`))), http.StatusUnauthorized},
		{"iss missing", bearer(f.sign(f.header(), f.claims("iss", ""))), http.StatusUnauthorized},
		{"iss foreign", bearer(f.sign(f.header(), otherClaims)), http.StatusUnauthorized},
		{"sub missing", bearer(f.sign(f.header(), f.claims("sub", ""))), http.StatusUnauthorized},
		// Only the gateway can sign this one, so it is genuine; the policy
		// grants its subject nothing.
		{"sub foreign", bearer(f.sign(f.header(), f.claims("sub", `"oauth_client_intruder"`))), http.StatusForbidden},
		{"duplicate claim", bearer(f.sign(f.header(), strings.Replace(f.claims(), `{`, `{"sub":"oauth_client_intruder",`, 1))), http.StatusUnauthorized},
		{"duplicate claim in another case", bearer(f.sign(f.header(), strings.Replace(f.claims(), `{`, `{"SCOPE":"Orders.send",`, 1))), http.StatusUnauthorized},
		{"nested JWT as the payload", bearer(f.sign(f.header("cty", `"JWT"`), `"`+genuine+`"`)), http.StatusUnauthorized},

		// Shape.
		{"JWE compact serialization", bearer(b64([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM","kid":"`+f.kid+`"}`)) + ".a.b.c.d"), http.StatusUnauthorized},
		{"two segments", bearer(g.rawHeader + "." + g.rawPayload), http.StatusUnauthorized},
		{"four segments", bearer(genuine + ".e30"), http.StatusUnauthorized},
		{"five segments", bearer(genuine + ".e30.e30"), http.StatusUnauthorized},
		{"signature stripped", bearer(g.rawHeader + "." + g.rawPayload + "."), http.StatusUnauthorized},
		{"trailing dot", bearer(genuine + "."), http.StatusUnauthorized},
		{"standard base64 characters", bearer(strings.NewReplacer("-", "+", "_", "/").Replace(genuine) + "+/"), http.StatusUnauthorized},
		{"non-base64url character", bearer(genuine[:20] + "*" + genuine[21:]), http.StatusUnauthorized},
		{"padding", bearer(g.rawHeader + "=." + g.rawPayload + "." + g.rawSignature), http.StatusUnauthorized},
		{"whitespace inside", bearer(g.rawHeader + ". " + g.rawPayload + "." + g.rawSignature), http.StatusUnauthorized},

		// Malformed requests.
		{"empty token", []string{"Bearer "}, http.StatusBadRequest},
		{"token one byte over the guard's 8 KiB limit", bearer(genuine + strings.Repeat("A", 8<<10+1-len(genuine))), http.StatusBadRequest},
		{"1 MiB token", bearer(genuine + strings.Repeat("A", 1<<20-len(genuine))), http.StatusRequestHeaderFieldsTooLarge},
		{"100 KiB JOSE header", bearer(f.sign(f.header("x", `"`+strings.Repeat("A", 100<<10)+`"`), f.claims())), http.StatusRequestHeaderFieldsTooLarge},
		{"two Authorization headers", []string{"Bearer " + genuine, "Bearer " + genuine}, http.StatusBadRequest},
	}
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		// The signature is a real one by the gateway's key: only the
		// header's word is wrong.
		cases = append(cases, tc{"alg " + alg + " with a valid signature", bearer(f.sign(f.header("alg", `"`+alg+`"`), f.claims())), http.StatusUnauthorized})
	}

	check := func(t *testing.T, req *http.Request, status int) {
		t.Helper()
		r := send(t, e.http, req)
		// The backend first: it consumes this case's log lines even when
		// a status check below stops the subtest.
		if status == http.StatusOK {
			e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging))
			r.wantStatus(t, http.StatusOK)
			return
		}
		e.backend.wantRequests(t)
		if status == http.StatusRequestHeaderFieldsTooLarge {
			r.wantStatus(t, status)
			return
		}
		r.wantBearerChallenge(t, status, map[int]string{
			http.StatusBadRequest:   "invalid_request",
			http.StatusUnauthorized: "invalid_token",
			http.StatusForbidden:    "insufficient_scope",
		}[status])
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := newRequest(t, http.MethodGet, e.base+"/http/flow", "")
			req.Header["Authorization"] = c.authorization
			check(t, req, c.status)
		})
	}
	t.Run("token in the query string", func(t *testing.T) {
		check(t, newRequest(t, http.MethodGet, e.base+"/http/flow?access_token="+genuine, ""), http.StatusBadRequest)
	})
	if n := fetched.Load(); n != 0 {
		t.Errorf("the gateway fetched %d times from a URL a token header named", n)
	}
}

// forger makes tokens as the gateway would, with its private key read
// from the environment's Caddy storage.
type forger struct {
	t                    *testing.T
	e                    *env
	key                  *ecdsa.PrivateKey
	kid                  string
	publicPEM, publicJWK []byte // the public key as an HS256 forger would use it
}

func newForger(t *testing.T, e *env) *forger {
	t.Helper()
	set, err := keys.LoadOrCreate(t.Context(), readOnlyStorage(filepath.Join(e.dir, "storage")))
	if err != nil {
		t.Fatalf("reading the gateway's keys from its storage: %v", err)
	}
	k := set.Signing()
	f := &forger{t: t, e: e, kid: k.ID, key: new(ecdsa.PrivateKey)}
	if err := jwk.Export(k.Private, f.key); err != nil {
		t.Fatalf("the gateway's key is not ES256: %v", err)
	}
	der, err := x509.MarshalPKIXPublicKey(&f.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	f.publicPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	// The JWK exactly as the gateway publishes it.
	var set2 struct{ Keys []json.RawMessage }
	e.call(t, http.MethodGet, jwksPath, "", "").decode(t, &set2)
	for _, raw := range set2.Keys {
		var k struct{ Kid string }
		if json.Unmarshal(raw, &k) == nil && k.Kid == f.kid {
			f.publicJWK = raw
		}
	}
	if f.publicJWK == nil {
		t.Fatalf("kid %s is not in the JWKS", f.kid)
	}
	return f
}

// header is the JSON header of a genuine token with members replaced by
// raw JSON values, given as name, value pairs; "" removes a member.
func (f *forger) header(mods ...string) string {
	return object([][2]string{{"alg", `"ES256"`}, {"kid", `"` + f.kid + `"`}, {"typ", `"at+jwt"`}}, mods)
}

// claims is the JSON payload of a valid token of client A, modified like
// header.
func (f *forger) claims(mods ...string) string {
	now := time.Now().Unix()
	return object([][2]string{
		{"iss", `"` + f.e.base + `"`},
		{"sub", `"` + f.e.A.Subject + `"`},
		{"client_id", `"` + f.e.A.ID + `"`},
		{"aud", `"` + f.e.base + `"`},
		{"iat", fmt.Sprint(now)},
		{"exp", fmt.Sprint(now + 3600)},
		{"jti", `"` + rand.Text() + `"`},
		{"scope", `"` + roleMessaging + `"`},
	}, mods)
}

// object writes members, in order, as a JSON object after applying mods.
func object(members [][2]string, mods []string) string {
	for i := 0; i+1 < len(mods); i += 2 {
		found := false
		for j := range members {
			if members[j][0] == mods[i] {
				members[j][1], found = mods[i+1], true
			}
		}
		if !found {
			members = append(members, [2]string{mods[i], mods[i+1]})
		}
	}
	var parts []string
	for _, m := range members {
		if m[1] != "" {
			parts = append(parts, fmt.Sprintf("%q:%s", m[0], m[1]))
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func (f *forger) sign(header, payload string) string {
	return signES256(f.t, f.key, b64([]byte(header)), b64([]byte(payload)))
}

// hs256 is the classic key confusion: an HMAC keyed with the public key,
// which a verifier that obeys the header's alg would accept.
func (f *forger) hs256(secret []byte) string {
	input := b64([]byte(f.header("alg", `"HS256"`))) + "." + b64([]byte(f.claims()))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + b64(mac.Sum(nil))
}

// attacker is another issuer: a P-256 key, its JWK and a self-signed
// certificate for the x5c header.
type attacker struct {
	t    *testing.T
	key  *ecdsa.PrivateKey
	kid  string
	jwk  string // public JWK, JSON
	cert string // base64 DER, as x5c carries it
}

func newAttacker(t *testing.T) *attacker {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{t: t, key: key, kid: "attacker-" + rand.Text()[:8]}
	point, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	a.jwk = fmt.Sprintf(`{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":%q,"x":%q,"y":%q}`,
		a.kid, b64(point[1:33]), b64(point[33:]))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	a.cert = base64.StdEncoding.EncodeToString(der)
	return a
}

func (a *attacker) sign(header, payload string) string {
	return signES256(a.t, a.key, b64([]byte(header)), b64([]byte(payload)))
}

// readOnlyStorage is Caddy's file_system storage at a directory, as far
// as package keys reads it: certmagic.FileStorage keeps key K in file
// dir/K.
type readOnlyStorage string

func (s readOnlyStorage) Load(_ context.Context, key string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(s), filepath.FromSlash(key)))
}

var errReadOnly = errors.New("the test reads the gateway's storage, never writes it")

func (readOnlyStorage) Store(context.Context, string, []byte) error { return errReadOnly }
func (readOnlyStorage) Lock(context.Context, string) error          { return errReadOnly }
func (readOnlyStorage) Unlock(context.Context, string) error        { return errReadOnly }
