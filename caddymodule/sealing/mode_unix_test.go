//go:build unix

package sealing_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/sealing"
)

// Whoever reads the key file reads the sealed state: a group may read
// it, nobody else may, and the group may not change it.
func TestFromFile_RefusesAFileOthersThanItsOwnerAndGroupMayRead(t *testing.T) {
	text := "key1:" + std(key1) + "\n"
	cases := []struct {
		perm os.FileMode
		want string // a part of the error; empty: accepted
	}{
		{0o600, ""},
		{0o400, ""},
		{0o640, ""},
		{0o440, ""},
		{0o644, "mode 0644 gives users other than its owner and group access"},
		{0o604, "mode 0604 gives users other than its owner and group access"},
		{0o602, "mode 0602 gives users other than its owner and group access"},
		{0o666, "mode 0666 gives users other than its owner and group access"},
		{0o660, "mode 0660 lets its group change the keys"},
	}
	for _, tc := range cases {
		t.Run(tc.perm.String(), func(t *testing.T) {
			path := writeKeyFile(t, text, tc.perm)
			_, err := sealing.FromFile(path)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("FromFile = %v, want it accepted", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), path+": ")):
				t.Errorf("FromFile = %v, want an error naming the file and saying %q", err, tc.want)
			}
		})
	}
}

// Kubernetes mounts a secret as a symlink to a file in a hidden
// directory: the file's mode counts, not the link's.
func TestFromFile_ChecksTheFileASymlinkNames(t *testing.T) {
	dir := t.TempDir()
	target := writeKeyFile(t, "key1:"+std(key1)+"\n", 0o440)
	link := filepath.Join(dir, "sealing-keys")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := sealing.FromFile(link); err != nil {
		t.Errorf("FromFile through a symlink to a 0440 file = %v", err)
	}
	if err := os.Chmod(target, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sealing.FromFile(link); err == nil {
		t.Error("FromFile through a symlink to a 0644 file succeeded")
	}
}
