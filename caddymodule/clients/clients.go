// Package clients is the registry of OAuth clients: the clients file, its
// atomic persistence, and client authentication by secret.
//
// The file is JSON written by `caddy oauth client …`. Secrets are never
// stored in clear; see Secret for the hash formats.
package clients

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/atomicfile"
	"github.com/oauthgate/oauthgate/caddymodule/filewatch"
	"github.com/oauthgate/oauthgate/caddymodule/keys"
)

// DefaultTokenLifetime applies to a client whose file entry has no
// token_lifetime (SAP's default for an OAuth client).
const DefaultTokenLifetime = 60 * time.Minute

// maxFileSize bounds the clients file so a wrong path (a log, a device)
// cannot make the gateway read without end. 16 MiB holds ~50,000 clients.
const maxFileSize = 16 << 20

// File is the on-disk form of the clients file.
type File struct {
	Clients []Client `json:"clients"`
}

// Client is one registered OAuth client (an SAP "OAuth client": a sender
// system with its own credentials).
type Client struct {
	// ID is the generated client ID; the token subject is
	// "oauth_client_" + ID.
	ID string `json:"id"`
	// Name is a short label chosen by the operator.
	Name string `json:"name"`
	// Description is free text for the operator.
	Description string `json:"description,omitempty"`
	// Secrets are the hashes of the secrets that authenticate the client.
	// A client that authenticates by certificate or keys alone has none.
	Secrets []Secret `json:"secrets,omitempty"`
	// JWKS is the client's public keys as a JWK Set (RFC 7517), given
	// inline, for private_key_jwt (RFC 7523): the client authenticates
	// with a JWT signed by one of them. Each key needs a "kid", an
	// asymmetric type (RSA ≥ 2048 bits, EC P-256/384/521, Ed25519) and no
	// private member. At most one of JWKS and JWKSURI.
	JWKS json.RawMessage `json:"jwks,omitempty"`
	// JWKSURI is where the client publishes that JWK Set instead: https,
	// or http to a loopback host. It is fetched when first needed, again
	// when an assertion names an unknown kid (at most every 30s) and when
	// the keys are an hour old; 1 MiB, 5s and 3 redirects at most.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// TokenEndpointAuthMethod (RFC 7591 §2) restricts the client to one
	// way of authenticating: client_secret_basic, client_secret_post,
	// private_key_jwt, tls_client_auth or self_signed_tls_client_auth. Empty: any way it has a credential for.
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// TokenLifetime is how long the client's access tokens are valid, as
	// a Go duration ("60m", "12h"). Empty means DefaultTokenLifetime. "0"
	// means what it meant in SAP BTP Neo: a token is valid until the
	// client requests a new one (and at most the gateway's
	// max_token_lifetime).
	TokenLifetime string `json:"token_lifetime,omitempty"`
	// Audiences are the resource servers the client may obtain tokens
	// for (SAP's "subscription"): the values its token requests may name
	// in "resource" or "audience". The first is the default. Empty means
	// only the gateway's own audience.
	Audiences []string `json:"audiences,omitempty"`
	// Disabled clients cannot obtain tokens.
	Disabled bool `json:"disabled,omitempty"`

	// TLSSubjectDN, TLSSANDNS, TLSSANURI, TLSSANIP and TLSSANEmail name
	// the client's certificate for tls_client_auth (RFC 8705 §2.1.2); at
	// most one is set. A certificate that chains to a CA of the oauth
	// app's client_certificates and carries this subject DN (RFC 4514,
	// e.g. "CN=sender,O=Example,C=DE"; letter case and spaces around
	// separators do not count) or this subject alternative name
	// authenticates the client, with no secret.
	TLSSubjectDN string `json:"tls_client_auth_subject_dn,omitempty"`
	TLSSANDNS    string `json:"tls_client_auth_san_dns,omitempty"`
	TLSSANURI    string `json:"tls_client_auth_san_uri,omitempty"`
	TLSSANIP     string `json:"tls_client_auth_san_ip,omitempty"`
	TLSSANEmail  string `json:"tls_client_auth_san_email,omitempty"`
	// Certificates are the client's own certificates, PEM, for
	// self_signed_tls_client_auth (RFC 8705 §2.2): a TLS client
	// certificate with the public key of one of them authenticates the
	// client, whoever signed it.
	Certificates []string `json:"tls_client_certificates,omitempty"`
	// BoundTokens binds every token of the client to the TLS client
	// certificate it presents at the token endpoint (RFC 8705 §3), also
	// when it authenticates with a secret; a token request without a
	// certificate is refused. A client that authenticates by certificate
	// gets bound tokens whatever this says.
	BoundTokens bool `json:"tls_client_certificate_bound_access_tokens,omitempty"`

	lifetime   time.Duration
	keys       map[string]*keys.Key // parsed from JWKS
	tlsSubject *tlsSubject
	certKeys   [][]byte // RawSubjectPublicKeyInfo of each of Certificates
}

