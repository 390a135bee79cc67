package caddymodule

import (
	"errors"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
)

func init() {
	caddy.RegisterModule(Guard{})
}

// Guard is the "oauth_guard" handler: the OAuth 2.0 resource server in
// front of a backend. For each request it finds the policy rule for the
// method and path, verifies the Bearer token (unless the rule is public),
// and checks that the token's subject holds a role the rule requires.
//
// A denied request is answered here (RFC 6750: 400 invalid_request, 401
// with a Bearer challenge, or 403 insufficient_scope) and never reaches
// the next handler. An allowed request goes on without its Authorization
// header, with the caller's identity in placeholders for header_up:
//
//	{http.auth.user.id}         the token subject, oauth_client_<client ID>
//	{http.auth.user.client_id}  the client ID
//	{http.auth.user.roles}      the caller's roles that the token's scope
//	                            allows, comma-separated
//	{http.auth.user.scope}      the token's scope, space-separated
//
// On a public rule no token is looked at and these are empty.
type Guard struct {
	// Realm names the protection space in WWW-Authenticate challenges.
	// Default: "oauthgate".
	Realm string `json:"realm,omitempty"`

	// Audience is what a token's "aud" must name for this guard to accept
	// it: the resource server it protects. Default: the oauth app's
	// audience.
	Audience string `json:"audience,omitempty"`

	// MaxTokenSize bounds the Bearer token in bytes; a longer one is
	// refused with 400 before any decoding. Default: 8192.
	MaxTokenSize int `json:"max_token_size,omitempty"`

	guard  *guard.Guard
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Guard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth_guard",
		New: func() caddy.Module { return new(Guard) },
	}
}

// Provision connects the handler to the oauth app.
func (g *Guard) Provision(ctx caddy.Context) error {
	app, err := oauthApp(ctx)
	if err != nil {
		return err
	}
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
	g.guard = &guard.Guard{Policy: app, Verifier: app.verifier(g.Audience), MaxTokenSize: g.MaxTokenSize}
	return nil
}

// Validate checks the configuration.
func (g *Guard) Validate() error {
	if g.MaxTokenSize < 0 {
		return errors.New("oauth_guard: max_token_size must not be negative")
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	id, oerr := g.guard.Check(r)
	if oerr != nil {
		// The path only: a query string may carry a token or a secret.
		fields := []zap.Field{
			zap.String("error", oerr.Code),
			zap.String("description", oerr.Description),
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
		}
		if oerr.Code == "" {
			g.logger.Debug("request without token refused", fields...)
		} else {
			g.logger.Info("request refused", fields...)
		}
		oautherr.WriteChallenge(w, g.Realm, oerr)
		return nil
	}
	r.Header.Del("Authorization")
	// Set the placeholders on every request passed on, empty when a public
	// rule looked at no token: an unset placeholder would reach the
	// backend as its literal "{http.auth.user.id}" text through header_up.
	var subject, clientID, scope string
	if c := id.Claims; c != nil {
		subject, clientID, scope = c.Subject, c.ClientID, strings.Join(c.Scope, " ")
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.id", subject)
	repl.Set("http.auth.user.client_id", clientID)
	repl.Set("http.auth.user.roles", strings.Join(id.Roles, ","))
	repl.Set("http.auth.user.scope", scope)
	g.logger.Debug("request allowed",
		zap.String("subject", subject),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.Int("rule_line", id.Rule.Line))
	return next.ServeHTTP(w, r)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Guard)(nil)
	_ caddy.Validator             = (*Guard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Guard)(nil)
)
