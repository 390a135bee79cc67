package integration

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/dpop/dpoptest"
)

// dpopToken fetches a token for c bound to key (RFC 9449 §5): a token
// request with Basic credentials and a DPoP proof for the token endpoint.
func (e *env) dpopToken(t *testing.T, c client, key *dpoptest.Key) string {
	t.Helper()
	return tokenOfType(t, e.dpopTokenRequest(t, c, key.Proof(dpoptest.Options{Method: http.MethodPost, URL: e.issuer + tokenPath})), "DPoP")
}

// tokenOfType is the access token of a successful token response whose
// token_type is want.
func tokenOfType(t *testing.T, r response, want string) string {
	t.Helper()
	r.wantStatus(t, http.StatusOK)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	r.decode(t, &tok)
	if tok.TokenType != want {
		t.Fatalf("token_type = %q, want %s", tok.TokenType, want)
	}
	sensitive.add(kindToken, tok.AccessToken)
	return tok.AccessToken
}

func (e *env) dpopTokenRequest(t *testing.T, c client, proofs ...string) response {
	t.Helper()
	req := newRequest(t, http.MethodPost, e.base+tokenPath, url.Values{"grant_type": {"client_credentials"}}.Encode())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ID, c.Secret)
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return send(t, e.http, req)
}

// dpopCall sends method path with "Authorization: <scheme> <token>" and
// the proofs in DPoP headers.
func (e *env) dpopCall(t *testing.T, method, path, scheme, token string, proofs ...string) response {
	t.Helper()
	req := newRequest(t, method, e.base+path, "")
	req.Header.Set("Authorization", scheme+" "+token)
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return send(t, e.http, req)
}

// wantDPoPChallenge asserts a 401 with a DPoP challenge (RFC 9449 §7.1)
// naming code and the accepted algorithms.
func (r response) wantDPoPChallenge(t *testing.T, code string) {
	t.Helper()
	if r.status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401; WWW-Authenticate %q; body %s", r.status, r.header.Values("WWW-Authenticate"), r.body)
	}
	// The Bearer challenge comes first, where senders that read one
	// value have always found it; the DPoP one follows.
	var ch string
	for _, v := range r.header.Values("WWW-Authenticate") {
		if strings.HasPrefix(v, "DPoP ") {
			ch = v
		}
	}
	if !strings.Contains(ch, `algs="ES256 `) || !strings.Contains(ch, `error="`+code+`"`) {
		t.Errorf("WWW-Authenticate = %q, want a DPoP challenge with algs and error %q", r.header.Values("WWW-Authenticate"), code)
	}
}

