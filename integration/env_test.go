package integration

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/oauthgate/oauthgate/caddymodule/clientcert/certtest"
)

// Endpoints of the gateway.
const (
	tokenPath    = "/oauth2/api/v1/token"
	jwksPath     = "/.well-known/jwks.json"
	metadataPath = "/.well-known/oauth-authorization-server"
)

// Roles of the test policy.
const (
	roleMessaging = "ESBMessaging.send"
	roleOrders    = "Orders.send"
)

const (
	// leeway is the gateway's clock leeway for token expiry; it is written
	// into the Caddyfile.
	leeway = time.Second

	readyTimeout   = 20 * time.Second // process start to first answer
	stopTimeout    = 10 * time.Second // SIGINT to exit
	commandTimeout = 30 * time.Second // one CLI invocation
	requestTimeout = 10 * time.Second // one HTTP exchange
	logTimeout     = 5 * time.Second  // a request to its backend log line
)

// policyRules are the rules of every test environment. The public rule is
// last on purpose: the most specific rule must win whatever the order.
const policyRules = `rules:
  - path: /http/orders*
    methods: [POST]
    roles: [Orders.send]
  - path: /http/*
    roles: [ESBMessaging.send]
  - path: /http/ping
    public: true
`

// caddyfileTemplate is the gateway configuration: directory, site address,
// backend address, the values for the global oauth block, the admin
// listener, any further oauth options, guard options, global options,
// site directives, the issuer and the storage directory.
const caddyfileTemplate = `{
	admin %[5]s
	persist_config off
	storage file_system %[11]s
	%[8]s
	oauth {
		issuer %[10]s
		clients %[1]s/clients.json
		policy %[1]s/policy.yaml
		leeway %[4]s
		%[6]s
	}
}

%[2]s {
	%[9]s
	oauth_server
	oauth_guard /http/* {
		%[7]s
	}
	reverse_proxy /http/* %[3]s {
		header_up X-OAuth-Client-ID {http.auth.user.client_id}
		header_up X-OAuth-Subject {http.auth.user.id}
		header_up X-OAuth-Roles {http.auth.user.roles}
	}
}
`

// client is a registered OAuth client as `caddy oauth client add` printed it.
type client struct {
	Name, ID, Secret, Subject string
}

// clientSpec describes a client a test environment registers.
type clientSpec struct {
	name     string
	lifetime string   // passed as --lifetime unless empty
	roles    []string // granted to the client's subject in the policy
}

// The two clients of every environment: A may call the generic flows, B
// only the orders endpoint, which has a custom role.
var (
	specA = clientSpec{name: "sender-a", roles: []string{roleMessaging}}
	specB = clientSpec{name: "sender-b", roles: []string{roleOrders}}
)

// env is one complete, isolated deployment: clients file, policy, backend
// and gateway, all in the test's temporary directory.
type env struct {
	dir         string
	storage     string // Caddy's file_system storage
	clientsFile string
	caddyfile   string
	caddyEnv    []string // environment of every caddy process

	clients map[string]client // by name
	A, B    client

	backend    *backend
	gateway    *process
	gatewayLog *lineLog // output of all gateway runs, for diagnostics
	base       string   // http://127.0.0.1:PORT, https with envConfig.tls
	issuer     string   // base, or the first instance's base for a peer
	admin      string   // the admin API's host:port, if envConfig.admin
	// caFile is, with envConfig.tls, the PEM of the CA of the gateway's
	// certificate, for the clients a test runs to trust.
	caFile string
	http   *http.Client
	cfg    envConfig
}

// newEnv registers clients A, B and extra, writes the policy and the
// Caddyfile, and starts the backend and the gateway. Everything is stopped
// when the test ends.
func newEnv(t *testing.T, extra ...clientSpec) *env {
	t.Helper()
	return newEnvConfig(t, envConfig{}, extra...)
}

// envConfig varies the gateway's configuration.
type envConfig struct {
	admin        bool   // serve Caddy's admin API on a free 127.0.0.1 port
	oauthOptions string // more lines for the global oauth block
	guardOptions string // lines for the oauth_guard block
	global       string // more global options, e.g. debug
	site         string // more directives for the site block, e.g. log
	// ownStorage gives every peer a Caddy storage of its own instead of
	// the first instance's: with a state engine that holds what a fleet
	// shares, it shows that nothing shared goes through the disk.
	ownStorage bool
	// environ is more NAME=value variables for the caddy processes, e.g.
	// OTEL_* for Caddy's tracing.
	environ []string
	// tls serves HTTPS instead of plain http, as a deployment does, with a
	// certificate for 127.0.0.1 of a CA the test makes: base and issuer
	// are https, e.http trusts that CA alone and caFile holds it for the
	// clients a test runs. For the tests of clients that insist on
	// https; the others stay on plain http, which is quicker.
	tls bool
}

