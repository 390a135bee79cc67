package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Key is one signing key.
type Key struct {
	// ID is the RFC 7638 thumbprint of the public key, used as "kid".
	ID string
	// Algorithm is the only algorithm this key signs and verifies with.
	Algorithm jwa.SignatureAlgorithm
	// Private signs; Public verifies and is published.
	Private jwk.Key
	Public  jwk.Key

	sign       func(input []byte) ([]byte, error) // see Sign; nil without Private
	verify     func(input, sig []byte) bool       // see Verify
	thumbprint string                             // RFC 7638, of Public
}

// Thumbprint is the RFC 7638 thumbprint of the public key: what the key
// is, whatever its kid says. For the gateway's own keys it is the kid.
func (k *Key) Thumbprint() string { return k.thumbprint }

// RSABits is the size of generated RSA keys. 2048 bits is NIST's minimum
// through 2030 (SP 800-57 Part 1 Rev. 5), and a signing key only has to
// resist attack for its rotation period plus the lifetime of its tokens;
// keys of 3072 bits take several times longer to generate and make every
// token 128 bytes longer. Stored RSA keys must have at least this many.
const RSABits = 2048

// allowed lists the algorithms signing keys may have.
func allowed(alg jwa.SignatureAlgorithm) bool {
	switch alg {
	case jwa.ES256(), jwa.EdDSA(), jwa.RS256(), jwa.PS256():
		return true
	}
	return false
}

const algorithmNames = "ES256, EdDSA, RS256, PS256"

// generate makes a new key for alg.
func generate(alg jwa.SignatureAlgorithm) (*Key, error) {
	var raw any
	var err error
	switch alg {
	case jwa.ES256():
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jwa.EdDSA():
		_, raw, err = ed25519.GenerateKey(rand.Reader)
	case jwa.RS256(), jwa.PS256():
		raw, err = rsa.GenerateKey(rand.Reader, RSABits)
	default:
		err = fmt.Errorf("algorithm %q is not supported for signing keys", alg)
	}
	if err != nil {
		return nil, err
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		return nil, err
	}
	if err := priv.Set(jwk.AlgorithmKey, alg); err != nil {
		return nil, err
	}
	return fromPrivate(priv)
}

func parsePrivate(raw []byte) (*Key, error) {
	priv, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, err
	}
	return fromPrivate(priv)
}

// fromPrivate checks the key, derives the public key and kid, and pins the
// algorithm the key was made for: verification uses this algorithm, never
// the one a token's header names.
func fromPrivate(priv jwk.Key) (*Key, error) {
	algv, ok := priv.Algorithm()
	if !ok {
		return nil, errors.New(`key has no "alg"`)
	}
	alg, ok := jwa.LookupSignatureAlgorithm(algv.String())
	if !ok || !allowed(alg) {
		return nil, fmt.Errorf("algorithm %q is not supported for signing keys", algv)
	}
	if isPrivate, err := jwk.IsPrivateKey(priv); err != nil || !isPrivate {
		return nil, errors.New("not a private key")
	}
	if err := fits(alg, priv); err != nil {
		return nil, err
	}
	pub, err := priv.PublicKey()
	if err != nil {
		return nil, err
	}
	kid, err := thumbprint(pub)
	if err != nil {
		return nil, err
	}
	for _, k := range []jwk.Key{priv, pub} {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			return nil, err
		}
		if err := k.Set(jwk.KeyUsageKey, jwk.ForSignature); err != nil {
			return nil, err
		}
		if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
			return nil, err
		}
	}
	k := &Key{ID: kid, Algorithm: alg, Private: priv, Public: pub, thumbprint: kid}
	if err := k.exportRaw(); err != nil {
		return nil, err
	}
	// A key whose halves do not belong together would sign tokens that
	// nobody can verify: find out now, through the very code that signs
	// and verifies tokens.
	check := []byte("oauthgate key check")
	sig, err := k.Sign(check)
	if err != nil {
		return nil, fmt.Errorf("key does not sign: %w", err)
	}
	if !k.Verify(check, sig) {
		return nil, errors.New("key's public half does not verify its own signature")
	}
	return k, nil
}

// NewPublic is a verification-only key, such as another issuer's.
func NewPublic(kid string, alg jwa.SignatureAlgorithm, pub jwk.Key) (*Key, error) {
	tp, err := thumbprint(pub)
	if err != nil {
		return nil, err
	}
	k := &Key{ID: kid, Algorithm: alg, Public: pub, thumbprint: tp}
	if err := k.exportRaw(); err != nil {
		return nil, err
	}
	return k, nil
}

// exportRaw builds the signature check, and the signer of a private key,
// from the crypto/* form of the key: given a JWK, jwx rebuilds that form
// on every signature and every check (an RSA modulus, an Ed25519 key from
// its seed), a cost paid per request.
func (k *Key) exportRaw() error {
	var pub any
	if err := jwk.Export(k.Public, &pub); err != nil {
		return fmt.Errorf("exporting public key: %w", err)
	}
	var err error
	if k.verify, err = newVerify(k.Algorithm, pub); err != nil {
		return err
	}
	if k.Private == nil {
		return nil
	}
	var priv any
	if err := jwk.Export(k.Private, &priv); err != nil {
		return fmt.Errorf("exporting private key: %w", err)
	}
	k.sign, err = newSign(k.Algorithm, priv)
	return err
}

// fits checks that priv is the kind of key alg is defined for. jwx would
// sign "ES256" with a key on another curve, and other verifiers would
// reject the tokens.
func fits(alg jwa.SignatureAlgorithm, priv jwk.Key) error {
	// The key type is checked by name: jwx's key interfaces overlap (an EC
	// key has every method of an OKP key).
	switch alg {
	case jwa.ES256(): // ECDSA on P-256 (RFC 7518 §3.4)
		ec, ok := priv.(jwk.ECDSAPrivateKey)
		if !ok || priv.KeyType() != jwa.EC() {
			return fmt.Errorf("%s needs an EC key, not %v", alg, priv.KeyType())
		}
		if crv, _ := ec.Crv(); crv != jwa.P256() {
			return fmt.Errorf("%s needs curve P-256, not %v", alg, crv)
		}
	case jwa.EdDSA(): // we make and accept Ed25519 only (RFC 8037 §3.1)
		okp, ok := priv.(jwk.OKPPrivateKey)
		if !ok || priv.KeyType() != jwa.OKP() {
			return fmt.Errorf("%s needs an OKP key, not %v", alg, priv.KeyType())
		}
		if crv, _ := okp.Crv(); crv != jwa.Ed25519() {
			return fmt.Errorf("%s needs curve Ed25519, not %v", alg, crv)
		}
	case jwa.RS256(), jwa.PS256(): // RFC 7518 §3.3, §3.5: at least 2048 bits
		if _, ok := priv.(jwk.RSAPrivateKey); !ok || priv.KeyType() != jwa.RSA() {
			return fmt.Errorf("%s needs an RSA key, not %v", alg, priv.KeyType())
		}
		var raw rsa.PrivateKey
		if err := jwk.Export(priv, &raw); err != nil {
			return err
		}
		if n := raw.N.BitLen(); n < RSABits {
			return fmt.Errorf("%s needs an RSA key of at least %d bits, not %d", alg, RSABits, n)
		}
		if err := raw.Validate(); err != nil {
			return fmt.Errorf("RSA key is invalid: %w", err)
		}
	default:
		return fmt.Errorf("algorithm %q is not supported for signing keys", alg)
	}
	return nil
}

func thumbprint(k jwk.Key) (string, error) {
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}
