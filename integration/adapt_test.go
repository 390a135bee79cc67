package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestAdapt_EveryOptionAdaptsToTheDocumentedJSON runs `caddy adapt` on the
// Caddyfile that uses every oauthgate option: the real binary must print
// the JSON the reference documents.
func TestAdapt_EveryOptionAdaptsToTheDocumentedJSON(t *testing.T) {
	dir := filepath.Join("..", "caddymodule", "testdata")
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, caddyBin, "adapt", "--config", filepath.Join(dir, "every-option.Caddyfile")).Output()
	if err != nil {
		t.Fatalf("caddy adapt: %v", err)
	}
	wantData, err := os.ReadFile(filepath.Join(dir, "every-option.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("caddy adapt printed %q: %v", out, err)
	}
	if err := json.Unmarshal(wantData, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("caddy adapt printed\n%s\nwant every-option.json", out)
	}
}

// TestAdapt_CaddyfileExampleIsFormattedAndAdapts checks the file `make run`
// starts: caddy warns at every start about a Caddyfile that `caddy fmt`
// would change, and a demo should start without a warning.
func TestAdapt_CaddyfileExampleIsFormattedAndAdapts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	example := filepath.Join("..", "Caddyfile.example")
	cmd := exec.CommandContext(ctx, caddyBin, "adapt", "--config", example)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("caddy adapt Caddyfile.example: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "not formatted") {
		t.Errorf("caddy adapt warned about Caddyfile.example:\n%s", stderr.String())
	}
}
