// Package guard is the resource-server side of oauthgate: it takes the
// Bearer token from a request (RFC 6750 §2.1), verifies it, and lets the
// policy decide. It answers with an Identity to hand on, or with the
// RFC 6750 error to send back.
package guard

import (
	"context"
	"net/http"
	"strings"

	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// DefaultMaxTokenSize bounds a Bearer token. Our tokens are under 1 KiB;
// 8 KiB leaves room for external issuers with many claims.
const DefaultMaxTokenSize = 8 << 10

// Verifier checks a token; *tokenstate.Verifier is one.
type Verifier interface {
	Verify(ctx context.Context, token string) (*tokens.Claims, error)
}

// PolicySource returns the current policy, an immutable snapshot.
type PolicySource interface {
	Policy() *policy.Policy
}

// Guard authenticates and authorizes requests.
type Guard struct {
	Policy       PolicySource
	Verifier     Verifier
	MaxTokenSize int
}

// Identity is an allowed caller.
type Identity struct {
	// Claims is nil for a public rule: no token was looked at.
	Claims *tokens.Claims
	// Roles the caller holds that the policy and the token's scope agree
	// on.
	Roles []string
	// Rule is the rule that allowed the request.
	Rule *policy.Rule
}

// Check decides r. A nil error means allowed.
func (g *Guard) Check(r *http.Request) (*Identity, *oautherr.Error) {
	if !policy.Canonical(r.URL.Path) {
		return nil, oautherr.InvalidRequest("the request path is not canonical (empty, . or .. segments)")
	}
	pol := g.Policy.Policy()
	rule := pol.Match(r.Method, r.URL.Path)
	if rule != nil && rule.Public {
		return &Identity{Rule: rule}, nil
	}
	token, oerr := g.bearer(r.Header)
	if oerr != nil {
		return nil, oerr
	}
	claims, err := g.Verifier.Verify(r.Context(), token)
	if err != nil {
		return nil, oautherr.InvalidToken(err.Error())
	}
	if rule == nil {
		return nil, oautherr.InsufficientScope("no policy rule allows "+r.Method+" "+r.URL.Path, nil)
	}
	roles := pol.RolesInScope(claims.Subject, claims.Scope)
	if !rule.Allows(roles) {
		return nil, oautherr.InsufficientScope("the token's subject lacks a role this path requires", rule.Roles)
	}
	return &Identity{Claims: claims, Roles: roles, Rule: rule}, nil
}

// bearer extracts the token from the one Authorization header. The scheme
// name is case-insensitive (RFC 9110 §11.1).
func (g *Guard) bearer(h http.Header) (string, *oautherr.Error) {
	vals := h.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", oautherr.MissingToken()
	case len(vals) > 1:
		return "", oautherr.InvalidRequest("more than one Authorization header")
	}
	scheme, token, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// Other credentials are not ours to judge: ask for a token.
		return "", oautherr.MissingToken()
	}
	token = strings.TrimLeft(token, " ")
	max := g.MaxTokenSize
	if max <= 0 {
		max = DefaultMaxTokenSize
	}
	switch {
	case token == "":
		return "", oautherr.InvalidRequest("the Bearer token is empty")
	case len(token) > max:
		return "", oautherr.InvalidRequest("the Bearer token is too long")
	}
	return token, nil
}
