package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"

	"github.com/oauthgate/oauthgate/caddymodule/cputime"
	"github.com/oauthgate/oauthgate/caddymodule/dpop/dpoptest"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// BenchmarkGuardHandler is the oauth_guard handler as Caddy runs it for
// an allowed request: provisioned from JSON with the oauth app on file
// storage, the default identity headers, the default token cache, and
// Caddy's default log level (info), in front of a handler that writes 200.
// The policy is of the size make bench uses (ten subjects, ten rules).
//
//   - NoGuard is the harness alone: the request reset (the Authorization
//     header copied anew, as net/http reads it), a new replacer, the next
//     handler. Subtract it from the other cases.
//   - SameToken is one sender repeating its token: the cached path.
//   - SameTokenLimited is SameToken with a limit on the deciding rule
//     (a rate and a quota it never reaches): what counting costs.
//   - SameTokenDPoP is SameToken for a DPoP-bound token (cnf.jkt) sent
//     with a fresh ES256 proof on every request (RFC 9449): the proof's
//     signature check, its parse and the replay store (in memory, as on
//     Caddy storage) are what it costs beyond SameToken.
//   - DistinctToken/<alg> is a token never seen before on every request:
//     the signature is checked each time. Less BenchmarkKeyVerify/<alg>
//     (package keys) and NoGuard, it is the guard's own work around the
//     signature.
func BenchmarkGuardHandler(b *testing.B) {
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	b.Run("NoGuard", func(b *testing.B) {
		// An Authorization header as long as the others', a token's.
		q := newBenchRequest(b, "Bearer "+newBenchGuard(b, "ES256").mint(b, 1)[0])
		b.ReportAllocs()
		defer cputime.Start(b)()
		for b.Loop() {
			q.serve(func(w http.ResponseWriter, r *http.Request) error { return next.ServeHTTP(w, r) })
		}
	})
	b.Run("SameToken", func(b *testing.B) {
		g := newBenchGuard(b, "ES256")
		tok := g.mint(b, 1)[0]
		q := newBenchRequest(b, "Bearer "+tok)
		b.ReportAllocs()
		defer cputime.Start(b)()
		for b.Loop() {
			q.serve(func(w http.ResponseWriter, r *http.Request) error { return g.ServeHTTP(w, r, next) })
		}
	})
	b.Run("SameTokenLimited", func(b *testing.B) {
		g := newBenchGuardLimit(b, "ES256", "{rate: 1000000000/s, quota: 1000000000/day}")
		q := newBenchRequest(b, "Bearer "+g.mint(b, 1)[0])
		b.ReportAllocs()
		defer cputime.Start(b)()
		for b.Loop() {
			q.serve(func(w http.ResponseWriter, r *http.Request) error { return g.ServeHTTP(w, r, next) })
		}
	})
	b.Run("SameTokenDPoP", func(b *testing.B) {
		g := newBenchGuard(b, "ES256")
		key := dpoptest.NewKey("ES256")
		tok := g.mintBound(b, key.JKT)
		q := newBenchRequest(b, "DPoP "+tok)
		// Signed before the clock starts, as many as a run of the default
		// benchtime uses: cputime counts the process's CPU, so proofs
		// signed during the loop (timer stopped or not) would count.
		const n = 1 << 15
		proofs := make([]string, n)
		fresh := func() {
			for i := range proofs {
				proofs[i] = key.Proof(dpoptest.Options{Method: "POST", URL: "http://example.com/http/orders/1", AccessToken: tok})
			}
		}
		fresh()
		b.ReportAllocs()
		defer cputime.Start(b)()
		i := 0
		for b.Loop() {
			if i == n {
				b.StopTimer()
				fresh()
				i = 0
				b.StartTimer()
			}
			q.dpop = proofs[i]
			i++
			q.serve(func(w http.ResponseWriter, r *http.Request) error { return g.ServeHTTP(w, r, next) })
		}
	})
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		b.Run("DistinctToken/"+alg, func(b *testing.B) {
			g := newBenchGuard(b, alg)
			// Minting an RSA token takes a millisecond or two: fewer of
			// them, and the cache is emptied each time they are used up,
			// so that every request is a token the guard has not seen.
			n := 4096
			if alg == "RS256" {
				n = 512
			}
			toks := g.mint(b, n)
			auths := make([]string, n)
			for i, tok := range toks {
				auths[i] = "Bearer " + tok
			}
			q := newBenchRequest(b, "")
			jwt := g.guard.Verifier.(*tokenstate.Verifier).JWT
			b.ReportAllocs()
			defer cputime.Start(b)()
			i := 0
			for b.Loop() {
				if i == n {
					b.StopTimer()
					jwt.Cache = tokens.NewCache(0)
					i = 0
					b.StartTimer()
				}
				q.auth = auths[i]
				i++
				q.serve(func(w http.ResponseWriter, r *http.Request) error { return g.ServeHTTP(w, r, next) })
			}
		})
	}
}