// newEnvConfig is newEnv with a varied configuration.
func newEnvConfig(t *testing.T, cfg envConfig, extra ...clientSpec) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		dir:         dir,
		storage:     filepath.Join(dir, "storage"),
		clientsFile: filepath.Join(dir, "clients.json"),
		caddyfile:   filepath.Join(dir, "Caddyfile"),
		caddyEnv:    append(caddyEnviron(t, dir), cfg.environ...),
		clients:     make(map[string]client),
		gatewayLog:  newLineLog(),
		http:        newHTTPClient(nil),
		cfg:         cfg,
	}
	if cfg.tls {
		e.caFile = filepath.Join(dir, serverCAFile)
		e.http = newHTTPClient(clientTLS(serveTLS(t, dir), nil))
	}

	specs := append([]clientSpec{specA, specB}, extra...)
	for _, s := range specs {
		args := []string{"--name", s.name}
		if s.lifetime != "" {
			args = append(args, "--lifetime", s.lifetime)
		}
		e.clients[s.name] = addClient(t, e.caddyEnv, e.clientsFile, args...)
	}
	e.A, e.B = e.clients[specA.name], e.clients[specB.name]

	var policy strings.Builder
	policy.WriteString("subjects:\n")
	for _, s := range specs {
		fmt.Fprintf(&policy, "  %s: [%s]\n", e.clients[s.name].Subject, strings.Join(s.roles, ", "))
	}
	policy.WriteString(policyRules)
	writeFile(t, filepath.Join(dir, "policy.yaml"), policy.String())

	// Registered before the processes start, so it runs after they have
	// stopped and their logs are complete.
	t.Cleanup(func() { e.checkLogHygiene(t) })
	e.backend = startBackend(t, e.http)
	e.writeCaddyfile(t, "")

	// Registered first, so it runs last: after the processes have stopped
	// and their output is complete.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy output:\n%s", e.gatewayLog)
			t.Logf("iflow stdout:\n%s\niflow stderr:\n%s", e.backend.log, e.backend.errLog)
		}
	})
	e.startGateway(t)
	return e
}

// writeCaddyfile writes e's Caddyfile (named after the port if e has
// none yet) for a gateway on a free port and, with envConfig.admin, admin
// API port, whose issuer is issuer, or its own base URL if issuer is "".
func (e *env) writeCaddyfile(t *testing.T, issuer string) {
	t.Helper()
	port := freePort(t)
	if e.caddyfile == "" {
		e.caddyfile = filepath.Join(e.dir, "Caddyfile."+port)
	}
	site, global, directives := "http://127.0.0.1:"+port, e.cfg.global, e.cfg.site
	e.base = site
	if e.cfg.tls {
		// No host in the address, as in mtlsCaddyfile: clients of
		// 127.0.0.1 send no SNI for a site's TLS policy to match on.
		// disable_redirects: no HTTP listener on port 80.
		site, e.base = "https://:"+port, "https://127.0.0.1:"+port
		global = "auto_https disable_redirects\n\t" + global
		directives = fmt.Sprintf("tls %s %s\n\t%s", filepath.Join(e.dir, serverCertFile), filepath.Join(e.dir, serverKeyFile), directives)
	}
	e.issuer = cmp.Or(issuer, e.base)
	admin := "off"
	if e.cfg.admin {
		e.admin = "127.0.0.1:" + freePort(t)
		admin = e.admin
	}
	writeFile(t, e.caddyfile, fmt.Sprintf(caddyfileTemplate, e.dir, site, e.backend.addr, leeway, admin,
		e.cfg.oauthOptions, e.cfg.guardOptions, global, directives, e.issuer, e.storage))
}

// The files serveTLS writes into a test's directory.
const (
	serverCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"
	serverCAFile   = "server-ca.pem"
)

