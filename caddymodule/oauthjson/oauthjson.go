// Package oauthjson writes the JSON answers of the gateway's OAuth
// endpoints, errors and successes alike, with the headers RFC 6749 §5.1
// asks of a response that may carry a token or a secret: never stored by
// a cache, a proxy or a browser.
package oauthjson

import (
	"encoding/json"
	"net/http"
)

// Write writes v as JSON with status, marked not to be stored.
func Write(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
