// Package oauthgate puts OAuth 2.0 client credentials in front of HTTP
// services that know nothing about it. Importing it registers the Caddy
// modules of package caddymodule and the `caddy oauth` commands of package
// caddymodule/command; xcaddy imports this path.
package oauthgate

import (
	_ "github.com/oauthgate/oauthgate/caddymodule"         // register the Caddy modules
	_ "github.com/oauthgate/oauthgate/caddymodule/command" // register the `caddy oauth` commands
)
