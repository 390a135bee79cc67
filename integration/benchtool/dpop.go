package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/dpop/dpoptest"
)

// dpopProofs writes what a DPoP load case sends: it fetches one token
// bound to a new key of the given algorithm from the token endpoint (with
// a proof), then signs n proofs of that key for GET (or -method) on the
// guarded URL, each with its own jti and the token's ath, and writes them
// one per line as "<token> <proof>". scripts/bench/wrk.lua sends such a
// line as "Authorization: DPoP <token>" and "DPoP: <proof>". Proofs
// carry the time they were made in iat: the run must start at once and
// last less than the guard's dpop_max_age (default 1m), and must send
// fewer requests than there are lines, since a proof sent twice is a
// replay and refused.
func dpopProofs(args []string) error {
	fs := flag.NewFlagSet("dpop", flag.ExitOnError)
	tokenURL := fs.String("token-url", "", "token endpoint URL on 127.0.0.1 (required)")
	resource := fs.String("url", "", "guarded URL on 127.0.0.1 the proofs are for, as wrk requests it (required)")
	method := fs.String("method", http.MethodGet, "the method the proofs are for")
	id := fs.String("id", "", "client ID (required; the secret is read from $BENCH_CLIENT_SECRET)")
	alg := fs.String("alg", "ES256", "the proof algorithm: ES256, EdDSA, RS256 or PS256")
	n := fs.Int("n", 100000, "number of proofs")
	out := fs.String("out", "", "file to write, one \"<token> <proof>\" per line (required)")
	_ = fs.Parse(args)
	secret := os.Getenv("BENCH_CLIENT_SECRET")
	if *id == "" || secret == "" || *out == "" || *n < 1 {
		return errors.New("-id, $BENCH_CLIENT_SECRET and -out are required; -n must be at least 1")
	}
	tu, err := loopbackURL(*tokenURL)
	if err != nil {
		return err
	}
	ru, err := loopbackURL(*resource)
	if err != nil {
		return err
	}
	key := dpoptest.NewKey(*alg)
	req, err := http.NewRequest(http.MethodPost, tu.String(), nil)
	if err != nil {
		return err
	}
	req.URL.RawQuery = url.Values{"grant_type": {"client_credentials"}}.Encode()
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(*id+":"+secret)))
	htu := *req.URL
	htu.RawQuery = ""
	req.Header.Set("DPoP", key.Proof(dpoptest.Options{Method: http.MethodPost, URL: htu.String()}))
	body, err := do(httpClient(1), req)
	if err != nil {
		return err
	}
	var resp struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || resp.TokenType != "DPoP" {
		return fmt.Errorf("the token endpoint answered 200 without a DPoP-bound token (token_type %q)", resp.TokenType)
	}
	target := *ru
	target.RawQuery, target.Fragment = "", ""
	lines := make([]string, *n)
	start := time.Now()
	err = parallel(*n, runtime.GOMAXPROCS(0), func(i int) error {
		lines[i] = resp.AccessToken + " " + key.Proof(dpoptest.Options{Method: *method, URL: target.String(), AccessToken: resp.AccessToken})
		return nil
	})
	if err != nil {
		return err
	}
	if err := writeLines(*out, lines); err != nil {
		return err
	}
	fmt.Printf("signed %d %s proofs in %.1fs\n", *n, *alg, time.Since(start).Seconds())
	return nil
}
