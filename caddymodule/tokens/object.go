package tokens

import (
	"time"
)

// Member is one top-level member of a JSON object decoded by
// DecodeObject: its name and its value as JSON text.
type Member struct {
	Name  string
	Value string
}

// DecodeObject base64url-decodes seg and decodes the JSON object in it as
// strictly as a token's header and claims are: one object, no duplicate
// member names at any level (ignoring case), nesting bounded, valid
// UTF-8. Other JOSE objects the gateway reads (DPoP proofs, client
// assertions) use it so that no two parsers disagree on them either.
func DecodeObject(seg string) ([]Member, error) {
	ms, err := decodeSegment(seg, nil)
	if err != nil {
		return nil, err
	}
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{Name: m.name, Value: m.value}
	}
	return out, nil
}

// AsString decodes a string member; null is "".
func (m Member) AsString() (string, error) {
	var s string
	err := str(member{m.Name, m.Value}, &s)
	return s, err
}

// AsDate decodes a NumericDate member (a JSON number of seconds); ok is
// false for null.
func (m Member) AsDate() (t time.Time, ok bool, err error) {
	d, err := date(member{m.Name, m.Value})
	return d.t, d.set, err
}
