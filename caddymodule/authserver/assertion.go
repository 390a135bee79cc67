package authserver

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/oauthgate/oauthgate/caddymodule/assertion"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/issuers"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
)

// authenticateAssertion authenticates a client by its client assertion
// (private_key_jwt, RFC 7523 §2.2), at the token, introspection and
// revocation endpoints alike. Every refusal is the same invalid_client
// as a wrong secret and counts in the failure limiter; the log says which
// check failed. Only what the client cannot help (the replay table or
// its JWKS URL unreachable) is a 503.
func (s *Server) authenticateAssertion(r *http.Request, req *request) (*clients.Client, *oautherr.Error) {
	now, ip := s.now(), s.remoteIP(r)
	claimed := req.params.Get("client_id")
	a, err := assertion.Parse(req.clientAssertion)
	var client *clients.Client
	if err == nil {
		switch {
		case claimed != "" && claimed != a.Issuer:
			err = &assertion.Error{Reason: "client_id is not the assertion's issuer"}
		default:
			claimed = a.Issuer
			client = s.State.Clients().Lookup(claimed)
		}
	}
	if err == nil {
		var ks assertion.Keys
		switch {
		case client == nil:
			err = &assertion.Error{Reason: "no such client"}
		case !client.Accepts(clients.MethodPrivateKeyJWT):
			err = &assertion.Error{Reason: "the client has no keys registered, or must use another method"}
		case s.Once == nil:
			err = &assertion.Error{Reason: "the gateway has no replay table"}
		default:
			if ks, err = s.clientKeys(client); err != nil {
				err = fmt.Errorf("%w: %v", assertion.ErrUnavailable, err)
			} else {
				err = s.assertions().Verify(r.Context(), a, claimed, ks)
			}
			// Only after the signature: the time to refuse must not tell
			// a disabled client from one with another key.
			if err == nil && client.Disabled {
				err = &assertion.Error{Reason: "the client is disabled"}
			}
		}
	}
	if err == nil {
		return client, nil
	}
	req.assertedID = claimed // for the refusal's audit line
	logged := s.loggableClientID(claimed)
	if errors.Is(err, assertion.ErrUnavailable) {
		s.Log.Error("client assertion not checked", zap.String("client_id", logged),
			zap.Error(err), zap.String("remote_ip", ip))
		return nil, stateUnavailable("the client assertion cannot be checked now")
	}
	s.Log.Info("client assertion refused", zap.String("client_id", logged),
		zap.Error(err), zap.String("remote_ip", ip))
	if s.Limiter != nil {
		if wait := s.Limiter.Take(claimed, ip, now); wait > 0 {
			s.Limiter.Fail(claimed, ip, now)
			return nil, oautherr.TooManyFailures(wait)
		}
	}
	return nil, oautherr.InvalidClient("client authentication failed")
}

// assertions is the verifier of client assertions. Their audience is
// this server: its issuer identifier or its token endpoint URL, exactly,
// at every endpoint (see docs/reference.md#private_key_jwt).
func (s *Server) assertions() *assertion.Verifier {
	return &assertion.Verifier{
		Audiences:   []string{s.Issuer, strings.TrimSuffix(s.Issuer, "/") + TokenPath},
		MaxLifetime: s.MaxAssertionLifetime,
		Once:        s.Once,
		Now:         s.Now,
	}
}

// maxRemoteSets bounds the JWK Sets kept by URL: as many as a clients
// file names, and a bound on those of clients since removed.
const maxRemoteSets = 10000

// remoteKeys keeps one issuers.Issuer per jwks_uri, so that a client's
// keys are fetched once and then refreshed under the trusted issuers'
// bounds, not per request.
type remoteKeys struct {
	mu   sync.Mutex
	sets map[string]*issuers.Issuer
}

// clientKeys returns the keys an assertion of client is checked against:
// the inline JWK Set, or the one at its jwks_uri.
func (s *Server) clientKeys(client *clients.Client) (assertion.Keys, error) {
	if client.JWKSURI == "" {
		return client, nil
	}
	s.remote.mu.Lock()
	defer s.remote.mu.Unlock()
	if i := s.remote.sets[client.JWKSURI]; i != nil {
		return i, nil
	}
	if s.remote.sets == nil || len(s.remote.sets) >= maxRemoteSets {
		s.remote.sets = map[string]*issuers.Issuer{}
	}
	uri := client.JWKSURI
	i, err := issuers.New(issuers.Config{
		// Only its Key method is used: Issuer and Audience name it.
		Issuer:     "jwks_uri of client " + client.ID,
		Audience:   client.ID,
		JWKSURL:    uri,
		Algorithms: assertion.Algorithms,
		Now:        s.Now,
		Report: func(err error) {
			s.Log.Warn("client JWK Set", zap.String("jwks_uri", uri), zap.Error(err))
		},
	})
	if err != nil {
		return nil, err // the clients file checked the URL: not expected
	}
	s.remote.sets[uri] = i
	return i, nil
}
