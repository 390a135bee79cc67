package caddymodule

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/csrf"
	"github.com/oauthgate/oauthgate/caddymodule/dpop"
	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/oauthjson"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
	"github.com/oauthgate/oauthgate/caddymodule/ratelimit"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

func init() {
	caddy.RegisterModule(OAuthGuard{})
}

// OAuthGuard is the "oauth_guard" handler: the OAuth 2.0 resource server in
// front of a backend. For each request it finds the policy rule for the
// method and path, verifies the Bearer token (unless the rule is public),
// and checks that the token's subject holds a role the rule requires.
//
// A denied request is answered here (RFC 6750: 400 invalid_request, 401
// with a Bearer challenge, or 403 insufficient_scope; 429 for a caller
// over a limit of the policy, with Retry-After and the RateLimit-Policy
// and RateLimit fields) and never reaches the next handler; every
// challenge names the realm and the RFC 9728
// document at /.well-known/oauth-protected-resource, which the guard
// serves. An allowed request goes on without its Authorization header
// (unless keep_authorization), with any client-supplied copies of the
// identity headers removed and the caller's identity set in those headers
// and in placeholders for header_up:
//
//	{http.auth.user.id}         the token subject, oauth_client_<client ID>
//	{http.auth.user.client_id}  the client ID
//	{http.auth.user.roles}      the caller's roles that the token's scope
//	                            allows, comma-separated
//	{http.auth.user.scope}      the token's scope, space-separated
//
// On a public rule no token is looked at and these are empty.
//
// Behind Caddy's tracing handler, the request's span tells the decision,
// its reason, the deciding rule and the client (docs/reference.md#traces).
type OAuthGuard struct {
	// Realm names the protection space in WWW-Authenticate challenges.
	// Default: "oauthgate".
	Realm string `json:"realm,omitempty"`

	// Audience is what one of the gateway's own tokens must name in "aud"
	// for this guard to accept it: the resource server it protects.
	// Default: the oauth app's audience. A trusted issuer's tokens are
	// held to its trust block's audience instead, at every guard.
	Audience string `json:"audience,omitempty"`

	// MaxTokenSize bounds the Bearer token in bytes; a longer one is
	// refused with 400 before any decoding. Default: 8192.
	MaxTokenSize int `json:"max_token_size,omitempty"`

	// IdentityHeaders names the request headers the guard sets for the
	// backend, by what they carry: "client_id", "subject", "roles",
	// "scope" (lists joined with commas). Copies a client sent are always
	// removed first, so a backend can trust them. An empty name turns one
	// off. Default: X-OAuth-Client-ID, X-OAuth-Subject, X-OAuth-Roles,
	// X-OAuth-Scope.
	IdentityHeaders map[string]string `json:"identity_headers,omitempty"`

	// KeepAuthorization passes the Authorization header on to the backend.
	// Default: removed, so the token goes no further than it must.
	KeepAuthorization bool `json:"keep_authorization,omitempty"`

	// TokenQuery and TokenCookie also accept the token from this query
	// parameter (RFC 6750 §2.3; usually "access_token") or cookie. By
	// default the token comes from the Authorization header only, and an
	// access_token query parameter is refused with 400: URLs end up in
	// logs. A query token is removed from the URL before the backend.
	TokenQuery  string `json:"token_query,omitempty"`
	TokenCookie string `json:"token_cookie,omitempty"`

	// AllowPreflight lets CORS preflight requests (OPTIONS with Origin and
	// Access-Control-Request-Method) through without a token; browsers
	// never send one on a preflight.
	AllowPreflight bool `json:"allow_preflight,omitempty"`

	// TokenCache is how many verified tokens the guard remembers, so that a
	// token sent again skips the signature check until it expires (about
	// 1.6 KB of memory each, 2 KB once a token is sent a second time and
	// what the backend is told about it is kept too). Revocation, disabled
	// clients and the policy are still checked on every request. A token
	// is kept from its second verification on: one sent only once (a
	// client that fetches a token per request) is never read again, and
	// keeping it would only evict the tokens that are. -1 turns the cache
	// off. Default: 30000 (about 60 MB at most).
	TokenCache int `json:"token_cache,omitempty"`

	// ReportOnly runs the guard in shadow mode: every decision is made and
	// logged ("request would be refused (report only)"), and every request
	// goes through. A single
	// policy rule can do the same with report_only: true. This is how a
	// gateway goes in front of a legacy service without breaking its
	// callers on day one.
	ReportOnly bool `json:"report_only,omitempty"`

	// CSRFTokenLifetime is how long a CSRF token is valid from its fetch.
	// On a policy rule with csrf: true (SAP Cloud Integration's "CSRF
	// Protected"), a GET or HEAD with "X-CSRF-Token: Fetch" is answered by
	// the guard itself, 200 with the token in X-CSRF-Token, bound to the
	// calling client; a request of any other method but OPTIONS and TRACE
	// without a valid token of its client gets 403 with "X-CSRF-Token:
	// Required". The backend never sees the X-CSRF-Token header. Tokens
	// are signed with a key in the gateway's state, so one fetched at any
	// instance of a fleet is valid at all of them. Default: 30m.
	CSRFTokenLifetime caddy.Duration `json:"csrf_token_lifetime,omitempty"`

	// DPoPAlgorithms are the algorithms a DPoP proof (RFC 9449) may be
	// signed with. A DPoP-bound token (cnf.jkt) is accepted only as
	// "Authorization: DPoP <token>" with a proof in the DPoP header,
	// signed by the token's key, for this method and URL, with the
	// token's hash (ath), at most dpop_max_age old, and never sent
	// before (at any instance sharing the state engine). Such a token
	// sent as Bearer, and an unbound token sent as DPoP, are refused.
	// Asymmetric algorithms only. Default: ES256, ES384, ES512, EdDSA,
	// RS256, RS384, RS512, PS256, PS384, PS512.
	DPoPAlgorithms []string `json:"dpop_algorithms,omitempty"`

	// DPoPMaxAge is how old a proof's iat may be (5 s ahead are allowed
	// for clock skew). Default: 1m.
	DPoPMaxAge caddy.Duration `json:"dpop_max_age,omitempty"`

	// DPoPNonce makes every DPoP proof carry a server nonce (RFC 9449
	// §9): a proof without a valid one gets 401 use_dpop_nonce with a
	// fresh nonce in DPoP-Nonce. Nonces are stateless (an expiry and an
	// HMAC under the key the CSRF tokens use), so one issued by any
	// instance of a fleet is good at all of them for 5 minutes.
	DPoPNonce bool `json:"dpop_nonce,omitempty"`

	// ExternalURL is the scheme and host (and port) clients address this
	// guard by, such as https://api.example.com, when a proxy in front
	// changes them: a DPoP proof's htu must name it. X-Forwarded-* are
	// never read for this. Default: the request's own Host, with https
	// when the request came over TLS.
	ExternalURL string `json:"external_url,omitempty"`

	app     *App
	guard   *guard.Guard
	forward *guard.Forwarder
	cache   *tokens.Cache
	held    holds
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (OAuthGuard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth_guard",
		New: func() caddy.Module { return new(OAuthGuard) },
	}
}