// serveTLS makes a CA and a server certificate of it for 127.0.0.1 (an
// IP SAN: clients of an IP address check it there), writes the
// certificate and its key into dir for Caddy's tls directive and the CA
// for the clients a test runs, and returns the CA. Nothing of it outlives
// the test.
func serveTLS(t *testing.T, dir string) *certtest.Cert {
	t.Helper()
	ca := certtest.NewCA(t, "gateway server CA")
	server := ca.Issue(t, certtest.Options{Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	writeFile(t, filepath.Join(dir, serverCertFile), string(server.CertPEM))
	writeFile(t, filepath.Join(dir, serverKeyFile), string(server.KeyPEM))
	writeFile(t, filepath.Join(dir, serverCAFile), string(ca.CertPEM))
	return ca
}

// clientTLS is the TLS configuration of a client that trusts ca alone
// and presents cert (nil: none).
func clientTLS(ca, cert *certtest.Cert) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Leaf)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.TLS}
	}
	return cfg
}

// peer starts another instance of e's gateway, as a fleet behind one
// token URL runs it: the same storage (unless envConfig.ownStorage),
// clients, policy, issuer and backend, its own port, admin API and log.
// It is stopped when the test ends.
func (e *env) peer(t *testing.T) *env {
	t.Helper()
	p := *e
	p.gatewayLog = newLineLog()
	p.caddyfile = ""
	if p.cfg.ownStorage {
		p.storage = t.TempDir()
	}
	// As in newEnvConfig, the hygiene check runs after the process has
	// stopped, and the output is shown on failure.
	t.Cleanup(func() { checkLogHygiene(t, map[string]*lineLog{"peer caddy output": p.gatewayLog}) })
	p.writeCaddyfile(t, e.issuer)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("peer %s caddy output:\n%s", p.base, p.gatewayLog)
		}
	})
	p.startGateway(t)
	return &p
}

// startGateway runs `caddy run` on the environment's Caddyfile and waits
// until the gateway answers.
func (e *env) startGateway(t *testing.T) {
	t.Helper()
	cmd := exec.Command(caddyBin, "run", "--config", e.caddyfile, "--adapter", "caddyfile")
	cmd.Dir = e.dir
	cmd.Env = e.caddyEnv
	cmd.Stdout = e.gatewayLog
	cmd.Stderr = e.gatewayLog
	e.gateway = startProcess(t, "caddy", cmd)
	e.waitReady(t)
}

// waitReady polls the JWKS endpoint until it answers 200: it is served by
// oauth_server, so it proves the oauth app, not just the listener, is up.
func (e *env) waitReady(t *testing.T) {
	t.Helper()
	probe := &http.Client{Transport: e.http.Transport, Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var last string
		resp, err := probe.Get(e.base + jwksPath)
		if err != nil {
			last = err.Error()
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready within %v (last: %s); caddy output:\n%s", readyTimeout, last, e.gatewayLog)
		}
		select {
		case <-e.gateway.done:
			t.Fatalf("caddy exited before it was ready (%v); output:\n%s", e.gateway.err, e.gatewayLog)
		case <-tick.C:
		}
	}
}

// restartGateway stops caddy with SIGINT, waits for it to exit and starts
// it again on the same configuration and storage.
func (e *env) restartGateway(t *testing.T) {
	t.Helper()
	if err := e.gateway.stop(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(e.gatewayLog, "---- restart (previous run: %v) ----\n", e.gateway.err)
	e.startGateway(t)
}

// setClientDisabled flips "disabled" of a client in the clients file. It
// edits the JSON generically so that fields this test does not know about
// survive. The gateway applies it within half a second.
func (e *env) setClientDisabled(t *testing.T, id string) {
	t.Helper()
	data, err := os.ReadFile(e.clientsFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("clients file: %v", err)
	}
	list, _ := doc["clients"].([]any)
	found := false
	for _, item := range list {
		if c, ok := item.(map[string]any); ok && c["id"] == id {
			c["disabled"] = true
			found = true
		}
	}
	if !found {
		t.Fatalf("client %q not in clients file:\n%s", id, data)
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.clientsFile, string(out))
}

// fetchToken gets an access token for c with golang.org/x/oauth2, the way
// a Go sender would.
func (e *env) fetchToken(t *testing.T, c client, style oauth2.AuthStyle) *oauth2.Token {
	t.Helper()
	cfg := clientcredentials.Config{
		ClientID:       c.ID,
		ClientSecret:   c.Secret,
		TokenURL:       e.base + tokenPath,
		EndpointParams: url.Values{"token_format": {"jwt"}},
		AuthStyle:      style,
	}
	ctx, cancel := context.WithTimeout(t.Context(), requestTimeout)
	defer cancel()
	tok, err := cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, e.http))
	if err != nil {
		t.Fatalf("token for %s: %v", c.Name, err)
	}
	if tok.AccessToken == "" {
		t.Fatalf("token for %s: empty access_token", c.Name)
	}
	return tok
}

