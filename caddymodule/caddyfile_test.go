package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy" // the directive the guard sits in front of
)

func adapt(t *testing.T, src string) (map[string]any, error) {
	t.Helper()
	out, _, err := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}.Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg, nil
}

// handlers lists the handler names of the first server's routes in order,
// looking inside the subroute each matcher-scoped directive becomes.
func handlers(t *testing.T, cfg map[string]any) []string {
	t.Helper()
	var names []string
	var walk func(routes []any)
	walk = func(routes []any) {
		for _, r := range routes {
			for _, h := range r.(map[string]any)["handle"].([]any) {
				hm := h.(map[string]any)
				if hm["handler"] == "subroute" {
					walk(hm["routes"].([]any))
					continue
				}
				names = append(names, hm["handler"].(string))
			}
		}
	}
	servers := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)
	for _, srv := range servers {
		walk(srv.(map[string]any)["routes"].([]any))
	}
	return names
}

func TestCaddyfile_PlainSiteBlockRunsServerThenGuardThenProxy(t *testing.T) {
	// Written in the "wrong" order on purpose: the registered directive
	// order must fix it, with no route block or global order.
	cfg, err := adapt(t, `{
	oauth {
		issuer   https://gw.example
		audience https://api.example
		clients  /etc/oauthgate/clients.json
		policy   /etc/oauthgate/policy.yaml
		leeway   5s
		max_token_lifetime 24h
		signing_algorithm EdDSA
		key_rotation 240h
	}
}
gw.example {
	reverse_proxy /http/* 127.0.0.1:8081
	oauth_guard /http/* {
		realm integration
		audience https://orders.example
		max_token_size 4096
	}
	oauth_server
}`)
	if err != nil {
		t.Fatal(err)
	}
	// The guard comes twice: unmatched on the RFC 9728 metadata path, and
	// on its own matcher.
	got := strings.Join(handlers(t, cfg), " ")
	if got != "oauth_server oauth_guard oauth_guard reverse_proxy" {
		t.Errorf("handler order = %q, want oauth_server oauth_guard oauth_guard reverse_proxy", got)
	}
	if raw, _ := json.Marshal(cfg); !strings.Contains(string(raw), `"match":[{"path":["/.well-known/oauth-protected-resource"]}]`) {
		t.Error("no route for the protected resource metadata")
	}

	app, _ := json.Marshal(cfg["apps"].(map[string]any)["oauth"])
	want := `{"audience":"https://api.example","clients":"/etc/oauthgate/clients.json","issuer":"https://gw.example","key_rotation":864000000000000,"leeway":5000000000,"max_token_lifetime":86400000000000,"policy":"/etc/oauthgate/policy.yaml","signing_algorithm":"EdDSA"}`
	if string(app) != want {
		t.Errorf("apps.oauth =\n%s\nwant\n%s", app, want)
	}

	var guardCfg map[string]any
	var find func(v any)
	find = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "oauth_guard" {
				guardCfg = v
			}
			for _, e := range v {
				find(e)
			}
		case []any:
			for _, e := range v {
				find(e)
			}
		}
	}
	find(cfg)
	if guardCfg["realm"] != "integration" || guardCfg["audience"] != "https://orders.example" || guardCfg["max_token_size"] != float64(4096) {
		t.Errorf("oauth_guard = %v, want realm integration, audience https://orders.example and max_token_size 4096", guardCfg)
	}
}

func TestCaddyfile_MistakesAreRefusedWithTheirLine(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"unknown global option", "{\n\toauth {\n\t\tissuer https://x\n\t\tclient /x\n\t}\n}\n:80 {\n\toauth_server\n}", `Caddyfile:4`},
		{"option without value", "{\n\toauth {\n\t\tissuer\n\t}\n}\n:80 {\n\toauth_server\n}", `Caddyfile:3`},
		{"option with two values", "{\n\toauth {\n\t\tpolicy a b\n\t}\n}\n:80 {\n\toauth_server\n}", `Caddyfile:3`},
		{"bad leeway", "{\n\toauth {\n\t\tleeway soon\n\t}\n}\n:80 {\n\toauth_server\n}", `Caddyfile:3`},
		{"bad key_rotation", "{\n\toauth {\n\t\tkey_rotation monthly\n\t}\n}\n:80 {\n\toauth_server\n}", `Caddyfile:3`},
		{"unknown guard option", ":80 {\n\toauth_guard {\n\t\tallow_all yes\n\t}\n}", `Caddyfile:3`},
		{"zero max_token_size", ":80 {\n\toauth_guard {\n\t\tmax_token_size 0\n\t}\n}", `Caddyfile:3`},
		{"csrf_token_lifetime that is no duration", ":80 {\n\toauth_guard {\n\t\tcsrf_token_lifetime long\n\t}\n}", `Caddyfile:3`},
		{"zero csrf_token_lifetime", ":80 {\n\toauth_guard {\n\t\tcsrf_token_lifetime 0s\n\t}\n}", `Caddyfile:3`},
		{"guard argument", ":80 {\n\toauth_guard /x extra\n}", `Caddyfile:2`},
		{"dpop_algorithms without one", ":80 {\n\toauth_guard {\n\t\tdpop_algorithms\n\t}\n}", `Caddyfile:3`},
		{"dpop_max_age that is no duration", ":80 {\n\toauth_guard {\n\t\tdpop_max_age soon\n\t}\n}", `Caddyfile:3`},
		{"dpop_nonce with an argument", ":80 {\n\toauth_guard {\n\t\tdpop_nonce yes\n\t}\n}", `Caddyfile:3`},
		{"server dpop_max_age zero", ":80 {\n\toauth_server {\n\t\tdpop_max_age 0s\n\t}\n}", `Caddyfile:3`},
		{"unknown identity field", ":80 {\n\toauth_guard {\n\t\tidentity_headers {\n\t\t\temail X-Email\n\t\t}\n\t}\n}", `Caddyfile:4`},
		{"identity in Authorization", ":80 {\n\toauth_guard {\n\t\tidentity_headers {\n\t\t\tsubject authorization\n\t\t}\n\t}\n}", `Caddyfile:4`},
		{"identity header name with a space", ":80 {\n\toauth_guard {\n\t\tidentity_headers {\n\t\t\tsubject \"X OAuth\"\n\t\t}\n\t}\n}", `Caddyfile:4`},
		{"unknown server option", ":80 {\n\toauth_server {\n\t\ttoken_path /t\n\t}\n}", `Caddyfile:3`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adapt(t, tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Adapt error = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestCaddyfile_IdentityHeadersOffSurvivesTheJSON(t *testing.T) {
	for name, block := range map[string]string{"off": "identity_headers off", "a block naming one": "identity_headers {\n\t\tsubject X-Sub\n\t}"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := adapt(t, ":80 {\n\toauth_guard {\n\t\t"+block+"\n\t}\n}")
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(cfg)
			want := `"identity_headers":{"client_id":"","roles":"","scope":"","subject":""}`
			if name != "off" {
				want = `"identity_headers":{"client_id":"","roles":"","scope":"","subject":"X-Sub"}`
			}
			if !strings.Contains(string(raw), want) {
				t.Errorf("adapted config lacks %s:\n%s", want, raw)
			}
		})
	}
}