// benchGuard is a provisioned oauth_guard handler and its app.
type benchGuard struct {
	*OAuthGuard
	issuer string
}

const benchPolicyRules = 10

// newBenchGuard provisions the oauth app signing with alg and an
// oauth_guard of the default settings. Each algorithm has an issuer of its
// own, so that the guards' token caches (shared by guards that check
// alike) are not shared.
func newBenchGuard(b *testing.B, alg string) *benchGuard {
	b.Helper()
	return newBenchGuardLimit(b, alg, "")
}

// newBenchGuardLimit is newBenchGuard with limit (policy syntax) on the
// rule that decides the benchmark's requests, if not "".
func newBenchGuardLimit(b *testing.B, alg, limit string) *benchGuard {
	b.Helper()
	dir := b.TempDir()
	issuer := "https://" + strings.ToLower(alg) + ".bench.example"
	if limit != "" {
		issuer = "https://" + strings.ToLower(alg) + "-limited.bench.example"
	}
	var policy strings.Builder
	policy.WriteString("subjects:\n  oauth_client_sender: [Orders.send, ESBMessaging.send]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&policy, "  oauth_client_other%d: [Other%d.send, Ops.read]\n", i, i)
	}
	policy.WriteString("rules:\n")
	for i := 1; i < benchPolicyRules; i++ {
		fmt.Fprintf(&policy, "  - path: /http/other%d/*\n    roles: [Other%d.send]\n", i, i)
	}
	policy.WriteString("  - path: /http/*\n    roles: [ESBMessaging.send]\n")
	if limit != "" {
		policy.WriteString("    limit: " + limit + "\n")
	}
	clients := `{"clients": [{"id": "sender", "name": "sender", "secrets": [{"hash": "sha256:` + strings.Repeat("0", 64) + `"}]}]}`
	for name, content := range map[string]string{"policy.yaml": policy.String(), "clients.json": clients} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	app, err := json.Marshal(map[string]any{
		"issuer": issuer, "clients": filepath.Join(dir, "clients.json"), "policy": filepath.Join(dir, "policy.yaml"),
		"signing_algorithm": alg,
	})
	if err != nil {
		b.Fatal(err)
	}
	storage, _ := json.Marshal(map[string]any{"module": "file_system", "root": filepath.Join(dir, "storage")})
	ctx, err := caddy.ProvisionContext(&caddy.Config{
		Admin: &caddy.AdminConfig{Disabled: true},
		// Info, as Caddy's default log is, to nowhere.
		Logging: &caddy.Logging{Logs: map[string]*caddy.CustomLog{"default": {
			BaseLog: caddy.BaseLog{WriterRaw: json.RawMessage(`{"output": "discard"}`), Level: "INFO"},
		}}},
		StorageRaw: storage,
		AppsRaw:    caddy.ModuleMap{"oauth": app},
	})
	if err != nil {
		b.Fatal(err)
	}
	mod, err := ctx.LoadModuleByID("http.handlers.oauth_guard", json.RawMessage(`{}`))
	if err != nil {
		b.Fatal(err)
	}
	return &benchGuard{OAuthGuard: mod.(*OAuthGuard), issuer: issuer}
}

