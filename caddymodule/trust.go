package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/guard"
	"github.com/oauthgate/oauthgate/caddymodule/issuers"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// TrustedIssuer is an external token issuer whose access tokens every
// oauth_guard accepts besides the gateway's own: another authorization
// server such as SAP XSUAA, Keycloak or a second oauthgate. A token is
// matched to its issuer by its "iss" claim, then checked with that
// issuer's keys and rules only.
type TrustedIssuer struct {
	// Issuer is the exact "iss" of the issuer's tokens. Required; it may
	// not be the gateway's own issuer.
	Issuer string `json:"issuer,omitempty"`

	// JWKSURL is where the issuer publishes its public keys (a JWK Set).
	// Give this or Discovery. https, except on a loopback address.
	JWKSURL string `json:"jwks_url,omitempty"`

	// Discovery finds the JWK Set through the issuer's metadata (OpenID
	// Connect discovery, then RFC 8414), whose "issuer" must equal Issuer.
	Discovery bool `json:"discovery,omitempty"`

	// Audience must appear in the tokens' "aud": this gateway as the
	// issuer knows it (for XSUAA, the xsappname). Required.
	Audience string `json:"audience,omitempty"`

	// Algorithms the issuer's keys may use: RS256, RS384, RS512, PS256,
	// PS384, PS512, ES256, ES384, ES512, EdDSA. A key that names none
	// gets the first that fits it. The token's own "alg" header never
	// chooses. Default: RS256.
	Algorithms []string `json:"algorithms,omitempty"`

	// TokenTypes are the accepted "typ" headers; "" accepts a token
	// without one. Default: at+jwt (RFC 9068). SAP XSUAA sends JWT.
	TokenTypes []string `json:"token_types,omitempty"`

	// Leeway is the clock skew tolerated in exp, nbf and iat. Default:
	// the oauth app's leeway.
	Leeway caddy.Duration `json:"leeway,omitempty"`

	// RolesClaim is the claim whose values are the caller's roles, a
	// space-separated string or an array of strings; a dotted path reaches
	// into objects (realm_access.roles). The roles the policy grants the
	// subject, named "<issuer>#<sub>" under subjects, are added to these.
	// Default: scope.
	RolesClaim string `json:"roles_claim,omitempty"`

	// RoleMatch says how a claim value names a role of the policy:
	// "exact", or "suffix" for SAP XSUAA, whose scopes read
	// "<xsappname>.<role>" and grant <role>, as SAP Cloud Integration
	// matches them, where <xsappname> must be Audience: the scopes of
	// other apps in the same token grant nothing. Default: exact.
	RoleMatch string `json:"role_match,omitempty"`

	// RefreshInterval is how often the keys are fetched again; an unknown
	// "kid" also triggers a fetch, at most once every 30 seconds. While
	// the issuer is unreachable its last keys stay in use. Default: 1h.
	RefreshInterval caddy.Duration `json:"refresh_interval,omitempty"`
}

// config is t as package issuers takes it.
func (t TrustedIssuer) config(cache *tokens.Cache) issuers.Config {
	return issuers.Config{
		Issuer:          t.Issuer,
		JWKSURL:         t.JWKSURL,
		Discovery:       t.Discovery,
		Audience:        t.Audience,
		Algorithms:      t.Algorithms,
		Types:           t.TokenTypes,
		Leeway:          time.Duration(t.Leeway),
		RolesClaim:      t.RolesClaim,
		RoleMatch:       t.RoleMatch,
		RefreshInterval: time.Duration(t.RefreshInterval),
		Cache:           cache,
	}
}

// provisionIssuers checks the trusted issuers and takes their verifiers
// from the pool, making those that are new; keys are fetched when the app
// starts.
func (a *App) provisionIssuers() error {
	a.issuers = make(map[string]*issuers.Issuer, len(a.TrustedIssuers))
	for i, t := range a.TrustedIssuers {
		where := fmt.Sprintf("oauth: trusted_issuers[%d] (%s)", i, t.Issuer)
		switch {
		case t.Issuer == a.Issuer:
			return fmt.Errorf("%s: this is the gateway's own issuer; its tokens are always trusted", where)
		case a.issuers[t.Issuer] != nil:
			return fmt.Errorf("%s: trusted twice", where)
		}
		if t.Leeway == 0 {
			t.Leeway = a.Leeway
		}
		iss, err := holdIssuer(&a.held, t)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		a.issuers[t.Issuer] = iss
	}
	return nil
}

// runIssuers fetches every trusted issuer's keys and keeps them fresh
// until ctx ends. The first fetch is not awaited: an issuer that is down
// must not stop the gateway from starting, and its tokens get 503 until
// its keys arrive (an issuer kept from the previous config keeps its keys).
func (a *App) runIssuers(ctx context.Context) {
	for _, iss := range a.issuers {
		go func() {
			if err := iss.Fetch(ctx); err != nil && !errors.Is(err, context.Canceled) {
				a.logger.Warn("trusted issuer: key fetch at start failed; its last keys, if any, stay in use",
					zap.String("trusted_issuer", iss.Issuer()), zap.Error(err))
			}
			iss.Run(ctx)
		}()
	}
}

// guardIssuers are the trusted issuers as a guard uses them.
func (a *App) guardIssuers() map[string]guard.Issuer {
	m := make(map[string]guard.Issuer, len(a.issuers))
	for iss, v := range a.issuers {
		m[iss] = v
	}
	return m
}