// Every attack of issue 14 on DPoP, each against the running gateway: a
// token bound to the client's key is of no use without a fresh proof of
// that key for this very request, and nothing refused reaches the
// backend.
func TestDPoP_AStolenOrReplayedProofOpensNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key, thief := dpoptest.NewKey("ES256"), dpoptest.NewKey("ES256")
	tok := e.dpopToken(t, e.A, key)
	flow := e.base + "/http/flow"
	proof := func(o dpoptest.Options) string {
		o.Method = cmpOr(o.Method, http.MethodGet)
		o.URL = cmpOr(o.URL, flow)
		if o.AccessToken == "" {
			o.AccessToken = tok
		}
		return key.Proof(o)
	}

	t.Run("a valid proof passes, without the proof or the token at the backend", func(t *testing.T) {
		e.dpopCall(t, http.MethodGet, "/http/flow", "DPoP", tok, proof(dpoptest.Options{})).wantStatus(t, http.StatusOK)
		e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging))
	})
	t.Run("a replayed proof is refused", func(t *testing.T) {
		p := proof(dpoptest.Options{})
		e.dpopCall(t, http.MethodGet, "/http/flow", "DPoP", tok, p).wantStatus(t, http.StatusOK)
		e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging))
		r := e.dpopCall(t, http.MethodGet, "/http/flow", "DPoP", tok, p)
		r.wantDPoPChallenge(t, "invalid_dpop_proof")
		if !strings.Contains(string(r.body), "used before") {
			t.Errorf("refusal %s does not say the proof was used", r.body)
		}
		e.backend.wantRequests(t)
	})

	refused := []struct {
		name, scheme, proof, code string
	}{
		{"a proof for another URL", "DPoP", proof(dpoptest.Options{URL: e.base + "/http/other"}), "invalid_dpop_proof"},
		{"a proof for another method", "DPoP", proof(dpoptest.Options{Method: http.MethodPost}), "invalid_dpop_proof"},
		{"a proof with a stale iat", "DPoP", proof(dpoptest.Options{IssuedAt: time.Now().Add(-5 * time.Minute)}), "invalid_dpop_proof"},
		{"a proof with a future iat", "DPoP", proof(dpoptest.Options{IssuedAt: time.Now().Add(5 * time.Minute)}), "invalid_dpop_proof"},
		{"a proof signed by another key than the token's jkt", "DPoP",
			thief.Proof(dpoptest.Options{Method: http.MethodGet, URL: flow, AccessToken: tok}), "invalid_token"},
		{"a proof without ath", "DPoP", proof(dpoptest.Options{Claims: map[string]any{"ath": nil}}), "invalid_dpop_proof"},
		{"a proof with the ath of another token", "DPoP", proof(dpoptest.Options{AccessToken: "another token entirely"}), "invalid_dpop_proof"},
		{"the bound token as Bearer, with a proof", "Bearer", proof(dpoptest.Options{}), "invalid_token"},
		{"the bound token as Bearer, without a proof", "Bearer", "", "invalid_token"},
		{"the bound token without a proof", "DPoP", "", "invalid_dpop_proof"},
		{"a proof with a private key in its jwk", "DPoP", withPrivateJWK(t, proof(dpoptest.Options{})), "invalid_dpop_proof"},
		{"a proof with alg none", "DPoP", unsigned(proof(dpoptest.Options{Header: map[string]any{"alg": "none"}})), "invalid_dpop_proof"},
		{"a proof with alg HS256", "DPoP", proof(dpoptest.Options{Header: map[string]any{"alg": "HS256"}}), "invalid_dpop_proof"},
		{"a proof of typ JWT", "DPoP", proof(dpoptest.Options{Header: map[string]any{"typ": "JWT"}}), "invalid_dpop_proof"},
		{"an oversized proof", "DPoP", proof(dpoptest.Options{Claims: map[string]any{"pad": strings.Repeat("x", 9<<10)}}), "invalid_dpop_proof"},
	}
	for _, c := range refused {
		t.Run(c.name+" is refused", func(t *testing.T) {
			var proofs []string
			if c.proof != "" {
				proofs = append(proofs, c.proof)
			}
			e.dpopCall(t, http.MethodGet, "/http/flow", c.scheme, tok, proofs...).wantDPoPChallenge(t, c.code)
			e.backend.wantRequests(t)
		})
	}

	t.Run("an oversized DPoP header is refused before anything is read", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, e.base+"/http/flow", "")
		req.Header.Set("Authorization", "DPoP "+tok)
		req.Header.Set("DPoP", strings.Repeat("a", 2<<20))
		// The server may answer 431 or close the connection while the
		// header is still being sent; either way nothing goes further.
		if resp, err := e.http.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("status %d, want 431", resp.StatusCode)
			}
		}
		e.backend.wantRequests(t)
	})

	t.Run("the token endpoint refuses a replayed, foreign or doubled proof", func(t *testing.T) {
		p := key.Proof(dpoptest.Options{Method: http.MethodPost, URL: e.issuer + tokenPath})
		e.dpopTokenRequest(t, e.A, p).wantStatus(t, http.StatusOK)
		for name, proofs := range map[string][]string{
			"replayed":         {p},
			"for another URL":  {key.Proof(dpoptest.Options{Method: http.MethodPost, URL: e.base + "/other"})},
			"alg none":         {unsigned(key.Proof(dpoptest.Options{Method: http.MethodPost, URL: e.issuer + tokenPath, Header: map[string]any{"alg": "none"}}))},
			"two of them":      {key.Proof(dpoptest.Options{Method: http.MethodPost, URL: e.issuer + tokenPath}), key.Proof(dpoptest.Options{Method: http.MethodPost, URL: e.issuer + tokenPath})},
			"a private key in": {withPrivateJWK(t, key.Proof(dpoptest.Options{Method: http.MethodPost, URL: e.issuer + tokenPath}))},
		} {
			r := e.dpopTokenRequest(t, e.A, proofs...)
			if r.status != http.StatusBadRequest || r.oauthError(t) != "invalid_dpop_proof" {
				t.Errorf("%s: status %d, body %s; want 400 invalid_dpop_proof", name, r.status, r.body)
			}
		}
	})

	t.Run("metadata names the proof algorithms", func(t *testing.T) {
		r := send(t, e.http, newRequest(t, http.MethodGet, e.base+"/.well-known/oauth-authorization-server", ""))
		var md struct {
			Algs []string `json:"dpop_signing_alg_values_supported"`
		}
		r.decode(t, &md)
		if len(md.Algs) == 0 || md.Algs[0] != "ES256" {
			t.Errorf("dpop_signing_alg_values_supported = %v", md.Algs)
		}
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// unsigned drops a proof's signature, as an "alg": "none" JWS has none.
func unsigned(p string) string { return p[:strings.LastIndexByte(p, '.')+1] }

// withPrivateJWK re-signs nothing: it puts a "d" into the proof's jwk
// and signs again with the same key, so that only the private member is
// wrong with it.
func withPrivateJWK(t *testing.T, p string) string {
	t.Helper()
	k := dpoptest.NewKey("ES256")
	jwk := map[string]any{"d": "ZmFrZS1wcml2YXRlLXNjYWxhci0zMi1ieXRlcy1sb25nLg"}
	for n, v := range k.JWK {
		jwk[n] = v
	}
	return k.Proof(dpoptest.Options{Method: methodOf(t, p), URL: urlOf(t, p), Header: map[string]any{"jwk": jwk}})
}

func claimsOf(t *testing.T, p string) map[string]any {
	t.Helper()
	return parseJWS(t, p).claims
}

func methodOf(t *testing.T, p string) string { return claimsOf(t, p)["htm"].(string) }
func urlOf(t *testing.T, p string) string    { return claimsOf(t, p)["htu"].(string) }

// openid-client 6, unmodified, makes its own DPoP key, gets a DPoP-bound
// token with it and calls the guard with fetchProtectedResource; with
// server nonces on, it retries once with the nonce the guard hands out.
// Over TLS, as it insists on: every proof names an https URL.
func TestDPoP_NodeOpenIDClientGetsABoundTokenAndCallsTheGuardWithItsProofs(t *testing.T) {
	t.Parallel()
	node := nodeClients(t)
	for _, nonce := range []bool{false, true} {
		t.Run(map[bool]string{false: "without nonces", true: "with server nonces"}[nonce], func(t *testing.T) {
			t.Parallel()
			cfg := envConfig{tls: true}
			if nonce {
				cfg.guardOptions = "dpop_nonce"
			}
			e := newEnvConfig(t, cfg)
			stdout, stderr, err := node.run(t, []string{
				"ISSUER=" + e.base,
				"CLIENT_ID=" + e.A.ID,
				"CLIENT_SECRET=" + e.A.Secret,
				"AUTH=basic",
				"DPOP=ES256",
				"RESOURCE_URL=" + e.base + "/http/flow",
				"NODE_EXTRA_CA_CERTS=" + e.caFile,
			}, filepath.Join(nodeClientsDir, "openid-client.mjs"))
			e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging))
			lines := strings.Split(strings.TrimSpace(string(stdout)), "\n")
			var res struct {
				openidClientResult
				TokenRequest struct {
					DPoPProof bool `json:"dpop_proof"`
				} `json:"token_request"`
				Advertised []string                         `json:"dpop_algs_advertised"`
				Proofs     []struct{ URL, HTM, HTU string } `json:"dpop_proofs"`
			}
			if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil || err != nil || !res.OK {
				t.Fatalf("openid-client.mjs: %v (decoding its output: %v)\nstdout:\n%s\nstderr:\n%s", err, jerr, stdout, stderr)
			}
			sensitive.add(kindToken, res.AccessToken)
			if res.TokenType != "dpop" && res.TokenType != "DPoP" {
				t.Errorf("token_type = %q, want DPoP", res.TokenType)
			}
			if !res.TokenRequest.DPoPProof {
				t.Error("openid-client sent no DPoP proof with its token request")
			}
			if len(res.Advertised) == 0 {
				t.Error("the metadata advertised no dpop_signing_alg_values_supported")
			}
			// htu is the URL as the client addressed it, https and all: the
			// token endpoint's is the issuer's, the guard's the resource.
			want := map[string]string{http.MethodPost: e.issuer + tokenPath, http.MethodGet: e.base + "/http/flow"}
			seen := map[string]int{}
			for _, p := range res.Proofs {
				seen[p.HTM]++
				if !strings.HasPrefix(p.HTU, "https://127.0.0.1:") || p.HTU != want[p.HTM] {
					t.Errorf("a proof for %s %s has htu %q, want %q", p.HTM, p.URL, p.HTU, want[p.HTM])
				}
			}
			if seen[http.MethodPost] == 0 || seen[http.MethodGet] == 0 {
				t.Errorf("proofs %+v: want one for the token request and one for the call at least", res.Proofs)
			}
			if res.Status != http.StatusOK || res.Body.Flow != "/http/flow" {
				t.Errorf("GET /http/flow: status %d, body %+v", res.Status, res.Body)
			}
			if nonce && !strings.Contains(e.gatewayLog.String(), `"error":"use_dpop_nonce"`) {
				t.Error("the gateway never asked for a nonce: the retry with one went untested")
			}
			// The token was bound: as a Bearer token it opens nothing.
			e.call(t, http.MethodGet, "/http/flow", res.AccessToken, "").wantDPoPChallenge(t, "invalid_token")
			e.backend.wantRequests(t)
		})
	}
}

