package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Real third-party clients against the real gateway: golang.org/x/oauth2 in
// each of its client authentication styles, Node's openid-client discovering
// the gateway through RFC 8414, and a Postman collection run by newman. (curl
// in SAP's form is TestSAP_CurlClientCredentialsFlow.)
//
// The Node packages are pinned in clients/package-lock.json; `make test`
// installs them with `npm ci` before it runs the tests.

const (
	// nodeClientsDir is the Node project with openid-client and newman,
	// relative to this package's directory (where `go test` runs it).
	nodeClientsDir = "clients"
	// sapCollection is the Postman collection of SAP's walkthrough.
	sapCollection = "postman/sap-walkthrough.postman_collection.json"
	// nodeTimeout bounds one run of a Node client, start-up included.
	nodeTimeout = 60 * time.Second
	// chosenSecret is a secret a person chose, holding the characters that
	// form encoding and HTTP Basic treat specially: a client must encode it
	// and the gateway must decode it exactly once.
	chosenSecret = "s3cr+t%2F:with/slash=and space"
)

// Every client authentication style of golang.org/x/oauth2's
// clientcredentials gets a token that opens the flow, for a generated
// secret and for a chosen one full of characters that need encoding.
func TestClients_GoOAuth2EachAuthStyle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	chosen := e.addClientWithSecret(t, "sender-chosen-secret", chosenSecret, roleMessaging)
	for _, c := range []client{e.A, chosen} {
		for _, style := range []struct {
			name  string
			style oauth2.AuthStyle
		}{
			{"AuthStyleAutoDetect", oauth2.AuthStyleAutoDetect},
			{"AuthStyleInHeader", oauth2.AuthStyleInHeader},
			{"AuthStyleInParams", oauth2.AuthStyleInParams},
		} {
			t.Run(c.Name+"/"+style.name, func(t *testing.T) {
				tok := e.fetchToken(t, c, style.style)
				if !strings.EqualFold(tok.TokenType, "Bearer") {
					t.Errorf("token_type = %q, want Bearer", tok.TokenType)
				}
				r := e.call(t, http.MethodGet, "/http/flow", tok.AccessToken, "")
				e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", c, roleMessaging))
				r.wantStatus(t, http.StatusOK)
				var probe struct{ Status, Flow string }
				r.decode(t, &probe)
				if probe.Status != "ok" || probe.Flow != "/http/flow" {
					t.Errorf("GET answer = %s, want status ok for flow /http/flow", r.body)
				}
			})
		}
	}
}

// openidClientResult is the line clients/openid-client.mjs prints.
type openidClientResult struct {
	OK            bool   `json:"ok"`
	Method        string `json:"method"`
	Issuer        string `json:"issuer"`
	TokenEndpoint string `json:"token_endpoint"`
	TokenRequest  struct {
		Method           string `json:"method"`
		URL              string `json:"url"`
		BasicAuth        bool   `json:"basic_auth"`
		BodyClientID     bool   `json:"body_client_id"`
		BodyClientSecret bool   `json:"body_client_secret"`
		GrantType        string `json:"grant_type"`
	} `json:"token_request"`
	TokenType   string `json:"token_type"`
	Scope       string `json:"scope"`
	ExpiresIn   int    `json:"expires_in"`
	TokenLength int    `json:"token_length"`
	AccessToken string `json:"access_token"`
	Status      int    `json:"status"`
	Body        struct {
		Status string `json:"status"`
		Flow   string `json:"flow"`
	} `json:"body"`
	Error string `json:"error"`
}