// token is the access token of c, fetched with HTTP Basic client auth.
func (e *env) token(t *testing.T, c client) string {
	t.Helper()
	return e.fetchToken(t, c, oauth2.AuthStyleInHeader).AccessToken
}

// call sends a request through the gateway; token, if set, goes into a
// Bearer Authorization header.
func (e *env) call(t *testing.T, method, path, token, body string) response {
	t.Helper()
	req := newRequest(t, method, e.base+path, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(t, e.http, req)
}

// tokenRequest sends a raw request to the token endpoint. form, if not nil,
// is the urlencoded body; user, if not empty, goes into HTTP Basic auth.
func (e *env) tokenRequest(t *testing.T, method string, query, form url.Values, user, pass string) response {
	t.Helper()
	u := e.base + tokenPath
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body string
	if form != nil {
		body = form.Encode()
	}
	req := newRequest(t, method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return send(t, e.http, req)
}

// jwks fetches and decodes the gateway's key set.
func (e *env) jwks(t *testing.T) []map[string]any {
	t.Helper()
	return decodeJWKS(t, e.call(t, http.MethodGet, jwksPath, "", ""))
}

func decodeJWKS(t *testing.T, r response) []map[string]any {
	t.Helper()
	r.wantStatus(t, http.StatusOK)
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	r.decode(t, &set)
	if len(set.Keys) == 0 {
		t.Fatalf("JWKS has no keys: %s", r.body)
	}
	return set.Keys
}

// ---- backend ----

// backendRequest is one access log line of iflow.
type backendRequest struct {
	Method        string `json:"method"`
	Path          string `json:"path"`
	Authorization bool   `json:"authorization"`
	ClientID      string `json:"client_id"`
	Subject       string `json:"subject"`
	Roles         string `json:"roles"`
	CSRFToken     bool   `json:"csrf_token"`
}

// backend is a running iflow and the requests it has logged.
type backend struct {
	addr   string
	proc   *process
	log    *lineLog // stdout: one JSON line per request
	errLog *lineLog
	http   *http.Client
	seen   int // lines already returned by requests
	syncs  int // markers sent so far
}

func startBackend(t *testing.T, hc *http.Client) *backend {
	t.Helper()
	b := &backend{addr: "127.0.0.1:" + freePort(t), log: newLineLog(), errLog: newLineLog(), http: hc}
	cmd := exec.Command(iflowBin, "-listen", b.addr)
	cmd.Stdout = b.log
	cmd.Stderr = b.errLog
	b.proc = startProcess(t, "iflow", cmd)
	ready := "iflow listening on " + b.addr
	if _, ok := b.errLog.waitLine(0, readyTimeout, b.proc.done, func(l string) bool { return l == ready }); !ok {
		t.Fatalf("iflow did not print %q within %v; stderr:\n%s", ready, readyTimeout, b.errLog)
	}
	return b
}

// requests returns the requests the backend received since the previous
// call, oldest first.
//
// The backend logs a request before answering it, but its log reaches us
// through a pipe, so a line can still be in flight when the test has its
// response. requests therefore first sends a marker request straight to the
// backend and waits for the marker's line: everything logged before it has
// then been read, and "the backend saw nothing" is an observation, not a
// race.
func (b *backend) requests(t *testing.T) []backendRequest {
	t.Helper()
	b.syncs++
	marker := fmt.Sprintf("/__sync/%d", b.syncs)
	send(t, b.http, newRequest(t, http.MethodGet, "http://"+b.addr+marker, "")).wantStatus(t, http.StatusOK)

	var got []backendRequest
	idx, ok := b.log.waitLine(b.seen, logTimeout, b.proc.done, func(line string) bool {
		var r backendRequest
		return json.Unmarshal([]byte(line), &r) == nil && r.Path == marker
	})
	if !ok {
		t.Fatalf("backend did not log marker %s within %v; stdout:\n%s", marker, logTimeout, b.log)
	}
	for _, line := range b.log.linesBetween(b.seen, idx) {
		var r backendRequest
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("backend log line %q: %v", line, err)
		}
		got = append(got, r)
	}
	b.seen = idx + 1
	return got
}

// wantRequests asserts the backend received exactly want since the last
// check; an empty want means the gateway let nothing through.
func (b *backend) wantRequests(t *testing.T, want ...backendRequest) {
	t.Helper()
	if got := b.requests(t); !slices.Equal(got, want) {
		t.Errorf("backend received:\n%s\nwant:\n%s", fmtRequests(got), fmtRequests(want))
	}
}

func fmtRequests(rs []backendRequest) string {
	if len(rs) == 0 {
		return "  (nothing)"
	}
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %+v\n", r)
	}
	return b.String()
}

