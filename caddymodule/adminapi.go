package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the oauth app's operator endpoints on Caddy's admin
// listener (localhost:2019 by default):
//
//	GET  /oauth/keys                list the signing keys and their schedule
//	POST /oauth/keys/rotate         publish a new key that signs in an hour
//	POST /oauth/keys/rotate?now=1   replace the signing key at once
type adminAPI struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.oauth",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Provision finds the oauth app of the running config, if there is one.
func (a *adminAPI) Provision(ctx caddy.Context) error {
	if app, err := ctx.AppIfConfigured("oauth"); err == nil {
		a.app = app.(*App)
	}
	return nil
}

// Routes implements caddy.AdminRouter.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/oauth/keys", Handler: caddy.AdminHandlerFunc(a.listKeys)},
		{Pattern: "/oauth/keys/rotate", Handler: caddy.AdminHandlerFunc(a.rotateKeys)},
	}
}

func (a *adminAPI) listKeys(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("GET only")}
	}
	if a.app == nil {
		return errNoOAuthApp
	}
	return writeKeys(w, a.app)
}

func (a *adminAPI) rotateKeys(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("POST only")}
	}
	if a.app == nil {
		return errNoOAuthApp
	}
	now := r.URL.Query().Get("now")
	if _, err := a.app.RotateKeys(r.Context(), now != "" && now != "0" && now != "false"); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("rotating keys: %w", err)}
	}
	return writeKeys(w, a.app)
}

var errNoOAuthApp = caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the running config has no oauth app")}

// writeKeys answers with the key list that `caddy oauth keys` decodes.
func writeKeys(w http.ResponseWriter, app *App) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(app.Keys().Describe())
}

// Interface guards
var (
	_ caddy.Provisioner = (*adminAPI)(nil)
	_ caddy.AdminRouter = (*adminAPI)(nil)
)
