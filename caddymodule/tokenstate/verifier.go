package tokenstate

import (
	"context"
	"slices"

	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// Verifier checks the access tokens of the local issuer, both formats:
// a JWT by its signature and claims and then against revocation and
// supersession; an opaque token by looking it up.
type Verifier struct {
	JWT   *tokens.Verifier
	State *Store
	// ClientActive, if set, reports whether a client may still use its
	// tokens: a client disabled or removed from the clients file loses
	// them at once, not when they expire.
	ClientActive func(clientID string) bool
}

// Verify returns the claims of a valid token. Every failure is a
// *tokens.Error that says which check failed, except an opaque token the
// state engine could not be asked about: ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (*tokens.Claims, error) {
	var c *tokens.Claims
	if tokens.IsJWT(token) {
		var err error
		if c, err = v.JWT.Verify(token); err != nil {
			return nil, err
		}
		if v.State.Revoked(c.ID) {
			return nil, &tokens.Error{Reason: "token is revoked"}
		}
	} else {
		if !v.State.Authentic(token) {
			return nil, &tokens.Error{Reason: "token is neither a compact JWS nor an opaque token of this issuer"}
		}
		rec, err := v.State.LookupOpaque(ctx, token)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			return nil, &tokens.Error{Reason: "token is unknown, expired or revoked"}
		}
		if !v.JWT.IgnoreAudience && !slices.Contains(rec.Audience, v.JWT.Audience) {
			return nil, &tokens.Error{Reason: "token audience does not include " + v.JWT.Audience}
		}
		c = &tokens.Claims{Issuer: v.JWT.Issuer, Subject: rec.Subject, ClientID: rec.ClientID,
			Audience: rec.Audience, IssuedAt: rec.IssuedAt, Expiry: rec.Expiry, ID: rec.ID, Scope: rec.Scope,
			Confirmation: rec.Cnf}
	}
	if v.ClientActive != nil && !v.ClientActive(c.ClientID) {
		return nil, &tokens.Error{Reason: "token's client is disabled or no longer registered"}
	}
	switch superseded, err := v.State.Superseded(ctx, c.ClientID, c.ID, c.IssuedAt); {
	case err != nil:
		return nil, err
	case superseded:
		return nil, &tokens.Error{Reason: "token is superseded by a newer token of its client"}
	}
	return c, nil
}
