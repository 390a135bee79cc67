package tokens

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The strict JSON walk of a token's header and claims: one object, no
// duplicate member names at any level, bounded depth, dates as numbers.
// encoding/json accepts duplicates (the last one wins) and folds case in
// names; two parsers that disagree on a token's claims are how a token
// says one thing to its verifier and another to its user.

// maxDepth bounds nesting in a token's JSON. Our tokens have depth 2 (an
// audience array); a little room is left for external issuers.
const maxDepth = 8

// decodeSegment base64url-decodes seg and strictly decodes the JSON
// object in it (see checkObject).
func decodeSegment(seg string, dst []Member) ([]Member, error) {
	data, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return nil, errNotBase64
	}
	return checkObject(data, dst)
}

var errNotBase64 = errors.New("not base64url")

// segmentDecoder decodes the segments of one token into one allocation.
type segmentDecoder []byte

// newSegmentDecoder returns a copy of input and a decoder with room for
// segments of that many characters in all (each decodes to three
// quarters of its length or less), in one allocation.
func newSegmentDecoder(input string, segments int) ([]byte, *segmentDecoder) {
	buf := make([]byte, len(input)+base64.RawURLEncoding.DecodedLen(segments))
	raw := buf[:copy(buf, input):len(input)]
	d := segmentDecoder(buf[len(input):])
	return raw, &d
}

// decode base64url-decodes seg into the decoder's room.
func (d *segmentDecoder) decode(seg string) ([]byte, error) {
	n, err := base64.RawURLEncoding.Strict().Decode(*d, []byte(seg))
	if err != nil {
		return nil, errNotBase64
	}
	out := (*d)[:n:n]
	*d = (*d)[n:]
	return out, nil
}

var errNotJSON = errors.New("not JSON")

// checkObject verifies that data is one JSON object with no duplicate
// member names at any level and no nesting deeper than maxDepth, and
// returns its top-level members.
//
// json.Valid vouches for the syntax first, so the walk below only has to
// find where strings, containers and member names are, in one pass of
// linear cost; the members' values are then decoded by the few functions
// below rather than by reflection, which cost more than the rest of the
// guard's work on a token apart from its signature.
//
// The members are appended to dst, whose room the caller may provide.
func checkObject(data []byte, dst []Member) ([]Member, error) {
	// RFC 8259 §8.1: JSON is UTF-8. encoding/json would read names that
	// are not as U+FFFD, so two such names could be one to it and two to
	// the duplicate check below.
	if !json.Valid(data) || !utf8.Valid(data) {
		return nil, errNotJSON
	}
	// One copy of the whole object: names and string values are slices
	// of it, not an allocation each (a cached token's claims are then
	// one object for the garbage collector, not a dozen).
	text := string(data)
	type frame struct {
		object  bool
		wantKey bool
		id      int // of the object, in seen
	}
	var room [maxDepth]frame
	stack, members, objects := room[:0], dst, 0
	var seen nameSet
	valueStart := 0
	endMember := func(end int) {
		if n := len(members); n > 0 && members[n-1].Value == "" {
			members[n-1].Value = strings.TrimSpace(text[valueStart:end])
		}
	}
	for i := 0; i < len(text); i++ {
		switch c := text[i]; c {
		case '{', '[':
			if len(stack) == 0 && c != '{' {
				return nil, errors.New("not a JSON object")
			}
			if len(stack) == maxDepth {
				return nil, errors.New("JSON nested too deeply")
			}
			objects++
			stack = append(stack, frame{object: c == '{', wantKey: c == '{', id: objects})
		case '}', ']':
			if len(stack) == 1 {
				endMember(i)
			}
			stack = stack[:len(stack)-1]
		case ',':
			if len(stack) == 1 {
				endMember(i)
			}
			if top := &stack[len(stack)-1]; top.object {
				top.wantKey = true
			}
		case ':':
			if len(stack) == 1 {
				valueStart = i + 1
			}
		case '"':
			start := i
			for i++; text[i] != '"'; i++ {
				if text[i] == '\\' {
					i++
				}
			}
			if len(stack) == 0 {
				return nil, errors.New("not a JSON object")
			}
			top := &stack[len(stack)-1]
			if !top.wantKey {
				continue
			}
			top.wantKey = false
			name := text[start+1 : i]
			if strings.IndexByte(name, '\\') >= 0 {
				name, _ = unmarshal[string](text[start : i+1]) // valid JSON: cannot fail
			}
			if err := checkName(name, len(stack) == 1, objectName{top.id, strings.ToLower(name)}, &seen); err != nil {
				return nil, err
			}
			if len(stack) == 1 {
				members = append(members, Member{Name: name})
			}
		default:
			if len(stack) == 0 && c > ' ' {
				return nil, errors.New("not a JSON object")
			}
		}
	}
	return members, nil
}

// unmarshal decodes the JSON text of one member value. It is a function
// of its own so that only a value that needs encoding/json costs memory:
// the address json.Unmarshal is given moves its variable to the heap,
// which would otherwise be every member name checkObject reads, or the
// decoded claims as a whole.
func unmarshal[T any](text string) (T, error) {
	var v T
	err := json.Unmarshal([]byte(text), &v)
	return v, err
}

