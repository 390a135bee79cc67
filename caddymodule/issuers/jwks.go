package issuers

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/weburl"
)

const (
	// MaxDocumentSize bounds a metadata document or JWKS. Real ones are a
	// few KiB.
	MaxDocumentSize = 1 << 20
	maxRedirects    = 3
	// RSA keys below keys.RSABits are refused as for our own keys; above
	// maxRSABits, each verification would cost the guard too much.
	maxRSABits = 8192
)

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("more than %d redirects", maxRedirects)
	}
	if _, err := weburl.Check(req.URL.String()); err != nil {
		return fmt.Errorf("redirect: %w", err)
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errors.New("redirect from https to http")
	}
	return nil
}

// statusError is a response other than 200.
type statusError struct {
	url    string
	status string
}

func (e *statusError) Error() string { return fmt.Sprintf("GET %s: %s", e.url, e.status) }

// get returns the body of a 200 response, at most MaxDocumentSize bytes.
func (i *Issuer) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := i.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{u, resp.Status}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > MaxDocumentSize {
		return nil, fmt.Errorf("GET %s: the response is larger than %d bytes", u, MaxDocumentSize)
	}
	return body, nil
}

// discover returns the JWKS URL from the first metadata document found.
// A document that names another issuer ends the search: it is a
// misconfiguration or an attack, not a reason to look elsewhere.
func (i *Issuer) discover(ctx context.Context) (string, error) {
	var errs []error
	for _, u := range i.discovery {
		body, err := i.get(ctx, u)
		var se *statusError
		if errors.As(err, &se) {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			return "", err
		}
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			return "", fmt.Errorf("%s is not a JSON object", u)
		}
		if doc.Issuer != i.cfg.Issuer {
			return "", fmt.Errorf("%s names the issuer %.200q, not %q", u, doc.Issuer, i.cfg.Issuer)
		}
		if _, err := weburl.Check(doc.JWKSURI); err != nil {
			return "", fmt.Errorf("%s: jwks_uri: %w", u, err)
		}
		return doc.JWKSURI, nil
	}
	return "", errors.Join(errs...)
}

// allowedAlgorithms are the asymmetric signature algorithms an issuer may
// use. HMAC is not among them: its key would be the issuer's secret, and
// a verifier that accepted it with a public key would accept forgeries.
var allowedAlgorithms = []jwa.SignatureAlgorithm{
	jwa.RS256(), jwa.RS384(), jwa.RS512(), jwa.PS256(), jwa.PS384(), jwa.PS512(),
	jwa.ES256(), jwa.ES384(), jwa.ES512(), jwa.EdDSA(),
}

func parseAlgorithms(names []string) ([]jwa.SignatureAlgorithm, error) {
	if len(names) == 0 {
		return nil, errors.New("no algorithm allowed")
	}
	algs := make([]jwa.SignatureAlgorithm, 0, len(names))
	for _, name := range names {
		alg, ok := jwa.LookupSignatureAlgorithm(name)
		if !ok || !slices.Contains(allowedAlgorithms, alg) {
			return nil, fmt.Errorf("algorithm %q is not allowed (allowed: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", name)
		}
		if !slices.Contains(algs, alg) {
			algs = append(algs, alg)
		}
	}
	return algs, nil
}

// maxKeys bounds the entries of a JWK Set.
const maxKeys = 100

// parseJWKS returns the usable keys of a JWK Set, and why each other key
// was skipped. A kid published twice is dropped: which key it means would
// be a guess. A set without a usable key is an error.
func parseJWKS(body []byte, algs []jwa.SignatureAlgorithm) (keySet, []error, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Keys == nil {
		return nil, nil, errors.New(`not a JWK Set (a JSON object with "keys")`)
	}
	// An issuer publishes a few keys (current, next, previous); a set of
	// thousands would cost a parse and a report line each, per fetch.
	if len(doc.Keys) > maxKeys {
		return nil, nil, fmt.Errorf("the JWK Set has %d keys, more than %d", len(doc.Keys), maxKeys)
	}
	set := keySet{}
	var skipped []error
	published := map[string]int{}
	for n, raw := range doc.Keys {
		k, kid, err := parseKey(raw, algs)
		published[kid]++
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d (kid %.100q) skipped: %w", n, kid, err))
			continue
		}
		set[kid] = k
	}
	for kid, n := range published {
		if n > 1 && set[kid] != nil {
			delete(set, kid)
			skipped = append(skipped, fmt.Errorf("key %.100q skipped: its kid is published %d times", kid, n))
		}
	}
	if len(set) == 0 {
		return nil, skipped, errors.New("no usable key")
	}
	return set, skipped, nil
}

