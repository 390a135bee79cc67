package caddymodule

import (
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
)

func init() {
	caddy.RegisterModule(OAuthServer{})
}

// OAuthServer is the "oauth_server" handler: the OAuth 2.0 authorization
// server. It answers five paths and hands every other request to the next
// handler:
//
//   - POST /oauth2/api/v1/token: the token endpoint for the
//     client-credentials grant, with parameters in the form body (RFC
//     6749) or the query string (SAP Cloud Integration), and client
//     authentication by HTTP Basic or client_id/client_secret in the body;
//   - POST /oauth2/api/v1/introspect: RFC 7662 token introspection;
//   - POST /oauth2/api/v1/revoke: RFC 7009 token revocation;
//   - GET /.well-known/jwks.json: the public signing keys (RFC 7517);
//   - GET /.well-known/oauth-authorization-server: RFC 8414 metadata.
//
// Issuer, clients, policy and keys come from the "oauth" app. Behind
// Caddy's tracing handler, a token request's span tells its outcome,
// grant type, client and error code (docs/reference.md#traces).
type OAuthServer struct {
	// Realm names the HTTP Basic challenge sent with invalid_client.
	// Default: "oauthgate".
	Realm string `json:"realm,omitempty"`
	// MaxAssertionLifetime bounds how far ahead of now the exp of a
	// client assertion (private_key_jwt) may be: the longest time a
	// stolen assertion could be used at all, and how long its jti is
	// remembered. Default: 5m.
	MaxAssertionLifetime caddy.Duration `json:"max_assertion_lifetime,omitempty"`

	// DPoPAlgorithms are the algorithms a DPoP proof (RFC 9449) at the
	// token endpoint may be signed with; a token requested with a valid
	// proof is bound to the proof's key (cnf.jkt) and issued with
	// token_type DPoP. Asymmetric algorithms only. Default: ES256, ES384,
	// ES512, EdDSA, RS256, RS384, RS512, PS256, PS384, PS512.
	DPoPAlgorithms []string `json:"dpop_algorithms,omitempty"`

	// DPoPMaxAge is how old a proof's iat may be (5 s ahead are allowed
	// for clock skew). Default: 1m.
	DPoPMaxAge caddy.Duration `json:"dpop_max_age,omitempty"`

	srv *authserver.Server
}

// CaddyModule returns the Caddy module information.
func (OAuthServer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth_server",
		New: func() caddy.Module { return new(OAuthServer) },
	}
}

// Provision connects the handler to the oauth app.
func (s *OAuthServer) Provision(ctx caddy.Context) error {
	app, err := oauthApp(ctx)
	if err != nil {
		return err
	}
	if s.Realm == "" {
		s.Realm = defaultRealm
	}
	if s.MaxAssertionLifetime < 0 {
		return fmt.Errorf("max_assertion_lifetime %v: must not be negative", time.Duration(s.MaxAssertionLifetime))
	}
	proofs, err := newDPoP(app, s.DPoPAlgorithms, s.DPoPMaxAge)
	if err != nil {
		return fmt.Errorf("oauth_server: %w", err)
	}
	s.srv = &authserver.Server{
		DPoP:        proofs,
		State:       app,
		Tokens:      app.tokens,
		Verifier:    app.verifier("", nil),
		MaxLifetime: time.Duration(app.MaxTokenLifetime),
		Limiter:     app.limiter,
		Issuer:      app.Issuer,
		Audience:    app.Audience,
		Realm:       s.Realm,
		Log:         ctx.Logger(),
		Metrics:     tokenMetrics{},
		ClientIP:    clientIP,
		Once:        app.once,

		MaxAssertionLifetime: time.Duration(s.MaxAssertionLifetime),
	}
	s.srv.Certificates, s.srv.ClientCAs = app.serverCertificates(), app.clientCAs
	return nil
}

const defaultRealm = "oauthgate"

// clientIP is the address Caddy determined for the request: the
// connection's peer, or, from a proxy listed in the server's
// trusted_proxies, the client it names. Behind a load balancer, every
// sender would otherwise share the balancer's failure budget.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}

// oauthApp returns the "oauth" app of this config, provisioning it if
// needed.
func oauthApp(ctx caddy.Context) (*App, error) {
	v, err := ctx.App("oauth")
	if err != nil {
		return nil, fmt.Errorf("loading the oauth app: %w", err)
	}
	return v.(*App), nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (s *OAuthServer) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !s.srv.Serves(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	s.srv.ServeHTTP(w, r)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*OAuthServer)(nil)
	_ caddyhttp.MiddlewareHandler = (*OAuthServer)(nil)
)
