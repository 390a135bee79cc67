// Package state names what the instances of a fleet share, so that a
// token issued, revoked or superseded at one instance is treated alike at
// all of them: small named values that live until replaced (Blobs: the
// signing keys, the opaque-token MAC key) and entries that end with the
// tokens they describe (Entries: revocations, opaque tokens, lifetime-0
// records).
//
// Two engines keep them. Caddy's storage (StorageEntries; Caddy's
// certmagic.Storage is already Blobs) suits one node or a shared disk:
// instances learn of each other's changes by reading the storage again
// every few seconds. Redis (package redisstate) suits a fleet: changes
// are announced as they are made, and no instance ever lists the opaque
// tokens.
package state

import (
	"context"
	"time"
)

// Blobs keeps small named values that live until replaced. Load returns
// an error wrapping fs.ErrNotExist for a missing name. Lock and Unlock
// serialize the read-modify-write of a value across the instances. Caddy's
// certmagic.Storage is one.
type Blobs interface {
	Load(ctx context.Context, name string) ([]byte, error)
	Store(ctx context.Context, name string, value []byte) error
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

// Kind is a kind of entry.
type Kind string

// The kinds of entries. Each instance holds every live Revoked and Latest
// entry in memory (their number is bounded by the revoked live tokens and
// by the clients); Opaque entries are looked up one at a time.
const (
	// Revoked: a revoked JWT, by the SHA-256 of its jti; the value is
	// empty, the entry ends when the token would have expired.
	Revoked Kind = "revoked"
	// Opaque: an opaque token, by its SHA-256; the value is its record.
	Opaque Kind = "opaque"
	// Latest: a client's latest token when the next one supersedes the
	// earlier ones (lifetime 0), by client ID.
	Latest Kind = "latest"
)

// Entries keeps entries that end at a given time, shared by the instances.
//
// An engine that is down answers every call with an error; callers that
// can go on from what they hold in memory do, and those that need a write
// refuse the request (503) rather than pretend it took effect.
type Entries interface {
	// Put writes an entry that ends at exp, and tells the other instances.
	Put(ctx context.Context, kind Kind, id string, value []byte, exp time.Time) error
	// Get returns a live entry, or an error wrapping fs.ErrNotExist.
	Get(ctx context.Context, kind Kind, id string) ([]byte, error)
	// Delete removes an entry, and tells the other instances. Deleting
	// what is not there is no error.
	Delete(ctx context.Context, kind Kind, id string) error
	// Each calls f with every live entry of kind, Revoked or Latest, and
	// when it ends.
	Each(ctx context.Context, kind Kind, f func(id string, value []byte, exp time.Time)) error
	// Watch tells w of the changes made by every instance, from the
	// goroutine that calls it, until ctx ends; then it returns.
	Watch(ctx context.Context, w Watcher)
}

// Watcher learns of the changes to the entries.
type Watcher interface {
	// Changed reports an entry put (value not nil) or deleted (nil) by
	// some instance, this one included.
	Changed(kind Kind, id string, value []byte, exp time.Time)
	// Resync says that changes may have been missed (the engine does not
	// announce them, or the connection to it was lost): what is held in
	// memory must be read again.
	Resync(ctx context.Context)
}