// privateMembers are the JWK members of private and symmetric keys (RFC
// 7518 §6.2.2, §6.3.2, §6.4.1, RFC 8037 §2). A JWKS that carries them has
// leaked a secret; we use no key from such an entry.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// parseKey returns the verification key of one JWKS entry, pinned to one
// algorithm: the entry's "alg" if allowed, else the first allowed one that
// fits the key. The kid is returned even on error, for the report.
func parseKey(raw json.RawMessage, algs []jwa.SignatureAlgorithm) (*keys.Key, string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, "", errors.New("not a JSON object")
	}
	str := func(name string) string {
		var s string
		_ = json.Unmarshal(m[name], &s)
		return s
	}
	kid := str("kid")
	var ops []string
	_ = json.Unmarshal(m["key_ops"], &ops)
	switch {
	case kid == "":
		return nil, "", errors.New(`it has no "kid"`)
	case str("kty") == "oct":
		return nil, kid, errors.New("it is a symmetric key")
	case slices.ContainsFunc(privateMembers, func(name string) bool { _, ok := m[name]; return ok }):
		return nil, kid, errors.New("it has private key members")
	case str("use") != "" && str("use") != "sig":
		return nil, kid, fmt.Errorf("its use is %.20q, not sig", str("use"))
	case m["key_ops"] != nil && !slices.Contains(ops, "verify"):
		return nil, kid, errors.New(`its key_ops do not include "verify"`)
	}
	pub, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, kid, fmt.Errorf("not a valid JWK: %w", err)
	}
	if private, err := jwk.IsPrivateKey(pub); err != nil || private {
		return nil, kid, errors.New("not a public key")
	}
	var alg jwa.SignatureAlgorithm
	if name := str("alg"); name != "" {
		a, ok := jwa.LookupSignatureAlgorithm(name)
		if !ok || !slices.Contains(algs, a) {
			return nil, kid, fmt.Errorf("its algorithm %.20q is not allowed", name)
		}
		if !fits(a, pub) {
			return nil, kid, fmt.Errorf("it is not a key for %s", a)
		}
		alg = a
	} else {
		i := slices.IndexFunc(algs, func(a jwa.SignatureAlgorithm) bool { return fits(a, pub) })
		if i < 0 {
			return nil, kid, fmt.Errorf("no allowed algorithm fits its type %v", pub.KeyType())
		}
		alg = algs[i]
	}
	if pub.KeyType() == jwa.RSA() {
		var rk rsa.PublicKey
		if err := jwk.Export(pub, &rk); err != nil {
			return nil, kid, err
		}
		if n := rk.N.BitLen(); n < keys.RSABits || n > maxRSABits {
			return nil, kid, fmt.Errorf("its RSA modulus has %d bits, not %d to %d", n, keys.RSABits, maxRSABits)
		}
	}
	if err := pub.Set(jwk.AlgorithmKey, alg); err != nil {
		return nil, kid, err
	}
	k, err := keys.NewPublic(kid, alg, pub)
	if err != nil {
		return nil, kid, err
	}
	return k, kid, nil
}

// fits reports whether pub is the kind of key alg is defined for (RFC 7518
// §3, RFC 8037 §3.1). Types are compared by name: jwx's key interfaces
// overlap.
func fits(alg jwa.SignatureAlgorithm, pub jwk.Key) bool {
	curve := func() jwa.EllipticCurveAlgorithm {
		var crv jwa.EllipticCurveAlgorithm
		switch k := pub.(type) {
		case jwk.ECDSAPublicKey:
			crv, _ = k.Crv()
		case jwk.OKPPublicKey:
			crv, _ = k.Crv()
		}
		return crv
	}
	switch alg {
	case jwa.RS256(), jwa.RS384(), jwa.RS512(), jwa.PS256(), jwa.PS384(), jwa.PS512():
		return pub.KeyType() == jwa.RSA()
	case jwa.ES256():
		return pub.KeyType() == jwa.EC() && curve() == jwa.P256()
	case jwa.ES384():
		return pub.KeyType() == jwa.EC() && curve() == jwa.P384()
	case jwa.ES512():
		return pub.KeyType() == jwa.EC() && curve() == jwa.P521()
	case jwa.EdDSA():
		return pub.KeyType() == jwa.OKP() && curve() == jwa.Ed25519()
	}
	return false
}
