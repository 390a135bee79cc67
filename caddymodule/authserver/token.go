package authserver

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/clientcert"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/dpop"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/oauthjson"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// TokenResponse is a successful token response (RFC 6749 §5.1), as the
// token endpoint writes it and the token command reads it. The endpoint
// writes expires_in as a number of seconds; a client reads it as any,
// since some servers send a string, which it shows as sent.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   any    `json:"expires_in"`
	Scope       string `json:"scope"`
}

// AppendJSON appends what encoding/json writes of r, without its
// reflection: the token endpoint answers with one per request.
func (r *TokenResponse) AppendJSON(b []byte) ([]byte, error) {
	// Room for all of it unless something needs escaping: a token is
	// longer than any first guess of a buffer would be.
	b = slices.Grow(b, len(r.AccessToken)+len(r.TokenType)+len(r.Scope)+len(`{"access_token":"","token_type":"","expires_in":-9223372036854775808,"scope":""}`)+1)
	b = append(b, `{"access_token":`...)
	b = oauthjson.AppendString(b, r.AccessToken)
	b = append(b, `,"token_type":`...)
	b = oauthjson.AppendString(b, r.TokenType)
	b = append(b, `,"expires_in":`...)
	if n, ok := r.ExpiresIn.(int64); ok { // what the endpoint writes
		b = strconv.AppendInt(b, n, 10)
	} else {
		v, err := json.Marshal(r.ExpiresIn)
		if err != nil {
			return nil, err
		}
		b = append(b, v...)
	}
	b = append(b, `,"scope":`...)
	b = oauthjson.AppendString(b, r.Scope)
	return append(b, '}'), nil
}

var _ oauthjson.Appender = (*TokenResponse)(nil)

// issued is what the audit line of a successful request says.
type issued struct {
	client *clients.Client
	claims *tokens.Claims
	format string
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if !allowPost(w, r) {
		return
	}
	req, oerr := parseRequest(w, r)
	var resp *TokenResponse
	var done *issued
	var out TokenOutcome
	if oerr == nil {
		out.GrantType = grantTypeLabel(req.params.Get("grant_type"))
		resp, done, oerr = s.issue(r, req, &out)
	}
	if oerr != nil {
		var claimed string
		if req != nil {
			claimed = s.loggableClientID(req.clientID())
		}
		s.Log.Info("token request refused",
			zap.String("client_id", claimed),
			zap.String("error", oerr.Code),
			zap.String("description", oerr.Description),
			zap.String("remote_ip", s.remoteIP(r)))
		if s.Metrics != nil {
			out.Error = oerr.Code
			s.Metrics.Token(r.Context(), out)
		}
		oautherr.WriteTokenError(w, s.Realm, oerr)
		return
	}
	s.Log.Info("token issued",
		zap.String("client_id", done.client.ID),
		zap.String("jti", done.claims.ID),
		zap.String("format", done.format),
		zap.Strings("aud", done.claims.Audience),
		zap.String("scope", resp.Scope),
		zap.Time("expires", done.claims.Expiry),
		zap.String("remote_ip", s.remoteIP(r)))
	if s.Metrics != nil {
		out.Format = done.format
		s.Metrics.Token(r.Context(), out)
	}
	oauthjson.Write(w, http.StatusOK, resp)
}

// grantTypeLabel is a grant_type fit for metrics and traces: one that
// OAuth defines as it was sent, which says what a misconfigured sender
// tries; anything else "other", since a sender may put anything there.
func grantTypeLabel(g string) string {
	switch g {
	case "", "client_credentials", "authorization_code", "password", "refresh_token",
		"urn:ietf:params:oauth:grant-type:jwt-bearer",     // RFC 7523
		"urn:ietf:params:oauth:grant-type:saml2-bearer",   // RFC 7522
		"urn:ietf:params:oauth:grant-type:device_code",    // RFC 8628
		"urn:ietf:params:oauth:grant-type:token-exchange": // RFC 8693
		return g
	}
	return "other"
}

// allowPost answers anything but POST with 405, in the endpoints' JSON.
func allowPost(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	oauthjson.Write(w, http.StatusMethodNotAllowed, map[string]string{
		"error":             oautherr.CodeInvalidRequest,
		"error_description": "this endpoint accepts POST only",
	})
	return false
}

