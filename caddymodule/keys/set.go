package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Set is a snapshot of the key set: the keys published when it was taken,
// each with its schedule. It is immutable and safe for concurrent use.
type Set struct {
	now     func() time.Time
	created time.Time // the state's, for writing the set back
	entries []*entry  // newest first
	byID    map[string]*Key
	jwks    []byte
}

// Signing is the key new tokens are signed with: the newest key whose
// activation time has passed, by the clock the set was made with. It
// follows the stored schedule at the moment of the call, not of the
// snapshot, so every instance switches to a key published ahead at the same
// instant, and no instance signs with a key after the retirement time
// stored with it, however long ago it last synced.
func (s *Set) Signing() *Key {
	now := s.now()
	// If no key has started yet by our clock (another instance's clock,
	// ahead of ours, made them), sign as at the earliest start.
	if first := s.entries[len(s.entries)-1].info.Activates; now.Before(first) {
		now = first
	}
	for _, e := range s.entries {
		if !e.info.Activates.After(now) {
			return e.key
		}
	}
	return nil // unreachable: the oldest key has started by now
}

// Lookup returns the published key with the given kid, or nil.
func (s *Set) Lookup(kid string) *Key { return s.byID[kid] }

// JWKS is the serialized public JWK Set of the published keys, including
// any key that does not sign yet.
func (s *Set) JWKS() []byte { return s.jwks }

// Keys lists the published keys with their schedules, newest first.
func (s *Set) Keys() []KeyInfo {
	out := make([]KeyInfo, len(s.entries))
	for i, e := range s.entries {
		out[i] = e.info
	}
	return out
}

// KeyInfo is a key's schedule, for operators.
type KeyInfo struct {
	ID        string
	Algorithm jwa.SignatureAlgorithm
	// Created is when the key was generated; zero if unknown (a key set
	// stored by an older version).
	Created time.Time
	// Activates is when the key starts (or started) signing; zero if
	// unknown.
	Activates time.Time
	// Retires is when the key stops (or stopped) signing; zero while no
	// successor is scheduled, or if unknown.
	Retires time.Time
	// Expires is when the key leaves the JWK Set; zero while no successor
	// is scheduled.
	Expires time.Time
}

// state is the key set as stored.
type state struct {
	created time.Time // when the set was first created
	entries []*entry  // newest (latest activation) first
}

type entry struct {
	key  *Key
	info KeyInfo
}

func newEntry(k *Key, created, activates time.Time) *entry {
	return &entry{key: k, info: KeyInfo{ID: k.ID, Algorithm: k.Algorithm, Created: created.UTC(), Activates: activates.UTC()}}
}

// clone copies the schedule; keys are shared (they never change).
func (s *state) clone() *state {
	c := &state{created: s.created, entries: make([]*entry, len(s.entries))}
	for i, e := range s.entries {
		ec := *e
		c.entries[i] = &ec
	}
	return c
}

// state is the stored form of the keys s publishes, for writing them back
// to a storage that lost them. Entries are shared: nothing changes them
// (next works on a clone).
func (s *Set) state() *state {
	return &state{created: s.created, entries: slices.Clone(s.entries)}
}

// snapshot returns the set of the keys published at now; clock is the
// clock of Set.Signing.
func (s *state) snapshot(now time.Time, clock func() time.Time) (*Set, error) {
	set := &Set{now: clock, created: s.created, byID: make(map[string]*Key, len(s.entries))}
	pub := jwk.NewSet()
	for i, e := range s.entries {
		if i > 0 && !e.info.Expires.IsZero() && !now.Before(e.info.Expires) {
			continue // retention ended; dropped at the next maintenance
		}
		set.entries = append(set.entries, e)
		set.byID[e.key.ID] = e.key
		if err := pub.AddKey(e.key.Public); err != nil {
			return nil, err
		}
	}
	jwks, err := json.Marshal(pub)
	if err != nil {
		return nil, err
	}
	set.jwks = jwks
	return set, nil
}

