package keys

import "time"

// Description is a key as the admin API lists it (GET /oauth/keys) and as
// `caddy oauth keys` reads it back: one type for both ends of the wire, so
// that they cannot disagree on a field. Times are RFC 3339 in UTC, empty
// where KeyInfo's are zero.
type Description struct {
	ID        string `json:"kid"`
	Algorithm string `json:"alg"`
	Created   string `json:"created,omitempty"`
	Activates string `json:"activates,omitempty"`
	Retires   string `json:"retires,omitempty"`
	Expires   string `json:"expires,omitempty"`
	// Signing marks the key that signed new tokens when the list was made.
	Signing bool `json:"signing"`
}

// Describe lists the published keys as Keys does, newest first, with the
// key that signs now marked.
func (s *Set) Describe() []Description {
	// Asked once: the clock may pass an activation while the list is made,
	// and the list must not then mark two keys, or none.
	signing := s.Signing().ID
	infos := s.Keys()
	out := make([]Description, len(infos))
	for i, k := range infos {
		out[i] = Description{ID: k.ID, Algorithm: k.Algorithm.String(), Created: stamp(k.Created),
			Activates: stamp(k.Activates), Retires: stamp(k.Retires), Expires: stamp(k.Expires),
			Signing: k.ID == signing}
	}
	return out
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
