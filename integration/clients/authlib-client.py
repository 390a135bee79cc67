#!/usr/bin/python3
"""authlib-client.py: a Python sender using Authlib (Debian's
python3-authlib 1.2), authenticating with private_key_jwt (RFC 7523) the
way a Python integration would: OAuth2Session with
token_endpoint_auth_method=PrivateKeyJWT(...), a client-credentials token,
then a GET of the protected resource with it.

Environment:
  TOKEN_URL        the gateway's token endpoint
  CLIENT_ID        client ID from `caddy oauth client add --jwks`
  CLIENT_KEY_PEM   its private key (EC P-256, PEM), signed with ES256
  RESOURCE_URL     protected endpoint to GET with the token
  REQUESTS_CA_BUNDLE  Requests' own: the CA file that an https gateway's
                   certificate chains to, e.g. the test's CA

Authlib 1.2 makes its assertion's exp an hour ahead unless told, more than
the gateway's 5 minutes; the claims parameter sets it to one minute. It
adds its jti to that dict, so a PrivateKeyJWT is made per token request.

Prints one JSON line describing the outcome (never the token or the key)
and exits 0 only if every step succeeded: 1 on a failure, 2 on bad usage,
3 if Authlib is not installed.
"""
import json
import os
import sys
import time

out = {"ok": False}


def finish(code):
    print(json.dumps(out))
    sys.exit(code)


try:
    import requests
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    import authlib
except ImportError as e:
    out["error"] = "not installed: %s" % e
    finish(3)
out["authlib"] = authlib.__version__

env = {}
for name in ("TOKEN_URL", "CLIENT_ID", "CLIENT_KEY_PEM", "RESOURCE_URL"):
    env[name] = os.environ.get(name, "")
    if not env[name]:
        out["error"] = "environment variable %s is not set" % name
        finish(2)

try:
    auth = PrivateKeyJWT(env["TOKEN_URL"], claims={"exp": int(time.time()) + 60}, alg="ES256")
    session = OAuth2Session(env["CLIENT_ID"], env["CLIENT_KEY_PEM"], token_endpoint_auth_method=auth)
    tok = session.fetch_token(env["TOKEN_URL"], grant_type="client_credentials", timeout=10)
    out["token_type"] = tok.get("token_type")
    out["expires_in"] = tok.get("expires_in")
    out["token_length"] = len(tok.get("access_token", ""))
    res = requests.get(env["RESOURCE_URL"], headers={"Authorization": "Bearer " + tok["access_token"]}, timeout=10)
    out["status"] = res.status_code
    if res.status_code != 200:
        out["error"] = "GET %s: status %d" % (env["RESOURCE_URL"], res.status_code)
        finish(1)
    out["ok"] = True
    finish(0)
except Exception as e:  # Authlib's OAuthError carries the OAuth error
    out["error"] = "%s: %s" % (type(e).__name__, e)
    for attr in ("error", "description"):
        if getattr(e, attr, None):
            out["oauth_" + attr] = getattr(e, attr)
    finish(1)
