//go:build unix

package sealing

import (
	"fmt"
	"io/fs"
)

// checkPrivate refuses a key file that others than its owner and its
// group may use, or that its group may change (and so choose the keys).
func checkPrivate(fi fs.FileInfo) error {
	const want = "want 0600 or 0400, or 0640 or 0440 for a group that runs the gateway"
	switch perm := fi.Mode().Perm(); {
	case perm&0o007 != 0:
		return fmt.Errorf("mode %04o gives users other than its owner and group access to the keys; %s", perm, want)
	case perm&0o020 != 0:
		return fmt.Errorf("mode %04o lets its group change the keys; %s", perm, want)
	}
	return nil
}