// Node's openid-client (v6) finds the token endpoint in the RFC 8414
// metadata, authenticates with client_secret_basic or client_secret_post
// as told, and its token opens the flow.
func TestClients_NodeOpenIDClientDiscoversGatewayAndCallsFlow(t *testing.T) {
	t.Parallel()
	node := nodeClients(t)
	e := newEnv(t)
	chosen := e.addClientWithSecret(t, "sender-chosen-secret", chosenSecret, roleMessaging)
	for _, c := range []client{e.A, chosen} {
		for _, auth := range []string{"basic", "post"} {
			t.Run(c.Name+"/client_secret_"+auth, func(t *testing.T) {
				stdout, stderr, err := node.run(t, []string{
					"ISSUER=" + e.base,
					"CLIENT_ID=" + c.ID,
					"CLIENT_SECRET=" + c.Secret,
					"AUTH=" + auth,
					"RESOURCE_URL=" + e.base + "/http/flow",
				}, filepath.Join(nodeClientsDir, "openid-client.mjs"))
				// The backend first: it consumes this case's log lines even
				// when a check below stops the subtest.
				e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", c, roleMessaging))

				lines := strings.Split(strings.TrimSpace(string(stdout)), "\n")
				var res openidClientResult
				if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil || err != nil || !res.OK {
					t.Fatalf("openid-client.mjs: %v (decoding its output: %v)\nstdout:\n%s\nstderr:\n%s", err, jerr, stdout, stderr)
				}
				if want := "client_secret_" + auth; res.Method != want {
					t.Errorf("method = %q, want %q", res.Method, want)
				}
				if res.Issuer != e.base || res.TokenEndpoint != e.base+tokenPath {
					t.Errorf("discovered issuer %q, token endpoint %q; want %q, %q", res.Issuer, res.TokenEndpoint, e.base, e.base+tokenPath)
				}
				tr := res.TokenRequest
				if tr.Method != http.MethodPost || tr.URL != e.base+tokenPath || tr.GrantType != "client_credentials" {
					t.Errorf("token request = %+v, want POST %s with grant_type client_credentials", tr, e.base+tokenPath)
				}
				if basic := auth == "basic"; tr.BasicAuth != basic || tr.BodyClientSecret == basic {
					t.Errorf("token request sent Basic auth %v, client_secret in the body %v; want exactly one of them, per %s",
						tr.BasicAuth, tr.BodyClientSecret, res.Method)
				}
				sensitive.add(kindToken, res.AccessToken)
				if !strings.EqualFold(res.TokenType, "Bearer") || res.Scope != roleMessaging || res.ExpiresIn <= 0 || res.TokenLength == 0 {
					t.Errorf("token: type %q, scope %q, expires_in %d, %d characters; want a Bearer token with scope %q",
						res.TokenType, res.Scope, res.ExpiresIn, res.TokenLength, roleMessaging)
				}
				if res.Status != http.StatusOK || res.Body.Status != "ok" || res.Body.Flow != "/http/flow" {
					t.Errorf("GET /http/flow: status %d, body %+v; want 200 with status ok", res.Status, res.Body)
				}
			})
		}
	}
}

// newmanReport is the part of newman's JSON report the test reads.
type newmanReport struct {
	Run struct {
		Stats map[string]struct {
			Total  int `json:"total"`
			Failed int `json:"failed"`
		} `json:"stats"`
		Executions []struct {
			Item struct {
				Name string `json:"name"`
			} `json:"item"`
			Response struct {
				Code   int `json:"code"`
				Header []struct {
					Key   string `json:"key"`
					Value string `json:"value"`
				} `json:"header"`
				// Stream is the body, as Node serializes a Buffer.
				Stream struct {
					Data []int `json:"data"`
				} `json:"stream"`
			} `json:"response"`
			Assertions []struct {
				Assertion string `json:"assertion"`
				Error     *struct {
					Message string `json:"message"`
				} `json:"error"`
			} `json:"assertions"`
		} `json:"executions"`
		Failures []json.RawMessage `json:"failures"`
	} `json:"run"`
}

