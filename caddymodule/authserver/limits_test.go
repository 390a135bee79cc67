package authserver_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/bruteforce"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
)

// withClients replaces the fixture's registry, as a reload of the clients
// file does.
func (f *fixture) withClients(t *testing.T, cache *clients.Cache, cs ...clients.Client) {
	t.Helper()
	f.srv.State.(*state).clients = registry(t, cache, cs...)
}

func TestToken_FailuresAreLimitedWhileTheRightSecretKeepsWorking(t *testing.T) {
	f := newFixture(t)
	const chosen = "a secret chosen by a person"
	slow, err := clients.HashChosenSecret(chosen)
	if err != nil {
		t.Fatal(err)
	}
	fastSecret, fastStored := clients.NewSecret()
	f.withClients(t, clients.NewCache(0),
		clients.Client{ID: "human", Name: "Human", Secrets: []clients.Secret{slow}},
		clients.Client{ID: "machine", Name: "Machine", Secrets: []clients.Secret{fastStored}})
	f.srv.Limiter = bruteforce.New(bruteforce.Config{PerAddress: bruteforce.Rate{Failures: 3, Per: time.Minute}})

	// The legitimate client authenticates once: its argon2id check is now
	// cached.
	okToken(t, f.do(t, request{target: sapQuery, header: basic("human", chosen)}))

	for i := range 3 {
		tokenError(t, f.do(t, request{target: sapQuery, header: basic("human", "guess-"+string(rune('a'+i)))}), 401, "invalid_client")
	}
	rec := f.do(t, request{target: sapQuery, header: basic("human", "guess-d")})
	tokenError(t, rec, http.StatusTooManyRequests, "temporarily_unavailable")
	if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q, want a positive number of seconds", ra)
	}
	// A correct guess would be refused too while limited: not verified.
	tokenError(t, f.do(t, request{target: sapQuery, header: basic("human", "another wrong guess")}), 429, "temporarily_unavailable")

	// Throughout, the right secrets keep working from the same address.
	okToken(t, f.do(t, request{target: sapQuery, header: basic("human", chosen)}))
	okToken(t, f.do(t, request{target: sapQuery, header: basic("machine", fastSecret)}))
}

func TestToken_AudienceIsChosenAmongTheClientsAudiences(t *testing.T) {
	f := newFixture(t)
	secret, stored := clients.NewSecret()
	f.withClients(t, nil,
		clients.Client{ID: senderID, Name: "Sender", Secrets: []clients.Secret{stored},
			Audiences: []string{"https://orders.example", "https://billing.example"}},
		clients.Client{ID: "plain", Name: "Plain", Secrets: []clients.Secret{stored}})
	f.senderSecret = secret // introspect authenticates as the sender

	cases := []struct {
		name, client, query string
		want                string // audience, or an error code after "!"
	}{
		{"no target: the client's first audience", senderID, "", "https://orders.example"},
		{"resource names another allowed audience", senderID, "&resource=https%3A%2F%2Fbilling.example", "https://billing.example"},
		{"audience parameter works the same", senderID, "&audience=https%3A%2F%2Fbilling.example", "https://billing.example"},
		{"both naming the same target", senderID, "&audience=https%3A%2F%2Fbilling.example&resource=https%3A%2F%2Fbilling.example", "https://billing.example"},
		{"a target the client may not have", senderID, "&resource=https%3A%2F%2Fpayroll.example", "!invalid_target"},
		{"the gateway's audience is not implied", senderID, "&resource=" + url.QueryEscape(audience), "!invalid_target"},
		{"resource and audience disagree", senderID, "&audience=https%3A%2F%2Forders.example&resource=https%3A%2F%2Fbilling.example", "!invalid_request"},
		{"client without audiences gets the gateway's", "plain", "", audience},
		{"client without audiences may name the gateway's", "plain", "&resource=" + url.QueryEscape(audience), audience},
		{"client without audiences may not name another", "plain", "&resource=https%3A%2F%2Forders.example", "!invalid_target"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := f.do(t, request{target: sapQuery + tc.query, header: basic(tc.client, secret)})
			if code, isErr := strings.CutPrefix(tc.want, "!"); isErr {
				tokenError(t, rec, 400, code)
				return
			}
			c := f.verifyAny(t, okToken(t, rec).AccessToken)
			if len(c) != 1 || c[0] != tc.want {
				t.Errorf("aud = %q, want [%s]", c, tc.want)
			}
		})
	}
}

