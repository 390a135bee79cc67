package clients_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

// Secret verification is the first cost of every token request. A
// generated secret costs one SHA-256; a secret chosen by a person costs an
// argon2id computation unless the cache remembers it, which is what keeps
// such a client from capping the token endpoint's throughput.

const benchChosenSecret = "a secret a person chose, long enough"

// benchRegistry registers "generated" with a generated secret and
// "chosen" with an argon2id secret at the parameters the CLI stores.
func benchRegistry(b *testing.B, cache *clients.Cache) (reg *clients.Registry, generatedSecret string) {
	b.Helper()
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
	if cache == nil {
		return clients.NewRegistry(f), generatedSecret
	}
	return clients.NewRegistry(f, cache), generatedSecret
}

func BenchmarkAuthenticate(b *testing.B) {
	opt := clients.AuthOptions{Now: time.Now()}
	cached, generated := benchRegistry(b, clients.NewCache(0))
	uncached, _ := benchRegistry(b, nil)
	// The first success puts the verification in the cache.
	if _, err := cached.Authenticate("chosen", benchChosenSecret, opt); err != nil {
		b.Fatal(err)
	}
	tests := []struct {
		name       string
		reg        *clients.Registry
		id, secret string
		ok         bool
	}{
		{"generated_secret", cached, "generated", generated, true},
		{"argon2id_secret_cached", cached, "chosen", benchChosenSecret, true},
		{"argon2id_secret_cold", uncached, "chosen", benchChosenSecret, true},
		// A failure costs the argon2id work of the registry's most
		// expensive secret, whatever the client: what a guesser can
		// make the gateway spend (before the brute-force limiter).
		{"wrong_secret", cached, "generated", "wrong", false},
	}
	for _, tc := range tests {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.reg.Authenticate(tc.id, tc.secret, opt); (err == nil) != tc.ok {
					b.Fatalf("Authenticate(%q) = %v, want ok %v", tc.id, err, tc.ok)
				}
			}
		})
	}
}
