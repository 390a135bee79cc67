package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/oauthgate/oauthgate/caddymodule/clientcert/certtest"
)

// Client certificates (RFC 8705) end to end: Caddy serves TLS on
// 127.0.0.1 with a server certificate of a CA the test makes and asks
// for client certificates (client_auth mode request: the gateway, not
// Caddy, verifies them); two more listeners stand for a TLS-terminating
// proxy in front of the gateway, one from a trusted_proxies address and
// one from an untrusted one.

// mtlsCaddyfile: directory, TLS port, trusted-proxy port, untrusted
// port, backend.
const mtlsCaddyfile = `{
	admin off
	persist_config off
	auto_https disable_redirects
	storage file_system %[1]s/storage
	servers :%[2]s {
		# Clients of 127.0.0.1 send no SNI, which Caddy's strict SNI-Host
		# check (on by default with client_auth) would refuse with 421.
		# Certificates here authenticate clients, not virtual hosts.
		strict_sni_host insecure_off
	}
	servers :%[3]s {
		trusted_proxies static 127.0.0.1/32
	}
	oauth {
		issuer https://127.0.0.1:%[2]s
		clients %[1]s/clients.json
		policy %[1]s/policy.yaml
		client_certificates {
			trusted_ca_file %[1]s/client-ca.pem
			header X-Client-Cert
		}
	}
}

(gateway) {
	oauth_server
	oauth_guard /http/*
	reverse_proxy /http/* %[5]s {
		header_up X-OAuth-Client-ID {http.auth.user.client_id}
		header_up X-OAuth-Subject {http.auth.user.id}
		header_up X-OAuth-Roles {http.auth.user.roles}
	}
}

# No host in the address: a TLS policy of a site named 127.0.0.1 would
# match on SNI, which clients of an IP address do not send, and the
# fallback policy asks for no client certificate.
https://:%[2]s {
	tls %[1]s/server.pem %[1]s/server-key.pem {
		client_auth {
			mode request
		}
	}
	import gateway
}

http://127.0.0.1:%[3]s {
	import gateway
}

http://127.0.0.1:%[4]s {
	import gateway
}
`

// mtlsEnv is a gateway with client certificates on.
type mtlsEnv struct {
	dir      string
	serverCA *certtest.Cert // signs the gateway's TLS certificate
	// erp authenticates by tls_client_auth (its subject DN, a certificate
	// of the client CA); edge by self_signed_tls_client_auth; legacy by
	// a secret, its tokens unbound.
	erp, edge, legacy client
	erpCert, edgeCert *certtest.Cert
	clientCA          *certtest.Cert
	backend           *backend
	gatewayLog        *lineLog
	tlsBase           string // https://127.0.0.1:P
	trustedBase       string // http, from a trusted proxy
	untrustedBase     string // http, from anyone
	http              *http.Client
}

const erpSubject = "CN=erp-sender,O=Example Corp,C=DE"

func erpName() pkix.Name {
	return pkix.Name{CommonName: "erp-sender", Organization: []string{"Example Corp"}, Country: []string{"DE"}}
}

func newMTLSEnv(t *testing.T) *mtlsEnv {
	t.Helper()
	dir := t.TempDir()
	e := &mtlsEnv{dir: dir, gatewayLog: newLineLog(), http: newHTTPClient(nil)}
	environ := caddyEnviron(t, dir)
	e.serverCA = serveTLS(t, dir)
	e.clientCA = certtest.NewCA(t, "sender client CA")
	e.erpCert = e.clientCA.Issue(t, certtest.Options{Subject: erpName()})
	e.edgeCert = certtest.SelfSigned(t, certtest.Options{Subject: pkix.Name{CommonName: "edge"}})
	writeFile(t, filepath.Join(dir, "client-ca.pem"), string(e.clientCA.CertPEM))
	writeFile(t, filepath.Join(dir, "edge.pem"), string(e.edgeCert.CertPEM))

	clientsFile := filepath.Join(dir, "clients.json")
	e.erp = addCertClient(t, environ, clientsFile, "--name", "erp", "--tls-subject", erpSubject)
	e.edge = addCertClient(t, environ, clientsFile, "--name", "edge", "--certificate", filepath.Join(dir, "edge.pem"))
	e.legacy = addClient(t, environ, clientsFile, "--name", "legacy")
	var policy strings.Builder
	policy.WriteString("subjects:\n")
	for _, c := range []client{e.erp, e.edge, e.legacy} {
		fmt.Fprintf(&policy, "  %s: [%s]\n", c.Subject, roleMessaging)
	}
	policy.WriteString("rules:\n  - path: /http/secure/*\n    roles: [" + roleMessaging + "]\n    binding: [mtls]\n" +
		"  - path: /http/shadow/*\n    roles: [" + roleMessaging + "]\n    binding: [mtls]\n    report_only: true\n" +
		"  - path: /http/*\n    roles: [" + roleMessaging + "]\n")
	writeFile(t, filepath.Join(dir, "policy.yaml"), policy.String())

	t.Cleanup(func() { checkLogHygiene(t, map[string]*lineLog{"caddy output": e.gatewayLog}) })
	e.backend = startBackend(t, e.http)
	ports := []string{freePort(t), freePort(t), freePort(t)}
	e.tlsBase = "https://127.0.0.1:" + ports[0]
	e.trustedBase, e.untrustedBase = "http://127.0.0.1:"+ports[1], "http://127.0.0.1:"+ports[2]
	caddyfile := filepath.Join(dir, "Caddyfile")
	writeFile(t, caddyfile, fmt.Sprintf(mtlsCaddyfile, dir, ports[0], ports[1], ports[2], e.backend.addr))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy output:\n%s", e.gatewayLog)
		}
	})
	cmd := exec.Command(caddyBin, "run", "--config", caddyfile, "--adapter", "caddyfile")
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, environ, e.gatewayLog, e.gatewayLog
	gw := startProcess(t, "caddy", cmd)
	(&env{base: e.tlsBase, gateway: gw, gatewayLog: e.gatewayLog, http: e.tlsClient(nil)}).waitReady(t)
	return e
}

