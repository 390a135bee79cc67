// Package oautherr holds the protocol errors of oauthgate and their HTTP
// form: RFC 6749 §5.2 JSON for the token endpoint and RFC 6750 §3 Bearer
// challenges for the guard. An Error knows its own status code, so handlers
// never pick one by hand.
package oautherr

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/oauthjson"
)

// Error codes from RFC 6749 §5.2 and RFC 6750 §3.1.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidClient        = "invalid_client"
	CodeInvalidGrant         = "invalid_grant"
	CodeUnauthorizedClient   = "unauthorized_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
	CodeInvalidScope         = "invalid_scope"
	CodeInvalidTarget        = "invalid_target" // RFC 8707 §2
	CodeUnavailable          = "temporarily_unavailable"
	CodeInvalidToken         = "invalid_token"
	CodeInsufficientScope    = "insufficient_scope"
	// The guard's refusals of a caller over a policy limit: no RFC
	// names them; they read like the codes above.
	CodeRateLimited   = "rate_limited"
	CodeQuotaExceeded = "quota_exceeded"
	// RFC 9449 §5, §7.1, §8, §9: a DPoP proof that is not valid, and
	// the request to retry with a server nonce.
	CodeInvalidDPoPProof = "invalid_dpop_proof"
	CodeUseDPoPNonce     = "use_dpop_nonce"
)

// Error is an OAuth protocol error.
type Error struct {
	// Code is the RFC error code; empty for a Bearer challenge that only
	// asks for credentials (RFC 6750 §3.1: no error code when the request
	// carried no token at all).
	Code string
	// Description is the human-readable error_description. It must never
	// contain a secret or a token, and on the token endpoint it must not
	// reveal whether a client exists.
	Description string
	// Status is the HTTP status code.
	Status int
	// Scope lists the roles that would have allowed the request
	// (insufficient_scope only).
	Scope []string
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// rounded up).
	RetryAfter time.Duration
	// DPoPNonce, if set, is sent as the DPoP-Nonce header (RFC 9449 §8,
	// §9): the nonce the client's next proof must carry.
	DPoPNonce string
	// Reason, if set, names the refusal in logs and metrics more
	// precisely than Code (e.g. "condition_false"); it is never sent.
	Reason string
	// DPoPAlgs, if set, adds a DPoP challenge (RFC 9449 §7.1) beside the
	// Bearer one, naming the proof algorithms accepted: where a DPoP-bound
	// token would do.
	DPoPAlgs []string
}

func (e *Error) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// InvalidRequest is a malformed request: 400.
func InvalidRequest(desc string) *Error {
	return &Error{Code: CodeInvalidRequest, Description: desc, Status: http.StatusBadRequest}
}

// InvalidClient is a failed client authentication: 401. Callers use one
// description for unknown client, wrong secret and disabled client.
func InvalidClient(desc string) *Error {
	return &Error{Code: CodeInvalidClient, Description: desc, Status: http.StatusUnauthorized}
}

// UnsupportedGrantType is a grant type the server does not offer: 400.
func UnsupportedGrantType(desc string) *Error {
	return &Error{Code: CodeUnsupportedGrantType, Description: desc, Status: http.StatusBadRequest}
}

// InvalidScope is a requested scope the client may not have: 400.
func InvalidScope(desc string) *Error {
	return &Error{Code: CodeInvalidScope, Description: desc, Status: http.StatusBadRequest}
}

// InvalidTarget is a requested resource or audience the client may not
// have: 400 (RFC 8707).
func InvalidTarget(desc string) *Error {
	return &Error{Code: CodeInvalidTarget, Description: desc, Status: http.StatusBadRequest}
}

// Unavailable is a failure of the server itself that a retry may cure:
// 503, so clients and load balancers retry.
func Unavailable(desc string) *Error {
	return &Error{Code: CodeUnavailable, Description: desc, Status: http.StatusServiceUnavailable}
}

// TooManyFailures answers a client that failed authentication too often:
// 429 with Retry-After.
func TooManyFailures(wait time.Duration) *Error {
	return &Error{Code: CodeUnavailable, Status: http.StatusTooManyRequests, RetryAfter: wait,
		Description: "too many failed client authentications; retry later"}
}

// TooManyRequests is a caller over a rate limit or quota of the policy
// (code CodeRateLimited or CodeQuotaExceeded): 429 with Retry-After.
func TooManyRequests(code, desc string, wait time.Duration) *Error {
	return &Error{Code: code, Description: desc, Status: http.StatusTooManyRequests, RetryAfter: wait}
}

