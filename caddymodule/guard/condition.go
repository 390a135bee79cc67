package guard

import (
	"net"
	"net/http"
	"slices"
	"strconv"

	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// ReasonConditionFalse is the reason label (metrics, denial log) of a
// request refused by its rule's "when" condition.
const ReasonConditionFalse = "condition_false"

// checkCondition evaluates the rule's condition for an allowed caller
// and refuses the request when it does not hold. The refusal names the
// rule's line, never what was compared: a claim or header value in the
// answer would tell a caller what it must forge.
func (g *Guard) checkCondition(r *http.Request, d *Decision) {
	in := policy.Input{
		Claims:   claimSet{d.Claims},
		Roles:    d.Roles,
		ClientID: d.ClientID,
		Subject:  d.Subject,
		Request: policy.Request{
			Method:     r.Method,
			Host:       r.Host,
			Path:       r.URL.Path,
			Header:     r.Header,
			RawQuery:   r.URL.RawQuery,
			RemoteAddr: g.remoteAddr(r),
		},
	}
	if ok, _ := d.Rule.When.Eval(&in); ok {
		return
	}
	// An evaluation error (a claim the token lacks, the cost limit) is
	// a false condition: deny by default.
	d.Err = oautherr.InsufficientScope("the condition of the policy rule at line "+strconv.Itoa(d.Rule.Line)+" is false for this request", nil)
	d.Err.Reason = ReasonConditionFalse
}

// remoteAddr is the client's IP address for conditions: ClientIP's, or
// the connection's peer without its port.
func (g *Guard) remoteAddr(r *http.Request) string {
	if g.ClientIP != nil {
		return g.ClientIP(r)
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// claimSet shows a verified token's claims to a condition as the token
// carries them, with two exceptions that make conditions simpler:
// "scope" is always a list of strings (our tokens and most issuers send
// one space-separated string, some a JSON array), and "aud" always a
// list. Dates are whole seconds since 1970, as in the token.
type claimSet struct{ c *tokens.Claims }

func (s claimSet) Claim(name string) (any, bool) {
	c := s.c
	switch name {
	case "iss":
		return c.Issuer, true
	case "sub":
		return c.Subject, true
	case "client_id":
		return c.ClientID, c.ClientID != ""
	case "aud":
		return c.Audience, true
	case "iat":
		return c.IssuedAt.Unix(), !c.IssuedAt.IsZero()
	case "nbf":
		return c.NotBefore.Unix(), !c.NotBefore.IsZero()
	case "exp":
		return c.Expiry.Unix(), true
	case "jti":
		return c.ID, c.ID != ""
	case "scope":
		return c.Scope, c.Scope != nil
	}
	v, ok := c.Extra[name]
	return v, ok
}

func (s claimSet) ClaimNames() []string {
	var out []string
	for _, name := range []string{"iss", "sub", "client_id", "aud", "iat", "nbf", "exp", "jti", "scope"} {
		if _, ok := s.Claim(name); ok {
			out = append(out, name)
		}
	}
	for name := range s.c.Extra {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