// seenAs is the log line the backend writes for a request that reached it
// through the gateway on behalf of c.
func seenAs(method, path string, c client, roles string) backendRequest {
	return backendRequest{Method: method, Path: path, ClientID: c.ID, Subject: c.Subject, Roles: roles}
}

// ---- processes ----

// process is a started subprocess.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result; read only after done is closed
}

// startProcess starts cmd and makes sure it is stopped when the test ends.
func startProcess(t *testing.T, name string, cmd *exec.Cmd) *process {
	t.Helper()
	// Output goes to in-memory writers through pipes; WaitDelay keeps Wait
	// from hanging on a pipe a grandchild might still hold open.
	cmd.WaitDelay = stopTimeout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Log(err)
		}
	})
	return p
}

// stop sends SIGINT, as an operator pressing Ctrl-C would, and kills the
// process if it has not exited within stopTimeout. It returns an error only
// if the process had to be killed.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s: sending SIGINT: %v; killed it", p.name, err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %v of SIGINT; killed it", p.name, stopTimeout)
	}
}

// lineLog collects the output of a process. exec writes to it from its own
// goroutine while the test reads, hence the lock.
type lineLog struct {
	mu      sync.Mutex
	all     bytes.Buffer
	lines   []string // complete lines, without "\n"
	partial []byte
	changed chan struct{} // closed and replaced when lines grows
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.partial = append(l.partial, p...)
	n := len(l.lines)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	if len(l.lines) > n {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(p), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// waitLine waits until a line with index from or later satisfies match and
// returns its index. It gives up after timeout or once abort is closed (the
// writing process has exited) and nothing matched.
func (l *lineLog) waitLine(from int, timeout time.Duration, abort <-chan struct{}, match func(string) bool) (int, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	exited := false
	for {
		l.mu.Lock()
		for ; from < len(l.lines); from++ {
			if match(l.lines[from]) {
				l.mu.Unlock()
				return from, true
			}
		}
		changed := l.changed
		l.mu.Unlock()
		if exited {
			return -1, false
		}
		select {
		case <-changed:
		case <-abort:
			// Scan once more: the last lines may have come with the exit.
			exited = true
			abort = nil
		case <-timer.C:
			return -1, false
		}
	}
}

// linesBetween returns lines [from, to).
func (l *lineLog) linesBetween(from, to int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines[from:to])
}

// ---- CLI ----

var (
	clientIDLine     = regexp.MustCompile(`(?m)^client_id:\s+(\S+)\s*$`)
	clientSecretLine = regexp.MustCompile(`(?m)^client_secret:\s+(\S+)\s*$`)
	subjectLine      = regexp.MustCompile(`(?m)^subject:\s+(\S+)\s*$`)
	validSecret      = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,}$`)
)

// addClient runs `caddy oauth client add --clients file ARGS...` and
// returns the client it printed, checking the printed form on the way.
func addClient(t *testing.T, environ []string, file string, args ...string) client {
	t.Helper()
	out, _ := runClientAdd(t, environ, file, args...)
	args = append([]string{"oauth", "client", "add", "--clients", file}, args...)
	field := func(re *regexp.Regexp, name string) string {
		t.Helper()
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("caddy %s: no %q line in stdout:\n%s", strings.Join(args, " "), name, out)
		}
		return m[1]
	}
	c := client{
		ID:      field(clientIDLine, "client_id"),
		Secret:  field(clientSecretLine, "client_secret"),
		Subject: field(subjectLine, "subject"),
	}
	if i := slices.Index(args, "--name"); i >= 0 && i+1 < len(args) {
		c.Name = args[i+1]
	}
	if !validSecret.MatchString(c.Secret) {
		t.Fatalf("client_secret %q: want at least 43 characters of [A-Za-z0-9-._~]", c.Secret)
	}
	if want := "oauth_client_" + c.ID; c.Subject != want {
		t.Fatalf("subject = %q, want %q", c.Subject, want)
	}
	sensitive.add(kindSecret, c.Secret)
	return c
}

// runClientAdd runs `caddy oauth client add --clients file ARGS...` in
// file's directory and returns what it printed; a failure ends the test.
func runClientAdd(t *testing.T, environ []string, file string, args ...string) (stdout, stderr string) {
	t.Helper()
	args = append([]string{"oauth", "client", "add", "--clients", file}, args...)
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, args...)
	cmd.Env = environ
	cmd.Dir = filepath.Dir(file)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("caddy %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, &out, &errOut)
	}
	return out.String(), errOut.String()
}

// caddyEnviron is the environment of caddy processes: the test's own, with
// HOME and the XDG directories moved into dir so that nothing outside the
// test's temporary directory is read or written.
func caddyEnviron(t *testing.T, dir string) []string {
	t.Helper()
	moved := map[string]string{
		"HOME":            filepath.Join(dir, "home"),
		"XDG_CONFIG_HOME": filepath.Join(dir, "xdg-config"),
		"XDG_DATA_HOME":   filepath.Join(dir, "xdg-data"),
	}
	environ := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		_, ok := moved[name]
		return ok
	})
	for name, path := range moved {
		if err := os.MkdirAll(path, 0o700); err != nil {
			t.Fatal(err)
		}
		environ = append(environ, name+"="+path)
	}
	return environ
}

// ---- HTTP ----

// response is a fully read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// newHTTPClient is the harness's HTTP client; tlsConfig, if not nil, is
// its TLS configuration for https (see clientTLS).
func newHTTPClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{
		Timeout: requestTimeout,
		Transport: recording{&http.Transport{
			Proxy:           nil, // never send 127.0.0.1 traffic to a proxy from the environment
			TLSClientConfig: tlsConfig,
			// A fresh connection per request: the gateway restarts in some
			// tests, and a pooled connection to the old process would fail.
			DisableKeepAlives: true,
		}},
		// Redirects are answers to check, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func newRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	return req
}

func send(t *testing.T, hc *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

func (r response) wantStatus(t *testing.T, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; WWW-Authenticate: %q; body: %s",
			r.status, want, r.header.Get("WWW-Authenticate"), r.body)
	}
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// wantBearerChallenge asserts a guard rejection: the status and a Bearer
// challenge carrying errCode, if errCode is not empty.
func (r response) wantBearerChallenge(t *testing.T, status int, errCode string) {
	t.Helper()
	r.wantStatus(t, status)
	h := r.header.Get("WWW-Authenticate")
	if !strings.HasPrefix(h, "Bearer realm=") {
		t.Errorf("WWW-Authenticate = %q, want a Bearer challenge starting with `Bearer realm=`", h)
	}
	if want := `error="` + errCode + `"`; errCode != "" && !strings.Contains(h, want) {
		t.Errorf("WWW-Authenticate = %q, want it to contain %s", h, want)
	}
}

// oauthError decodes an RFC 6749 §5.2 error body and returns its code.
func (r response) oauthError(t *testing.T) string {
	t.Helper()
	var body struct {
		Error string `json:"error"`
	}
	r.decode(t, &body)
	return body.Error
}

func (r response) wantNoStore(t *testing.T) {
	t.Helper()
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
}

// ---- JWT ----

// jws is a compact JWS split into its parts.
type jws struct {
	header, claims map[string]any
	rawHeader      string // base64url segments as received
	rawPayload     string
	rawSignature   string
}

func parseJWS(t *testing.T, token string) jws {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments, want 3: %q", len(parts), token)
	}
	j := jws{rawHeader: parts[0], rawPayload: parts[1], rawSignature: parts[2]}
	for _, seg := range []struct {
		name string
		raw  string
		dst  *map[string]any
	}{{"header", parts[0], &j.header}, {"payload", parts[1], &j.claims}} {
		data, err := base64.RawURLEncoding.DecodeString(seg.raw)
		if err != nil {
			t.Fatalf("token %s: %v", seg.name, err)
		}
		if err := json.Unmarshal(data, seg.dst); err != nil {
			t.Fatalf("token %s %s: %v", seg.name, data, err)
		}
	}
	return j
}

// numericClaim returns a NumericDate claim as Unix seconds.
func (j jws) numericClaim(t *testing.T, name string) int64 {
	t.Helper()
	v, ok := j.claims[name].(float64)
	if !ok {
		t.Fatalf("claim %q = %#v, want a number", name, j.claims[name])
	}
	return int64(v)
}

func b64(data []byte) string { return base64.RawURLEncoding.EncodeToString(data) }

func b64JSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(data)
}

// signES256 returns the compact JWS of header.payload signed with key. A JWS
// ES256 signature is r||s, each left-padded to 32 bytes (RFC 7518 §3.4),
// not the ASN.1 form crypto/ecdsa produces.
func signES256(t *testing.T, key *ecdsa.PrivateKey, header, payload string) string {
	t.Helper()
	input := header + "." + payload
	digest := sha256.Sum256([]byte(input))
	der, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	sig.R.FillBytes(raw[:32])
	sig.S.FillBytes(raw[32:])
	return input + "." + b64(raw)
}

// verifyES256 checks the token's signature with a P-256 JWK.
func verifyES256(t *testing.T, j jws, key map[string]any) bool {
	t.Helper()
	coord := func(name string) []byte {
		t.Helper()
		s, _ := key[name].(string)
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			t.Fatalf("JWK %s = %q: want 32 bytes of base64url (err %v)", name, s, err)
		}
		return b
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), slices.Concat([]byte{4}, coord("x"), coord("y")))
	if err != nil {
		t.Fatalf("JWK is not a P-256 point: %v", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(j.rawSignature)
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: want 64 bytes of base64url, got %d (err %v)", len(sig), err)
	}
	digest := sha256.Sum256([]byte(j.rawHeader + "." + j.rawPayload))
	return ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}

// ---- misc ----

// freePort returns a port that was free a moment ago on 127.0.0.1.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ---- clients with a chosen secret ----

// registerClientWithSecret runs `caddy oauth client add --secret-stdin` with
// secret on standard input and returns the client it registered. The
// secret must not be printed back.
func registerClientWithSecret(t *testing.T, environ []string, file, name, secret string) client {
	t.Helper()
	args := []string{"oauth", "client", "add", "--clients", file, "--name", name, "--secret-stdin"}
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, args...)
	cmd.Env = environ
	cmd.Dir = filepath.Dir(file)
	cmd.Stdin = strings.NewReader(secret + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("caddy %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, &stdout, &stderr)
	}
	out := stdout.String()
	if strings.Contains(out+stderr.String(), secret) {
		t.Fatalf("caddy %s printed the secret it read from stdin", strings.Join(args, " "))
	}
	sensitive.add(kindSecret, secret)
	c := client{Name: name, Secret: secret}
	for _, f := range []struct {
		re   *regexp.Regexp
		name string
		dst  *string
	}{{clientIDLine, "client_id", &c.ID}, {subjectLine, "subject", &c.Subject}} {
		m := f.re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("caddy %s: no %q line in stdout:\n%s", strings.Join(args, " "), f.name, out)
		}
		*f.dst = m[1]
	}
	if want := "oauth_client_" + c.ID; c.Subject != want {
		t.Fatalf("subject = %q, want %q", c.Subject, want)
	}
	return c
}

// addClientWithSecret registers a client whose secret a person chose,
// grants its subject roles in the policy and restarts the gateway so that
// it knows the client.
func (e *env) addClientWithSecret(t *testing.T, name, secret string, roles ...string) client {
	t.Helper()
	c := registerClientWithSecret(t, e.caddyEnv, e.clientsFile, name, secret)
	e.grant(t, c, roles...)
	e.clients[name] = c
	e.restartGateway(t)
	return c
}

// grant gives c's subject roles in the policy file.
func (e *env) grant(t *testing.T, c client, roles ...string) {
	t.Helper()
	policyFile := filepath.Join(e.dir, "policy.yaml")
	policy, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	const head = "subjects:\n"
	if !bytes.HasPrefix(policy, []byte(head)) {
		t.Fatalf("policy file does not start with %q:\n%s", head, policy)
	}
	grant := fmt.Sprintf("  %s: [%s]\n", c.Subject, strings.Join(roles, ", "))
	writeFile(t, policyFile, head+grant+string(policy[len(head):]))
}
