package clients

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/oauthgate/oauthgate/caddymodule/assertion"
	"github.com/oauthgate/oauthgate/caddymodule/issuers"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/weburl"
)

// The client authentication methods, as RFC 7591 §2 and OpenID Connect
// Core §9 name them.
const (
	MethodSecretBasic   = "client_secret_basic"
	MethodSecretPost    = "client_secret_post"
	MethodPrivateKeyJWT = assertion.Method
)

// methods lists, for each authentication method, whether c holds the
// credential it needs; checkCredentials and Accepts follow it. The
// certificates must have been read (validateCertificates) first.
func (c *Client) methods() map[string]bool {
	return map[string]bool{
		MethodSecretBasic:             len(c.Secrets) > 0,
		MethodSecretPost:              len(c.Secrets) > 0,
		MethodPrivateKeyJWT:           len(c.JWKS) > 0 || c.JWKSURI != "",
		MethodTLSClientAuth:           c.tlsSubject != nil,
		MethodSelfSignedTLSClientAuth: len(c.certKeys) > 0,
	}
}

// checkCredentials is the rule that every client can authenticate by at
// least one method, and by the one it is restricted to: a client with
// neither secret nor keys nor certificate is refused when the file is read, so that no
// code path has to ask what such a client could do. It also parses the
// credentials that are not secrets.
func (c *Client) checkCredentials() error {
	if len(c.JWKS) > 0 && c.JWKSURI != "" {
		return errors.New("jwks and jwks_uri: give the keys one way only (RFC 7591 §2)")
	}
	if len(c.JWKS) > 0 {
		set, skipped, err := issuers.ParseJWKS(c.JWKS, assertion.Algorithms)
		if len(skipped) > 0 {
			// A key the operator listed and we would not use is a
			// mistake to fix, not to pass over.
			err = errors.Join(skipped...)
		}
		if err != nil {
			return fmt.Errorf("jwks: %w", err)
		}
		c.keys = set
	}
	if c.JWKSURI != "" {
		if _, err := weburl.Check(c.JWKSURI); err != nil {
			return fmt.Errorf("jwks_uri: %w", err)
		}
	}
	has := c.methods()
	if m := c.TokenEndpointAuthMethod; m != "" {
		ok, known := has[m]
		switch {
		case !known:
			return fmt.Errorf("token_endpoint_auth_method %q: want one of %s", m, strings.Join(c.methodNames(), ", "))
		case !ok:
			return fmt.Errorf("token_endpoint_auth_method %q: the client has no credential for it", m)
		}
		return nil
	}
	for _, ok := range has {
		if ok {
			return nil
		}
	}
	return errors.New("no credential: give it secrets, jwks or jwks_uri, or a TLS client certificate (tls_client_auth_* or tls_client_certificates)")
}

func (c *Client) methodNames() []string {
	return []string{MethodSecretBasic, MethodSecretPost, MethodPrivateKeyJWT, MethodTLSClientAuth, MethodSelfSignedTLSClientAuth}
}

// Accepts reports whether c may authenticate by method: it has the
// credential, and its token_endpoint_auth_method, if any, is that one.
func (c *Client) Accepts(method string) bool {
	if c.TokenEndpointAuthMethod != "" && c.TokenEndpointAuthMethod != method {
		return false
	}
	return c.methods()[method]
}

// Key implements assertion.Keys for a client whose JWK Set is inline:
// the key with this kid, or with kid "" the only key; nil if none.
func (c *Client) Key(_ context.Context, kid string) (*keys.Key, error) {
	if kid != "" {
		return c.keys[kid], nil
	}
	if len(c.keys) == 1 {
		for _, k := range c.keys {
			return k, nil
		}
	}
	return nil, nil
}

// KeyIDs are the kids of the inline JWK Set, sorted.
func (c *Client) KeyIDs() []string {
	ids := slices.Collect(maps.Keys(c.keys))
	slices.Sort(ids)
	return ids
}
