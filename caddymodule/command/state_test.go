package command

import (
	"errors"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/sealing"
)

func TestStateKey_PrintsANewRingLineThatOpensWhatItSeals(t *testing.T) {
	out, err := runCommand(t, stateCommand(), "", "key", "--id", "2026-12")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := sealing.Parse(out)
	if err != nil {
		t.Fatalf("the printed line %q is not a key ring: %v", out, err)
	}
	sealed, err := ring.Seal([]byte("signing keys"), []byte("oauthgate:blob:keys"))
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := ring.Open(sealed, []byte("oauthgate:blob:keys")); err != nil || string(plain) != "signing keys" {
		t.Errorf("Open = %q, %v", plain, err)
	}
	again, _ := runCommand(t, stateCommand(), "", "key", "--id", "2026-12")
	if strings.TrimSpace(again) == strings.TrimSpace(out) {
		t.Error("two runs printed the same key")
	}
}

func TestStateKey_WrongCallsAreUsageErrors(t *testing.T) {
	for name, args := range map[string][]string{
		"no ID":            {"key"},
		"an ID with space": {"key", "--id", "a b"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := runCommand(t, stateCommand(), "", args...)
			if !errors.As(err, new(usageError)) {
				t.Errorf("error = %v, want a usage error", err)
			}
			if _, err := sealing.Parse(out); err == nil {
				t.Errorf("printed a key %q on a wrong call", out)
			}
		})
	}
}