// A member whose value is null is absent, as encoding/json has it.
func (m Member) null() bool { return m.Value == "null" }

func (m Member) wrongType() error { return fmt.Errorf("%.32q has the wrong type", m.Name) }

// str decodes a string member into dst.
func str(m Member, dst *string) error {
	v := m.Value
	switch {
	case m.null():
		return nil
	case v[0] != '"':
		return m.wrongType()
	case strings.IndexByte(v, '\\') < 0:
		*dst = v[1 : len(v)-1]
		return nil
	}
	u, err := unmarshal[string](v) // escapes
	if err == nil {
		*dst = u
	}
	return err
}

// stringArray decodes an array of strings into dst.
func stringArray(m Member, dst *[]string) error {
	if m.null() {
		return nil
	}
	if m.Value[0] != '[' {
		return m.wrongType()
	}
	a, err := unmarshal[[]string](m.Value)
	if err != nil {
		return m.wrongType()
	}
	*dst = a
	return nil
}

// decodedNames are the header and claim names we read: those
// header.decode and decodeClaims look for.
var decodedNames = []string{"alg", "kid", "typ", "crit", "b64",
	"iss", "sub", "client_id", "aud", "iat", "nbf", "exp", "jti", "scope", "cid", "azp", "cnf"}

// objectName is a member name, lower-cased, in the object numbered id.
type objectName struct {
	id   int
	name string
}

// nameSet is the names checkName has seen: a short list, which costs
// less than a map for the usual few members, then a map, so that a token
// of very many members costs linear time, not quadratic.
type nameSet struct {
	list [32]objectName
	n    int
	m    map[objectName]struct{}
}

// add reports whether k was in the set already, and adds it.
func (s *nameSet) add(k objectName) (dup bool) {
	if s.m == nil {
		if slices.Contains(s.list[:s.n], k) {
			return true
		}
		if s.n < len(s.list) {
			s.list[s.n] = k
			s.n++
			return false
		}
		s.m = make(map[objectName]struct{}, 2*len(s.list))
		for _, n := range s.list {
			s.m[n] = struct{}{}
		}
	}
	if _, dup := s.m[k]; dup {
		return true
	}
	s.m[k] = struct{}{}
	return false
}

// checkName refuses a member name that another of its object already
// has, ignoring case. JWT libraries built on encoding/json match names to
// struct fields with Unicode case folding, so to them "sub", "SUB" and
// "ſub" are one name: a top-level member that folds to a name we read
// must be spelled exactly so, or such a library would read a different
// claim than we do.
func checkName(name string, topLevel bool, key objectName, seen *nameSet) error {
	// A name we read, spelled as we read it, folds into no other: the
	// names we read differ from each other in more than case.
	if topLevel && !slices.Contains(decodedNames, name) {
		ascii := isASCII(name)
		for _, k := range decodedNames {
			// Folding keeps the length of ASCII: only "ſ" (U+017F) and the
			// Kelvin sign fold into ASCII from longer encodings.
			if (!ascii || len(name) == len(k)) && name != k && strings.EqualFold(name, k) {
				return fmt.Errorf("member %.32q is not %q: names are case-sensitive", name, k)
			}
		}
	}
	if seen.add(key) {
		return fmt.Errorf("duplicate member %.32q", name)
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// audience is "aud": a string or an array of strings (RFC 7519 §4.1.3).
type audience []string

func (a *audience) decode(m Member) error {
	if m.Value[0] == '"' {
		*a = audience{""}
		return str(m, &(*a)[0])
	}
	return stringArray(m, (*[]string)(a))
}

// stringList is an external issuer's "scope" or roles claim: a
// space-separated string (RFC 8693 §4.2) or an array of strings (SAP
// XSUAA, Keycloak, Entra ID).
type stringList []string

func (l *stringList) decode(m Member) error {
	if m.Value[0] == '"' {
		var s string
		err := str(m, &s)
		*l = strings.Fields(s)
		return err
	}
	return stringArray(m, (*[]string)(l))
}

type dateError struct{ msg string }

func (e *dateError) Error() string { return e.msg }

const maxNumericDate = 253402300799 // 9999-12-31T23:59:59Z

// optionalDate is a decoded NumericDate (RFC 7519: seconds since the
// epoch, a JSON number), or none (set false). Strings, negatives and
// dates past year 9999 are refused rather than guessed at.
type optionalDate struct {
	t   time.Time
	set bool
}

// date decodes a NumericDate member; null is absent.
func date(m Member) (optionalDate, error) {
	// A string would fail to parse too, but say why: issuers that quote
	// dates exist and are refused on purpose. json.Valid has vouched for
	// the syntax, so ParseFloat sees a JSON number or a literal.
	if m.null() {
		return optionalDate{}, nil
	}
	f, err := strconv.ParseFloat(m.Value, 64)
	if m.Value[0] == '"' || err != nil {
		return optionalDate{}, &dateError{"dates (exp, nbf, iat) must be JSON numbers"}
	}
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return optionalDate{}, &dateError{"a date (exp, nbf, iat) is out of range"}
	}
	sec, frac := math.Modf(f)
	return optionalDate{time.Unix(int64(sec), int64(frac*1e9)), true}, nil
}
