package authserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
	statepkg "github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/storagetest"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// benchState serves fixed snapshots, as the oauth app does between
// reloads.
type benchState struct {
	clients *clients.Registry
	keys    *keys.Set
	roles   []string
}

func (s *benchState) Clients() *clients.Registry { return s.clients }
func (s *benchState) Keys() *keys.Set            { return s.keys }
func (s *benchState) Roles(string) []string      { return s.roles }

const benchChosenSecret = "a secret a person chose, long enough"

// benchServer is a token endpoint signing with alg, with two clients:
// "generated" (a generated secret) and "chosen" (argon2id, cached). Audit
// lines are encoded as in production and thrown away.
func benchServer(b *testing.B, alg jwa.SignatureAlgorithm) (srv *authserver.Server, generatedSecret string) {
	b.Helper()
	m, err := keys.NewManager(keystest.NewStorage(), keys.Options{Algorithm: alg, RetainFor: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	set, err := m.Sync(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	generatedSecret, fast := clients.NewSecret()
	slow, err := clients.HashChosenSecret(benchChosenSecret)
	if err != nil {
		b.Fatal(err)
	}
	data, err := json.Marshal(clients.File{Clients: []clients.Client{
		{ID: "generated", Name: "generated", Secrets: []clients.Secret{fast}},
		{ID: "chosen", Name: "chosen", Secrets: []clients.Secret{slow}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	f, err := clients.Parse(data)
	if err != nil {
		b.Fatal(err)
	}
	st := storagetest.New()
	store, err := tokenstate.Open(context.Background(), st, statepkg.StorageEntries(st, time.Now), time.Now)
	if err != nil {
		b.Fatal(err)
	}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	return &authserver.Server{
		State:       &benchState{clients: clients.NewRegistry(f, clients.NewCache(0)), keys: set, roles: []string{"ESBMessaging.send"}},
		Tokens:      store,
		MaxLifetime: 24 * time.Hour,
		Issuer:      "https://gw.example",
		Audience:    "https://gw.example",
		Realm:       "oauthgate",
		Log:         log,
	}, generatedSecret
}

// BenchmarkToken is one token request end to end, as the SAP sender
// sends it: parsing, client authentication, minting, the audit line and
// the JSON response.
func BenchmarkToken(b *testing.B) {
	es256, generated := benchServer(b, jwa.ES256())
	tests := []struct {
		name       string
		alg        jwa.SignatureAlgorithm
		id, secret string
	}{
		{"ES256_generated_secret", jwa.ES256(), "generated", generated},
		{"EdDSA_generated_secret", jwa.EdDSA(), "generated", ""},
		{"RS256_generated_secret", jwa.RS256(), "generated", ""},
		{"ES256_argon2id_secret_warm_cache", jwa.ES256(), "chosen", benchChosenSecret},
	}
	for _, tc := range tests {
		b.Run(tc.name, func(b *testing.B) {
			srv, secret := es256, tc.secret
			if tc.alg != jwa.ES256() {
				srv, secret = benchServer(b, tc.alg)
			}
			auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(tc.id+":"+secret))
			send := func() *httptest.ResponseRecorder {
				r := httptest.NewRequest(http.MethodPost, authserver.TokenPath+"?grant_type=client_credentials&token_format=jwt", nil)
				r.Header.Set("Authorization", auth)
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, r)
				return rec
			}
			// The first request of an argon2id client fills the cache.
			if rec := send(); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "access_token") {
				b.Fatalf("token request: %d %s", rec.Code, rec.Body)
			}
			b.ReportAllocs()
			for b.Loop() {
				if rec := send(); rec.Code != http.StatusOK {
					b.Fatalf("token request: %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
