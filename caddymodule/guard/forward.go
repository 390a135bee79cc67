package guard

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// IdentityFields are what the identity headers carry, the keys of an
// identity-header map, in the order of Forwarder's resolved names.
var IdentityFields = [4]string{"client_id", "subject", "roles", "scope"}

// defaultIdentityHeaders are the headers set when none are configured.
var defaultIdentityHeaders = map[string]string{
	"client_id": "X-OAuth-Client-ID",
	"subject":   "X-OAuth-Subject",
	"roles":     "X-OAuth-Roles",
	"scope":     "X-OAuth-Scope",
}

// CheckIdentityHeader reports why the header name cannot carry the
// identity field, if it cannot; an empty name (the field turned off) can.
func CheckIdentityHeader(field, name string) error {
	if !slices.Contains(IdentityFields[:], field) {
		return errors.New("identity_headers: unknown field " + field + " (want client_id, subject, roles, scope)")
	}
	if strings.EqualFold(name, "Authorization") || strings.EqualFold(name, "Host") {
		return errors.New("identity_headers: " + name + " cannot carry the identity")
	}
	if name != "" && !httpguts.ValidHeaderFieldName(name) {
		return fmt.Errorf("identity_headers: %q is not a header name", name)
	}
	return nil
}

// CheckIdentityHeaders is CheckIdentityHeader for every entry of m.
func CheckIdentityHeaders(m map[string]string) error {
	for field, name := range m {
		if err := CheckIdentityHeader(field, name); err != nil {
			return err
		}
	}
	return nil
}

// ForwardOptions are what a Forwarder is built from.
type ForwardOptions struct {
	// IdentityHeaders names the header of each of IdentityFields; an
	// empty name sets none. nil means X-OAuth-Client-ID, X-OAuth-Subject,
	// X-OAuth-Roles and X-OAuth-Scope.
	IdentityHeaders map[string]string
	// KeepAuthorization passes the Authorization header, and the token
	// cookie, on to the backend.
	KeepAuthorization bool
	// TokenQuery and TokenCookie are Guard.QueryParam and Guard.Cookie:
	// where else a token may have come from.
	TokenQuery  string
	TokenCookie string
	// CertificateHeader is where a trusted proxy puts the client's
	// certificate (the oauth app's client_certificates header). It never
	// reaches the backend: from anyone but a trusted proxy the guard
	// ignored it, and a backend that trusts it too would take a
	// certificate the client made up.
	CertificateHeader string
}

// Forwarder decides what the backend receives of a request passed on:
// no token, no identity the client made up, and the caller's identity
// as the guard verified it. It is built once, with the identity-header
// names resolved, so that a request neither walks a map nor
// canonicalizes a name.
type Forwarder struct {
	names   [4]string // canonical names of the identity headers, by IdentityFields
	aliases [4]string // the same, with "_" read as "-"
	opts    ForwardOptions
}

// NewForwarder builds the Forwarder of o. Names that CheckIdentityHeaders
// refuses are not looked at again here.
func NewForwarder(o ForwardOptions) *Forwarder {
	if o.IdentityHeaders == nil {
		o.IdentityHeaders = defaultIdentityHeaders
	}
	o.CertificateHeader = textproto.CanonicalMIMEHeaderKey(o.CertificateHeader)
	f := &Forwarder{opts: o}
	for i, field := range IdentityFields {
		if name := o.IdentityHeaders[field]; name != "" {
			f.names[i] = textproto.CanonicalMIMEHeaderKey(name)
			f.aliases[i] = dashed(f.names[i])
		}
	}
	return f
}

