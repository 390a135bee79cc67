package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// docs/operations.md, "Securing Redis": a fleet that reaches Redis over
// TLS (tls_ca_file) as the ACL user the docs define does everything it
// does as the default user (rate-limit counts included), and Redis
// refuses it nothing.
func TestRedisFleet_OverTLSAsTheDocumentedACLUserNothingIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "redis.crt"), filepath.Join(dir, "redis.key")
	writeSelfSignedCert(t, cert, key)
	tlsPort := freePort(t)
	r := startRedis(t, "--tls-port", tlsPort, "--tls-cert-file", cert, "--tls-key-file", key,
		"--tls-ca-cert-file", cert, "--tls-auth-clients", "no")

	password := rand.Text()
	sensitive.add(kindSecret, password)
	acl := documentedACL(t)
	args := []any{}
	for _, f := range strings.Fields(strings.Replace(acl, ">CHANGE-ME", ">"+password, 1)) {
		args = append(args, f)
	}
	if _, err := r.do(t, args...); err != nil {
		t.Fatalf("the ACL line of docs/operations.md: %v", err)
	}

	state := redisState("rediss://"+net.JoinHostPort("127.0.0.1", tlsPort)+"/0", sealingKeys(t),
		"username oauthgate", "password "+password, "tls_ca_file "+cert)
	fleet := newRedisFleet(t, state, 2)
	a, b := fleet[0], fleet[1]

	jwt := a.token(t, a.A)
	b.call(t, http.MethodGet, "/http/flow", jwt, "").wantStatus(t, http.StatusOK)
	opaque := a.tokenOfFormat(t, a.A, "opaque")
	b.call(t, http.MethodPost, "/http/flow", opaque, "{}").wantStatus(t, http.StatusOK)
	revoked := a.revoke(t, jwt, a.A)
	until(t, b, jwt, http.StatusUnauthorized, revoked, propagation, "a JWT revoked at A")
	a.adminKeys(t, http.MethodPost, "/oauth/keys/rotate?now=1")
	b.call(t, http.MethodGet, "/http/flow", a.token(t, a.A), "").wantStatus(t, http.StatusOK)
	a.tokenRequest(t, http.MethodPost, url.Values{"grant_type": {"client_credentials"}}, nil, a.A.ID, "wrong").wantStatus(t, http.StatusUnauthorized)
	// A policy limit: the instances add their counts up in Redis.
	a.replacePolicy(t, limitRules("{rate: 1000/s, quota: 100000/day}"), nil)
	a.call(t, http.MethodGet, "/http/flow", a.token(t, a.A), "").wantStatus(t, http.StatusOK)
	time.Sleep(300 * time.Millisecond) // three syncs of the counts

	refused, err := r.do(t, "ACL", "LOG")
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := refused.([]any); len(l) != 0 {
		t.Errorf("Redis refused the gateway's user %d times: %v", len(l), refused)
	}
	if n, err := r.do(t, "EXISTS", "oauthgate:revoked"); err != nil || n != int64(1) {
		t.Errorf("no revocation in Redis: EXISTS %v (%v)", n, err)
	}
}

// documentedACL is the ACL SETUSER line of docs/operations.md.
func documentedACL(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(doc), "\n") {
		if strings.HasPrefix(line, "ACL SETUSER oauthgate ") {
			return line
		}
	}
	t.Fatal("docs/operations.md has no ACL SETUSER oauthgate line")
	return ""
}

// writeSelfSignedCert writes a certificate for 127.0.0.1 that is its own
// CA, and its key, in PEM.
func writeSelfSignedCert(t *testing.T, certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redis test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
}
