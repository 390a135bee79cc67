package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// Import copies what a gateway kept in Caddy's storage into another
// engine, so that moving to it ends no token: the entries of every kind,
// then the blobs named, marker last. It does nothing, and reports false,
// when the engine already holds marker (the signing keys): another
// instance imported, or the fleet has been on the engine all along.
// Storing the marker last makes an import that failed half-way run again
// in full at the next start. Entries that do not decode are skipped and
// returned as a *CorruptError, with true: the rest was imported. It
// runs under the engine's lock, so that of several instances starting at
// once one imports and the others find it done.
func Import(ctx context.Context, from Storage, toBlobs Blobs, to Entries, marker string, blobs ...string) (bool, error) {
	const lock = "oauthgate/import"
	if err := toBlobs.Lock(ctx, lock); err != nil {
		return false, fmt.Errorf("import: locking: %w", err)
	}
	defer func() { _ = toBlobs.Unlock(context.WithoutCancel(ctx), lock) }()
	if _, err := toBlobs.Load(ctx, marker); !errors.Is(err, fs.ErrNotExist) {
		return false, err // there already, or the engine cannot tell
	}
	if _, err := from.Load(ctx, marker); errors.Is(err, fs.ErrNotExist) {
		return false, nil // nothing to import: a new gateway
	}
	// Once moved, never again: after an engine restarted empty, what the
	// storage still holds is the state of the day of the move, older
	// than the keys the running instances hold and write back.
	if _, err := from.Load(ctx, ImportedName); !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	entries := StorageEntries(from, nil)
	skipped := &CorruptError{}
	for _, kind := range []Kind{Revoked, Latest, Opaque} {
		var putErr error
		err := entries.Each(ctx, kind, func(id string, value []byte, exp time.Time) {
			if putErr == nil {
				putErr = to.Put(ctx, kind, id, value, exp)
			}
		})
		var corrupt *CorruptError
		if errors.As(err, &corrupt) {
			skipped.Errs, err = append(skipped.Errs, corrupt.Errs...), nil
		}
		if err = errors.Join(err, putErr); err != nil {
			return false, fmt.Errorf("import: %s entries: %w", kind, err)
		}
	}
	for _, name := range append(blobs, marker) {
		data, err := from.Load(ctx, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil {
			err = toBlobs.Store(ctx, name, data)
		}
		if err != nil {
			return false, fmt.Errorf("import: %s: %w", name, err)
		}
	}
	if err := from.Store(ctx, ImportedName, []byte(time.Now().UTC().Format(time.RFC3339)+"\n")); err != nil {
		return true, fmt.Errorf("import: done, but it could not be marked done in the storage it came from: %w", err)
	}
	if len(skipped.Errs) > 0 {
		return true, skipped
	}
	return true, nil
}

// ImportedName is where Caddy's storage records when its state was
// imported into another engine.
const ImportedName = StorageDir + "/imported_to_engine"
