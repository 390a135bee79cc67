package issuers

import (
	"context"
	"fmt"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
)

// Key returns the issuer's key with this kid, or with kid "" its only
// key; nil if it has no such key (or, asked for none, more than one).
// The error is ErrUnavailable if no key was ever obtained. It serves the JWK Sets that clients registered by URL (RFC 7523
// private_key_jwt), with the same bounds as a trusted issuer's: keys are
// fetched on first use, again when a kid is unknown or the keys are older
// than RefreshInterval, never more often than MinRefetchInterval, each
// fetch bounded in time, size and redirects; the last keys stay in use
// while the URL fails.
func (i *Issuer) Key(ctx context.Context, kid string) (*keys.Key, error) {
	set := i.keys.Load()
	if k := pick(set, kid); k != nil && !i.stale() {
		return k, nil
	}
	i.refetch(ctx)
	set = i.keys.Load()
	if set == nil {
		return nil, fmt.Errorf("issuer %q: %w: none was ever obtained", i.cfg.Issuer, ErrUnavailable)
	}
	if k := pick(set, kid); k != nil {
		return k, nil
	}
	return nil, nil
}

func (i *Issuer) stale() bool {
	at := i.fetchedAt.Load()
	return at == 0 || i.cfg.Now().UnixNano()-at > int64(i.cfg.RefreshInterval)
}

// pick is Key's choice in one set.
func pick(set *keySet, kid string) *keys.Key {
	switch {
	case set == nil:
		return nil
	case kid != "":
		return (*set)[kid]
	case len(*set) == 1:
		for _, k := range *set {
			return k
		}
	}
	return nil
}

// ParseJWKS returns the usable keys of a JWK Set given inline (a client's
// registered keys), by kid, each pinned to one of algorithms as a trusted
// issuer's keys are: public asymmetric keys with a kid only, no entry with
// private members, no RSA key under 2048 bits. skipped says why each other
// entry was left out; a set without a usable key is an error.
func ParseJWKS(body []byte, algorithms []string) (set map[string]*keys.Key, skipped []error, err error) {
	algs, err := parseAlgorithms(algorithms)
	if err != nil {
		return nil, nil, err
	}
	s, skipped, err := parseJWKS(body, algs)
	return s, skipped, err
}
