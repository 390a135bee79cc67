package authserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/authserver"
	"github.com/oauthgate/oauthgate/caddymodule/tokens"
	"github.com/oauthgate/oauthgate/caddymodule/tokenstate"
)

// issue fetches a token of the given format for the sender client.
func (f *fixture) issue(t *testing.T, format string) tokenResponse {
	t.Helper()
	return okToken(t, f.do(t, request{
		target: authserver.TokenPath + "?grant_type=client_credentials&token_format=" + format,
		header: basic(senderID, f.senderSecret)}))
}

func (f *fixture) introspect(t *testing.T, token string) map[string]any {
	t.Helper()
	rec := f.do(t, request{target: authserver.IntrospectPath, body: "token=" + url.QueryEscape(token),
		header: basic(senderID, f.senderSecret)})
	if rec.Code != http.StatusOK {
		t.Fatalf("introspection: %d %s", rec.Code, rec.Body)
	}
	assertJSONNoStore(t, rec)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	return got
}

func (f *fixture) revoke(t *testing.T, token, id, secret string) int {
	t.Helper()
	return f.do(t, request{target: authserver.RevokePath, body: "token=" + url.QueryEscape(token),
		header: basic(id, secret)}).Code
}

func TestToken_OpaqueTokenIsRandomReferenceStoredAsHash(t *testing.T) {
	f := newFixture(t)
	a, b := f.issue(t, "opaque"), f.issue(t, "opaque")
	// 256 random bits and a 128-bit MAC, base64url: 64 characters.
	if len(a.AccessToken) != 64 || strings.Contains(a.AccessToken, ".") || a.AccessToken == b.AccessToken {
		t.Errorf("opaque tokens %q, %q: want two distinct 64-character tokens without dots", a.AccessToken, b.AccessToken)
	}
	if a.ExpiresIn != 1800 || a.Scope != "ESBMessaging.send Orders.read" {
		t.Errorf("response = %+v, want the client's lifetime and roles", a)
	}
	got := f.introspect(t, a.AccessToken)
	if got["active"] != true || got["client_id"] != senderID || got["scope"] != a.Scope {
		t.Errorf("introspection of an opaque token = %v", got)
	}
}

func TestIntrospect_AnswersActiveOnlyForValidTokens(t *testing.T) {
	f := newFixture(t)
	jwt := f.issue(t, "jwt")
	got := f.introspect(t, jwt.AccessToken)
	want := map[string]any{"active": true, "client_id": senderID, "sub": "oauth_client_" + senderID,
		"iss": issuer, "scope": jwt.Scope, "token_type": "Bearer"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if exp, iat := got["exp"].(float64), got["iat"].(float64); exp-iat != 1800 {
		t.Errorf("exp - iat = %v, want 1800", exp-iat)
	}

	for name, tok := range map[string]string{
		"garbage":              "not-a-token",
		"tampered JWT":         jwt.AccessToken[:len(jwt.AccessToken)-4] + "AAAA",
		"unknown opaque token": strings.Repeat("A", 64),
	} {
		if got := f.introspect(t, tok); len(got) != 1 || got["active"] != false {
			t.Errorf("%s: introspection = %v, want only active false", name, got)
		}
	}
}

func TestIntrospectAndRevoke_RequireClientAuthentication(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(t, "jwt").AccessToken
	for _, path := range []string{authserver.IntrospectPath, authserver.RevokePath} {
		tokenError(t, f.do(t, request{target: path, body: "token=" + tok, header: basic(senderID, "wrong")}), 401, "invalid_client")
		tokenError(t, f.do(t, request{target: path, body: "token=" + tok}), 401, "invalid_client")
		tokenError(t, f.do(t, request{target: path, header: basic(senderID, f.senderSecret)}), 400, "invalid_request")
		if rec := f.do(t, request{method: http.MethodGet, target: path}); rec.Code != 405 {
			t.Errorf("GET %s = %d, want 405", path, rec.Code)
		}
	}
	if got := f.introspect(t, tok); got["active"] != true {
		t.Errorf("the token stopped being active after failed revocation attempts: %v", got)
	}
}

func TestRevoke_EndsJWTsAndOpaqueTokensOfTheCallerOnly(t *testing.T) {
	for _, format := range []string{"jwt", "opaque"} {
		t.Run(format, func(t *testing.T) {
			f := newFixture(t)
			tok := f.issue(t, format).AccessToken
			other := f.issue(t, format).AccessToken

			if code := f.revoke(t, tok, specialID, specialSecret); code != http.StatusBadRequest {
				t.Errorf("revocation by another client = %d, want 400", code)
			}
			if f.introspect(t, tok)["active"] != true {
				t.Fatal("another client's revocation took effect")
			}
			if code := f.revoke(t, tok, senderID, f.senderSecret); code != http.StatusOK {
				t.Fatalf("revocation = %d, want 200", code)
			}
			if got := f.introspect(t, tok); got["active"] != false {
				t.Errorf("revoked token still active: %v", got)
			}
			if f.introspect(t, other)["active"] != true {
				t.Error("revoking one token ended another")
			}
			if code := f.revoke(t, tok, senderID, f.senderSecret); code != http.StatusOK {
				t.Errorf("revoking again = %d, want 200 (RFC 7009 §2.2)", code)
			}
			if !strings.Contains(f.logs.String(), `"token revoked"`) {
				t.Error("no audit line for the revocation")
			}
		})
	}
}

func TestToken_LifetimeIsCappedByTheMaximum(t *testing.T) {
	f := newFixture(t)
	f.srv.MaxLifetime = 10 * time.Minute // the sender's own lifetime is 30m
	tok := f.issue(t, "jwt")
	if tok.ExpiresIn != 600 {
		t.Errorf("expires_in = %d, want 600", tok.ExpiresIn)
	}
	if c := f.verify(t, tok.AccessToken); c.Expiry.Sub(c.IssuedAt) != 10*time.Minute {
		t.Errorf("exp - iat = %v, want 10m", c.Expiry.Sub(c.IssuedAt))
	}
}

func TestMetadata_ListsIntrospectionAndRevocation(t *testing.T) {
	f := newFixture(t)
	rec := f.do(t, request{method: http.MethodGet, target: authserver.MetadataPath})
	var md map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &md); err != nil {
		t.Fatal(err)
	}
	if md["introspection_endpoint"] != issuer+authserver.IntrospectPath || md["revocation_endpoint"] != issuer+authserver.RevokePath {
		t.Errorf("metadata = %v", md)
	}
}

