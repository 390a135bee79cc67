// Package integration holds the end-to-end tests of oauthgate: they build
// the real Caddy binary with the oauthgate modules and the sample backend in
// ./iflow, register clients with `caddy oauth client add`, and talk to the
// running gateway the way real senders do: golang.org/x/oauth2, curl in the
// SAP form, Node's openid-client discovering it through RFC 8414, and a
// Postman collection run by newman (both installed by `make test`).
//
// Run them with `go test -race ./integration/`. They use only 127.0.0.1.
package integration
