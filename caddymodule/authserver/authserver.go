// Package authserver is the OAuth 2.0 authorization server of oauthgate:
// the token endpoint for the client-credentials grant (RFC 6749 §4.4),
// token introspection (RFC 7662) and revocation (RFC 7009), the JWK Set of
// its signing keys (RFC 7517), and its RFC 8414 metadata.
package authserver

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/assertion"
	"github.com/oauthgate/oauthgate/caddymodule/bruteforce"
	"github.com/oauthgate/oauthgate/caddymodule/clientcert"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/dpop"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
	"github.com/oauthgate/oauthgate/caddymodule/oauthjson"
	"github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// The endpoint paths. The token path is SAP Cloud Integration's, so
// senders configured for SAP need only a new host name.
const (
	TokenPath      = "/oauth2/api/v1/token"
	IntrospectPath = "/oauth2/api/v1/introspect"
	RevokePath     = "/oauth2/api/v1/revoke"
	JWKSPath       = "/.well-known/jwks.json"
	MetadataPath   = "/.well-known/oauth-authorization-server"
)

// State is what the server reads on every request. Its methods return the
// current, immutable snapshots, so a reload never changes them mid-request.
type State interface {
	Clients() *clients.Registry
	Keys() *keys.Set
	// Roles returns the roles a subject holds.
	Roles(subject string) []string
}

// Verifier checks any access token of this issuer, of either format and
// for any audience (introspection and revocation answer for them all).
type Verifier interface {
	Verify(ctx context.Context, token string) (*tokens.Claims, error)
}

// Server serves the endpoints.
type Server struct {
	State State
	// Tokens is the token state: opaque tokens, revocations, lifetime-0
	// supersession.
	Tokens   *tokenstate.Store
	Verifier Verifier
	// MaxLifetime caps every token's lifetime; a client lifetime of 0
	// ("until the next token") gets exactly this.
	MaxLifetime time.Duration
	// Limiter throttles failed client authentication; nil means none.
	Limiter Limiter
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
	// Metrics counts issuances and refusals; nil counts nothing.
	Metrics Recorder
	// ClientIP, if set, names the caller's address (behind a trusted
	// proxy, the client's, not the proxy's) for the per-address failure
	// limit and the audit lines; "" falls back to the connection's peer.
	// Caddy's answer is only as good as its trusted_proxies_strict.
	ClientIP func(*http.Request) string
	// Once remembers the jti of every accepted client assertion (RFC
	// 7523 §3), fleet-wide with Redis; nil refuses every assertion.
	Once state.Once
	// MaxAssertionLifetime bounds how far ahead a client assertion's exp
	// may be; 0 means assertion.DefaultMaxLifetime.
	MaxAssertionLifetime time.Duration

	remote remoteKeys // the JWK Sets of clients registered by jwks_uri
	// Certificates finds a request's TLS client certificate (RFC 8705);
	// nil means client certificates are not configured: no client
	// authenticates by one and no token is bound to one.
	Certificates CertificateSource
	// ClientCAs are the CAs a tls_client_auth client's certificate must
	// chain to; nil means none, so only self_signed_tls_client_auth
	// works.
	ClientCAs *x509.CertPool
	// DPoP checks the DPoP proofs of token requests (RFC 9449 §5); a
	// token requested with a valid one is bound to its key. Nil refuses
	// every request that carries a proof, so that no client believes
	// it holds a bound token when it holds a bearer one.
	DPoP *dpop.Verifier
}

// CertificateSource finds the TLS client certificate of a request:
// *clientcert.Source is one.
type CertificateSource interface {
	// Certificate returns the request's certificate, nil when it has
	// none; an error is a malformed certificate header.
	Certificate(r *http.Request) (*clientcert.Cert, error)
}

var _ CertificateSource = (*clientcert.Source)(nil)

// Limiter counts failed client authentications: *bruteforce.Limiter in
// one process, or a fleet-wide one shared through the state engine.
type Limiter interface {
	// Take reports how long until a failure of clientID from addr would
	// be allowed, 0 if it would be now, and then takes it at once, so
	// that concurrent guesses cannot all pass before the first fails.
	Take(clientID, addr string, now time.Time) time.Duration
	// Refund gives back what Take took, when the authentication succeeds.
	Refund(clientID, addr string)
	// Fail records a failure that Take did not take.
	Fail(clientID, addr string, now time.Time)
}

var _ Limiter = (*bruteforce.Limiter)(nil)

// Recorder counts what the token endpoint does, and tells the request's
// trace: ctx is the request's.
type Recorder interface {
	Token(ctx context.Context, o TokenOutcome)
}

