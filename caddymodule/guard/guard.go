// Package guard is the resource-server side of oauthgate: it takes the
// Bearer token from a request (RFC 6750 §2), verifies it, and lets the
// policy decide. Its answer is a Decision: allowed, with the caller's
// identity, or the RFC 6750 error to send back.
package guard

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/dpop"
	"github.com/oauthgate/oauthgate/caddymodule/issuers"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// DefaultMaxTokenSize bounds a Bearer token. Our tokens are under 1 KiB;
// 8 KiB leaves room for external issuers with many claims.
const DefaultMaxTokenSize = tokens.MaxLength

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
	// QueryParam and Cookie name where else a token may come from (RFC
	// 6750 §2.3, and a cookie); empty means nowhere else. A token found
	// where it is not allowed is refused, not ignored: a client that puts
	// it there should learn why it fails, and the URL (logs!) is a bad
	// place for a credential.
	QueryParam string
	Cookie     string
	// AllowPreflight lets CORS preflight requests (OPTIONS with Origin and
	// Access-Control-Request-Method) through without a token: browsers
	// never send credentials on a preflight.
	AllowPreflight bool
	// Issuers are trusted external issuers by their "iss". A token that
	// names one of them is verified by it alone; every other token goes
	// to Verifier. The claim only routes: each verifier checks "iss" again
	// and only with its own keys.
	Issuers map[string]Issuer
	// ClientIP, if set, is the client's IP address as the server knows
	// it (behind trusted proxies, the client's rather than the proxy's),
	// for conditions' request.remote_addr; nil means the connection's
	// peer.
	ClientIP func(*http.Request) string
	// Certificates finds the request's TLS client certificate, which a
	// token bound to one (cnf x5t#S256, RFC 8705 §3) needs; nil means no
	// request has one, so every such token is refused.
	Certificates CertificateSource
	// DPoP checks the proof a DPoP-bound token (cnf jkt, RFC 9449)
	// needs; nil means none is checked, so every such token is refused.
	DPoP DPoPChecker
}

// Issuer verifies the tokens of one external issuer; *issuers.Issuer is
// one.
type Issuer interface {
	Verifier
	// RolePrefix, if not "", lets a roles-claim value "<RolePrefix>.<role>"
	// grant the policy's <role>, as SAP XSUAA scopes "<xsappname>.<role>"
	// do in SAP Cloud Integration; it is our own xsappname.
	RolePrefix() string
}

// UnavailableRetry is the Retry-After of a 503 for an issuer whose keys
// have not been obtained: about when the next fetch is allowed.
const UnavailableRetry = 30 * time.Second

// Decision is the guard's verdict on one request.
type Decision struct {
	// Err is nil when the request is allowed.
	Err *oautherr.Error
	// Rule is the rule that decided; nil when none matched.
	Rule *policy.Rule
	// Claims are the verified token's; nil when no token was verified
	// (public rule, preflight, or a refusal before verification).
	Claims *tokens.Claims
	// Subject and ClientID are the caller as the backend is told: the
	// token's, or for an external issuer's token "<iss>#<sub>" and
	// "<iss>#<client_id>", so that an external issuer cannot name one of
	// our clients to the backend either.
	Subject, ClientID string
	// Roles the caller holds that the policy and the token's scope agree
	// on. Shared with other requests of the same token: read, never
	// change.
	Roles []string
	// Preflight marks a CORS preflight let through by AllowPreflight.
	Preflight bool
	// Policy is the snapshot that decided, for the steps after the
	// decision (limits), so that one request never meets two policies.
	Policy *policy.Policy

	told *Identity // what Forward tells the backend; nil: made there
}

// Check decides r.
func (g *Guard) Check(r *http.Request) *Decision {
	d := new(Decision)
	g.Decide(r, d)
	return d
}