// A proof spent at one instance of a fleet is refused at every other:
// the jti is remembered in Redis. Both instances are told the URL clients
// address them by, as behind a load balancer, so that htu matches at
// either and only the replay check can refuse.
func TestRedisFleet_ADPoPProofSpentAtOneInstanceIsRefusedAtAnother(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	const external = "https://api.example"
	a := newEnvConfig(t, envConfig{ownStorage: true, oauthOptions: redisState(r.url(), sealingKeys(t)),
		guardOptions: "external_url " + external})
	b := a.peer(t)
	key := dpoptest.NewKey("EdDSA")
	tok := a.dpopToken(t, a.A, key)
	for i := range 5 {
		p := key.Proof(dpoptest.Options{Method: http.MethodGet, URL: external + "/http/flow", AccessToken: tok})
		first, second := a, b
		if i%2 == 1 {
			first, second = b, a
		}
		first.dpopCall(t, http.MethodGet, "/http/flow", "DPoP", tok, p).wantStatus(t, http.StatusOK)
		second.dpopCall(t, http.MethodGet, "/http/flow", "DPoP", tok, p).wantDPoPChallenge(t, "invalid_dpop_proof")
	}
	a.backend.wantRequests(t, slicesRepeat(seenAs(http.MethodGet, "/http/flow", a.A, roleMessaging), 5)...)
}

func slicesRepeat(r backendRequest, n int) []backendRequest {
	out := make([]backendRequest, n)
	for i := range out {
		out[i] = r
	}
	return out
}
