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

// DPoPProofs checks the proof of possession a DPoP-bound token (cnf.jkt)
// needs on every request (RFC 9449 §4.3, §7.1).
type DPoPProofs struct {
	Verifier *dpop.Verifier
	// ExternalURL, if set, is the scheme and authority (https://host or
	// https://host:port) clients address this guard by: what a proof's
	// htu must name behind a proxy that changes them. Empty: the
	// request's own, https when it came over TLS.
	ExternalURL string
	// OriginalPath, if set, is the request's path as its client sent it,
	// escaped: a handler before the guard (Caddy's handle_path, rewrite)
	// may have changed r.URL, and a proof names the URL the client
	// addressed (RFC 9449 §4.3). nil: r.URL's.
	OriginalPath func(*http.Request) string

	algs []string
}

// NewDPoPProofs returns the check of v's proofs for requests addressed
// to externalURL ("" for the request's own).
func NewDPoPProofs(v *dpop.Verifier, externalURL string) *DPoPProofs {
	p := &DPoPProofs{Verifier: v, ExternalURL: strings.TrimSuffix(externalURL, "/")}
	for _, a := range v.Algorithms {
		p.algs = append(p.algs, a.String())
	}
	return p
}

// Algs are the proof algorithms accepted, for the challenges' algs. The
// slice is shared: read, never change.
func (p *DPoPProofs) Algs() []string { return p.algs }

// Check verifies that the request proves the key c.Confirmation.JKT
// names: the DPoP scheme, and one DPoP proof by that key for this
// request and token, fresh and never seen before. nil means proven.
func (p *DPoPProofs) Check(r *http.Request, token string, c *tokens.Claims) *oautherr.Error {
	if !viaDPoP(r) {
		return oautherr.InvalidToken("the token is bound to a key (cnf.jkt) by DPoP: send it with the DPoP scheme and a DPoP proof")
	}
	proofs := r.Header.Values(dpop.Header)
	switch {
	case len(proofs) == 0:
		return invalidProof("the request has no DPoP proof")
	case len(proofs) > 1:
		return invalidProof("the request has more than one DPoP proof")
	}
	hash, _ := c.TokenHash()
	_, err := p.Verifier.Verify(r.Context(), proofs[0], dpop.Request{Method: r.Method, URLs: []string{p.requestURL(r)},
		AccessToken: token, AccessTokenHash: hash, JKT: c.Confirmation.JKT})
	if err == nil {
		return nil
	}
	var de *dpop.Error
	switch {
	case !errors.As(err, &de):
		return invalidProof("the DPoP proof is not valid")
	case de.Unavailable:
		e := oautherr.Unavailable("the gateway cannot check DPoP proofs for replay now; retry later")
		e.RetryAfter = tokenstate.RetryAfter
		return e
	case de.Nonce:
		return &oautherr.Error{Code: oautherr.CodeUseDPoPNonce, Status: http.StatusUnauthorized,
			Description: "send a DPoP proof with the nonce in DPoP-Nonce", DPoPNonce: p.Verifier.Nonces.Issue(p.Verifier.Clock())}
	case de.OtherKey:
		// The token's binding, not the proof's form, fails: the token
		// is not this caller's to use.
		return oautherr.InvalidToken("the DPoP proof is signed by another key than the token is bound to (cnf.jkt)")
	}
	return invalidProof("the DPoP proof is not valid: " + de.Reason)
}

// viaDPoP reports whether the request sent its token with the DPoP
// authorization scheme (RFC 9449 §7.1).
func viaDPoP(r *http.Request) bool {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.EqualFold(scheme, dpop.Scheme)
}

func invalidProof(desc string) *oautherr.Error {
	return &oautherr.Error{Code: oautherr.CodeInvalidDPoPProof, Description: desc, Status: http.StatusUnauthorized}
}

// requestURL is the request's URL as its client addressed it, without
// query: what htu must name.
func (p *DPoPProofs) requestURL(r *http.Request) string {
	base := p.ExternalURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	if p.OriginalPath != nil {
		return base + p.OriginalPath(r)
	}
	return base + r.URL.EscapedPath()
}

// offerDPoP adds a DPoP challenge naming the accepted algorithms to d's
// refusal when the request offered DPoP, its token is DPoP-bound or it
// had no token at all (RFC 9449 §7.1).
func (g *Guard) offerDPoP(r *http.Request, d *Decision) {
	if d.Err == nil || d.Err.Status >= 500 || d.Err.Status == http.StatusTooManyRequests {
		return
	}
	if d.Err.Code == "" || d.Err.Code == oautherr.CodeInvalidDPoPProof || d.Err.Code == oautherr.CodeUseDPoPNonce ||
		viaDPoP(r) || d.Claims != nil && d.Claims.Confirmation.JKT != "" {
		d.Err.DPoPAlgs = g.DPoP.Algs()
	}
}