// verifyAny returns the audience of a token this server issued.
func (f *fixture) verifyAny(t *testing.T, tok string) []string {
	t.Helper()
	got := f.introspect(t, tok)
	if got["active"] != true {
		t.Fatalf("token not active: %v", got)
	}
	var aud []string
	for _, a := range got["aud"].([]any) {
		aud = append(aud, a.(string))
	}
	return aud
}

func TestToken_LifetimeZeroLastsUntilTheNextToken(t *testing.T) {
	f := newFixture(t)
	secret, stored := clients.NewSecret()
	f.withClients(t, nil, clients.Client{ID: senderID, Name: "Neo", Secrets: []clients.Secret{stored}, TokenLifetime: "0"})
	f.senderSecret = secret
	first := okToken(t, f.do(t, request{target: sapQuery, header: basic(senderID, secret)}))
	if first.ExpiresIn != int64(f.srv.MaxLifetime/time.Second) {
		t.Errorf("expires_in = %d, want the maximum lifetime %d", first.ExpiresIn, int64(f.srv.MaxLifetime/time.Second))
	}
	if f.introspect(t, first.AccessToken)["active"] != true {
		t.Fatal("the first token is not active")
	}
	second := okToken(t, f.do(t, request{target: authserver.TokenPath + "?grant_type=client_credentials&token_format=opaque",
		header: basic(senderID, secret)}))
	if f.introspect(t, first.AccessToken)["active"] != false {
		t.Error("the first token survived the client's next token")
	}
	if f.introspect(t, second.AccessToken)["active"] != true {
		t.Error("the newest token is not active")
	}
}

func TestToken_FailureLimitPerAddressUsesTheClientIPNotTheProxy(t *testing.T) {
	f := newFixture(t)
	_, stored := clients.NewSecret()
	f.withClients(t, nil, clients.Client{ID: "machine", Name: "Machine", Secrets: []clients.Secret{stored}})
	f.srv.Limiter = bruteforce.New(bruteforce.Config{PerAddress: bruteforce.Rate{Failures: 3, Per: time.Minute}})
	// Every request comes through one proxy (httptest's RemoteAddr); the
	// client's own address is what Caddy's trusted_proxies resolved.
	f.srv.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-Client-IP") }
	from := func(ip string) http.Header {
		h := basic("machine", "wrong")
		h.Set("X-Test-Client-IP", ip)
		return h
	}
	for range 3 {
		tokenError(t, f.do(t, request{target: sapQuery, header: from("203.0.113.7")}), 401, "invalid_client")
	}
	tokenError(t, f.do(t, request{target: sapQuery, header: from("203.0.113.7")}), 429, "temporarily_unavailable")
	// Another client behind the same proxy has its own budget.
	tokenError(t, f.do(t, request{target: sapQuery, header: from("198.51.100.2")}), 401, "invalid_client")
}

