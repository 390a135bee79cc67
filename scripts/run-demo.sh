#!/usr/bin/env bash
# Runs the gateway on Caddyfile.example in front of the demo backend. On the
# first run it registers a demo client and writes a demo policy under .demo/;
# the demo keeps the client's secret in .demo/client.env so that the printed
# curl line keeps working (a real deployment never stores a secret).
set -euo pipefail
cd "$(dirname "$0")/.."

demo=.demo
mkdir -p "$demo"
chmod 700 "$demo"

if [[ ! -f $demo/clients.json || ! -f $demo/client.env ]]; then
	rm -f "$demo/clients.json" "$demo/policy.yaml"
	out=$(bin/caddy oauth client add --clients "$demo/clients.json" --name demo-sender \
		--description "created by make run")
	id=$(awk '/^client_id:/ {print $2}' <<<"$out")
	secret=$(awk '/^client_secret:/ {print $2}' <<<"$out")
	umask 077
	printf 'CLIENT_ID=%s\nCLIENT_SECRET=%s\n' "$id" "$secret" >"$demo/client.env"
fi
# shellcheck source=/dev/null
source "$demo/client.env"

if [[ ! -f $demo/policy.yaml ]]; then
	cat >"$demo/policy.yaml" <<YAML
# Who has which role (SAP: Security > Authorizations, user to role).
subjects:
  oauth_client_${CLIENT_ID}: [ESBMessaging.send]

# What each endpoint requires (SAP: the sender adapter's "User Role").
rules:
  - path: /http/ping
    public: true
  - path: /http/*
    roles: [ESBMessaging.send]
YAML
fi

bin/iflow -listen 127.0.0.1:8081 &
backend=$!
trap 'kill $backend 2>/dev/null || true' EXIT

token_url="http://localhost:8080/oauth2/api/v1/token?grant_type=client_credentials&token_format=jwt"
cat <<MSG

oauthgate demo: gateway on http://localhost:8080, backend on 127.0.0.1:8081.
Demo client ${CLIENT_ID} (secret in ${demo}/client.env).

Get a token and call the protected endpoint:

  curl -s -H "Authorization: Bearer \$(curl -s -X POST -u '${CLIENT_ID}:${CLIENT_SECRET}' '${token_url}' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')" http://localhost:8080/http/flow

Without a token the same call is refused: curl -i http://localhost:8080/http/flow

MSG
bin/caddy run --config Caddyfile.example --adapter caddyfile