// TokenOutcome is what the token endpoint did with one request. Every
// field is bounded, fit for a metric label: nothing in it is the caller's
// to choose freely.
type TokenOutcome struct {
	// ClientID is the authenticated client's ID; "" when no client
	// authenticated.
	ClientID string
	// GrantType is the grant_type sent if OAuth defines it (see
	// grantTypeLabel), "other" for any other value, "" when none was
	// read.
	GrantType string
	// Format is the issued token's format, jwt or opaque; "" on a
	// refusal.
	Format string
	// Error is the RFC 6749 code of a refusal; "" when a token was
	// issued.
	Error string
}

// Serves reports whether path is one of the server's endpoints; a
// handler in front of other routes hands every other request on.
func (s *Server) Serves(path string) bool {
	switch path {
	case TokenPath, IntrospectPath, RevokePath, JWKSPath, MetadataPath:
		return true
	}
	return false
}

// ServeHTTP answers the server's endpoints, and any other path with 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case TokenPath:
		s.serveToken(w, r)
	case IntrospectPath:
		s.serveIntrospect(w, r)
	case RevokePath:
		s.serveRevoke(w, r)
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
		http.NotFound(w, r)
	}
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// authenticate finds the client the credentials belong to. Each
// candidate (see basicCredentials) is tried, first by what costs no
// argon2id (SHA-256 secrets and cached argon2id verifications) and
// without asking the limiter: a right secret there is not a guess that
// needs bounding, and a fleet-wide limiter is a round trip to the state
// engine that a legitimate client would otherwise pay on every token.
// Only when that fails is the limiter asked: it holds one failure while
// the argon2id verifications run, and while it holds the claimed client
// ID or the caller's address they are refused (429). Guessing is bounded
// as before, since every wrong guess ends on the limiter.
//
// A client ID without a secret is the client's claim to authenticate by
// its TLS client certificate (RFC 8705 §2): see authenticateCertificate.
// The certificate is returned when it authenticated the client, which
// binds the client's token to it. A client assertion (private_key_jwt)
// is checked by authenticateAssertion instead. Every way, a client
// restricted to another method (token_endpoint_auth_method) fails like a
// wrong secret.
func (s *Server) authenticate(r *http.Request, req *request) (*clients.Client, *clientcert.Cert, *oautherr.Error) {
	if req.clientAssertion != "" {
		client, oerr := s.authenticateAssertion(r, req)
		return client, nil, oerr
	}
	creds := req.credentials
	if len(creds) == 0 {
		return nil, nil, oautherr.InvalidClient("client authentication failed")
	}
	if len(creds) == 1 && creds[0].secret == "" {
		return s.authenticateCertificate(r, creds[0].id)
	}
	client, oerr := s.authenticateSecret(r, creds, req.method)
	return client, nil, oerr
}

// authenticateSecret authenticates by a client secret sent by method.
func (s *Server) authenticateSecret(r *http.Request, creds []credential, method string) (*clients.Client, *oautherr.Error) {
	now, ip := s.now(), s.remoteIP(r)
	reg := s.State.Clients()
	try := func(opt clients.AuthOptions) (client *clients.Client, slowRefused bool) {
		for _, c := range creds {
			client, err := reg.Authenticate(c.id, c.secret, opt)
			if err == nil {
				return client, false
			}
			// The same for every candidate: it depends on the registry
			// holding any argon2id secret, not on the client.
			slowRefused = errors.Is(err, clients.ErrSlowHashRefused)
		}
		return nil, slowRefused
	}
	client, slowRefused := try(clients.AuthOptions{Now: now, NoSlowHash: true})
	if client != nil {
		return s.accepts(client, method, creds[len(creds)-1].id, ip, now)
	}
	// The last candidate is the decoded one, the only form a registered
	// ID can have: every percent-encoding of an ID counts against it.
	claimed := creds[len(creds)-1].id
	if s.Limiter != nil {
		if wait := s.Limiter.Take(claimed, ip, now); wait > 0 {
			s.Limiter.Fail(claimed, ip, now)
			return nil, oautherr.TooManyFailures(wait)
		}
	}
	if slowRefused {
		if client, _ = try(clients.AuthOptions{Now: now}); client != nil {
			if s.Limiter != nil {
				s.Limiter.Refund(claimed, ip)
			}
			return s.accepts(client, method, claimed, ip, now)
		}
	}
	// One answer for unknown client, wrong secret and disabled client:
	// the endpoint must not reveal which clients exist.
	return nil, oautherr.InvalidClient("client authentication failed")
}