// addCertClient registers a client by certificate with the CLI: it
// prints no secret.
func addCertClient(t *testing.T, environ []string, file string, args ...string) client {
	t.Helper()
	stdout, stderr := runClientAdd(t, environ, file, args...)
	if out := stdout + stderr; clientSecretLine.MatchString(out) {
		t.Fatalf("caddy oauth client add %s printed a secret for a certificate client:\n%s", strings.Join(args, " "), out)
	}
	id := clientIDLine.FindStringSubmatch(stdout)
	if id == nil {
		t.Fatalf("no client_id in:\n%s", stdout)
	}
	return client{Name: args[slices.Index(args, "--name")+1], ID: id[1], Subject: "oauth_client_" + id[1]}
}

// tlsClient is the harness's HTTP client, trusting the gateway's CA and
// presenting cert (nil: none).
func (e *mtlsEnv) tlsClient(cert *certtest.Cert) *http.Client {
	return newHTTPClient(clientTLS(e.serverCA, cert))
}

// tokenFor asks base's token endpoint for a token in SAP's form with
// client_id in the body and no secret; header adds request headers.
func (e *mtlsEnv) tokenFor(t *testing.T, hc *http.Client, base, clientID string, header http.Header) response {
	t.Helper()
	req := newRequest(t, http.MethodPost, base+tokenPath+"?grant_type=client_credentials&token_format=jwt", url.Values{"client_id": {clientID}}.Encode())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	return send(t, hc, req)
}

func (e *mtlsEnv) callWith(t *testing.T, hc *http.Client, base, path, token string, header http.Header) response {
	t.Helper()
	req := newRequest(t, http.MethodGet, base+path, "")
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range header {
		req.Header[k] = v
	}
	return send(t, hc, req)
}

func accessToken(t *testing.T, r response) string {
	t.Helper()
	return tokenOfType(t, r, "Bearer") // RFC 8705 §3: a certificate-bound token is a Bearer token
}

// wantBoundTo checks the token's cnf x5t#S256 against cert.
func wantBoundTo(t *testing.T, token string, cert *certtest.Cert) {
	t.Helper()
	cnf, _ := parseJWS(t, token).claims["cnf"].(map[string]any)
	sum := sha256.Sum256(cert.Leaf.Raw)
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); cnf["x5t#S256"] != want || len(cnf) != 1 {
		t.Errorf("cnf = %v, want x5t#S256 %s", cnf, want)
	}
}

// proxyHeader is the certificate as nginx's $ssl_client_escaped_cert.
func proxyHeader(cert *certtest.Cert) http.Header {
	return http.Header{"X-Client-Cert": {url.QueryEscape(string(cert.CertPEM))}}
}

