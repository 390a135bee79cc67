package integration

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// scrapeMetrics reads Caddy's Prometheus endpoint on the admin API and
// returns the oauthgate samples, keyed by name and labels as exposed.
func (e *env) scrapeMetrics(t *testing.T) map[string]float64 {
	t.Helper()
	r := send(t, e.http, newRequest(t, http.MethodGet, "http://"+e.admin+"/metrics", ""))
	r.wantStatus(t, http.StatusOK)
	out := make(map[string]float64)
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "oauthgate_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// policyLine is the line of the policy file that starts the rule for path.
func (e *env) policyLine(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == "- path: "+path {
			return strconv.Itoa(i + 1)
		}
	}
	t.Fatalf("no rule for %s in the policy", path)
	return ""
}

func TestMetrics_CountDecisionsIssuancesAndRefusals(t *testing.T) {
	e := newEnvConfig(t, envConfig{admin: true})
	tokA, tokB := e.token(t, e.A), e.token(t, e.B)
	// A token is kept from its second verification on, so the third
	// sending of tokA is the cache's one hit.
	for range 3 {
		e.call(t, http.MethodGet, "/http/flow", tokA, "").wantStatus(t, http.StatusOK)
	}
	e.call(t, http.MethodGet, "/http/flow", tokB, "").wantStatus(t, http.StatusForbidden)
	e.call(t, http.MethodGet, "/http/flow", "", "").wantStatus(t, http.StatusUnauthorized)
	e.call(t, http.MethodGet, "/http/flow", tokA+"x", "").wantStatus(t, http.StatusUnauthorized)
	e.call(t, http.MethodGet, "/http/ping", "", "").wantStatus(t, http.StatusOK)
	e.tokenRequest(t, http.MethodPost, url.Values{"grant_type": {"client_credentials"}}, nil, e.A.ID, "wrong").
		wantStatus(t, http.StatusUnauthorized)

	generic, ping := e.policyLine(t, "/http/*"), e.policyLine(t, "/http/ping")
	got := e.scrapeMetrics(t)
	for sample, want := range map[string]float64{
		`oauthgate_guard_decisions_total{outcome="allow",reason="ok",rule="` + generic + `"}`:                3,
		`oauthgate_guard_decisions_total{outcome="deny",reason="insufficient_scope",rule="` + generic + `"}`: 1,
		`oauthgate_guard_decisions_total{outcome="deny",reason="missing_token",rule="` + generic + `"}`:      1,
		`oauthgate_guard_decisions_total{outcome="deny",reason="invalid_token",rule="` + generic + `"}`:      1,
		`oauthgate_guard_decisions_total{outcome="public",reason="ok",rule="` + ping + `"}`:                  1,
		`oauthgate_token_issued_total{client_id="` + e.A.ID + `",format="jwt"}`:                              1,
		`oauthgate_token_issued_total{client_id="` + e.B.ID + `",format="jwt"}`:                              1,
		`oauthgate_token_refused_total{error="invalid_client"}`:                                              1,
		`oauthgate_cache_lookups_total{cache="secret",result="hit"}`:                                         0,
		`oauthgate_cache_lookups_total{cache="token",result="hit"}`:                                          1,
		`oauthgate_cache_lookups_total{cache="token",result="miss"}`:                                         4,
	} {
		if v, ok := got[sample]; !ok || v != want {
			t.Errorf("%s = %v (present: %v), want %v", sample, v, ok, want)
		}
	}
	if t.Failed() {
		t.Logf("oauthgate samples: %v", got)
	}
}
