package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"
)

// Storage is the part of Caddy's certmagic.Storage that StorageEntries
// needs: Blobs, and List and Delete to find and drop expired entries.
type Storage interface {
	Blobs
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, dir string, recursive bool) ([]string, error)
}

// StorageDir is where the entries live in Caddy's storage: one small JSON
// file per entry, in a directory per kind, as in earlier releases, so that
// an upgrade keeps every revocation.
const StorageDir = "oauthgate/tokens"

// StorageSync is how often an instance on Caddy's storage reads the
// entries other instances wrote: storage announces nothing.
const StorageSync = 10 * time.Second

// StorageEntries keeps entries in Caddy's storage. Each entry is a file
// named by its id; a revocation holds its expiry (a JSON time), the other
// kinds their JSON value, whose "exp" member is the expiry. Expired files
// are deleted by whichever instance finds them. Watch reads everything
// again every StorageSync, so a change reaches the other instances within
// that interval.
// now is the clock; nil means time.Now.
func StorageEntries(st Storage, now func() time.Time) Entries {
	if now == nil {
		now = time.Now
	}
	return storageEntries{st, now}
}

type storageEntries struct {
	st  Storage
	now func() time.Time
}

func key(kind Kind, id string) string { return path.Join(StorageDir, string(kind), id) }

func (s storageEntries) Put(ctx context.Context, kind Kind, id string, value []byte, exp time.Time) error {
	if kind == Revoked {
		var err error
		if value, err = json.Marshal(exp); err != nil {
			return err
		}
	}
	if err := s.st.Store(ctx, key(kind, id), value); err != nil {
		return fmt.Errorf("storing token state: %w", err)
	}
	return nil
}

func (s storageEntries) Get(ctx context.Context, kind Kind, id string) ([]byte, error) {
	data, err := s.st.Load(ctx, key(kind, id))
	if err != nil {
		return nil, err
	}
	value, exp, err := decode(kind, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key(kind, id), err)
	}
	if !s.now().Before(exp) {
		return nil, fmt.Errorf("%s: expired: %w", key(kind, id), fs.ErrNotExist)
	}
	return value, nil
}

func (s storageEntries) Delete(ctx context.Context, kind Kind, id string) error {
	if err := s.st.Delete(ctx, key(kind, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting token state: %w", err)
	}
	return nil
}

// Each reads every entry of kind, deleting the expired ones. An entry that
// vanished between List and Load (another instance deleted it) is
// skipped; a corrupt one is skipped and reported in a *CorruptError after
// the rest, never deleted: one bad file must not stop the other
// revocations from arriving, nor hide from the operator.
func (s storageEntries) Each(ctx context.Context, kind Kind, f func(id string, value []byte, exp time.Time)) error {
	keys, err := s.st.List(ctx, path.Join(StorageDir, string(kind)), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing token state: %w", err)
	}
	now := s.now()
	corrupt := &CorruptError{}
	for _, k := range keys {
		data, err := s.st.Load(ctx, k)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("loading token state %s: %w", k, err)
		}
		value, exp, err := decode(kind, data)
		switch {
		case err != nil:
			corrupt.Errs = append(corrupt.Errs, fmt.Errorf("%s: %w", k, err))
		case !now.Before(exp):
			if err := s.st.Delete(ctx, k); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("deleting expired token state: %w", err)
			}
		default:
			f(path.Base(k), value, exp)
		}
	}
	if len(corrupt.Errs) > 0 {
		return corrupt
	}
	return nil
}

// Watch asks w to read everything again every StorageSync.
func (s storageEntries) Watch(ctx context.Context, w Watcher) {
	t := time.NewTicker(StorageSync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Resync(ctx)
		}
	}
}

// decode returns an entry's value and expiry as stored.
func decode(kind Kind, data []byte) (value []byte, exp time.Time, err error) {
	if kind == Revoked {
		err = json.Unmarshal(data, &exp)
		return nil, exp, err
	}
	var e struct {
		Exp time.Time `json:"exp"`
	}
	err = json.Unmarshal(data, &e)
	return data, e.Exp, err
}

// CorruptError lists entries that did not decode. The rest was applied.
type CorruptError struct{ Errs []error }

func (e *CorruptError) Error() string {
	return fmt.Sprintf("skipped %d corrupt token state entries: %v", len(e.Errs), errors.Join(e.Errs...))
}