// Provision connects the handler to the oauth app.
func (g *OAuthGuard) Provision(ctx caddy.Context) error {
	app, err := oauthApp(ctx)
	if err != nil {
		return err
	}
	g.app = app
	g.logger = ctx.Logger()
	if g.Realm == "" {
		g.Realm = defaultRealm
	}
	if g.MaxTokenSize == 0 {
		g.MaxTokenSize = guard.DefaultMaxTokenSize
	}
	if g.Audience == "" {
		g.Audience = app.Audience
	}
	if g.CSRFTokenLifetime == 0 {
		g.CSRFTokenLifetime = caddy.Duration(csrf.DefaultLifetime)
	}
	if g.TokenCache >= 0 {
		if g.cache, err = holdTokenCache(&g.held, app.Issuer, g.Audience, time.Duration(app.Leeway), g.TokenCache); err != nil {
			return err
		}
	}
	g.guard = &guard.Guard{
		Policy:         app,
		Verifier:       app.verifier(g.Audience, g.cache),
		Issuers:        app.guardIssuers(),
		MaxTokenSize:   g.MaxTokenSize,
		QueryParam:     g.TokenQuery,
		Cookie:         g.TokenCookie,
		AllowPreflight: g.AllowPreflight,
		ClientIP:       clientIP,
	}
	g.guard.Certificates = g.app.guardCertificates()
	proofs, err := newDPoP(app, g.DPoPAlgorithms, g.DPoPMaxAge)
	if err != nil {
		return fmt.Errorf("oauth_guard: %w", err)
	}
	if g.DPoPNonce {
		proofs.Nonces = dpopNonces{app.csrf}
	}
	dp := guard.NewDPoPProofs(proofs, g.ExternalURL)
	dp.OriginalPath = originalPath
	g.guard.DPoP = dp
	g.forward = guard.NewForwarder(guard.ForwardOptions{
		IdentityHeaders:   g.IdentityHeaders,
		KeepAuthorization: g.KeepAuthorization,
		TokenQuery:        g.TokenQuery,
		TokenCookie:       g.TokenCookie,
		CertificateHeader: app.certificateHeader(),
	})
	return nil
}

