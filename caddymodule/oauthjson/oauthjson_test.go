package oauthjson_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/oauthjson"
)

func TestWrite_AnswerIsJSONThatNoCacheKeeps(t *testing.T) {
	rec := httptest.NewRecorder()
	oauthjson.Write(rec, http.StatusCreated, map[string]string{"access_token": "t"})
	want := map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}
	for name, value := range want {
		if got := rec.Header().Get(name); got != value {
			t.Errorf("%s = %q, want %q", name, got, value)
		}
	}
	if rec.Code != http.StatusCreated || rec.Body.String() != "{\"access_token\":\"t\"}\n" {
		t.Errorf("answer = %d %q, want 201 and the JSON", rec.Code, rec.Body)
	}
}
