package tokens

import "encoding/base64"

// CompactJWS is a compact JWS (RFC 7515 §7.1) taken apart with the same
// strict rules as an access token: three non-empty base64url segments,
// header and payload each one JSON object without duplicate member
// names at any level and nested at most a few levels deep. Nothing in it
// is verified: it is for the other JWTs the gateway reads (client
// assertions, DPoP proofs), whose checks are their own.
type CompactJWS struct {
	// Header and Claims map each top-level member name to its value as
	// JSON text (valid, without surrounding space); decode a value with
	// encoding/json, which can no longer be misled by duplicates.
	Header, Claims map[string]string
	// SigningInput is the first two segments and their dot; Signature
	// the decoded third segment.
	SigningInput string
	Signature    []byte
}

// ParseCompact takes token apart; maxLength bounds it before any decoding.
// The error says which rule was broken, never what the token holds.
func ParseCompact(token string, maxLength int) (*CompactJWS, error) {
	if len(token) > maxLength {
		return nil, fail("longer than %d bytes", maxLength)
	}
	hdr, payload, sig, ok := splitCompact(token)
	if !ok {
		return nil, errNotCompact
	}
	j := &CompactJWS{SigningInput: token[:len(hdr)+1+len(payload)]}
	var err error
	if j.Header, err = decodeMembers(hdr); err != nil {
		return nil, fail("header: %v", err)
	}
	if j.Claims, err = decodeMembers(payload); err != nil {
		return nil, fail("claims: %v", err)
	}
	if j.Signature, err = base64.RawURLEncoding.Strict().DecodeString(sig); err != nil {
		return nil, fail("signature: %v", errNotBase64)
	}
	return j, nil
}

func decodeMembers(seg string) (map[string]string, error) {
	members, err := decodeSegment(seg, nil)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(members))
	for _, mb := range members {
		m[mb.Name] = mb.Value
	}
	return m, nil
}
