// Package oauthjson writes the JSON answers of the gateway's OAuth
// endpoints, errors and successes alike, with the headers RFC 6749 §5.1
// asks of a response that may carry a token or a secret: never stored by
// a cache, a proxy or a browser.
package oauthjson

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Appender is an answer that writes its own JSON, the bytes encoding/json
// would write of it, without encoding/json's reflection: for answers
// sent once per request, such as the token endpoint's. Write calls it
// with a nil slice, so that the answer, which knows its size, allocates
// once; one byte more for the newline spares a copy. An error hands the
// value to encoding/json after all.
type Appender interface {
	AppendJSON(b []byte) ([]byte, error)
}

// Write writes v as JSON with status, marked not to be stored. The body
// is what json.Encoder writes, a newline after the value.
func Write(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if a, ok := v.(Appender); ok {
		if body, err := a.AppendJSON(nil); err == nil {
			w.WriteHeader(status)
			_, _ = w.Write(append(body, '\n'))
			return
		}
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// AppendString appends s as a JSON string, the bytes encoding/json writes
// of it. Printable ASCII that needs no escape, which is what tokens,
// client IDs, URLs and role names normally are, is copied as it is;
// anything else is left to encoding/json (its escapes of <, > and &, of
// U+2028 and U+2029, and its replacement of invalid UTF-8).
func AppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !verbatim[s[i]] {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// verbatim marks the bytes encoding/json writes as they are: printable
// ASCII but for the quote, the backslash and the HTML characters. A table
// makes the scan of a token's every byte cheap.
var verbatim = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = !strings.ContainsRune(`"\<>&`, rune(c))
	}
	return t
}()
