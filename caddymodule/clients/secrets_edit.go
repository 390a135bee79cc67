package clients

import (
	"errors"
	"fmt"
	"time"
)

// MaxSecretsPerClient bounds a client's secrets. Every failed
// authentication costs as many comparisons as the client with the most
// secrets has (see Registry.Authenticate), so an edited file must not be
// able to make that number large.
const MaxSecretsPerClient = 8

// Errors of the secret-editing methods, for callers to explain.
var (
	ErrTooManySecrets = errors.New("too many secrets")
	ErrNoSuchSecret   = errors.New("no such secret")
	ErrLastSecret     = errors.New("the last unexpired secret")
)

// secretIndex is the index of the secret with the given ID, or -1.
func (c *Client) secretIndex(id string) int {
	for i := range c.Secrets {
		if c.Secrets[i].ID == id {
			return i
		}
	}
	return -1
}

// freshSecretID returns a secret ID that no secret of c has.
func (c *Client) freshSecretID() string {
	for {
		if id := newSecretID(); c.secretIndex(id) < 0 {
			return id
		}
	}
}

// AddSecret appends s to the client's secrets and returns its ID. s gets a
// fresh ID if it has none or one the client already uses; so does any
// secret of the client without an ID (from a file written before secrets
// had IDs), so that every secret can be retired by ID afterwards.
func (c *Client) AddSecret(s Secret) (string, error) {
	if len(c.Secrets) >= MaxSecretsPerClient {
		return "", fmt.Errorf("client %q already has %d secrets: %w", c.ID, len(c.Secrets), ErrTooManySecrets)
	}
	for i := range c.Secrets {
		if c.Secrets[i].ID == "" {
			c.Secrets[i].ID = c.freshSecretID()
		}
	}
	if s.ID == "" || c.secretIndex(s.ID) >= 0 {
		s.ID = c.freshSecretID()
	}
	c.Secrets = append(c.Secrets, s)
	return s.ID, nil
}

// ExpireSecretsAt makes every secret of the client except the one with ID
// keep expire at t (to the second), unless it already expires earlier: a
// rotation never extends an old secret's life. It returns the IDs of the
// secrets whose expiry changed.
func (c *Client) ExpireSecretsAt(keep string, t time.Time) []string {
	stamp := t.UTC().Format(time.RFC3339)
	at, _ := time.Parse(time.RFC3339, stamp)
	var changed []string
	for i := range c.Secrets {
		s := &c.Secrets[i]
		if s.ID == keep || !s.expires.IsZero() && !s.expires.After(at) {
			continue
		}
		s.Expires, s.expires = stamp, at
		changed = append(changed, s.ID)
	}
	return changed
}

// RemoveExpiredSecrets removes the secrets that have expired at now and
// returns their IDs. It leaves at least one secret: if every secret has
// expired, the newest-listed one stays (a client needs one in the file;
// an expired one authenticates nothing).
func (c *Client) RemoveExpiredSecrets(now time.Time) []string {
	var removed []string
	kept := c.Secrets[:0]
	for i, s := range c.Secrets {
		last := i == len(c.Secrets)-1 && len(kept) == 0
		if s.Expired(now) && !last {
			removed = append(removed, s.ID)
			continue
		}
		kept = append(kept, s)
	}
	clear(c.Secrets[len(kept):])
	c.Secrets = kept
	return removed
}

// RetireSecret removes the secret with the given ID. It refuses
// (ErrLastSecret) to remove the client's only secret, or its last
// unexpired one, which would lock the client out: disabling the client is
// the way to do that on purpose.
func (c *Client) RetireSecret(id string, now time.Time) error {
	i := -1
	if id != "" {
		i = c.secretIndex(id)
	}
	if i < 0 {
		return fmt.Errorf("client %q has no secret %q: %w", c.ID, id, ErrNoSuchSecret)
	}
	others := 0
	for j := range c.Secrets {
		if j != i && !c.Secrets[j].Expired(now) {
			others++
		}
	}
	if len(c.Secrets) == 1 || !c.Secrets[i].Expired(now) && others == 0 {
		return fmt.Errorf("secret %q is %w of client %q", id, ErrLastSecret, c.ID)
	}
	c.Secrets = append(c.Secrets[:i], c.Secrets[i+1:]...)
	return nil
}