func TestToken_AScopeTooLongForAGuardIsInvalidScopeNotAnUnusableToken(t *testing.T) {
	f := newFixture(t)
	var roles []string
	for i := range 400 {
		roles = append(roles, fmt.Sprintf("Integration.flow-%03d.send", i))
	}
	pol, err := policy.Parse([]byte("subjects:\n  oauth_client_sender: ["+strings.Join(roles, ", ")+"]\n"), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.srv.State.(*state).policy = pol
	tokenError(t, f.do(t, request{target: sapQuery, header: basic(senderID, f.senderSecret)}), 400, "invalid_scope")
	// A smaller scope gets a token.
	okToken(t, f.do(t, request{target: sapQuery + "&scope=" + roles[0], header: basic(senderID, f.senderSecret)}))
}

// A client ID has many percent-encodings in HTTP Basic, all of which
// reach the same client: they must all count against its one budget.
func TestToken_EncodedSpellingsOfAClientIDShareItsFailureBudget(t *testing.T) {
	f := newFixture(t)
	slow, err := clients.HashChosenSecret("a secret chosen by a person")
	if err != nil {
		t.Fatal(err)
	}
	f.withClients(t, clients.NewCache(0), clients.Client{ID: "human", Name: "Human", Secrets: []clients.Secret{slow}})
	f.srv.Limiter = bruteforce.New(bruteforce.Config{
		PerClient:  bruteforce.Rate{Failures: 3, Per: time.Minute},
		PerAddress: bruteforce.Rate{Failures: 1000, Per: time.Minute},
	})
	for _, id := range []string{"%68uman", "h%75man", "hu%6Dan"} {
		tokenError(t, f.do(t, request{target: sapQuery, header: basic(id, "guess")}), 401, "invalid_client")
	}
	tokenError(t, f.do(t, request{target: sapQuery, header: basic("hum%61n", "guess")}), http.StatusTooManyRequests, "temporarily_unavailable")
	tokenError(t, f.do(t, request{target: sapQuery, header: basic("human", "guess")}), http.StatusTooManyRequests, "temporarily_unavailable")
}

// countingLimiter is a bruteforce.Limiter that counts what it is asked.
type countingLimiter struct {
	*bruteforce.Limiter
	takes, refunds, fails int
}

func (l *countingLimiter) Take(id, addr string, now time.Time) time.Duration {
	l.takes++
	return l.Limiter.Take(id, addr, now)
}

func (l *countingLimiter) Refund(id, addr string) {
	l.refunds++
	l.Limiter.Refund(id, addr)
}

func (l *countingLimiter) Fail(id, addr string, now time.Time) {
	l.fails++
	l.Limiter.Fail(id, addr, now)
}

// A fleet-wide limiter is a round trip to the state engine: the right
// secret must not pay it when no argon2id is at stake, and every wrong
// guess must still end on it.
func TestToken_TheLimiterIsAskedOnlyWhenAnArgon2idVerificationIsAtStake(t *testing.T) {
	const chosen = "a secret chosen by a person"
	slow, err := clients.HashChosenSecret(chosen)
	if err != nil {
		t.Fatal(err)
	}
	fastSecret, fastStored := clients.NewSecret()
	for _, tc := range []struct {
		name                 string
		withArgon2id         bool
		header               http.Header
		status               int
		takes, refunds, fail int
	}{
		{"a generated secret costs nothing", false, basic("machine", fastSecret), 200, 0, 0, 0},
		{"a wrong guess at a generated secret is taken", false, basic("machine", "guess"), 401, 1, 0, 0},
		{"an unknown client is taken", false, basic("nobody", "guess"), 401, 1, 0, 0},
		{"a generated secret beside argon2id ones costs nothing", true, basic("machine", fastSecret), 200, 0, 0, 0},
		{"an uncached argon2id secret is taken and refunded", true, basic("human", chosen), 200, 1, 1, 0},
		{"a wrong guess at an argon2id secret is taken", true, basic("human", "guess"), 401, 1, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			cs := []clients.Client{{ID: "machine", Name: "Machine", Secrets: []clients.Secret{fastStored}}}
			if tc.withArgon2id {
				cs = append(cs, clients.Client{ID: "human", Name: "Human", Secrets: []clients.Secret{slow}})
			}
			f.withClients(t, clients.NewCache(0), cs...)
			lim := &countingLimiter{Limiter: bruteforce.New(bruteforce.Config{})}
			f.srv.Limiter = lim
			if rec := f.do(t, request{target: sapQuery, header: tc.header}); rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if lim.takes != tc.takes || lim.refunds != tc.refunds || lim.fails != tc.fail {
				t.Errorf("Take %d, Refund %d, Fail %d; want %d, %d, %d", lim.takes, lim.refunds, lim.fails, tc.takes, tc.refunds, tc.fail)
			}
		})
	}
}

func TestToken_ACachedArgon2idSecretCostsNoLimiterCall(t *testing.T) {
	f := newFixture(t)
	const chosen = "a secret chosen by a person"
	slow, err := clients.HashChosenSecret(chosen)
	if err != nil {
		t.Fatal(err)
	}
	f.withClients(t, clients.NewCache(0), clients.Client{ID: "human", Name: "Human", Secrets: []clients.Secret{slow}})
	lim := &countingLimiter{Limiter: bruteforce.New(bruteforce.Config{})}
	f.srv.Limiter = lim
	okToken(t, f.do(t, request{target: sapQuery, header: basic("human", chosen)}))
	okToken(t, f.do(t, request{target: sapQuery, header: basic("human", chosen)}))
	if lim.takes != 1 || lim.refunds != 1 {
		t.Errorf("Take %d, Refund %d over two tokens; want 1 and 1 (the first verification only)", lim.takes, lim.refunds)
	}
}