// Decide is Check with the decision written to d, which it resets first:
// a handler's own Decision, on its stack, costs no allocation.
func (g *Guard) Decide(r *http.Request, d *Decision) {
	*d = Decision{}
	if !policy.Canonical(r.URL.Path) {
		d.Err = oautherr.InvalidRequest("the request path is not canonical (empty, . or .. segments, ';', a backslash or a control character)")
		return
	}
	if g.AllowPreflight && r.Method == http.MethodOptions &&
		r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		d.Preflight = true
		return
	}
	pol := g.Policy.Policy()
	d.Policy = pol
	d.Rule = pol.Match(r.Method, r.Host, r.URL.Path)
	if d.Rule != nil && d.Rule.Public {
		return
	}
	if g.DPoP != nil {
		// Every refusal of a request that offered DPoP, or of a request
		// without a token, says so with a DPoP challenge (RFC 9449 §7.1).
		defer g.offerDPoP(r, d)
	}
	token, oerr := g.token(r)
	if oerr != nil {
		if oerr.Code == "" && g.DPoP == nil {
			// With DPoP checked, offerDPoP challenges every request
			// without a token; without, only a rule that takes DPoP does.
			g.dpopChallenge(d.Rule, oerr)
		}
		d.Err = oerr
		return
	}
	claims, ext, err := g.verify(r.Context(), token)
	switch {
	case errors.Is(err, issuers.ErrUnavailable):
		d.Err = oautherr.Unavailable("the keys of the token's issuer could not be obtained yet; retry later")
		d.Err.RetryAfter = UnavailableRetry
		return
	case errors.Is(err, tokenstate.ErrUnavailable):
		// An opaque token the state engine could not be asked about: not
		// the token's fault, so no invalid_token that would send the
		// client for a new one.
		d.Err = oautherr.Unavailable("the gateway cannot read its token state store now; retry later")
		d.Err.RetryAfter = tokenstate.RetryAfter
		return
	case err != nil:
		d.Err = oautherr.InvalidToken(err.Error())
		return
	}
	d.Claims = claims
	if viaDPoP(r) && claims.Confirmation.JKT == "" {
		// RFC 9449 §7.2 lets a resource server take a token that is not
		// DPoP-bound this way; we do not: a client that believes its
		// token bound should learn that it is not, and one scheme per
		// kind of token keeps the downgrade checks simple.
		d.Err = oautherr.InvalidToken("the token is not DPoP-bound; send it with the Bearer scheme")
		return
	}
	if claims.Confirmation.Bound() {
		// A sender-constrained token (RFC 8705, RFC 9449) is worth
		// nothing without the proof of its key.
		if d.Err = g.confirm(r, token, claims); d.Err != nil {
			return
		}
	}
	dv, oerr := derive(claims, ext, pol)
	if oerr != nil {
		d.Err = oerr
		return
	}
	d.Subject, d.ClientID = dv.subject, dv.clientID
	if pol.Disabled(dv.subject) {
		d.Err = oautherr.InvalidToken("the token's subject is disabled in the policy")
		return
	}
	if d.Err = g.requireBinding(d.Rule, claims); d.Err != nil {
		return
	}
	if d.Rule == nil {
		d.Err = oautherr.InsufficientScope("no policy rule allows "+r.Method+" "+r.URL.Path, nil)
		return
	}
	d.Roles, d.told = dv.roles, &dv.told
	if !d.Rule.Allows(d.Roles) {
		d.Err = oautherr.InsufficientScope("the token's subject lacks a role this path requires", d.Rule.RequiredRoles())
		return
	}
	if d.Rule.When != nil {
		g.checkCondition(r, d)
	}
}

// verify routes token to the verifier of the issuer it names and returns
// that issuer, nil for the local one.
func (g *Guard) verify(ctx context.Context, token string) (*tokens.Claims, Issuer, error) {
	if len(g.Issuers) > 0 {
		if iss, ok := tokens.PeekIssuer(token); ok {
			if ext, ok := g.Issuers[iss]; ok {
				c, err := ext.Verify(ctx, token)
				return c, ext, err
			}
		}
	}
	c, err := g.Verifier.Verify(ctx, token)
	return c, nil, err
}

// union returns a followed by the elements of b not in a.
func union(a, b []string) []string {
	for _, x := range b {
		if !slices.Contains(a, x) {
			a = append(a, x)
		}
	}
	return a
}

// token finds the one token of the request: in the Authorization header,
// or where configured in the query or a cookie. Two of them is an error
// (RFC 6750 §2: one method per request). An "access_token" query
// parameter is refused when the query is not configured; an unconfigured
// cookie is just a cookie.
func (g *Guard) token(r *http.Request) (string, *oautherr.Error) {
	header, oerr := bearer(r.Header, g.DPoP != nil)
	if oerr != nil {
		return "", oerr
	}
	var found []string
	if header != "" {
		found = append(found, header)
	}
	param := cmp.Or(g.QueryParam, "access_token")
	if vs := queryValues(r, param); len(vs) > 0 {
		if g.QueryParam == "" {
			return "", oautherr.InvalidRequest("tokens in the query string are not accepted; send Authorization: Bearer")
		}
		found = append(found, vs...)
	}
	if g.Cookie != "" {
		for _, c := range r.CookiesNamed(g.Cookie) {
			found = append(found, c.Value)
		}
	}
	switch {
	case len(found) == 0:
		return "", oautherr.MissingToken()
	case len(found) > 1:
		return "", oautherr.InvalidRequest("the request carries more than one token")
	case found[0] == "":
		return "", oautherr.InvalidRequest("the Bearer token is empty")
	case len(found[0]) > cmp.Or(g.MaxTokenSize, DefaultMaxTokenSize):
		return "", oautherr.InvalidRequest("the Bearer token is too long")
	}
	return found[0], nil
}

// queryValues is r.URL.Query()[name], without parsing (and allocating
// for) the query of every request that has none.
func queryValues(r *http.Request, name string) []string {
	if r.URL.RawQuery == "" {
		return nil
	}
	return r.URL.Query()[name]
}

// bearer extracts the token from the one Authorization header; "" when
// there is none, or it carries another scheme (not ours to judge). The
// scheme name is case-insensitive (RFC 9110 §11.1).
func bearer(h http.Header, dpopToo bool) (string, *oautherr.Error) {
	vals := h.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", oautherr.InvalidRequest("more than one Authorization header")
	}
	scheme, token, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") && !(dpopToo && strings.EqualFold(scheme, dpop.Scheme)) {
		return "", nil
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", oautherr.InvalidRequest("the Bearer token is empty")
	}
	return token, nil
}
