package issuers

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
)

const (
	xsappname = "orders!t4711"
	audience  = "orders!t4711"
)

var start = time.Unix(1_800_000_000, 0)

// testKeys are generated once: RSA keys take a while.
var testKeys = sync.OnceValue(func() (k struct {
	rsa1, rsa2, rsaWeak *rsa.PrivateKey
	ec                  *ecdsa.PrivateKey
}) {
	var err error
	for _, p := range []**rsa.PrivateKey{&k.rsa1, &k.rsa2} {
		if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	}
	if k.rsaWeak, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
		panic(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	return k
})

// publicJWK is the JWKS entry of priv's public key with the given members
// ("kid", "alg", …) added; a member set to nil is removed.
func publicJWK(t testing.TB, priv crypto.Signer, members map[string]any) map[string]any {
	t.Helper()
	k, err := jwk.Import(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return withMembers(t, k, members)
}

// privateJWK is the JWK of priv itself, private members included.
func privateJWK(t testing.TB, priv crypto.Signer, members map[string]any) map[string]any {
	t.Helper()
	k, err := jwk.Import(priv)
	if err != nil {
		t.Fatal(err)
	}
	return withMembers(t, k, members)
}

func withMembers(t testing.TB, k jwk.Key, members map[string]any) map[string]any {
	raw, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for name, v := range members {
		if v == nil {
			delete(m, name)
		} else {
			m[name] = v
		}
	}
	return m
}

// idp is a fake issuer on 127.0.0.1: it serves a JWKS at /jwks and any
// other documents it is given, and counts what it is asked for.
type idp struct {
	*httptest.Server
	mu      sync.Mutex
	docs    map[string][]byte // path → body
	moved   map[string]string // path → redirect target
	status  int               // when not 0, every answer
	fetches atomic.Int32      // of /jwks
	gate    func()            // when set, called before answering /jwks
	hits    sync.Map          // path → *atomic.Int32
}

func newIDP(t testing.TB, jwks ...map[string]any) *idp {
	p := &idp{docs: map[string][]byte{}, moved: map[string]string{}}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	p.setKeys(t, jwks...)
	return p
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	n, _ := p.hits.LoadOrStore(r.URL.Path, new(atomic.Int32))
	n.(*atomic.Int32).Add(1)
	if r.URL.Path == "/jwks" {
		p.fetches.Add(1)
		if p.gate != nil {
			p.gate()
		}
	}
	p.mu.Lock()
	body, ok := p.docs[r.URL.Path]
	target := p.moved[r.URL.Path]
	status := p.status
	p.mu.Unlock()
	switch {
	case target != "":
		http.Redirect(w, r, target, http.StatusFound)
	case status != 0:
		w.WriteHeader(status)
	case !ok:
		http.NotFound(w, r)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}
}

func (p *idp) hitsOf(path string) int32 {
	n, ok := p.hits.Load(path)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

func (p *idp) setKeys(t testing.TB, jwks ...map[string]any) {
	t.Helper()
	p.setDoc(t, "/jwks", map[string]any{"keys": append([]map[string]any{}, jwks...)})
}

func (p *idp) setDoc(t testing.TB, path string, doc any) {
	t.Helper()
	body, ok := doc.([]byte)
	if !ok {
		var err error
		if body, err = json.Marshal(doc); err != nil {
			t.Fatal(err)
		}
	}
	p.mu.Lock()
	p.docs[path] = body
	p.mu.Unlock()
}

// redirect makes path redirect to target.
func (p *idp) redirect(path, target string) {
	p.mu.Lock()
	p.moved[path] = target
	p.mu.Unlock()
}

// setRedirects makes /r0 reach /jwks after n redirects.
func (p *idp) setRedirects(n int) {
	for i := range n - 1 {
		p.redirect(fmt.Sprint("/r", i), fmt.Sprint("/r", i+1))
	}
	p.redirect(fmt.Sprint("/r", n-1), "/jwks")
}

func (p *idp) setStatus(status int) {
	p.mu.Lock()
	p.status = status
	p.mu.Unlock()
}

// reports collects what an Issuer reports.
type reports struct {
	mu   sync.Mutex
	errs []error
}

func (r *reports) add(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *reports) list() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// newIssuer returns an Issuer of p's keys with the XSUAA profile and a
// settable clock; edit changes the config first.
func newIssuer(t testing.TB, p *idp, clock *keystest.Clock, edit func(*Config)) (*Issuer, *reports) {
	t.Helper()
	rep := &reports{}
	cfg := Config{
		Issuer:     p.URL,
		JWKSURL:    p.URL + "/jwks",
		Audience:   audience,
		Types:      []string{"JWT"},
		HTTPClient: p.Client(),
		Now:        clock.Now,
		Report:     rep.add,
	}
	if edit != nil {
		edit(&cfg)
	}
	i, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return i, rep
}

func mustFetch(t testing.TB, i *Issuer) {
	t.Helper()
	if err := i.Fetch(context.Background()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
}

// xsuaaClaims are the claims of a client-credentials token of SAP XSUAA.
func xsuaaClaims(issuer string, now time.Time) map[string]any {
	return map[string]any{
		"jti":         "5b2f0c1e9d8a4c7b",
		"ext_attr":    map[string]any{"enhancer": "XSUAA", "subaccountid": "0f1e2d3c", "zdn": "acme"},
		"sub":         "sb-sender!b1234|" + xsappname,
		"authorities": []string{"uaa.resource", xsappname + ".ESBMessaging.send"},
		"scope":       []string{xsappname + ".ESBMessaging.send", xsappname + ".Orders.send", "uaa.resource"},
		"cid":         "sb-sender!b1234|" + xsappname,
		"azp":         "sb-sender!b1234|" + xsappname,
		"grant_type":  "client_credentials",
		"rev_sig":     "a1b2c3d4",
		"iat":         now.Add(-time.Minute).Unix(),
		"exp":         now.Add(time.Hour).Unix(),
		"iss":         issuer,
		"zid":         "0f1e2d3c",
		"aud":         []string{"uaa", audience, "sb-sender!b1234|" + xsappname},
	}
}

// wantErr reports whether err is as expected: nil for reason "", else
// an error mentioning reason.
func wantErr(t *testing.T, what string, err error, reason string) bool {
	t.Helper()
	switch {
	case reason == "" && err != nil:
		t.Errorf("%s = %v, want no error", what, err)
	case reason != "" && (err == nil || !strings.Contains(err.Error(), reason)):
		t.Errorf("%s = %v, want an error mentioning %q", what, err, reason)
	default:
		return true
	}
	return false
}

// sign makes a token with the given protected headers and claims.
func sign(t testing.TB, alg jwa.SignatureAlgorithm, key any, headers map[string]any, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	h := jws.NewHeaders()
	for name, v := range headers {
		if err := h.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(tok)
}
