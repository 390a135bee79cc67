package dpop_test

import (
	"encoding/base64"
	"encoding/json"
	"strconv"

	"github.com/oauthgate/oauthgate/caddymodule/dpop/dpoptest"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// signRawClaims signs claims as written, which json.Marshal of a map
// could not write (duplicate names).
func signRawClaims(k *dpoptest.Key, hdr map[string]any, claims string) string {
	// Sign once with placeholder claims to get the header encoding, then
	// sign the real input through the same key.
	h, _ := json.Marshal(hdr)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
	sig := k.SignInput([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
