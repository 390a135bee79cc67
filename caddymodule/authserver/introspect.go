package authserver

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/dpop"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/oauthjson"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// introspection is an RFC 7662 §2.2 response.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	Audience  []string `json:"aud,omitempty"`
	Issuer    string   `json:"iss,omitempty"`
	Expiry    int64    `json:"exp,omitempty"`
	IssuedAt  int64    `json:"iat,omitempty"`
	ID        string   `json:"jti,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	// Cnf is the token's binding (RFC 8705 §3.2, RFC 9449 §6.2), so that
	// a resource server that introspects can check it.
	Cnf *tokens.Confirmation `json:"cnf,omitempty"`
}

// serveIntrospect is the RFC 7662 endpoint. Any registered client may ask
// (resource servers are clients too); the answer about a token that is
// not valid is only {"active": false}, never why.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	_, token, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	c, err := s.Verifier.Verify(r.Context(), token)
	if errors.Is(err, tokenstate.ErrUnavailable) {
		oautherr.WriteTokenError(w, s.Realm, stateUnavailable("the token cannot be looked up now"))
		return
	}
	if err != nil {
		oauthjson.Write(w, http.StatusOK, introspection{Active: false})
		return
	}
	oauthjson.Write(w, http.StatusOK, introspection{
		Active: true, Scope: strings.Join(c.Scope, " "), ClientID: c.ClientID, Subject: c.Subject,
		Audience: c.Audience, Issuer: c.Issuer, Expiry: c.Expiry.Unix(), IssuedAt: c.IssuedAt.Unix(),
		ID: c.ID, TokenType: tokenType(c.Confirmation), Cnf: cnf(c.Confirmation),
	})
}

// cnf is c for an introspection answer: nil for a bearer token.
func cnf(c tokens.Confirmation) *tokens.Confirmation {
	if !c.Bound() {
		return nil
	}
	return &c
}

// tokenType is the token_type of a token bound by c: DPoP for a
// DPoP-bound one (RFC 9449 §6.2), else Bearer.
func tokenType(c tokens.Confirmation) string {
	if c.JKT != "" {
		return dpop.Scheme
	}
	return "Bearer"
}

// serveRevoke is the RFC 7009 endpoint. A client may revoke its own
// tokens, of either format. Revoking a token that is invalid, expired or
// already revoked succeeds: there is nothing left to do (RFC 7009 §2.2).
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	clientID, token, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	c, err := s.Verifier.Verify(r.Context(), token)
	if errors.Is(err, tokenstate.ErrUnavailable) {
		// A 200 would tell the client its token is gone while it works on.
		oautherr.WriteTokenError(w, s.Realm, stateUnavailable("the token cannot be revoked now"))
		return
	}
	if err != nil {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return
	}
	if c.ClientID != clientID {
		oautherr.WriteTokenError(w, s.Realm, &oautherr.Error{Code: oautherr.CodeUnauthorizedClient,
			Description: "a client may revoke only its own tokens", Status: http.StatusBadRequest})
		return
	}
	if tokens.IsJWT(token) {
		err = s.Tokens.Revoke(context.WithoutCancel(r.Context()), c.ID, c.Expiry)
	} else {
		err = s.Tokens.RevokeOpaque(context.WithoutCancel(r.Context()), token)
	}
	if err != nil {
		s.Log.Error("revoking token", zap.String("client_id", clientID), zap.Error(err))
		oautherr.WriteTokenError(w, s.Realm, stateUnavailable("the token cannot be revoked now"))
		return
	}
	s.Log.Info("token revoked", zap.String("client_id", clientID), zap.String("jti", c.ID),
		zap.String("remote_ip", s.remoteIP(r)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// clientRequest authenticates the caller of the introspection or
// revocation endpoint and returns its ID and the "token" parameter. When ok
// is false it has answered the request itself.
func (s *Server) clientRequest(w http.ResponseWriter, r *http.Request) (clientID, token string, ok bool) {
	if !allowPost(w, r) {
		return "", "", false
	}
	req, oerr := parseRequest(w, r)
	if oerr == nil {
		var client *clients.Client
		if client, _, oerr = s.authenticate(r, req); oerr == nil {
			clientID = client.ID
		}
	}
	if oerr == nil {
		if token = req.params.Get("token"); token == "" {
			oerr = oautherr.InvalidRequest("token is missing")
		}
	}
	if oerr != nil {
		s.Log.Info("request refused", zap.String("path", r.URL.Path), zap.String("error", oerr.Code),
			zap.String("description", oerr.Description), zap.String("remote_ip", s.remoteIP(r)))
		oautherr.WriteTokenError(w, s.Realm, oerr)
		return "", "", false
	}
	return clientID, token, true
}
