package oauthjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
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

// answer writes its JSON itself, or fails to when fail is set.
type answer struct {
	Token string `json:"access_token"`
	fail  bool
}

func (a answer) AppendJSON(b []byte) ([]byte, error) {
	if a.fail {
		return nil, errors.New("cannot")
	}
	b = append(b, `{"access_token":`...)
	return append(oauthjson.AppendString(b, a.Token), '}'), nil
}

func TestWrite_AnAppenderWritesTheSameAnswerAsTheEncoder(t *testing.T) {
	for _, a := range []answer{{Token: "t.o.k"}, {Token: "<&>", fail: true}} {
		rec := httptest.NewRecorder()
		oauthjson.Write(rec, http.StatusOK, a)
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(a); err != nil {
			t.Fatal(err)
		}
		if rec.Body.String() != want.String() || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%+v: answer %q with Cache-Control %q, want %q with no-store", a, rec.Body, rec.Header().Get("Cache-Control"), want.String())
		}
	}
}

// appendStringCases are strings with each byte, each kind of character
// encoding/json escapes or replaces, and the usual printable ones.
func appendStringCases() []string {
	cases := []string{"", "plain", "oauth_client_3f9a", "https://gw.example/a?b=c&d=<e>", `"\`, "\u2028\u2029", "é ü 日本", "\xff\xfe", "\xe2\x80", "a\x00b", "\x7f"}
	for c := range 256 {
		cases = append(cases, "x"+string(rune(c))+"y", "x"+string([]byte{byte(c)})+"y")
	}
	return cases
}

func TestAppendString_WritesWhatEncodingJSONWrites(t *testing.T) {
	for _, s := range appendStringCases() {
		want, _ := json.Marshal(s)
		if got := oauthjson.AppendString([]byte("prefix "), s); string(got) != "prefix "+string(want) {
			t.Errorf("%q: got %s, want %s", s, got[len("prefix "):], want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range appendStringCases() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := oauthjson.AppendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	})
}
