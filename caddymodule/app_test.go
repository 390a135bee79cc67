package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func TestValidateConfig_RefusesWhatCannotWork(t *testing.T) {
	valid := func() App {
		return App{Issuer: "https://gw.example", ClientsFile: "c.json", PolicyFile: "p.yaml", logger: zap.NewNop()}
	}
	cases := []struct {
		name string
		mod  func(*App)
		want string // empty: valid
	}{
		{"complete", func(*App) {}, ""},
		{"issuer with a trailing slash", func(a *App) { a.Issuer = "https://gw.example/" }, ""},
		{"plain http on loopback", func(a *App) { a.Issuer = "http://127.0.0.1:8080" }, ""},
		{"no issuer", func(a *App) { a.Issuer = "" }, "issuer is required"},
		{"issuer with a path", func(a *App) { a.Issuer = "https://gw.example/tenant" }, "without path"},
		{"issuer with a query", func(a *App) { a.Issuer = "https://gw.example?x=1" }, "without path, query"},
		{"relative issuer", func(a *App) { a.Issuer = "gw.example" }, "absolute"},
		{"issuer with user info", func(a *App) { a.Issuer = "https://u:p@gw.example" }, "user info"},
		{"no clients file", func(a *App) { a.ClientsFile = "" }, "clients is required"},
		{"no policy file", func(a *App) { a.PolicyFile = "" }, "policy is required"},
		{"negative leeway", func(a *App) { a.Leeway = caddy.Duration(-1) }, "leeway"},
		{"negative maximum lifetime", func(a *App) { a.MaxTokenLifetime = caddy.Duration(-1) }, "max_token_lifetime"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := valid()
			tc.mod(&a)
			err := a.validateConfig()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("validateConfig = %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("validateConfig = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
