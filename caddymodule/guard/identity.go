package guard

import (
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// Identity is the caller as the backend is told, in the form of the
// http.auth.user placeholders; empty when no token was verified.
type Identity struct {
	Subject, ClientID string
	// Roles are comma-separated.
	Roles string
	// Scope is space-separated, without the values a list could not
	// carry as one (see listable).
	Scope string

	scopeList string  // Scope comma-separated, for the header
	values    *[4]any // see Values
}

// Values are Subject, ClientID, Roles and Scope as interface values, the
// form in which a Caddy replacer holds placeholders. For a token the
// guard has seen before they were made once, so that setting the
// placeholders allocates nothing; they must not be changed.
func (id Identity) Values() [4]any {
	if id.values != nil {
		return *id.values
	}
	return [4]any{id.Subject, id.ClientID, id.Roles, id.Scope}
}

// tell is the Identity of a caller with these roles and scope.
func tell(subject, clientID string, roles, scope []string) Identity {
	id := Identity{Subject: subject, ClientID: clientID, Roles: strings.Join(roles, ",")}
	id.Scope, id.scopeList = joinTwice(listable(scope), " ", ",")
	return id
}

// joinTwice is strings.Join of elems with each separator, in one
// allocation for both.
func joinTwice(elems []string, sep1, sep2 string) (string, string) {
	switch len(elems) {
	case 0:
		return "", ""
	case 1:
		return elems[0], elems[0]
	}
	var b strings.Builder
	n := (len(elems) - 1) * (len(sep1) + len(sep2))
	for _, e := range elems {
		n += 2 * len(e)
	}
	b.Grow(n)
	for i, sep := range [2]string{sep1, sep2} {
		for j, e := range elems {
			if j > 0 {
				b.WriteString(sep)
			}
			b.WriteString(e)
		}
		if i == 0 {
			n = b.Len()
		}
	}
	both := b.String()
	return both[:n], both[n:]
}

// derived is what the guard derives from a verified token's claims and
// the policy: the caller's name for the policy and the backend, the
// roles, and what the backend is told. The claims of a token served from
// the token cache are the same on every request, so once a token is seen
// a second time this is kept with its claims (tokens.Claims.SetDerived)
// and made again only for a new policy: a sender that repeats its token
// is not worked on again per request.
type derived struct {
	policy *policy.Policy // the snapshot the roles are of
	// external and prefix are the issuer's that verified the claims
	// (Issuer.RolePrefix): not ours, and its role prefix.
	external          bool
	prefix            string
	subject, clientID string
	// roles are shared by every request of the token: read, never change.
	roles []string
	told  Identity
}

// seenOnce marks claims whose derived values were made once and not kept:
// a token sent once (a client that fetches a token per request) costs no
// memory for them.
var seenOnce = new(derived)

// derive returns what the guard derives from c, verified by ext (nil: by
// us), under pol; or the refusal of a token whose names cannot be told.
func derive(c *tokens.Claims, ext Issuer, pol *policy.Policy) (*derived, *oautherr.Error) {
	var prefix string
	if ext != nil {
		prefix = ext.RolePrefix()
	}
	prev, _ := c.Derived().(*derived)
	if prev != nil && prev != seenOnce && prev.policy == pol && prev.external == (ext != nil) && prev.prefix == prefix {
		return prev, nil
	}
	dv := &derived{policy: pol, external: ext != nil, prefix: prefix, subject: c.Subject, clientID: c.ClientID}
	if ext != nil {
		// An external issuer's subjects live in their own namespace in
		// the policy, "<iss>#<sub>": its "sub" is its own to choose, and
		// must not borrow the roles of a local client (or of another
		// issuer's subject) of the same name.
		dv.subject = c.Issuer + "#" + c.Subject
		if dv.clientID != "" {
			dv.clientID = c.Issuer + "#" + dv.clientID
		}
		// They go into request headers; a value that cannot would fail
		// the request at the proxy with a 502.
		if !httpguts.ValidHeaderFieldValue(dv.subject) || !httpguts.ValidHeaderFieldValue(dv.clientID) {
			return nil, oautherr.InvalidToken("the token's sub or client ID has characters a header cannot carry")
		}
		// An external issuer's token carries its roles; the policy's
		// subjects mapping adds to them.
		dv.roles = union(pol.Roles(dv.subject), pol.RolesFromClaim(c.Roles, prefix))
	} else {
		// Our own token: the policy grants, the scope it was issued with
		// narrows.
		dv.roles = pol.RolesInScope(c.Subject, c.Scope)
	}
	dv.told = tell(dv.subject, dv.clientID, dv.roles, c.Scope)
	if prev == nil {
		c.SetDerived(seenOnce)
		return dv, nil
	}
	dv.told.values = &[4]any{dv.told.Subject, dv.told.ClientID, dv.told.Roles, dv.told.Scope}
	c.SetDerived(dv)
	return dv, nil
}