// Cleanup lets go of the guard's token cache; a guard of the next config
// that checks alike keeps it.
func (g *OAuthGuard) Cleanup() error {
	g.held.release()
	return nil
}

// Validate checks the configuration.
func (g *OAuthGuard) Validate() error {
	if g.MaxTokenSize < 0 {
		return errors.New("oauth_guard: max_token_size must not be negative")
	}
	if g.CSRFTokenLifetime < 0 {
		return errors.New("oauth_guard: csrf_token_lifetime must not be negative")
	}
	if g.TokenCache < -1 {
		return errors.New("oauth_guard: token_cache must be a number of tokens, or -1 for none")
	}
	if g.ExternalURL != "" {
		if u, ok := dpop.NormalizeURL(g.ExternalURL); !ok || u != strings.TrimSuffix(u, "/")+"/" || strings.Count(u, "/") != 3 {
			return fmt.Errorf("oauth_guard: external_url %q is not a scheme and host such as https://api.example.com", g.ExternalURL)
		}
	}
	if err := guard.CheckIdentityHeaders(g.IdentityHeaders); err != nil {
		return fmt.Errorf("oauth_guard: %w", err)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (g *OAuthGuard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.URL.Path == guard.ResourceMetadataPath {
		guard.ServeResourceMetadata(w, r, guard.Resource{
			ID:         g.Audience,
			Issuer:     g.app.Issuer,
			Name:       g.Realm,
			TokenQuery: g.TokenQuery != "",
			DPoPAlgs:   g.guard.DPoP.Algs(),
		})
		return nil
	}
	var d guard.Decision
	g.guard.Decide(r, &d)
	if d.Rule != nil && d.Rule.CSRF && g.checkCSRF(w, r, &d) {
		return nil
	}
	var limited ratelimit.Verdict
	if d.Err == nil {
		// Last of the steps after the decision: a request refused for
		// any other reason uses up none of the caller's budget.
		limited = g.limit(&d)
	}
	g.count(r.Context(), &d)
	if d.Err != nil {
		shadow := g.shadow(&d)
		g.logDenial(r, &d, shadow)
		switch {
		case !shadow:
			if limited.Refused {
				h := w.Header()
				h.Set("RateLimit-Policy", limited.Policy)
				h.Set("RateLimit", limited.State)
			}
			g.refuse(w, r, d.Err)
			return nil
		case limited.Refused:
			d.Err = nil // an allowed caller over its limit: through, as itself
		default:
			d = guard.Decision{Rule: d.Rule} // through, but with no identity
		}
	}
	g.pass(r, &d)
	return next.ServeHTTP(w, r)
}

// refuse answers a refused request: an RFC 6750 challenge, or for a
// missing or bad CSRF token the 403 with "X-CSRF-Token: Required" that
// SAP senders look for before they fetch a token again.
func (g *OAuthGuard) refuse(w http.ResponseWriter, r *http.Request, e *oautherr.Error) {
	if e.Code == reasonCSRFRequired || e.Code == reasonCSRFInvalid {
		w.Header().Set(csrfHeader, "Required")
		oauthjson.Write(w, e.Status, csrfRefusal{Error: e.Code, Description: e.Description})
		return
	}
	oautherr.WriteChallenge(w, g.Realm, guard.ResourceMetadataURL(r), e)
}

// limit counts an allowed request against the limits of its rule and of
// its subject (ratelimit), and refuses it with 429 when it is over one.
// A request without a verified token (public rule, preflight) has no
// caller to count.
func (g *OAuthGuard) limit(d *guard.Decision) ratelimit.Verdict {
	if d.Claims == nil || d.Rule == nil {
		return ratelimit.Verdict{}
	}
	var cs [2]ratelimit.Counted
	n := 0
	if l := d.Rule.Limit; l != nil {
		cs[n] = ratelimit.Counted{Limit: l, Scope: l.Scope, Name: "rule", Caller: caller(l, d)}
		n++
	}
	if l := d.Policy.SubjectLimit(d.Subject); l != nil {
		cs[n] = ratelimit.Counted{Limit: l, Scope: l.Scope, Name: "subject", Caller: caller(l, d)}
		n++
	}
	if n == 0 {
		return ratelimit.Verdict{}
	}
	v := g.app.limits.Take(cs[:n], time.Now())
	if v.Refused {
		code, what := oautherr.CodeRateLimited, "rate limit"
		if v.Quota {
			code, what = oautherr.CodeQuotaExceeded, "quota"
		}
		d.Err = oautherr.TooManyRequests(code, "the caller is over the "+v.Name+"'s "+what+"; retry after the time in Retry-After", v.RetryAfter)
	}
	return v
}

// caller is whose budget l counts d's request against: the client's (as
// the backend is told it: "<iss>#<client_id>" for an external issuer's),
// the subject's, or a claim's value (a string or a number). Tokens
// without the claim, or with another kind of value, share one budget.
func caller(l *policy.Limit, d *guard.Decision) string {
	switch l.Per {
	case "subject":
		return d.Subject
	case "claim":
		c := d.Claims
		switch l.Claim {
		case "iss":
			return c.Issuer
		case "sub":
			return c.Subject
		case "client_id":
			return c.ClientID
		case "aud":
			if len(c.Audience) > 0 {
				return c.Audience[0]
			}
			return ""
		}
		// Another claim only an external issuer's token can carry.
		switch v := c.Extra[l.Claim].(type) {
		case string:
			return v
		case float64:
			return strconv.FormatFloat(v, 'g', -1, 64)
		}
		return ""
	}
	return party(d)
}

// party is whose CSRF tokens and default limit budget a request's are:
// its client, or for an external issuer's token without a client ID
// (Entra v1 tokens name it appid) its subject, which names the issuer
// too, so that such callers never share one binding or budget.
func party(d *guard.Decision) string { return cmp.Or(d.ClientID, d.Subject) }

// pass sends an allowed request on: guard.Forward decides what the
// backend receives, and the placeholders for header_up say the same.
func (g *OAuthGuard) pass(r *http.Request, d *guard.Decision) {
	id := g.forward.Forward(r, d)
	// Placeholders are set on every request passed on, empty when no
	// token was looked at: an unset one would reach the backend as its
	// literal "{http.auth.user.id}" text through header_up.
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	v := id.Values()
	repl.Set("http.auth.user.id", v[0])
	repl.Set("http.auth.user.client_id", v[1])
	repl.Set("http.auth.user.roles", v[2])
	repl.Set("http.auth.user.scope", v[3])
	if ce := g.logger.Check(zap.DebugLevel, "request allowed"); ce != nil {
		fields := []zap.Field{zap.String("subject", id.Subject), zap.String("method", r.Method), zap.String("path", r.URL.Path)}
		if d.Rule != nil {
			fields = append(fields, zap.Int("rule_line", d.Rule.Line))
		}
		ce.Write(fields...)
	}
}

func (g *OAuthGuard) logDenial(r *http.Request, d *guard.Decision, shadow bool) {
	msg := "request refused"
	if shadow {
		msg = "request would be refused (report only)"
	}
	// Every refusal at info, a request without a token too: one line per
	// denial is what an operator greps when a sender says "401".
	ce := g.logger.Check(zap.InfoLevel, msg)
	if ce == nil {
		return
	}
	// The path only: a query string may carry a token or a secret.
	fields := []zap.Field{
		zap.Int("status", d.Err.Status),
		zap.String("error", reasonOf(d.Err)),
		zap.String("description", truncate(d.Err.Description, 200)),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
	}
	if d.Claims != nil {
		fields = append(fields, zap.String("subject", d.Subject))
	}
	if d.Rule != nil {
		fields = append(fields, zap.Int("rule_line", d.Rule.Line))
	}
	ce.Write(fields...)
}

// csrfHeader carries SAP's CSRF protocol both ways: "Fetch" and the
// token in requests, the token and "Required" in answers.
const csrfHeader = "X-Csrf-Token" // canonical form of X-CSRF-Token

// The reasons of CSRF refusals, in the decisions metric and the log.
const (
	reasonCSRFRequired = "csrf_required" // no token on a request that needs one
	reasonCSRFInvalid  = "csrf_invalid"  // malformed, expired, or another client's
)

type csrfRefusal struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// checkCSRF applies a csrf rule after the guard decided the request. It
// removes the X-CSRF-Token header, which is the gateway's business and
// not the backend's, whatever the decision. On an allowed request it
// answers a fetch itself (and reports true: nothing more to do), or
// sets d.Err when a request that changes something lacks a valid token
// of the calling client. A request already refused keeps its refusal:
// its caller is not known well enough to bind a token to.
func (g *OAuthGuard) checkCSRF(w http.ResponseWriter, r *http.Request, d *guard.Decision) bool {
	vals := r.Header.Values(csrfHeader)
	r.Header.Del(csrfHeader)
	if d.Err != nil {
		return false
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if len(vals) != 1 || !strings.EqualFold(strings.TrimSpace(vals[0]), "Fetch") {
			return false
		}
		tok := g.app.csrf.Signer().Issue(party(d), time.Now(), time.Duration(g.CSRFTokenLifetime))
		h := w.Header()
		h.Set(csrfHeader, tok)
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		g.record(r.Context(), decisionLabels{"csrf_fetch", "ok", d.Rule.Line}, d)
		if ce := g.logger.Check(zap.DebugLevel, "CSRF token fetched"); ce != nil {
			ce.Write(zap.String("client_id", party(d)), zap.String("path", r.URL.Path), zap.Int("rule_line", d.Rule.Line))
		}
		return true
	}
	if !d.Rule.NeedsCSRFToken(r.Method) {
		return false
	}
	switch {
	case len(vals) == 0:
		d.Err = &oautherr.Error{Code: reasonCSRFRequired, Status: http.StatusForbidden,
			Description: "this endpoint is CSRF protected: fetch a token with a GET or HEAD carrying X-CSRF-Token: Fetch, and send it in X-CSRF-Token"}
	case len(vals) > 1:
		d.Err = &oautherr.Error{Code: reasonCSRFInvalid, Status: http.StatusForbidden, Description: "more than one X-CSRF-Token header"}
	default:
		if err := g.app.csrf.Signer().Verify(vals[0], party(d), time.Now()); err != nil {
			d.Err = &oautherr.Error{Code: reasonCSRFInvalid, Status: http.StatusForbidden, Description: err.Error() + "; fetch a new one"}
		}
	}
	return false
}

// shadow reports whether a refusal is only reported: the guard or the
// deciding rule is report_only.
func (g *OAuthGuard) shadow(d *guard.Decision) bool {
	return g.ReportOnly || d.Rule != nil && d.Rule.ReportOnly
}

// count adds the decision to the oauthgate_guard_decisions_total metric
// and, with tracing on, to the request's span.
func (g *OAuthGuard) count(ctx context.Context, d *guard.Decision) {
	outcome, reason := "allow", "ok"
	switch {
	case d.Err != nil && g.shadow(d):
		outcome, reason = "would_deny", reasonOf(d.Err)
	case d.Err != nil:
		outcome, reason = "deny", reasonOf(d.Err)
	case d.Preflight:
		outcome = "preflight"
	case d.Rule != nil && d.Rule.Public:
		outcome = "public"
	}
	var line int
	if d.Rule != nil {
		line = d.Rule.Line
	}
	g.record(ctx, decisionLabels{outcome, reason, line}, d)
}

// record counts a decision under l and tells the request's span the
// same. A decision counted anywhere goes through here, so that every
// outcome and reason of the metric is in the trace with no more work.
func (g *OAuthGuard) record(ctx context.Context, l decisionLabels, d *guard.Decision) {
	decisionCounter(l).Inc()
	traceDecision(ctx, l, d, g.app.PolicyFile)
}

// reasonOf names a refusal in logs and metrics: its own Reason, its RFC
// 6750 code, or missing_token for the bare challenge, which has none
// (§3.1).
func reasonOf(e *oautherr.Error) string {
	if e.Reason != "" {
		return e.Reason
	}
	if e.Code == "" {
		return "missing_token"
	}
	return e.Code
}

// truncate bounds text an attacker can influence before it is logged.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// originalPath is r's path as its client sent it, escaped: Caddy keeps
// the request as it came in before handle_path or rewrite changed it.
func originalPath(r *http.Request) string {
	if or, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && or.URL != nil {
		return or.URL.EscapedPath()
	}
	return r.URL.EscapedPath()
}

// Interface guards
var (
	_ caddy.Provisioner           = (*OAuthGuard)(nil)
	_ caddy.Validator             = (*OAuthGuard)(nil)
	_ caddy.CleanerUpper          = (*OAuthGuard)(nil)
	_ caddyhttp.MiddlewareHandler = (*OAuthGuard)(nil)
)
