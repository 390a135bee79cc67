package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/every-option.json from the adapter's output")

// TestCaddyfile_EveryOptionAdaptsToTheDocumentedJSON adapts the Caddyfile
// that uses every option and compares the result with the JSON in
// testdata, which is what `caddy adapt` prints for it.
func TestCaddyfile_EveryOptionAdaptsToTheDocumentedJSON(t *testing.T) {
	src, err := os.ReadFile("testdata/every-option.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := adapt(t, string(src))
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile("testdata/every-option.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/every-option.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("adapted config differs from testdata/every-option.json (go test -run %s -update rewrites it):\n%s", t.Name(), got)
	}
}

// TestCaddyfile_EveryJSONFieldHasACaddyfileForm fails when a config field
// is added to a module without a Caddyfile option to set it.
func TestCaddyfile_EveryJSONFieldHasACaddyfileForm(t *testing.T) {
	data, err := os.ReadFile("testdata/every-option.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{} // every object key anywhere in the config
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				seen[k] = true
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(cfg)
	for _, m := range []any{App{}, StateConfig{}, RedisState{}, TrustedIssuer{}, ClientCertificates{}, OAuthGuard{}, OAuthServer{}} {
		typ := reflect.TypeOf(m)
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if name != "" && name != "-" && !seen[name] {
				t.Errorf("%s.%s (json %q) is not set by testdata/every-option.Caddyfile", typ.Name(), typ.Field(i).Name, name)
			}
		}
	}
}
