// openid-client.mjs: a Node sender using openid-client (v6), the way a
// JavaScript integration would talk to oauthgate. It discovers the gateway
// from its RFC 8414 metadata, gets a client-credentials token with the
// client authentication method named by AUTH, and GETs the protected
// resource with it.
//
// Environment:
//   ISSUER         the gateway's issuer, e.g. https://127.0.0.1:8443; Node
//                  must trust its certificate (NODE_EXTRA_CA_CERTS for a
//                  test CA). Only an http issuer (the plain-http loopback
//                  gateway of most tests) lets openid-client use plain http
//   CLIENT_ID      client ID from `caddy oauth client add`
//   CLIENT_SECRET  its secret (basic and post)
//   CLIENT_PRIVATE_JWK  its private key as a JWK with "kid" (private_key_jwt);
//                  an EC P-256 key, signed with ES256
//   AUTH           basic (client_secret_basic), post (client_secret_post) or
//                  private_key_jwt
//   RESOURCE_URL   protected endpoint to GET with the token
//   TIMEOUT_SECONDS  per HTTP request (default 10)
//   DPOP           if set, a JWS algorithm (e.g. ES256): the client makes a
//                  DPoP key of its own (RFC 9449), gets a DPoP-bound token
//                  with openid-client's DPoP support, and calls the resource
//                  with fetchProtectedResource, which signs a proof for the
//                  request (and retries once with a server nonce); the htm
//                  and htu of every proof it sent are printed
//
// Prints one JSON line describing the outcome (never the token or the
// secret) and exits 0 only if every step succeeded: 1 on any failure, 2 on
// bad usage. The integration tests (integration/clients_test.go) run it
// and check the line.

import * as client from 'openid-client';

const out = { ok: false, auth: process.env.AUTH ?? '' };

function finish(code) {
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exitCode = code;
}

function need(name) {
  const v = process.env[name];
  if (!v) {
    out.error = `environment variable ${name} is not set`;
    finish(2);
    process.exit();
  }
  return v;
}

const issuer = need('ISSUER');
const clientId = need('CLIENT_ID');
const auth = need('AUTH');
const clientSecret = auth === 'private_key_jwt' ? '' : need('CLIENT_SECRET');
const resourceURL = need('RESOURCE_URL');
const timeout = Number(process.env.TIMEOUT_SECONDS ?? '10');
const dpopAlg = process.env.DPOP ?? '';

// The library signs the assertion itself (iss = sub = client ID, aud = the
// issuer, a fresh jti, exp a minute ahead); the key is only handed over.
async function privateKeyJwt() {
  const jwk = JSON.parse(need('CLIENT_PRIVATE_JWK'));
  const key = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  return client.PrivateKeyJwt({ key, kid: jwk.kid });
}

const methods = {
  basic: ['client_secret_basic', async () => client.ClientSecretBasic(clientSecret)],
  post: ['client_secret_post', async () => client.ClientSecretPost(clientSecret)],
  private_key_jwt: ['private_key_jwt', privateKeyJwt],
};
if (!(auth in methods)) {
  out.error = `AUTH must be basic, post or private_key_jwt, not ${JSON.stringify(auth)}`;
  finish(2);
  process.exit();
}
const [methodName, method] = methods[auth];
out.method = methodName;

// What the library put on the wire for the token request, so the caller can
// check that the requested client authentication method was really used.
function recordTokenRequest(url, options) {
  const headers = new Headers(options?.headers);
  const body = new URLSearchParams(
    typeof options?.body === 'string' || options?.body instanceof URLSearchParams ? options.body : '',
  );
  out.token_request = {
    method: options?.method ?? 'GET',
    url: String(url),
    basic_auth: (headers.get('authorization') ?? '').startsWith('Basic '),
    body_client_id: body.has('client_id'),
    body_client_secret: body.has('client_secret'),
    body_client_assertion_type: body.get('client_assertion_type'),
    body_client_assertion: body.has('client_assertion'),
    grant_type: body.get('grant_type'),
    dpop_proof: headers.has('dpop'),
  };
}

// The htm and htu of every DPoP proof the library sent, not the proof
// itself (a credential until it expires), so the caller can check that
// htu names the URL as the gateway sees it, scheme included.
function recordDPoPProof(url, options) {
  const proof = new Headers(options?.headers).get('dpop');
  if (!proof) return;
  const { htm, htu } = JSON.parse(Buffer.from(proof.split('.')[1], 'base64url').toString());
  (out.dpop_proofs ??= []).push({ url: String(url), htm, htu });
}

try {
  const config = await client.discovery(
    new URL(issuer),
    clientId,
    undefined,
    await method(),
    {
      algorithm: 'oauth2', // RFC 8414: /.well-known/oauth-authorization-server
      // Only a plain http issuer gets plain http; an https one, https alone.
      execute: new URL(issuer).protocol === 'http:' ? [client.allowInsecureRequests] : [],
      timeout,
    },
  );
  const md = config.serverMetadata();
  out.issuer = md.issuer;
  out.token_endpoint = md.token_endpoint;

  config[client.customFetch] = (url, options) => {
    if (String(url) === md.token_endpoint) recordTokenRequest(url, options);
    recordDPoPProof(url, options);
    return fetch(url, options);
  };

  let dpop;
  if (dpopAlg) {
    dpop = client.getDPoPHandle(config, await client.randomDPoPKeyPair(dpopAlg));
    out.dpop = dpopAlg;
    out.dpop_algs_advertised = md.dpop_signing_alg_values_supported ?? null;
  }
  const tok = await client.clientCredentialsGrant(config, { token_format: 'jwt' }, dpop ? { DPoP: dpop } : undefined);
  out.token_type = tok.token_type;
  out.expires_in = tok.expires_in;
  out.scope = tok.scope;
  out.token_length = tok.access_token?.length ?? 0;
  // For the Go test's log-hygiene check, which searches every log for it.
  out.access_token = tok.access_token;

  const res = dpop
    ? await client.fetchProtectedResource(config, tok.access_token, new URL(resourceURL), 'GET', undefined, undefined, { DPoP: dpop })
    : await fetch(resourceURL, {
        headers: { Authorization: `Bearer ${tok.access_token}` },
        signal: AbortSignal.timeout(timeout * 1000),
      });
  out.status = res.status;
  const text = await res.text();
  try {
    out.body = JSON.parse(text);
  } catch {
    out.body = text;
  }
  if (res.status !== 200) {
    out.error = `GET ${resourceURL}: status ${res.status}`;
    finish(1);
  } else {
    out.ok = true;
    finish(0);
  }
} catch (err) {
  // openid-client's errors carry the OAuth error and the HTTP status.
  out.error = String(err?.message ?? err);
  for (const [k, name] of [
    ['code', 'error_code'],
    ['error', 'oauth_error'],
    ['error_description', 'error_description'],
    ['status', 'error_status'],
  ]) {
    if (err?.[k] !== undefined) out[name] = err[k];
  }
  if (Array.isArray(err?.cause)) {
    // WWW-Authenticate challenges, e.g. Basic with error="invalid_client".
    out.challenges = err.cause.map((c) => ({ scheme: c.scheme, parameters: c.parameters }));
  } else if (err?.cause?.message) {
    out.error_cause = String(err.cause.message);
  }
  finish(1);
}