// The storage format: private JWKs, newest first, and in "meta" their
// schedules, in the same order. Version 2 introduced "meta"; a value
// without "version" is the first format, in which the first key signs and
// "created" is when it was made.
const formatVersion = 2

type stored struct {
	Version int               `json:"version,omitempty"`
	Keys    []json.RawMessage `json:"keys"`
	Meta    []storedMeta      `json:"meta,omitempty"`
	Created time.Time         `json:"created,omitzero"`
}

type storedMeta struct {
	ID        string    `json:"kid"`
	Created   time.Time `json:"created,omitzero"`
	Activates time.Time `json:"activates,omitzero"`
	Retires   time.Time `json:"retires,omitzero"`
	Expires   time.Time `json:"expires,omitzero"`
}

func (s *state) marshal() ([]byte, error) {
	out := stored{Version: formatVersion, Created: s.created.UTC()}
	for _, e := range s.entries {
		raw, err := json.Marshal(e.key.Private)
		if err != nil {
			return nil, err
		}
		out.Keys = append(out.Keys, raw)
		out.Meta = append(out.Meta, storedMeta{
			ID:        e.key.ID,
			Created:   e.info.Created.UTC(),
			Activates: e.info.Activates.UTC(),
			Retires:   e.info.Retires.UTC(),
			Expires:   e.info.Expires.UTC(),
		})
	}
	return json.Marshal(out)
}

func parse(data []byte) (*state, error) {
	var s stored
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	switch s.Version {
	case 0:
		if s.Meta != nil {
			return nil, errors.New(`"meta" without "version"`)
		}
	case formatVersion:
		if len(s.Meta) != len(s.Keys) {
			return nil, fmt.Errorf(`%d keys but %d "meta" entries`, len(s.Keys), len(s.Meta))
		}
	default:
		return nil, fmt.Errorf("format version %d is unknown (written by a newer oauthgate?)", s.Version)
	}
	if len(s.Keys) == 0 {
		return nil, errors.New("no keys")
	}
	st := &state{created: s.Created}
	seen := make(map[string]bool, len(s.Keys))
	for i, raw := range s.Keys {
		k, err := parsePrivate(raw)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("key %d: duplicate key %s", i+1, k.ID)
		}
		seen[k.ID] = true
		e := &entry{key: k, info: KeyInfo{ID: k.ID, Algorithm: k.Algorithm}}
		if s.Version == 0 {
			// The first format: the first key signs, since the set was
			// created; of any other key nothing is known.
			if i == 0 {
				e.info.Created, e.info.Activates = s.Created, s.Created
			}
		} else {
			md := s.Meta[i]
			if md.ID != k.ID {
				return nil, fmt.Errorf("key %d: its metadata is for kid %q, not %q", i+1, md.ID, k.ID)
			}
			e.info.Created, e.info.Activates, e.info.Retires, e.info.Expires = md.Created, md.Activates, md.Retires, md.Expires
			if err := checkSchedule(i, e.info, st.entries); err != nil {
				return nil, fmt.Errorf("key %d (%s): %w", i+1, k.ID, err)
			}
		}
		st.entries = append(st.entries, e)
	}
	return st, nil
}

// checkSchedule checks the schedule of the i-th key, given the newer
// ones before it: times in order, and every key but the newest retired.
func checkSchedule(i int, info KeyInfo, newer []*entry) error {
	switch {
	case !info.Created.IsZero() && info.Created.After(info.Activates):
		return errors.New("signs before it was created")
	case i == 0 && (!info.Retires.IsZero() || !info.Expires.IsZero()):
		return errors.New("the newest key is retired")
	case i == 0:
		return nil
	case info.Activates.After(newer[i-1].info.Activates):
		return errors.New("signs after a newer key: keys are not in order")
	case info.Retires.IsZero() || info.Expires.IsZero():
		return errors.New("has a successor but no retirement scheduled")
	case info.Retires.Before(info.Activates):
		return errors.New("retires before it signs")
	case info.Expires.Before(info.Retires):
		return errors.New("leaves the JWK Set before it retires")
	}
	return nil
}
