package caddymodule

import (
	"cmp"
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauthgate/oauthgate/caddymodule/csrf"
	"github.com/oauthgate/oauthgate/caddymodule/dpop"
)

// newDPoP is the DPoP proof check of a handler: its algorithms and
// max age as configured, its replay store the app's, fleet-wide on Redis.
func newDPoP(app *App, algs []string, maxAge caddy.Duration) (*dpop.Verifier, error) {
	a, err := dpop.ParseAlgorithms(algs)
	if err != nil {
		return nil, err
	}
	if maxAge < 0 {
		return nil, errors.New("dpop_max_age must not be negative")
	}
	return &dpop.Verifier{Algorithms: a, MaxAge: time.Duration(cmp.Or(maxAge, caddy.Duration(dpop.DefaultMaxAge))),
		Future: dpop.DefaultFuture, Once: app.once}, nil
}

// dpopNonceLifetime is how long a server nonce is good for: a client
// gets a new one with any use_dpop_nonce answer, so this bounds how old
// a proof's freshness can be, not how often clients must ask.
const dpopNonceLifetime = 5 * time.Minute

// dpopNoncePurpose separates nonces from CSRF tokens, which the same
// key signs: each MAC covers its purpose (csrf.Signer.For).
const dpopNoncePurpose = "dpop-nonce"

// dpopNonces are server nonces (RFC 9449 §9) made by the CSRF signer: an
// expiry and a MAC under the key every instance of the fleet shares, so
// a nonce one instance issues is good at all of them, and none is
// stored.
type dpopNonces struct{ keeper *csrf.Keeper }

func (n dpopNonces) Issue(now time.Time) string {
	return n.keeper.Signer().For(dpopNoncePurpose).Issue("", now, dpopNonceLifetime)
}

func (n dpopNonces) Valid(nonce string, now time.Time) bool {
	return len(nonce) == csrf.Length && n.keeper.Signer().For(dpopNoncePurpose).Verify(nonce, "", now) == nil
}
