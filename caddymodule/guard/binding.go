package guard

import (
	"net/http"
	"slices"
	"strings"

	"github.com/oauthgate/oauthgate/caddymodule/clientcert"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/policy"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// CertificateSource finds the TLS client certificate of a request:
// *clientcert.Source is one.
type CertificateSource interface {
	// Certificate returns the request's certificate, nil when it has
	// none; an error is a malformed certificate header.
	Certificate(r *http.Request) (*clientcert.Cert, error)
}

var _ CertificateSource = (*clientcert.Source)(nil)

// DPoPChecker checks the proof of possession that a DPoP-bound token
// (cnf.jkt, RFC 9449) needs on every request.
type DPoPChecker interface {
	// Check verifies the request's DPoP proof for token, whose verified
	// claims are c: signed by the key c.Confirmation.JKT names, for this
	// request, fresh, never seen before (RFC 9449 §7.1). nil means
	// proven.
	Check(r *http.Request, token string, c *tokens.Claims) *oautherr.Error
	// Algs are the proof algorithms it accepts, for the challenge's
	// algs (RFC 9449 §7.1).
	Algs() []string
}

// ReasonBindingRequired names, in logs and metrics, the refusal of a
// bearer token on a rule that demands a binding.
const ReasonBindingRequired = "binding_required"

// DefaultDPoPAlgs are named in the DPoP challenge of a rule that demands
// a DPoP-bound token when the guard has no DPoPChecker: the algorithms
// the gateway signs with.
var DefaultDPoPAlgs = []string{"ES256", "EdDSA", "RS256", "PS256"}

// confirm checks that the request proves the key a sender-constrained
// token is bound to (RFC 7800 cnf): the client certificate of the
// request for x5t#S256 (RFC 8705 §3), a DPoP proof for jkt. A token
// bound both ways needs both. A bearer token passes.
func (g *Guard) confirm(r *http.Request, token string, c *tokens.Claims) *oautherr.Error {
	cnf := c.Confirmation
	if cnf.X5tS256 != "" {
		var cert *clientcert.Cert
		if g.Certificates != nil {
			var err error
			if cert, err = g.Certificates.Certificate(r); err != nil {
				return oautherr.InvalidRequest(err.Error())
			}
		}
		switch {
		case cert == nil:
			return oautherr.InvalidToken("the token is bound to a TLS client certificate (cnf x5t#S256), and the request presents none")
		case !clientcert.Matches(cnf.X5tS256, cert):
			return oautherr.InvalidToken("the token is bound to a TLS client certificate (cnf x5t#S256), and the request presents another one")
		}
	}
	if cnf.JKT != "" {
		if g.DPoP == nil {
			// No request proves a DPoP key to a guard that checks no
			// proofs: refused, never taken as a bearer token.
			return oautherr.InvalidToken("the token is bound to a DPoP key (cnf jkt), and this gateway does not check DPoP proofs")
		}
		if oerr := g.DPoP.Check(r, token, c); oerr != nil {
			return oerr
		}
	}
	return nil
}

// requireBinding refuses a token that is not bound the way the rule's
// binding demands (policy: binding: [mtls, dpop]); any one kind listed
// will do. Its challenge says which kinds would.
func (g *Guard) requireBinding(rule *policy.Rule, c *tokens.Claims) *oautherr.Error {
	if rule == nil || len(rule.Binding) == 0 {
		return nil
	}
	for _, b := range rule.Binding {
		switch b {
		case policy.BindingMTLS:
			if c.Confirmation.X5tS256 != "" {
				return nil
			}
		case policy.BindingDPoP:
			if c.Confirmation.JKT != "" {
				return nil
			}
		}
	}
	e := oautherr.InvalidToken("this path requires a sender-constrained token: " + bindingNames(rule.Binding))
	e.Reason = ReasonBindingRequired
	g.dpopChallenge(rule, e)
	return e
}

// dpopChallenge adds the DPoP challenge (RFC 9449 §7.1) to e when the
// rule takes DPoP-bound tokens.
func (g *Guard) dpopChallenge(rule *policy.Rule, e *oautherr.Error) {
	if rule == nil || !slices.Contains(rule.Binding, policy.BindingDPoP) {
		return
	}
	e.DPoPAlgs = DefaultDPoPAlgs
	if g.DPoP != nil {
		e.DPoPAlgs = g.DPoP.Algs()
	}
}

// bindingNames says in words which bindings a rule accepts.
func bindingNames(kinds []string) string {
	var names []string
	for _, k := range kinds {
		switch k {
		case policy.BindingMTLS:
			names = append(names, "one bound to the TLS client certificate (RFC 8705), obtained at the token endpoint over TLS with that certificate")
		case policy.BindingDPoP:
			names = append(names, "a DPoP-bound one (RFC 9449), sent as Authorization: DPoP with a DPoP proof")
		}
	}
	return strings.Join(names, ", or ")
}
