package guard

import (
	"errors"
	"net/http"
	"strings"

	"github.com/oauthgate/oauthgate/caddymodule/dpop"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// viaDPoP reports whether the request sent its token with the DPoP
// authorization scheme (RFC 9449 §7.1).
func viaDPoP(r *http.Request) bool {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.EqualFold(scheme, dpop.Scheme)
}

// proveDPoP is the DPoP step of Decide, right after the token verified:
// a DPoP-bound token (cnf.jkt) must come with the DPoP scheme and a valid
// proof (RFC 9449 §4.3, §7.1) by the key it is bound to; a token sent
// with the DPoP scheme must be DPoP-bound. A certificate binding is not
// this step's to judge.
func (g *Guard) proveDPoP(r *http.Request, token string, c *tokens.Claims) *oautherr.Error {
	jkt, scheme := c.Confirmation.JKT, viaDPoP(r)
	switch {
	case jkt == "" && !scheme:
		return nil
	case jkt == "":
		// RFC 9449 §7.2 lets a resource server take a bearer token this
		// way; we do not: a client that believes its token bound should
		// learn that it is not, and one scheme per kind of token keeps
		// the downgrade checks simple.
		return oautherr.InvalidToken("the token is not DPoP-bound; send it with the Bearer scheme")
	case !scheme:
		return oautherr.InvalidToken("the token is bound to a key (cnf.jkt) by DPoP: send it with the DPoP scheme and a DPoP proof")
	case g.DPoP == nil:
		return oautherr.InvalidToken("this guard does not check DPoP proofs")
	}
	proofs := r.Header.Values(dpop.Header)
	switch {
	case len(proofs) == 0:
		return invalidProof("the request has no DPoP proof")
	case len(proofs) > 1:
		return invalidProof("the request has more than one DPoP proof")
	}
	_, err := g.DPoP.Verify(r.Context(), proofs[0], dpop.Request{
		Method: r.Method, URLs: []string{g.requestURL(r)}, AccessToken: token, JKT: jkt})
	var de *dpop.Error
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &de):
		return invalidProof("the DPoP proof is not valid")
	case de.Unavailable:
		e := oautherr.Unavailable("the gateway cannot check DPoP proofs for replay now; retry later")
		e.RetryAfter = tokenstate.RetryAfter
		return e
	case de.Nonce:
		return &oautherr.Error{Code: oautherr.CodeUseDPoPNonce, Status: http.StatusUnauthorized,
			Description: "send a DPoP proof with the nonce in DPoP-Nonce", DPoPNonce: g.DPoP.Nonces.Issue(g.DPoP.Clock())}
	case de.OtherKey:
		// The token's binding, not the proof's form, fails: the token
		// is not this caller's to use.
		return oautherr.InvalidToken("the DPoP proof is signed by another key than the token is bound to (cnf.jkt)")
	}
	return invalidProof("the DPoP proof is not valid: " + de.Reason)
}

func invalidProof(desc string) *oautherr.Error {
	return &oautherr.Error{Code: oautherr.CodeInvalidDPoPProof, Description: desc, Status: http.StatusUnauthorized}
}

// requestURL is the request's URL as its client addressed it, without
// query: what htu must name.
func (g *Guard) requestURL(r *http.Request) string {
	base := g.ExternalURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return strings.TrimSuffix(base, "/") + r.URL.EscapedPath()
}

// dpopChallenge makes d's refusal a DPoP challenge naming the accepted
// algorithms when the request offered DPoP or its token is DPoP-bound, and
// adds one beside the Bearer challenge when the request had no token.
func (g *Guard) dpopChallenge(r *http.Request, d *Decision) {
	if d.Err == nil || d.Err.Status >= 500 || d.Err.Status == http.StatusTooManyRequests {
		return
	}
	if d.Err.Code == "" || d.Err.Code == oautherr.CodeInvalidDPoPProof || d.Err.Code == oautherr.CodeUseDPoPNonce ||
		viaDPoP(r) || d.Claims != nil && d.Claims.Confirmation.JKT != "" {
		d.Err.DPoPAlgs = g.dpopAlgs
	}
}