// Forward prepares r, which d lets through, for the backend: it removes
// client-sent copies of the identity headers, the token (Authorization,
// the token cookie, the query parameter) unless KeepAuthorization, and
// sets the identity headers when d verified a token. It returns the
// identity it told, for the caller's placeholders.
func (f *Forwarder) Forward(r *http.Request, d *Decision) Identity {
	// Whatever the decision, the backend must never see identity headers
	// the client made up.
	f.stripIdentityHeaders(r.Header)
	// A DPoP proof is spent here (its jti is remembered) and names this
	// gateway's URL: it is of no use to the backend, even with
	// KeepAuthorization, and goes no further.
	// By their canonical names: Del would canonicalize "DPoP" anew, an
	// allocation on every request.
	delete(r.Header, "Dpop")
	if f.opts.CertificateHeader != "" {
		delete(r.Header, f.opts.CertificateHeader)
	}
	if !f.opts.KeepAuthorization {
		r.Header.Del("Authorization")
		if f.opts.TokenCookie != "" {
			dropCookie(r, f.opts.TokenCookie)
		}
	}
	// No query, nothing to parse: most requests have none.
	if f.opts.TokenQuery != "" && r.URL.RawQuery != "" {
		if q := r.URL.Query(); q.Has(f.opts.TokenQuery) {
			q.Del(f.opts.TokenQuery)
			r.URL.RawQuery = q.Encode()
		}
	}
	if d.Claims == nil {
		return Identity{Roles: strings.Join(d.Roles, ",")}
	}
	var id Identity
	if d.told != nil {
		id = *d.told
	} else { // a Decision that Check did not make
		id = tell(d.Subject, d.ClientID, d.Roles, d.Claims.Scope)
	}
	f.setIdentityHeaders(r.Header, &id)
	return id
}

// setIdentityHeaders sets the identity headers to what id tells, those
// whose name is configured and whose value is not empty. The values of
// one request share one allocation; they are the request's own, since a
// later handler may change a header's values in place.
func (f *Forwarder) setIdentityHeaders(h http.Header, id *Identity) {
	values := [...]string{id.ClientID, id.Subject, id.Roles, id.scopeList}
	n := 0
	for i, v := range values {
		if f.names[i] != "" && v != "" {
			n++
		}
	}
	room := make([]string, 0, n)
	for i, v := range values {
		if name := f.names[i]; name != "" && v != "" {
			room = append(room, v)
			h[name] = room[len(room)-1 : len(room) : len(room)]
		}
	}
}

// stripIdentityHeaders removes client-sent copies of the identity
// headers, including spellings with "_" for "-", which CGI, PHP and some
// proxies read as the same header.
func (f *Forwarder) stripIdentityHeaders(h http.Header) {
	for k := range h {
		if slices.Contains(f.aliases[:], dashed(k)) {
			delete(h, k)
		}
	}
}

// dashed is a header name with "_" read as "-", canonical.
func dashed(name string) string {
	if strings.IndexByte(name, '_') < 0 {
		return name
	}
	return textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(name, "_", "-"))
}

// listable drops the values that a comma- or space-separated list could
// not carry as one: an external issuer's scope array may hold "a,admin",
// which a backend would read as two scopes.
// values itself is returned when it has none to drop.
func listable(values []string) []string {
	var out []string
	for i, v := range values {
		switch {
		case !strings.ContainsAny(v, ", \t\r\n"):
			if out != nil {
				out = append(out, v)
			}
		case out == nil:
			out = append(make([]string, 0, len(values)-1), values[:i]...)
		}
	}
	if out == nil {
		return values
	}
	return out
}

// dropCookie removes the cookie name from the request: a token sent as a
// cookie goes no further than one sent in Authorization. The other
// cookies are kept as sent, in one Cookie header; a request without the
// cookie is left alone.
func dropCookie(r *http.Request, name string) {
	if !slices.ContainsFunc(r.Header.Values("Cookie"), func(line string) bool { return strings.Contains(line, name) }) {
		return
	}
	var keep []string
	for _, line := range r.Header.Values("Cookie") {
		for part := range strings.SplitSeq(line, ";") {
			n, _, _ := strings.Cut(part, "=")
			if strings.TrimSpace(n) != name {
				keep = append(keep, strings.TrimSpace(part))
			}
		}
	}
	r.Header.Del("Cookie")
	if len(keep) > 0 {
		r.Header.Set("Cookie", strings.Join(keep, "; "))
	}
}