func TestToken_AuditLinesNameClientTokenAndAddress(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(t, "jwt")
	f.do(t, request{target: sapQuery, header: basic(senderID, "wrong-secret")})

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want one per request:\n%s", len(lines), f.logs)
	}
	ok, refused := lines[0], lines[1]
	c := f.verify(t, tok.AccessToken)
	for k, want := range map[string]any{"msg": "token issued", "client_id": senderID, "jti": c.ID, "remote_ip": "192.0.2.1"} {
		if ok[k] != want {
			t.Errorf("issuance line %s = %v, want %v", k, ok[k], want)
		}
	}
	if ok["expires"] == nil {
		t.Error("issuance line has no expiry")
	}
	for k, want := range map[string]any{"msg": "token request refused", "client_id": senderID, "error": "invalid_client", "remote_ip": "192.0.2.1"} {
		if refused[k] != want {
			t.Errorf("refusal line %s = %v, want %v", k, refused[k], want)
		}
	}
	if strings.Contains(f.logs.String(), "wrong-secret") || strings.Contains(f.logs.String(), tok.AccessToken) {
		t.Error("a secret or a token reached the log")
	}
}

// unreachable is a token state that cannot be asked.
type unreachable struct{}

func (unreachable) Verify(context.Context, string) (*tokens.Claims, error) {
	return nil, fmt.Errorf("%w: connection refused", tokenstate.ErrUnavailable)
}

func TestRevokeAndIntrospect_AStateThatCannotBeAskedIs503NotAnAnswer(t *testing.T) {
	f := newFixture(t)
	tok := f.issue(t, "opaque").AccessToken
	f.srv.Verifier = unreachable{}
	// 200 would tell the client its token is gone while it works on, and
	// active:false that a good token is bad.
	if code := f.revoke(t, tok, senderID, f.senderSecret); code != http.StatusServiceUnavailable {
		t.Errorf("revocation while the state cannot be asked = %d, want 503", code)
	}
	rec := f.do(t, request{target: authserver.IntrospectPath, body: "token=" + url.QueryEscape(tok),
		header: basic(senderID, f.senderSecret)})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("introspection while the state cannot be asked = %d (Retry-After %q), want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
}
