package authserver

import (
	"encoding/base64"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/oauthgate/oauthgate/caddymodule/assertion"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
	"github.com/oauthgate/oauthgate/caddymodule/oautherr"
)

// Bounds on what a token request may send. A client-credentials request
// is a few hundred bytes; these leave ample room and nothing more.
const (
	maxBodySize      = 16 << 10
	maxAuthorization = 4 << 10
)

// request is a parsed request to one of the client-authenticated
// endpoints (token, introspection, revocation).
type request struct {
	params url.Values
	// credentials holds the client ID and secret candidates: one pair, or
	// for HTTP Basic the raw pair and its form-decoded variant.
	credentials []credential
	// method is how the client authenticates: clients.MethodSecretBasic,
	// MethodSecretPost or MethodPrivateKeyJWT; "" when it sent nothing.
	method string
	// clientAssertion is the client_assertion of private_key_jwt, and
	// assertedID the client it claims to be from, once read.
	clientAssertion, assertedID string
}

type credential struct{ id, secret string }

// clientID is the client ID the request claims, for rate limiting and logs.
func (r *request) clientID() string {
	if r.clientAssertion != "" {
		if r.assertedID != "" {
			return r.assertedID
		}
		return r.params.Get("client_id")
	}
	if len(r.credentials) == 0 {
		return ""
	}
	return r.credentials[0].id
}

// parseRequest reads the parameters from the form body (RFC 6749 §4.4.2)
// and, for SAP compatibility, the query string; and the client
// credentials from HTTP Basic or the body (RFC 6749 §2.3.1).
func parseRequest(w http.ResponseWriter, r *http.Request) (*request, *oautherr.Error) {
	params, err := requestParams(w, r)
	if err != nil {
		return nil, err
	}
	req := &request{params: params}
	basic, present, err := basicCredentials(r.Header)
	if err != nil {
		return nil, err
	}
	id, secret := params.Get("client_id"), params.Get("client_secret")
	atype, signed := params.Get("client_assertion_type"), params.Get("client_assertion")
	switch {
	case atype != "" || signed != "":
		// RFC 6749 §2.3: one method per request; with an assertion,
		// client_id may only repeat the assertion's issuer (RFC 7521 §4.2).
		switch {
		case present || secret != "":
			return nil, oautherr.InvalidRequest("a client assertion was sent together with a secret; use one way to authenticate")
		case atype != assertion.Type:
			return nil, oautherr.InvalidRequest("client_assertion_type must be " + assertion.Type)
		case signed == "":
			return nil, oautherr.InvalidRequest("client_assertion is missing")
		}
		req.method, req.clientAssertion = clients.MethodPrivateKeyJWT, signed
	case present && (id != "" || secret != ""):
		return nil, oautherr.InvalidRequest("client credentials were sent both in the Authorization header and in the body; use one")
	case present:
		req.credentials, req.method = basic, clients.MethodSecretBasic
	case id != "":
		req.credentials, req.method = []credential{{id, secret}}, clients.MethodSecretPost
	}
	return req, nil
}

// requestParams merges query and body parameters. An empty value counts
// as absent. A parameter may appear once (RFC 6749 §3.2), or in both the
// query and the body with the same value.
func requestParams(w http.ResponseWriter, r *http.Request) (url.Values, *oautherr.Error) {
	// The query is bounded like the body: Caddy's header limit (1 MiB by
	// default) is far more than any token request needs.
	if len(r.URL.RawQuery) > maxBodySize {
		return nil, oautherr.InvalidRequest("the query string is too long")
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, oautherr.InvalidRequest("the query string is not properly encoded")
	}
	if query.Has("client_secret") || query.Has("client_assertion") {
		// RFC 6749 §2.3.1: credentials never go into a URL, which ends up
		// in logs and browser histories.
		return nil, oautherr.InvalidRequest("client_secret and client_assertion must not be sent in the URL")
	}
	body, oerr := formBody(w, r)
	if oerr != nil {
		return nil, oerr
	}
	merged := url.Values{}
	for _, src := range []url.Values{query, body} {
		for name, vals := range src {
			var v string
			for _, val := range vals {
				switch {
				case val == "":
				case v != "":
					return nil, oautherr.InvalidRequest("parameter " + paramName(name) + " is repeated")
				default:
					v = val
				}
			}
			if v == "" {
				continue
			}
			if prev := merged.Get(name); prev != "" && prev != v {
				return nil, oautherr.InvalidRequest("parameter " + paramName(name) + " has different values in the query and the body")
			}
			merged.Set(name, v)
		}
	}
	return merged, nil
}

// paramName is a parameter name the caller chose, fit to be echoed in an
// error (and so logged): quoted, and cut short.
func paramName(name string) string {
	const max = 64
	if len(name) > max {
		name = name[:max] + "…"
	}
	return strconv.Quote(name)
}

func formBody(w http.ResponseWriter, r *http.Request) (url.Values, *oautherr.Error) {
	if r.Body == nil || r.Body == http.NoBody {
		return url.Values{}, nil
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodySize))
	if err != nil {
		return nil, oautherr.InvalidRequest("the request body is too large or could not be read")
	}
	if len(data) == 0 {
		return url.Values{}, nil // SAP form: parameters in the query, empty body
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, oautherr.InvalidRequest("the body must be application/x-www-form-urlencoded")
	}
	vals, err := url.ParseQuery(string(data))
	if err != nil {
		return nil, oautherr.InvalidRequest("the body is not properly form-encoded")
	}
	return vals, nil
}

// basicCredentials reads HTTP Basic client credentials. RFC 6749 §2.3.1
// says ID and secret are form-encoded before Basic encoding; most clients
// (SAP's own, curl, Postman) skip that step and golang.org/x/oauth2 does
// it. Both readings are returned, the raw one first, so either works.
func basicCredentials(h http.Header) (creds []credential, present bool, oerr *oautherr.Error) {
	vals := h.Values("Authorization")
	if len(vals) == 0 {
		return nil, false, nil
	}
	if len(vals) > 1 {
		return nil, true, oautherr.InvalidRequest("more than one Authorization header")
	}
	v := vals[0]
	if len(v) > maxAuthorization {
		return nil, true, oautherr.InvalidRequest("the Authorization header is too long")
	}
	scheme, payload, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return nil, true, oautherr.InvalidClient("client authentication must use HTTP Basic")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(payload))
	if err != nil {
		return nil, true, oautherr.InvalidRequest("the Basic credentials are not valid base64")
	}
	id, secret, ok := strings.Cut(string(raw), ":")
	if !ok || id == "" {
		return nil, true, oautherr.InvalidRequest("the Basic credentials are not of the form id:secret")
	}
	creds = []credential{{id, secret}}
	did, errID := url.QueryUnescape(id)
	dsecret, errSecret := url.QueryUnescape(secret)
	if errID == nil && errSecret == nil && (did != id || dsecret != secret) {
		creds = append(creds, credential{did, dsecret})
	}
	return creds, true, nil
}