// SAP's walkthrough as a Postman user follows it, run by newman: a token
// with Basic Auth and the grant in the query, then GET and POST to the
// flow with the Bearer token; then SAP's CSRF flow on a csrf rule: fetch
// a CSRF token with HEAD, POST with it, and a POST without one refused.
func TestClients_PostmanSAPWalkthroughWithNewman(t *testing.T) {
	t.Parallel()
	node := nodeClients(t)
	e := newEnv(t)
	e.useCSRFPolicy(t)
	report := filepath.Join(t.TempDir(), "newman.json")
	stdout, stderr, err := node.run(t, nil,
		filepath.Join(nodeClientsDir, "node_modules", ".bin", "newman"), "run", sapCollection,
		"--env-var", "baseUrl="+e.base,
		"--env-var", "clientId="+e.A.ID,
		"--env-var", "clientSecret="+e.A.Secret,
		"--reporters", "cli,json",
		"--reporter-json-export", report,
		"--color", "off",
		"--disable-unicode",
		"--ignore-redirects",
		"--timeout-request", fmt.Sprint(requestTimeout.Milliseconds()),
		"--timeout", fmt.Sprint(nodeTimeout.Milliseconds()),
	)
	e.backend.wantRequests(t,
		seenAs(http.MethodGet, "/http/flow", e.A, roleMessaging),
		seenAs(http.MethodPost, "/http/flow", e.A, roleMessaging),
		seenAs(http.MethodPost, "/http/events", e.A, roleMessaging), // the fetch and the refusal never reach it
	)
	if err != nil {
		t.Fatalf("newman: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}

	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("newman report: %v\nstdout:\n%s", err, stdout)
	}
	var rep newmanReport
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("newman report: %v", err)
	}
	run := rep.Run
	// The token newman fetched, for the log-hygiene check.
	tokens := 0
	for _, x := range run.Executions {
		body := make([]byte, len(x.Response.Stream.Data))
		for i, b := range x.Response.Stream.Data {
			body[i] = byte(b)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if json.Unmarshal(body, &tok) == nil && tok.AccessToken != "" {
			sensitive.add(kindToken, tok.AccessToken)
			tokens++
		}
		for _, h := range x.Response.Header {
			if strings.EqualFold(h.Key, "X-CSRF-Token") {
				sensitive.add(kindCSRF, h.Value)
			}
		}
	}
	if tokens != 1 {
		t.Errorf("newman's report holds %d token responses, want 1", tokens)
	}
	var names []string
	for _, x := range run.Executions {
		names = append(names, x.Item.Name)
		want := http.StatusOK
		if strings.Contains(x.Item.Name, "is refused") {
			want = http.StatusForbidden
		}
		if x.Response.Code != want {
			t.Errorf("%q: status %d, want %d", x.Item.Name, x.Response.Code, want)
		}
		if len(x.Assertions) == 0 {
			t.Errorf("%q: ran no assertion", x.Item.Name)
		}
		for _, a := range x.Assertions {
			if a.Error != nil {
				t.Errorf("%q: %s: %s", x.Item.Name, a.Assertion, a.Error.Message)
			}
		}
	}
	wantNames := []string{
		"1. Get token (client credentials, Basic Auth)",
		"2. GET the integration flow (Bearer token)",
		"3. POST a message to the integration flow (Bearer token)",
		"4. Fetch a CSRF token (HEAD, X-CSRF-Token: Fetch)",
		"5. POST a message with the CSRF token",
		"6. POST without a CSRF token is refused",
	}
	if !slices.Equal(names, wantNames) {
		t.Errorf("newman ran %q, want %q", names, wantNames)
	}
	if len(run.Failures) != 0 {
		t.Errorf("newman reports %d failures: %s", len(run.Failures), run.Failures)
	}
	if a := run.Stats["assertions"]; a.Total < 13 || a.Failed != 0 {
		t.Errorf("newman assertions: %d, %d failed; want at least 13, none failed", a.Total, a.Failed)
	}
	if t.Failed() {
		t.Logf("newman output:\n%s", stdout)
	}
}

// ---- Node ----

// nodeRunner runs the Node clients of clients/.
type nodeRunner struct {
	node    string   // path of the node binary
	environ []string // environment of every Node process
}

// nodeClients checks that node and the pinned Node packages are installed.
// They are a prerequisite of `make test`, so their absence fails the test
// rather than skipping it: a silent skip would hide that the clients never
// ran.
func nodeClients(t *testing.T) *nodeRunner {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH (%v): install Node.js and npm (Debian: apt-get install nodejs npm, as .ci/run does), then run `make test`", err)
	}
	const hint = "run `make test`, which installs the Node packages pinned in integration/clients/package-lock.json with npm ci"
	for _, f := range []string{
		filepath.Join(nodeClientsDir, "node_modules", "openid-client", "package.json"),
		filepath.Join(nodeClientsDir, "node_modules", ".bin", "newman"),
	} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("Node client package missing: %v: %s", err, hint)
		}
	}
	return &nodeRunner{node: node, environ: nodeEnviron(t)}
}

// nodeEnviron is the environment of Node processes: the test's own, without
// proxy settings (newman honours them, and the gateway is on 127.0.0.1),
// with HOME in the test's temporary directory and without colours.
func nodeEnviron(t *testing.T) []string {
	t.Helper()
	drop := []string{"HOME", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NODE_USE_ENV_PROXY", "FORCE_COLOR", "NO_COLOR"}
	environ := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(drop, strings.ToUpper(name))
	})
	return append(environ, "HOME="+t.TempDir(), "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost",
		"FORCE_COLOR=0") // plain text in test logs
}

// run runs `node args...` in this package's directory with extra
// environment variables, and stops it after nodeTimeout.
func (n *nodeRunner) run(t *testing.T, env []string, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.node, args...)
	cmd.Env = append(slices.Clone(n.environ), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = stopTimeout
	err = cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w (killed after %v)", err, nodeTimeout)
	}
	return out.Bytes(), errOut.Bytes(), err
}