// Subject is the token subject of the client, SAP's technical user.
func (c *Client) Subject() string { return SubjectPrefix + c.ID }

// SubjectPrefix turns a client ID into its token subject.
const SubjectPrefix = "oauth_client_"

// Lifetime is the validated token lifetime.
func (c *Client) Lifetime() time.Duration { return c.lifetime }

// validate checks the entry and fills derived fields.
func (c *Client) validate() error {
	if !validID(c.ID) {
		return fmt.Errorf("id %q: must be 1 to 64 characters of A-Z a-z 0-9 - _ .", c.ID)
	}
	if err := c.validateCertificates(); err != nil {
		return err
	}
	if err := c.checkCredentials(); err != nil {
		return err
	}
	if len(c.Secrets) > MaxSecretsPerClient {
		return fmt.Errorf("%d secrets: at most %d are allowed", len(c.Secrets), MaxSecretsPerClient)
	}
	for i := range c.Secrets {
		if err := c.Secrets[i].parse(); err != nil {
			return fmt.Errorf("secret %d: %w", i+1, err)
		}
		if id := c.Secrets[i].ID; id != "" && c.secretIndex(id) != i {
			return fmt.Errorf("secret %d: duplicate id %q", i+1, id)
		}
	}
	c.lifetime = DefaultTokenLifetime
	if c.TokenLifetime != "" {
		d, err := time.ParseDuration(c.TokenLifetime)
		if err != nil {
			return fmt.Errorf("token_lifetime: %w", err)
		}
		if d < 0 {
			return fmt.Errorf("token_lifetime %q: must not be negative", c.TokenLifetime)
		}
		c.lifetime = d
	}
	for i, a := range c.Audiences {
		switch {
		case a == "":
			return fmt.Errorf("audiences: entry %d is empty", i+1)
		case slices.Index(c.Audiences, a) != i:
			return fmt.Errorf("audiences: %q is listed twice", a)
		}
	}
	return nil
}

// validID keeps IDs safe to embed in a subject, a log line and a Basic
// header: no colon, no spaces, no characters that need encoding.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ReadFile reads and validates the clients file at path. A missing file is
// an error: a gateway configured with a clients file that is not there is
// misconfigured, not empty.
func ReadFile(path string) (*File, error) {
	data, err := filewatch.Read(path, maxFileSize)
	if err != nil {
		return nil, err
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// ReadFileOrEmpty is ReadFile, except that a missing file reads as an empty
// registry; the CLI uses it to create the first client.
func ReadFileOrEmpty(path string) (*File, error) {
	f, err := ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{}, nil
	}
	return f, err
}

// Parse decodes and validates a clients file. Errors name the line and
// column of a JSON syntax error, or the client at fault.
func Parse(data []byte) (*File, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, jsonError(data, err)
	}
	// Not dec.More: it reports a stray "}" or "]" as the end of input.
	if len(bytes.Trim(data[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, errors.New("unexpected data after the JSON object")
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// validate checks every client and that no two share an ID.
func (f *File) validate() error {
	seen := make(map[string]bool, len(f.Clients))
	for i := range f.Clients {
		c := &f.Clients[i]
		if err := c.validate(); err != nil {
			return fmt.Errorf("client %d (%q): %w", i+1, c.ID, err)
		}
		if seen[c.ID] {
			return fmt.Errorf("client %d: duplicate id %q", i+1, c.ID)
		}
		seen[c.ID] = true
	}
	return nil
}

// jsonError adds a line:column position to a decoding error.
func jsonError(data []byte, err error) error {
	var offset int64 = -1
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		offset = syn.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	}
	// Offset counts the bytes read up to and including the one at fault.
	offset--
	if offset < 0 || offset >= int64(len(data)) {
		return err
	}
	line := 1 + bytes.Count(data[:offset], []byte{'\n'})
	col := offset - int64(bytes.LastIndexByte(data[:offset], '\n'))
	return fmt.Errorf("line %d, column %d: %w", line, col, err)
}

// WriteFile writes f to path atomically: a crash leaves either the old
// file or the new one, never a mix. The file is readable by its owner
// only, as it holds secret hashes.
func WriteFile(path string, f *File) error {
	if err := f.validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	return atomicfile.Write(path, data, 0o600)
}

// NewID returns a fresh client ID: 128 random bits in hex, like the IDs
// SAP generates.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}

// Find returns the client with the given ID, or nil.
func (f *File) Find(id string) *Client {
	for i := range f.Clients {
		if f.Clients[i].ID == id {
			return &f.Clients[i]
		}
	}
	return nil
}
