package sealing_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/sealing"
)

func writeKeyFile(t *testing.T, text string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sealing-keys")
	if err := os.WriteFile(path, []byte(text), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return path
}

func TestFromFile_ReadsTheRingAndNamesTheFileAndLineInErrors(t *testing.T) {
	path := writeKeyFile(t, "# gateway fleet\nkey2:"+std(key2)+"\nkey1:"+std(key1)+"\n", 0o600)
	r, err := sealing.FromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.IDs(); fmt.Sprint(got) != "[key2 key1]" {
		t.Errorf("IDs = %v", got)
	}

	path = writeKeyFile(t, "# gateway fleet\nkey2:"+std(key2)+"\nkey1:"+std(key1[:16])+"\n", 0o600)
	_, err = sealing.FromFile(path)
	if want := path + ": line 3: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("FromFile with a short key = %v, want an error starting %q", err, want)
	} else {
		assertNoKeyMaterial(t, err.Error(), fixed)
	}

	if _, err := sealing.FromFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("FromFile of a missing file succeeded")
	}

	large := writeKeyFile(t, "key1:"+std(key1)+"\n"+strings.Repeat("#\n", 40<<10), 0o600)
	if _, err := sealing.FromFile(large); err == nil || !strings.Contains(err.Error(), "not a key ring") {
		t.Errorf("FromFile of an 80 KiB file = %v, want it refused", err)
	}
}
