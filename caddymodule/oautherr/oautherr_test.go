package oautherr

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

func TestWriteChallenge_RendersRFC6750Header(t *testing.T) {
	cases := []struct {
		name       string
		err        *Error
		wantHeader string
		wantBody   string // empty: no body
	}{
		{"missing token has no error code", MissingToken(), `Bearer realm="oauthgate"`, ""},
		{"invalid token carries code and description", InvalidToken("token is expired"),
			`Bearer realm="oauthgate", error="invalid_token", error_description="token is expired"`,
			`{"error":"invalid_token","error_description":"token is expired"}`},
		{"insufficient scope names the roles", InsufficientScope("lacks a role", []string{"A.send", "B.send"}),
			`Bearer realm="oauthgate", error="insufficient_scope", error_description="lacks a role", scope="A.send B.send"`,
			`{"error":"insufficient_scope","error_description":"lacks a role","scope":"A.send B.send"}`},
		{"quotes and backslashes are escaped", InvalidRequest(`bad "x" \ y`),
			`Bearer realm="oauthgate", error="invalid_request", error_description="bad \"x\" \\ y"`,
			`{"error":"invalid_request","error_description":"bad \"x\" \\ y"}`},
		{"an unavailable gateway sends no challenge", &Error{Code: CodeUnavailable, Description: "keys not loaded", Status: 503},
			"", `{"error":"temporarily_unavailable","error_description":"keys not loaded"}`},
		{"control characters cannot split the header", InvalidRequest("a\r\nSet-Cookie: x=1"),
			`Bearer realm="oauthgate", error="invalid_request", error_description="aSet-Cookie: x=1"`,
			`{"error":"invalid_request","error_description":"a\r\nSet-Cookie: x=1"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			WriteChallenge(w, "oauthgate", "", tc.err)
			if w.Code != tc.err.Status {
				t.Errorf("status = %d, want %d", w.Code, tc.err.Status)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tc.wantHeader {
				t.Errorf("WWW-Authenticate =\n%s\nwant\n%s", got, tc.wantHeader)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if tc.wantBody == "" {
				if w.Body.Len() != 0 {
					t.Errorf("body = %q, want none", w.Body)
				}
				return
			}
			var got, want any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			_ = json.Unmarshal([]byte(tc.wantBody), &want)
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(want)
			if string(gb) != string(wb) {
				t.Errorf("body = %s, want %s", gb, wb)
			}
		})
	}
}

func TestWriteTokenError_BasicChallengeOnlyOn401(t *testing.T) {
	w := httptest.NewRecorder()
	WriteTokenError(w, "oauthgate", InvalidClient("client authentication failed"))
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Basic realm="oauthgate"` {
		t.Errorf("invalid_client: %d %q, want 401 with a Basic challenge", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	w = httptest.NewRecorder()
	WriteTokenError(w, "oauthgate", UnsupportedGrantType("no"))
	if w.Code != 400 || w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("unsupported_grant_type: %d %q, want 400 without a challenge", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	for _, h := range []string{"Cache-Control", "Pragma", "Content-Type"} {
		if w.Header().Get(h) == "" {
			t.Errorf("%s missing", h)
		}
	}
}

func TestWriteChallenge_PointsAtTheResourceMetadata(t *testing.T) {
	w := httptest.NewRecorder()
	WriteChallenge(w, "oauthgate", "https://gw.example/.well-known/oauth-protected-resource", MissingToken())
	want := `Bearer realm="oauthgate", resource_metadata="https://gw.example/.well-known/oauth-protected-resource"`
	if got := w.Header().Get("WWW-Authenticate"); got != want {
		t.Errorf("WWW-Authenticate = %s, want %s", got, want)
	}
}

func TestWriteChallenge_AddsADPoPChallengeWhereDPoPWouldDo(t *testing.T) {
	e := InvalidToken("this path requires a sender-constrained token")
	e.DPoPAlgs = []string{"ES256", "EdDSA"}
	w := httptest.NewRecorder()
	WriteChallenge(w, "oauthgate", "", e)
	got := w.Header().Values("WWW-Authenticate")
	want := []string{
		`Bearer realm="oauthgate", error="invalid_token", error_description="this path requires a sender-constrained token"`,
		`DPoP realm="oauthgate", error="invalid_token", error_description="this path requires a sender-constrained token", algs="ES256 EdDSA"`,
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("WWW-Authenticate = %q, want %q", got, want)
	}
}

func TestWriteChallenge_AskingForADPoPNonceSendsOne(t *testing.T) {
	w := httptest.NewRecorder()
	WriteChallenge(w, "oauthgate", "", &Error{Code: CodeUseDPoPNonce, Status: 401,
		Description: "send a nonce", DPoPAlgs: []string{"ES256", "EdDSA"}, DPoPNonce: "n1"})
	got := w.Header().Values("WWW-Authenticate")
	want := `DPoP realm="oauthgate", error="use_dpop_nonce", error_description="send a nonce", algs="ES256 EdDSA"`
	if len(got) != 2 || got[1] != want || got[0] != `Bearer realm="oauthgate"` {
		t.Errorf("WWW-Authenticate = %q, want a bare Bearer challenge and %q", got, want)
	}
	if n := w.Header().Get("DPoP-Nonce"); n != "n1" {
		t.Errorf("DPoP-Nonce = %q", n)
	}
}
