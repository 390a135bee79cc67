package integration

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Guessing a client's secret: 10,000 wrong secrets, sent concurrently
// from one address (127.0.0.1), in rounds, while in every round the
// attacked client and others ask for tokens with their right secrets. No
// guess may get a token; the limiter must turn guesses into 429 with
// Retry-After almost from the start; every legitimate request must get a
// token throughout.
//
// Two victims: a generated secret (SHA-256, always cheap to check), and a
// secret a person chose (argon2id), verified once before the attack: over
// the limit, the gateway checks only argon2id secrets it has verified
// before, so the right one keeps working while guesses stall. The second
// attack is shorter: the limiter is engaged from its first guess on.
func TestBruteForce_WrongSecretsNeverWinAndLegitimateClientsKeepGettingTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	chosen := e.addClientWithSecret(t, "chosen-secret", "correct horse battery staple 2026", roleMessaging)
	e.token(t, chosen) // verified once: in the gateway's cache from now on

	const (
		rounds  = 20
		workers = 8
	)
	// One keep-alive connection per worker: 10,000 fresh connections
	// would fill the ephemeral port range with TIME_WAIT sockets.
	hc := &http.Client{Timeout: requestTimeout, Transport: recording{&http.Transport{Proxy: nil, MaxIdleConnsPerHost: workers + 3}}}
	// ask runs in the workers' goroutines, so it reports a failed
	// exchange as status 0 instead of stopping the test.
	ask := func(id, secret string) response {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.base+tokenPath+"?grant_type=client_credentials&token_format=jwt", nil)
		if err != nil {
			return response{body: []byte(err.Error())}
		}
		req.SetBasicAuth(id, secret)
		resp, err := hc.Do(req)
		if err != nil {
			return response{body: []byte(err.Error())}
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return response{body: []byte(err.Error())}
		}
		return response{status: resp.StatusCode, header: resp.Header, body: body}
	}

	for _, attack := range []struct {
		victim  client
		guesses int
	}{{e.A, 10_000}, {chosen, 2_000}} {
		victim, guesses := attack.victim, attack.guesses
		t.Run(victim.Name, func(t *testing.T) {
			legit := []client{victim, e.B}
			// Near misses first, then guesses no one could mean.
			wrong := []string{victim.Secret + "x", victim.Secret[:len(victim.Secret)-1], strings.ToUpper(victim.Secret),
				" " + victim.Secret, victim.Secret + " ", e.B.Secret}
			for len(wrong) < guesses {
				wrong = append(wrong, fmt.Sprintf("wrong-%05d-%s", len(wrong), rand.Text()))
			}
			for _, g := range wrong {
				sensitive.add(kindGuess, g)
			}

			var (
				mu         sync.Mutex
				status     = map[int]int{}
				problems   []string
				lastTokens = map[string]string{}
			)
			problem := func(format string, args ...any) {
				mu.Lock()
				defer mu.Unlock()
				if len(problems) < 20 {
					problems = append(problems, fmt.Sprintf(format, args...))
				}
			}
			for round := range rounds {
				batch := make(chan string)
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for g := range batch {
							r := ask(victim.ID, g)
							mu.Lock()
							status[r.status]++
							mu.Unlock()
							checkRefusal(r, problem)
						}
					})
				}
				for _, c := range legit {
					wg.Go(func() {
						r := ask(c.ID, c.Secret)
						var tok struct {
							AccessToken string `json:"access_token"`
						}
						if r.status != http.StatusOK || json.Unmarshal(r.body, &tok) != nil || tok.AccessToken == "" {
							problem("round %d: %s with its right secret: %d %s", round, c.Name, r.status, r.body)
							return
						}
						mu.Lock()
						lastTokens[c.Name] = tok.AccessToken
						mu.Unlock()
					})
				}
				for _, g := range wrong[round*guesses/rounds : (round+1)*guesses/rounds] {
					batch <- g
				}
				close(batch)
				wg.Wait()
			}

			for _, p := range problems {
				t.Error(p)
			}
			if status[http.StatusOK] != 0 || status[http.StatusUnauthorized]+status[http.StatusTooManyRequests] != guesses {
				t.Errorf("answers to %d wrong secrets: %v; want only 401 and 429", guesses, status)
			}
			// Without the limiter every guess would be a 401. The burst
			// is 10 failures per address; concurrency and refills add a
			// few.
			if n := status[http.StatusUnauthorized]; n > 100 {
				t.Errorf("%d guesses were checked (401) rather than refused (429): the limiter engaged late or not at all", n)
			}
			t.Logf("answers to %d wrong secrets: %v", guesses, status)
			// The last tokens work where their roles allow.
			e.call(t, http.MethodGet, "/http/flow", lastTokens[victim.Name], "").wantStatus(t, http.StatusOK)
			e.call(t, http.MethodPost, "/http/orders/1", lastTokens[e.B.Name], "<order/>").wantStatus(t, http.StatusOK)
		})
	}
}

// checkRefusal reports what is wrong with the answer to a wrong secret:
// anything but a 401 with a Basic challenge or a 429 with a usable
// Retry-After, and any token.
func checkRefusal(r response, problem func(string, ...any)) {
	if strings.Contains(string(r.body), "access_token") {
		problem("a wrong secret got a token: %d %s", r.status, r.body)
	}
	switch r.status {
	case http.StatusUnauthorized:
		if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Basic ") {
			problem("401 with WWW-Authenticate %q, want a Basic challenge", h)
		}
	case http.StatusTooManyRequests:
		// The longest wait is one refill interval: 6 s per address,
		// 3 s per client ID.
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 6 {
			problem("429 with Retry-After %q, want 1 to 6 seconds", r.header.Get("Retry-After"))
		}
	}
}
