//go:build !unix

package sealing

import "io/fs"

// checkPrivate does nothing where access is not a Unix mode: Windows
// keeps it in ACLs, which a mode does not show.
func checkPrivate(fs.FileInfo) error { return nil }
