// Package integration holds the end-to-end tests of oauthgate: they build
// the real Caddy binary with the oauthgate modules and the sample backend in
// ./iflow, register clients with `caddy oauth client add`, and talk to the
// running gateway the way SAP senders do, with golang.org/x/oauth2 and curl.
//
// Run them with `go test -race ./integration/`. They use only 127.0.0.1.
package integration