// InvalidDPoPProof is a DPoP proof that failed its checks: 400 at the
// token endpoint (RFC 9449 §5); the guard answers 401 (§7.1).
func InvalidDPoPProof(desc string) *Error {
	return &Error{Code: CodeInvalidDPoPProof, Description: desc, Status: http.StatusBadRequest}
}

// MissingToken is the challenge for a request without a Bearer token: 401
// with no error code.
func MissingToken() *Error {
	return &Error{Status: http.StatusUnauthorized}
}

// InvalidToken is a token that failed verification: 401.
func InvalidToken(desc string) *Error {
	return &Error{Code: CodeInvalidToken, Description: desc, Status: http.StatusUnauthorized}
}

// InsufficientScope is an authenticated caller without a required role: 403.
func InsufficientScope(desc string, roles []string) *Error {
	return &Error{Code: CodeInsufficientScope, Description: desc, Status: http.StatusForbidden, Scope: roles}
}

// body is the JSON shape shared by both endpoints.
type body struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	Scope       string `json:"scope,omitempty"`
}

// WriteTokenError writes e as the token endpoint's RFC 6749 §5.2 response.
// A 401 carries a Basic challenge, because HTTP Basic is the client
// authentication scheme the endpoint offers (RFC 6749 §5.2, invalid_client).
func WriteTokenError(w http.ResponseWriter, realm string, e *Error) {
	h := w.Header()
	if e.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Basic realm=`+quote(realm))
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	if e.DPoPNonce != "" {
		h.Set("DPoP-Nonce", e.DPoPNonce)
	}
	oauthjson.Write(w, e.Status, body{Error: e.Code, Description: e.Description})
}

// WriteChallenge writes e as the guard's RFC 6750 §3 response: a Bearer
// challenge in WWW-Authenticate and the same facts as a small JSON body.
// resourceMetadata, if not empty, is the URL of the RFC 9728 document
// that tells a client where to get a token.
//
// A 5xx or a 429 is not a challenge: the gateway, or the caller's pace,
// not the token, is at fault, so it gets the JSON body and Retry-After,
// and no WWW-Authenticate that would send the client for a new token.
func WriteChallenge(w http.ResponseWriter, realm, resourceMetadata string, e *Error) {
	if e.DPoPNonce != "" {
		w.Header().Set("DPoP-Nonce", e.DPoPNonce)
	}
	if e.Status >= 500 || e.Status == http.StatusTooManyRequests {
		if e.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
		}
		oauthjson.Write(w, e.Status, body{Error: e.Code, Description: e.Description})
		return
	}
	var b strings.Builder
	b.WriteString("Bearer realm=")
	b.WriteString(quote(realm))
	if resourceMetadata != "" {
		b.WriteString(`, resource_metadata=`)
		b.WriteString(quote(resourceMetadata))
	}
	// invalid_dpop_proof and use_dpop_nonce belong to the DPoP challenge
	// alone (RFC 9449 §7.1, §9): the Bearer one stays bare beside it.
	if !dpopOnly(e.Code) {
		writeErrorParams(&b, e)
	}
	scope := strings.Join(e.Scope, " ")
	if scope != "" {
		b.WriteString(`, scope=`)
		b.WriteString(quote(scope))
	}
	w.Header().Set("WWW-Authenticate", b.String())
	if len(e.DPoPAlgs) > 0 {
		w.Header().Add("WWW-Authenticate", dpopChallenge(realm, e))
	}
	if e.Code == "" {
		// RFC 6750 §3.1: a request without credentials gets the bare
		// challenge; there is no error to report.
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(e.Status)
		return
	}
	oauthjson.Write(w, e.Status, body{Error: e.Code, Description: e.Description, Scope: scope})
}

func dpopOnly(code string) bool { return code == CodeInvalidDPoPProof || code == CodeUseDPoPNonce }

// dpopChallenge is the DPoP challenge of e (RFC 9449 §7.1): the same
// error, and the algorithms a proof may use.
func dpopChallenge(realm string, e *Error) string {
	var b strings.Builder
	b.WriteString("DPoP realm=")
	b.WriteString(quote(realm))
	writeErrorParams(&b, e)
	b.WriteString(`, algs=`)
	b.WriteString(quote(strings.Join(e.DPoPAlgs, " ")))
	return b.String()
}

// writeErrorParams appends e's error and error_description parameters
// to a challenge.
func writeErrorParams(b *strings.Builder, e *Error) {
	if e.Code != "" {
		b.WriteString(`, error=`)
		b.WriteString(quote(e.Code))
	}
	if e.Description != "" {
		b.WriteString(`, error_description=`)
		b.WriteString(quote(e.Description))
	}
}

// quote renders s as an RFC 9110 quoted-string. Characters that a
// quoted-string cannot carry (controls) are dropped rather than escaped,
// so a description can never split the header.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
