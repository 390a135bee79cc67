package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewWatcher_ReadsThePolicyAndRefusesABrokenOneWithItsLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("subjects:\n  s: [A]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(path)
	if err != nil || strings.Join(w.Current().Roles("s"), ",") != "A" {
		t.Fatalf("NewWatcher = %v, %v; want the policy granting s A", w, err)
	}
	if err := os.WriteFile(path, []byte("rules: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWatcher(path); err == nil || !strings.HasPrefix(err.Error(), path+":1: ") {
		t.Errorf("NewWatcher error = %v, want %s:1: ...", err, path)
	}
}