// SAP's token call with curl and a client certificate: the token is
// bound to the certificate, and opens the flow only over it.
func TestMTLS_CurlGetsACertificateBoundTokenTheSAPWay(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("this test needs curl on PATH (CI installs it): %v", err)
	}
	e := newMTLSEnv(t)
	writeFile(t, filepath.Join(e.dir, "erp.pem"), string(e.erpCert.CertPEM))
	writeFile(t, filepath.Join(e.dir, "erp-key.pem"), string(e.erpCert.KeyPEM))
	run := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, curl, append([]string{"-sS", "--noproxy", "*", "--max-time", "10",
			"--cacert", filepath.Join(e.dir, serverCAFile)}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl: %v\nstderr: %s\nstdout: %s", err, &stderr, out)
		}
		return out
	}
	cert := []string{"--cert", filepath.Join(e.dir, "erp.pem"), "--key", filepath.Join(e.dir, "erp-key.pem")}
	out := run(append(cert, "-X", "POST", "-d", "client_id="+e.erp.ID,
		e.tlsBase+tokenPath+"?grant_type=client_credentials&token_format=jwt")...)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(out, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("curl got %s, want a token response (%v)", out, err)
	}
	sensitive.add(kindToken, tok.AccessToken)
	if tok.TokenType != "Bearer" {
		t.Errorf("token_type = %q, want Bearer", tok.TokenType)
	}
	wantBoundTo(t, tok.AccessToken, e.erpCert)

	status := func(extra ...string) string {
		return string(run(append(extra, "-o", os.DevNull, "-w", "%{http_code}", "-H", "Authorization: Bearer "+tok.AccessToken,
			e.tlsBase+"/http/secure/orders")...))
	}
	if got := status(cert...); got != "200" {
		t.Fatalf("the bound token over its certificate: status %s, want 200", got)
	}
	e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/secure/orders", e.erp, roleMessaging))
	if got := status(); got != "401" {
		t.Fatalf("the bound token without a certificate: status %s, want 401", got)
	}
	e.backend.wantRequests(t)
}

// golang.org/x/oauth2's clientcredentials over an http.Client with a TLS
// client certificate (self_signed_tls_client_auth, client_id in the
// form, no secret), then its client calls a rule that demands mtls.
func TestMTLS_GoOAuth2ClientCredentialsOverAClientCertificate(t *testing.T) {
	t.Parallel()
	e := newMTLSEnv(t)
	cfg := clientcredentials.Config{ClientID: e.edge.ID, TokenURL: e.tlsBase + tokenPath, AuthStyle: oauth2.AuthStyleInParams}
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, e.tlsClient(e.edgeCert))
	tok, err := cfg.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantBoundTo(t, tok.AccessToken, e.edgeCert)
	resp, err := cfg.Client(ctx).Get(e.tlsBase + "/http/secure/flow")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/secure/flow", e.edge, roleMessaging))
}