// mint returns n tokens of the sender as the token endpoint issues them.
func (g *benchGuard) mint(b *testing.B, n int) []string {
	b.Helper()
	k := g.app.Keys().Signing()
	now := time.Now()
	out := make([]string, n)
	for i := range out {
		tok, err := tokens.Mint(k, &tokens.Claims{
			Issuer: g.issuer, Subject: "oauth_client_sender", ClientID: "sender",
			Audience: []string{g.issuer}, IssuedAt: now, Expiry: now.Add(time.Hour),
			ID: tokens.NewID(), Scope: []string{"ESBMessaging.send", "Orders.send"},
		})
		if err != nil {
			b.Fatal(err)
		}
		out[i] = tok
	}
	return out
}

// mintBound returns a token of the sender bound to the DPoP key jkt.
func (g *benchGuard) mintBound(b *testing.B, jkt string) string {
	b.Helper()
	now := time.Now()
	c := &tokens.Claims{
		Issuer: g.issuer, Subject: "oauth_client_sender", ClientID: "sender",
		Audience: []string{g.issuer}, IssuedAt: now, Expiry: now.Add(time.Hour),
		ID: tokens.NewID(), Scope: []string{"ESBMessaging.send", "Orders.send"},
	}
	c.Confirmation.JKT = jkt
	tok, err := tokens.Mint(g.app.Keys().Signing(), c)
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// benchRequest is one request, served again and again as Caddy's server
// would hand it to the handler.
type benchRequest struct {
	b    *testing.B
	r    *http.Request
	ctx  *replacerContext
	w    statusWriter
	auth string // the Authorization header the client sends
	dpop string // the DPoP proof it sends, if not ""
}

func newBenchRequest(b *testing.B, auth string) *benchRequest {
	r := httptest.NewRequest("POST", "/http/orders/1", nil)
	for _, h := range []string{"Accept", "Content-Type", "User-Agent"} {
		r.Header.Set(h, "x")
	}
	ctx := &replacerContext{Context: r.Context()}
	return &benchRequest{b: b, r: r.WithContext(ctx), ctx: ctx, auth: auth}
}

// serve restores the request to what the client sent, gives it a new
// replacer as Caddy does, has h serve it and checks that it was allowed.
// The Authorization header is a new string each time, as net/http reads
// it from the connection for each request: a token the handler reads
// has just been copied, not fetched cold from a table of thousands.
func (q *benchRequest) serve(h func(http.ResponseWriter, *http.Request) error) {
	q.r.Header["Authorization"] = []string{strings.Clone(q.auth)}
	if q.dpop != "" {
		q.r.Header["Dpop"] = []string{strings.Clone(q.dpop)}
	}
	for _, name := range []string{"X-Oauth-Client-Id", "X-Oauth-Subject", "X-Oauth-Roles", "X-Oauth-Scope"} {
		delete(q.r.Header, name)
	}
	q.ctx.repl = caddy.NewReplacer()
	q.w.status = 0
	if err := h(&q.w, q.r); err != nil || q.w.status != http.StatusOK {
		q.b.Fatalf("status %d, error %v; want 200", q.w.status, err)
	}
}

// replacerContext carries the request's replacer, which serve replaces
// without making a new request.
type replacerContext struct {
	context.Context
	repl *caddy.Replacer
}

func (c *replacerContext) Value(key any) any {
	if key == caddy.ReplacerCtxKey {
		return c.repl
	}
	return c.Context.Value(key)
}

// statusWriter is a ResponseWriter that keeps the status and drops the
// body.
type statusWriter struct {
	h      http.Header
	status int
}

func (w *statusWriter) Header() http.Header {
	if w.h == nil {
		w.h = make(http.Header)
	}
	return w.h
}

func (w *statusWriter) WriteHeader(status int) { w.status = status }

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}
