package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

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

type keyInfo struct {
	ID        string `json:"kid"`
	Algorithm string `json:"alg"`
	Created   string `json:"created,omitempty"`
	Activates string `json:"activates,omitempty"`
	Retires   string `json:"retires,omitempty"`
	Expires   string `json:"expires,omitempty"`
	Signing   bool   `json:"signing"`
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

func writeKeys(w http.ResponseWriter, app *App) error {
	set := app.Keys()
	var out []keyInfo
	for _, k := range set.Keys() {
		out = append(out, keyInfo{ID: k.ID, Algorithm: k.Algorithm.String(), Created: stamp(k.Created),
			Activates: stamp(k.Activates), Retires: stamp(k.Retires), Expires: stamp(k.Expires),
			Signing: k.ID == set.Signing().ID})
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// Interface guards
var (
	_ caddy.Provisioner = (*adminAPI)(nil)
	_ caddy.AdminRouter = (*adminAPI)(nil)
)