// The attacks on certificate binding and certificate authentication,
// each against the running gateway; none reaches the backend.
func TestMTLS_Attacks(t *testing.T) {
	t.Parallel()
	e := newMTLSEnv(t)
	erpTLS, edgeTLS, bare := e.tlsClient(e.erpCert), e.tlsClient(e.edgeCert), e.tlsClient(nil)
	bound := accessToken(t, e.tokenFor(t, erpTLS, e.tlsBase, e.erp.ID, nil))
	wantBoundTo(t, bound, e.erpCert)
	stranger := certtest.NewCA(t, "stranger CA").Issue(t, certtest.Options{Subject: erpName()})
	otherSubject := e.clientCA.Issue(t, certtest.Options{Subject: pkix.Name{CommonName: "someone-else", Organization: []string{"Example Corp"}, Country: []string{"DE"}}})
	legacyBearer := accessToken(t, func() response {
		r := newRequest(t, http.MethodPost, e.tlsBase+tokenPath+"?grant_type=client_credentials", "")
		r.SetBasicAuth(e.legacy.ID, e.legacy.Secret)
		return send(t, bare, r)
	}())

	for _, tc := range []struct {
		name     string
		do       func() response
		status   int
		code     string
		wantDesc string
	}{
		{"a certificate-bound token with another certificate", func() response {
			return e.callWith(t, edgeTLS, e.tlsBase, "/http/flow", bound, nil)
		}, 401, "invalid_token", "presents another one"},
		{"a certificate-bound token with none", func() response {
			return e.callWith(t, bare, e.tlsBase, "/http/flow", bound, nil)
		}, 401, "invalid_token", "presents none"},
		{"a certificate from an unknown CA for tls_client_auth", func() response {
			return e.tokenFor(t, e.tlsClient(stranger), e.tlsBase, e.erp.ID, nil)
		}, 401, "invalid_client", ""},
		{"a certificate of the CA whose subject does not match", func() response {
			return e.tokenFor(t, e.tlsClient(otherSubject), e.tlsBase, e.erp.ID, nil)
		}, 401, "invalid_client", ""},
		{"another client's certificate", func() response {
			return e.tokenFor(t, edgeTLS, e.tlsBase, e.erp.ID, nil)
		}, 401, "invalid_client", ""},
		{"no certificate and no secret", func() response {
			return e.tokenFor(t, bare, e.tlsBase, e.erp.ID, nil)
		}, 401, "invalid_client", ""},
		{"a bearer token on a rule that demands mtls", func() response {
			return e.callWith(t, erpTLS, e.tlsBase, "/http/secure/flow", legacyBearer, nil)
		}, 401, "invalid_token", "requires a sender-constrained token"},
		{"the proxy header from an untrusted address at the token endpoint", func() response {
			return e.tokenFor(t, e.http, e.untrustedBase, e.erp.ID, proxyHeader(e.erpCert))
		}, 401, "invalid_client", ""},
		{"the proxy header from an untrusted address at the guard", func() response {
			return e.callWith(t, e.http, e.untrustedBase, "/http/flow", bound, proxyHeader(e.erpCert))
		}, 401, "invalid_token", "presents none"},
		{"another certificate in the header of a trusted proxy", func() response {
			return e.callWith(t, e.http, e.trustedBase, "/http/flow", bound, proxyHeader(e.edgeCert))
		}, 401, "invalid_token", "presents another one"},
		{"an oversized certificate header from a trusted proxy", func() response {
			return e.tokenFor(t, e.http, e.trustedBase, e.erp.ID, http.Header{"X-Client-Cert": {strings.Repeat("A", 17<<10)}})
		}, 400, "invalid_request", "too long"},
		{"an oversized certificate header at the guard", func() response {
			return e.callWith(t, e.http, e.trustedBase, "/http/flow", bound, http.Header{"X-Client-Cert": {strings.Repeat("A", 17<<10)}})
		}, 400, "invalid_request", "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.do()
			if r.status != tc.status || r.oauthError(t) != tc.code {
				t.Fatalf("status %d %s, want %d %s; body %s", r.status, r.oauthError(t), tc.status, tc.code, r.body)
			}
			if tc.wantDesc != "" && !strings.Contains(string(r.body), tc.wantDesc) {
				t.Errorf("body %s does not say %q", r.body, tc.wantDesc)
			}
			e.backend.wantRequests(t)
		})
	}

	t.Run("an opaque certificate-bound token is bound too", func(t *testing.T) {
		req := newRequest(t, http.MethodPost, e.tlsBase+tokenPath+"?grant_type=client_credentials&token_format=opaque",
			url.Values{"client_id": {e.erp.ID}}.Encode())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		opaque := accessToken(t, send(t, erpTLS, req))
		r := e.callWith(t, edgeTLS, e.tlsBase, "/http/flow", opaque, nil)
		if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "presents another one") {
			t.Fatalf("opaque bound token with another certificate: %d %s", r.status, r.body)
		}
		e.backend.wantRequests(t)
		e.callWith(t, erpTLS, e.tlsBase, "/http/flow", opaque, nil).wantStatus(t, http.StatusOK)
		e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/flow", e.erp, roleMessaging))
	})
	t.Run("report_only lets a bearer token through a rule that demands mtls, without an identity", func(t *testing.T) {
		e.callWith(t, bare, e.tlsBase, "/http/shadow/flow", legacyBearer, nil).wantStatus(t, http.StatusOK)
		e.backend.wantRequests(t, backendRequest{Method: http.MethodGet, Path: "/http/shadow/flow"})
		if _, ok := e.gatewayLog.waitLine(0, logTimeout, nil, func(l string) bool {
			return strings.Contains(l, "request would be refused (report only)") && strings.Contains(l, "binding_required")
		}); !ok {
			t.Error("no report-only log line with reason binding_required")
		}
	})

	// The legitimate counterparts, in the same gateway: the header of a
	// trusted proxy authenticates and binds like the connection's
	// certificate, and the bound token passes there with it.
	t.Run("the header of a trusted proxy counts", func(t *testing.T) {
		viaProxy := accessToken(t, e.tokenFor(t, e.http, e.trustedBase, e.erp.ID, proxyHeader(e.erpCert)))
		wantBoundTo(t, viaProxy, e.erpCert)
		e.callWith(t, e.http, e.trustedBase, "/http/secure/flow", bound, proxyHeader(e.erpCert)).wantStatus(t, http.StatusOK)
		e.backend.wantRequests(t, seenAs(http.MethodGet, "/http/secure/flow", e.erp, roleMessaging))
	})
	t.Run("the metadata names the certificate methods", func(t *testing.T) {
		var m struct {
			Methods []string `json:"token_endpoint_auth_methods_supported"`
			Bound   bool     `json:"tls_client_certificate_bound_access_tokens"`
		}
		r := send(t, bare, newRequest(t, http.MethodGet, e.tlsBase+metadataPath, ""))
		r.wantStatus(t, http.StatusOK)
		r.decode(t, &m)
		if !m.Bound || !strings.Contains(strings.Join(m.Methods, " "), "tls_client_auth self_signed_tls_client_auth") {
			t.Errorf("metadata %s", r.body)
		}
	})
}
