// Package authserver is the OAuth 2.0 authorization server of oauthgate:
// the token endpoint for the client-credentials grant (RFC 6749 §4.4), the
// JWK Set of its signing keys, and its RFC 8414 metadata.
package authserver

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
)

// The endpoint paths. The token path is SAP Cloud Integration's, so
// senders configured for SAP need only a new host name.
const (
	TokenPath    = "/oauth2/api/v1/token"
	JWKSPath     = "/.well-known/jwks.json"
	MetadataPath = "/.well-known/oauth-authorization-server"
)

// State is what the server reads on every request. Its methods return the
// current, immutable snapshots, so a reload never changes them mid-request.
type State interface {
	Clients() *clients.Registry
	Keys() *keys.Set
	// Roles returns the roles a subject holds.
	Roles(subject string) []string
}

// Server serves the endpoints.
type Server struct {
	State State
	// Issuer is the "iss" of every token and the base of the endpoint URLs
	// in the metadata.
	Issuer string
	// Audience is the "aud" of every token.
	Audience string
	// Realm names the Basic challenge of a failed client authentication.
	Realm string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *zap.Logger
}

// ServeHTTP answers the server's own paths. It reports false for any
// other path, which the caller hands on.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) bool {
	switch r.URL.Path {
	case TokenPath:
		s.serveToken(w, r)
	case JWKSPath:
		if allowGet(w, r) {
			h := w.Header()
			h.Set("Content-Type", "application/jwk-set+json")
			// Short enough that a rotated key reaches every verifier
			// well before it signs.
			h.Set("Cache-Control", "public, max-age=300")
			_, _ = w.Write(s.State.Keys().JWKS())
		}
	case MetadataPath:
		if allowGet(w, r) {
			s.serveMetadata(w)
		}
	default:
		return false
	}
	return true
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oautherr.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{
			"error":             oautherr.CodeInvalidRequest,
			"error_description": "the token endpoint accepts POST only",
		})
		return
	}
	resp, client, oerr := s.issue(w, r)
	if oerr != nil {
		s.Log.Info("token request refused",
			zap.String("error", oerr.Code),
			zap.String("description", oerr.Description))
		oautherr.WriteTokenError(w, s.Realm, oerr)
		return
	}
	s.Log.Info("token issued",
		zap.String("client_id", client.ID),
		zap.String("scope", resp.Scope),
		zap.Int64("expires_in", resp.ExpiresIn))
	oautherr.WriteJSON(w, http.StatusOK, resp)
}

func (s *Server) issue(w http.ResponseWriter, r *http.Request) (*tokenResponse, *clients.Client, *oautherr.Error) {
	req, oerr := parseTokenRequest(w, r)
	if oerr != nil {
		return nil, nil, oerr
	}
	switch req.grantType {
	case "":
		return nil, nil, oautherr.InvalidRequest("grant_type is missing")
	case "client_credentials":
	default:
		return nil, nil, oautherr.UnsupportedGrantType("only grant_type=client_credentials is supported")
	}
	if req.tokenFormat != "" && req.tokenFormat != "jwt" {
		return nil, nil, oautherr.InvalidRequest("token_format must be jwt")
	}
	client := s.authenticate(req.credentials)
	if client == nil {
		// One answer for unknown client, wrong secret and disabled
		// client: the endpoint must not reveal which clients exist.
		return nil, nil, oautherr.InvalidClient("client authentication failed")
	}
	granted := s.State.Roles(client.Subject())
	scope, oerr := grantScope(req.scope, granted)
	if oerr != nil {
		return nil, nil, oerr
	}

	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	iat := now().Truncate(time.Second)
	claims := &tokens.Claims{
		Issuer:   s.Issuer,
		Subject:  client.Subject(),
		ClientID: client.ID,
		Audience: []string{s.Audience},
		IssuedAt: iat,
		Expiry:   iat.Add(client.Lifetime()),
		ID:       tokens.NewID(),
		Scope:    scope,
	}
	tok, err := tokens.Mint(s.State.Keys().Signing(), claims)
	if err != nil {
		s.Log.Error("signing access token", zap.Error(err))
		return nil, nil, &oautherr.Error{Code: "server_error", Description: "the token could not be signed", Status: http.StatusInternalServerError}
	}
	return &tokenResponse{
		AccessToken: tok,
		TokenType:   "Bearer",
		ExpiresIn:   int64(client.Lifetime() / time.Second),
		Scope:       strings.Join(scope, " "),
	}, client, nil
}

// authenticate tries each credential candidate; see basicCredentials.
func (s *Server) authenticate(creds []credential) *clients.Client {
	reg := s.State.Clients()
	for _, c := range creds {
		if client, err := reg.Authenticate(c.id, c.secret); err == nil {
			return client
		}
	}
	return nil
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

type metadata struct {
	Issuer                   string   `json:"issuer"`
	TokenEndpoint            string   `json:"token_endpoint"`
	JWKSURI                  string   `json:"jwks_uri"`
	GrantTypesSupported      []string `json:"grant_types_supported"`
	ResponseTypesSupported   []string `json:"response_types_supported"`
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
}

func (s *Server) serveMetadata(w http.ResponseWriter) {
	base := strings.TrimSuffix(s.Issuer, "/")
	oautherr.WriteJSON(w, http.StatusOK, metadata{
		Issuer:                   s.Issuer,
		TokenEndpoint:            base + TokenPath,
		JWKSURI:                  base + JWKSPath,
		GrantTypesSupported:      []string{"client_credentials"},
		ResponseTypesSupported:   []string{}, // no authorization endpoint
		TokenEndpointAuthMethods: []string{"client_secret_basic", "client_secret_post"},
	})
}