// accepts returns client if it may authenticate by method, and otherwise
// counts a failure: a secret that is right but not the client's way in
// is refused like a wrong one.
func (s *Server) accepts(client *clients.Client, method, claimed, ip string, now time.Time) (*clients.Client, *oautherr.Error) {
	if client.Accepts(method) {
		return client, nil
	}
	if s.Limiter != nil {
		s.Limiter.Fail(claimed, ip, now)
	}
	return nil, oautherr.InvalidClient("client authentication failed")
}

// authenticateCertificate authenticates client id by the request's TLS
// client certificate. A failure counts in the limiter like a wrong
// secret; a success does not ask it, as for a right secret.
func (s *Server) authenticateCertificate(r *http.Request, id string) (*clients.Client, *clientcert.Cert, *oautherr.Error) {
	now := s.now()
	var cert *clientcert.Cert
	if s.Certificates != nil {
		var err error
		if cert, err = s.Certificates.Certificate(r); err != nil {
			return nil, nil, oautherr.InvalidRequest(err.Error())
		}
	}
	if cert != nil {
		client, err := s.State.Clients().AuthenticateCertificate(id, cert.Leaf, cert.Intermediates,
			clients.CertificateCheck{Roots: s.ClientCAs, Now: now})
		if err == nil && client.Accepts(client.CertificateMethod()) {
			return client, cert, nil
		}
	}
	if s.Limiter != nil {
		ip := s.remoteIP(r)
		if wait := s.Limiter.Take(id, ip, now); wait > 0 {
			s.Limiter.Fail(id, ip, now)
			return nil, nil, oautherr.TooManyFailures(wait)
		}
	}
	// As for secrets, one answer whether the client exists or not, and
	// the same as for an empty secret.
	return nil, nil, oautherr.InvalidClient("client authentication failed")
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// loggableClientID is a claimed client ID fit for the log: a registered
// ID as it is, anything else as a short hash, because a client that
// swapped ID and secret would otherwise write its secret into the log.
func (s *Server) loggableClientID(id string) string {
	if id == "" || s.State.Clients().Lookup(id) != nil {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "unregistered:" + hex.EncodeToString(sum[:6])
}

type metadata struct {
	Issuer                        string   `json:"issuer"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	IntrospectionEndpoint         string   `json:"introspection_endpoint"`
	RevocationEndpoint            string   `json:"revocation_endpoint"`
	JWKSURI                       string   `json:"jwks_uri"`
	GrantTypesSupported           []string `json:"grant_types_supported"`
	ResponseTypesSupported        []string `json:"response_types_supported"`
	TokenEndpointAuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuth     []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethods []string `json:"revocation_endpoint_auth_methods_supported"`
	TokenEndpointAuthAlgs         []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	IntrospectionEndpointAuthAlgs []string `json:"introspection_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthAlgs    []string `json:"revocation_endpoint_auth_signing_alg_values_supported"`

	// RFC 8705 §3.3: the server issues certificate-bound tokens.
	TLSClientCertificateBoundAccessTokens bool     `json:"tls_client_certificate_bound_access_tokens,omitempty"`
	DPoPAlgs                              []string `json:"dpop_signing_alg_values_supported,omitempty"` // RFC 9449 §5.1
}

func (s *Server) serveMetadata(w http.ResponseWriter) {
	base := strings.TrimSuffix(s.Issuer, "/")
	authMethods := []string{clients.MethodSecretBasic, clients.MethodSecretPost, clients.MethodPrivateKeyJWT}
	if s.Certificates != nil {
		if s.ClientCAs != nil {
			authMethods = append(authMethods, clients.MethodTLSClientAuth)
		}
		authMethods = append(authMethods, clients.MethodSelfSignedTLSClientAuth)
	}
	var dpopAlgs []string
	if s.DPoP != nil {
		for _, a := range s.DPoP.Algorithms {
			dpopAlgs = append(dpopAlgs, a.String())
		}
	}
	m := metadata{
		DPoPAlgs:                      dpopAlgs,
		Issuer:                        s.Issuer,
		TokenEndpoint:                 base + TokenPath,
		IntrospectionEndpoint:         base + IntrospectPath,
		RevocationEndpoint:            base + RevokePath,
		JWKSURI:                       base + JWKSPath,
		GrantTypesSupported:           []string{"client_credentials"},
		ResponseTypesSupported:        []string{}, // no authorization endpoint
		TokenEndpointAuthMethods:      authMethods,
		IntrospectionEndpointAuth:     authMethods,
		RevocationEndpointAuthMethods: authMethods,
		TokenEndpointAuthAlgs:         assertion.Algorithms,
		IntrospectionEndpointAuthAlgs: assertion.Algorithms,
		RevocationEndpointAuthAlgs:    assertion.Algorithms,
	}
	m.TLSClientCertificateBoundAccessTokens = s.Certificates != nil
	oauthjson.Write(w, http.StatusOK, m)
}
