// Package atomicfile replaces files so that a crash leaves either the old
// content or the new, never a mix: the files the "caddy oauth" commands
// edit are read by a running gateway.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data, with permissions perm: it writes a
// temporary file next to path, syncs it, and renames it over path. A
// symlink is followed, so that the file it names is replaced, not the
// link; the replaced file's owner is kept where the caller may set it
// (root editing a file the gateway's user owns must not take it away).
func Write(path string, data []byte, perm os.FileMode) error {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	keepOwner(tmp, path)
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	// Sync before rename: otherwise a crash can leave the new name
	// pointing at a file whose data never reached the disk.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename itself durable, where the OS allows
		d.Close()
	}
	return nil
}