// issue answers a parsed token request. It sets out.ClientID once the
// client has authenticated, so that a refusal after that names it too.
func (s *Server) issue(r *http.Request, req *request, out *TokenOutcome) (*TokenResponse, *issued, *oautherr.Error) {
	switch req.params.Get("grant_type") {
	case "":
		return nil, nil, oautherr.InvalidRequest("grant_type is missing")
	case "client_credentials":
	default:
		return nil, nil, oautherr.UnsupportedGrantType("only grant_type=client_credentials is supported")
	}
	format := req.params.Get("token_format")
	switch format {
	case "":
		format = "jwt"
	case "jwt", "opaque":
	default:
		return nil, nil, oautherr.InvalidRequest("token_format must be jwt or opaque")
	}
	client, cert, oerr := s.authenticate(r, req)
	if oerr != nil {
		return nil, nil, oerr
	}
	out.ClientID = client.ID
	cnf, oerr := s.certificateBinding(r, client, cert)
	if oerr != nil {
		return nil, nil, oerr
	}
	// After the client authenticated: only a registered client's
	// proofs take room in the replay store.
	jkt, oerr := s.checkDPoP(r)
	if oerr != nil {
		return nil, nil, oerr
	}
	aud, oerr := selectAudience(client, req.params, s.Audience)
	if oerr != nil {
		return nil, nil, oerr
	}
	scope, oerr := grantScope(req.params.Get("scope"), s.State.Roles(client.Subject()))
	if oerr != nil {
		return nil, nil, oerr
	}

	iat := s.now().Truncate(time.Second)
	lifetime := client.Lifetime()
	untilNext := lifetime == 0 // SAP's "valid until the client requests a new token"
	if untilNext || lifetime > s.MaxLifetime {
		lifetime = s.MaxLifetime
	}
	claims := &tokens.Claims{
		Issuer:       s.Issuer,
		Subject:      client.Subject(),
		ClientID:     client.ID,
		Audience:     []string{aud},
		IssuedAt:     iat,
		Expiry:       iat.Add(lifetime),
		ID:           tokens.NewID(),
		Scope:        scope,
		Confirmation: cnf,
	}
	claims.Confirmation.JKT = jkt
	// A client that hangs up must not cut a write short halfway: the
	// opaque token stored without its issuance record, say.
	ctx := context.WithoutCancel(r.Context())
	var tok string
	var err error
	stored := true // err, if any, is a write to the storage that failed
	if format == "opaque" {
		tok = s.Tokens.NewOpaque()
		err = s.Tokens.PutOpaque(ctx, tok, &tokenstate.Opaque{
			ClientID: claims.ClientID, Subject: claims.Subject, Audience: claims.Audience,
			Scope: claims.Scope, IssuedAt: claims.IssuedAt, Expiry: claims.Expiry, ID: claims.ID,
			Cnf: claims.Confirmation})
	} else {
		tok, err = tokens.Mint(s.State.Keys().Signing(), claims)
		stored = err == nil
	}
	if err == nil {
		err = s.Tokens.Issued(ctx, client.ID, claims.ID, iat, claims.Expiry, untilNext)
	}
	if errors.Is(err, tokens.ErrTooLong) {
		// A client's answer to this is a smaller scope, not a retry.
		return nil, nil, oautherr.InvalidScope("the token for all these roles would be longer than a guard accepts; request fewer with scope")
	}
	if err != nil {
		s.Log.Error("issuing access token", zap.String("client_id", client.ID), zap.Error(err))
		if stored {
			return nil, nil, stateUnavailable("this token cannot be issued now")
		}
		return nil, nil, oautherr.Unavailable("the token could not be signed; see the gateway's log")
	}
	tokenType := "Bearer"
	if jkt != "" {
		tokenType = dpop.Scheme // RFC 9449 §5
	}
	return &TokenResponse{
		AccessToken: tok,
		TokenType:   tokenType,
		ExpiresIn:   int64(lifetime / time.Second),
		Scope:       strings.Join(scope, " "),
	}, &issued{client: client, claims: claims, format: format}, nil
}

