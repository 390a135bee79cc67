package clients

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// publicJWKS is a JWK Set of one fresh P-256 public key with kid, and
// privateJWKS the same key with its private part.
func testJWKS(t *testing.T, kid string) (publicJWKS, privateJWKS string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := func(raw any) string {
		k, err := jwk.Import(raw)
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, kid)
		b, err := json.Marshal(map[string]any{"keys": []jwk.Key{k}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return set(&priv.PublicKey), set(priv)
}

func TestParse_ClientCredentials(t *testing.T) {
	pub, priv := testJWKS(t, "k1")
	secret := `"secrets": [{"hash": "` + hashOf("x") + `"}]`
	client := func(fields string) string {
		return `{"clients": [{"id": "a", "name": "a", ` + fields + `}]}`
	}
	tests := map[string]struct {
		fields  string
		wantErr string // "" = accepted
	}{
		"keys only, inline":                       {`"jwks": ` + pub, ""},
		"keys only, by URL":                       {`"jwks_uri": "https://keys.example/jwks.json"`, ""},
		"keys by loopback http URL":               {`"jwks_uri": "http://127.0.0.1:9/jwks.json"`, ""},
		"secret and keys":                         {secret + `, "jwks": ` + pub, ""},
		"restricted to private_key_jwt with keys": {`"jwks": ` + pub + `, "token_endpoint_auth_method": "private_key_jwt"`, ""},
		"neither secret nor keys":                 {`"name": "b"`, "no credential"},
		"restricted to a method it has no credential for": {
			secret + `, "token_endpoint_auth_method": "private_key_jwt"`, "no credential for it"},
		"an unknown method":           {`"jwks": ` + pub + `, "token_endpoint_auth_method": "client_secret_jwt"`, "want one of"},
		"keys both inline and by URL": {`"jwks": ` + pub + `, "jwks_uri": "https://keys.example/"`, "one way only"},
		"a private key in the set":    {`"jwks": ` + priv, "private key members"},
		"a set without keys":          {`"jwks": {"keys": []}`, "no usable key"},
		"not a set":                   {`"jwks": {"kty": "EC"}`, "not a JWK Set"},
		"a symmetric key":             {`"jwks": {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}`, "symmetric"},
		"a key without kid":           {`"jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}`, "kid"},
		"a cleartext URL":             {`"jwks_uri": "http://keys.example/jwks.json"`, "must be https"},
		"a URL with credentials":      {`"jwks_uri": "https://u:p@keys.example/"`, "credentials"},
		"a relative URL":              {`"jwks_uri": "/jwks.json"`, "absolute"},
		"a key with an HMAC alg":      {`"jwks": ` + strings.Replace(pub, `"kid"`, `"alg":"HS256","kid"`, 1), "not allowed"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f, err := Parse([]byte(client(tc.fields)))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Parse accepted it, want an error with %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error = %q, want it to contain %q", err, tc.wantErr)
			case err == nil && strings.Contains(tc.fields, `"jwks": `):
				if k, _ := f.Clients[0].Key(context.Background(), "k1"); k == nil {
					t.Error("the inline key k1 is not found")
				}
			}
		})
	}
}

func TestClient_Accepts(t *testing.T) {
	pub, _ := testJWKS(t, "k1")
	parse := func(fields string) *Client {
		f, err := Parse([]byte(`{"clients": [{"id": "a", "name": "a", ` + fields + `}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return &f.Clients[0]
	}
	secret := `"secrets": [{"hash": "` + hashOf("x") + `"}]`
	tests := map[string]struct {
		client *Client
		method string
		want   bool
	}{
		"a secret client by Basic":            {parse(secret), MethodSecretBasic, true},
		"a secret client by the body":         {parse(secret), MethodSecretPost, true},
		"a secret client by an assertion":     {parse(secret), MethodPrivateKeyJWT, false},
		"a keys client by an assertion":       {parse(`"jwks": ` + pub), MethodPrivateKeyJWT, true},
		"a keys client by Basic":              {parse(`"jwks": ` + pub), MethodSecretBasic, false},
		"both, unrestricted, by Basic":        {parse(secret + `, "jwks": ` + pub), MethodSecretBasic, true},
		"both, restricted to keys, by Basic":  {parse(secret + `, "jwks": ` + pub + `, "token_endpoint_auth_method": "private_key_jwt"`), MethodSecretBasic, false},
		"restricted to Basic, by the body":    {parse(secret + `, "token_endpoint_auth_method": "client_secret_basic"`), MethodSecretPost, false},
		"restricted to keys, by an assertion": {parse(secret + `, "jwks": ` + pub + `, "token_endpoint_auth_method": "private_key_jwt"`), MethodPrivateKeyJWT, true},
		"an unknown method is never accepted": {parse(secret), "none", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.client.Accepts(tc.method); got != tc.want {
				t.Errorf("Accepts(%q) = %v, want %v", tc.method, got, tc.want)
			}
		})
	}
	if k, _ := parse(`"jwks": `+pub).Key(context.Background(), ""); k == nil {
		t.Error("Key(\"\") does not return the only key")
	}
}
