//go:build unix

package atomicfile

import (
	"os"
	"syscall"
)

// keepOwner gives tmp the owner of the file at path, if there is one and
// the process may; otherwise tmp keeps the process's own.
func keepOwner(tmp *os.File, path string) {
	st, err := os.Stat(path)
	if err != nil {
		return
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		_ = tmp.Chown(int(sys.Uid), int(sys.Gid))
	}
}