// certificateBinding is the cnf of the client's token (RFC 8705 §3):
// bound to the certificate it authenticated with, or to the one it
// presents if its registration asks for bound tokens; none otherwise.
func (s *Server) certificateBinding(r *http.Request, client *clients.Client, cert *clientcert.Cert) (tokens.Confirmation, *oautherr.Error) {
	if cert == nil && client.BoundTokens && s.Certificates != nil {
		var err error
		if cert, err = s.Certificates.Certificate(r); err != nil {
			return tokens.Confirmation{}, oautherr.InvalidRequest(err.Error())
		}
	}
	switch {
	case cert != nil:
		return tokens.Confirmation{X5tS256: cert.Thumbprint}, nil
	case client.BoundTokens:
		// Also when the gateway reads no certificates at all: a token
		// the registration wants bound must not go out as a bearer one.
		return tokens.Confirmation{}, oautherr.InvalidRequest("this client's tokens are bound to its TLS client certificate, as its registration says; present one")
	}
	return tokens.Confirmation{}, nil
}

// checkDPoP verifies the request's DPoP proof, if it has one, and
// returns the thumbprint of its key: what the token is bound to (RFC 9449
// §5). The proof must name this endpoint as the client addressed it:
// the token endpoint of the metadata, or the URL of the request itself.
func (s *Server) checkDPoP(r *http.Request) (string, *oautherr.Error) {
	vals := r.Header.Values(dpop.Header)
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", oautherr.InvalidDPoPProof("more than one DPoP header")
	case s.DPoP == nil:
		return "", oautherr.InvalidDPoPProof("this server does not issue DPoP-bound tokens")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	urls := []string{strings.TrimSuffix(s.Issuer, "/") + TokenPath, scheme + "://" + r.Host + r.URL.EscapedPath()}
	p, err := s.DPoP.Verify(r.Context(), vals[0], dpop.Request{Method: r.Method, URLs: urls})
	switch {
	case dpop.IsUnavailable(err):
		s.Log.Error("checking a DPoP proof for replay", zap.Error(err))
		return "", stateUnavailable("a DPoP proof cannot be checked for replay")
	case err != nil:
		var de *dpop.Error
		if !errors.As(err, &de) {
			return "", oautherr.InvalidDPoPProof("the DPoP proof is not valid")
		}
		return "", oautherr.InvalidDPoPProof("the DPoP proof is not valid: " + de.Reason)
	}
	return p.JKT, nil
}

// stateUnavailable is a failure to reach the token state (Caddy's
// storage or the state engine): a client can do nothing about it but
// retry, an operator must look.
func stateUnavailable(what string) *oautherr.Error {
	e := oautherr.Unavailable("the gateway cannot write or read its token state store, so " + what + "; see the gateway's log")
	e.RetryAfter = tokenstate.RetryAfter
	return e
}

// selectAudience resolves the target of the token (RFC 8707 "resource", or
// "audience" as Auth0 and others call it) against the audiences the client
// may obtain tokens for; none named means the client's first.
func selectAudience(client *clients.Client, params url.Values, gatewayAudience string) (string, *oautherr.Error) {
	resource, audience := params.Get("resource"), params.Get("audience")
	if resource != "" && audience != "" && resource != audience {
		return "", oautherr.InvalidRequest("resource and audience name different targets; send one")
	}
	allowed := client.Audiences
	if len(allowed) == 0 {
		allowed = []string{gatewayAudience}
	}
	want := cmp.Or(resource, audience)
	switch {
	case want == "":
		return allowed[0], nil
	case slices.Contains(allowed, want):
		return want, nil
	}
	return "", oautherr.InvalidTarget("this client may not obtain tokens for " + strconv.Quote(want))
}

// grantScope resolves the requested scope against the roles the client's
// subject holds: no request means all of them; otherwise every requested
// role must be held (RFC 6749 §3.3).
func grantScope(requested string, granted []string) ([]string, *oautherr.Error) {
	if requested == "" {
		return slices.Clone(granted), nil
	}
	want := strings.Fields(requested)
	for _, role := range want {
		if !slices.Contains(granted, role) {
			return nil, oautherr.InvalidScope("scope " + strconv.Quote(role) + " is not granted to this client")
		}
	}
	slices.Sort(want)
	return slices.Compact(want), nil
}

// remoteIP is the caller's address, for audit lines and rate limits:
// ClientIP's answer, or the connection's peer.
func (s *Server) remoteIP(r *http.Request) string {
	if s.ClientIP != nil {
		if ip := s.ClientIP(r); ip != "" {
			return ip
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
