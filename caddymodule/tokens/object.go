package tokens

import (
	"time"
)

// Member is one top-level member of a JSON object decoded by
// DecodeObject: its name, decoded, and its value as it is in the JSON,
// valid and without surrounding space.
type Member struct {
	Name  string
	Value string
}

// DecodeObject base64url-decodes seg and decodes the JSON object in it as
// strictly as a token's header and claims are: one object, no duplicate
// member names at any level (ignoring case), nesting bounded, valid
// UTF-8. Other JOSE objects the gateway reads (DPoP proofs) use it so
// that no two parsers disagree on them either. The members are appended
// to dst, whose room the caller may provide.
func DecodeObject(dst []Member, seg string) ([]Member, error) {
	return decodeSegment(seg, dst)
}

// AsString decodes a string member; null is "".
func (m Member) AsString() (string, error) {
	var s string
	err := str(m, &s)
	return s, err
}

// AsDate decodes a NumericDate member (a JSON number of seconds); ok is
// false for null.
func (m Member) AsDate() (t time.Time, ok bool, err error) {
	d, err := date(m)
	return d.t, d.set, err
}
