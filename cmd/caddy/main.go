// Command caddy is Caddy with its standard modules and oauthgate's: what
// `xcaddy build --with github.com/oauthgate/oauthgate` produces.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/oauthgate/oauthgate"
)

func main() { caddycmd.Main() }
