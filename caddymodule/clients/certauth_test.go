package clients_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/clientcert/certtest"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

func TestAuthenticateCertificate_ByCAAndNameOrByRegisteredKey(t *testing.T) {
	ca, otherCA := certtest.NewCA(t, "client CA"), certtest.NewCA(t, "other CA")
	subject := pkix.Name{CommonName: "sender", Organization: []string{"Example"}, Country: []string{"DE"}}
	good := ca.Issue(t, certtest.Options{Subject: subject, DNS: []string{"sender.example"},
		URIs: []string{"spiffe://example/sender"}, IPs: []net.IP{net.ParseIP("10.0.0.7")}, Emails: []string{"erp@example.com"}})
	foreign := otherCA.Issue(t, certtest.Options{Subject: subject, DNS: []string{"sender.example"}})
	expired := ca.Issue(t, certtest.Options{Subject: subject, NotAfter: time.Now().Add(-time.Minute)})
	serverOnly := ca.Issue(t, certtest.Options{Subject: subject, Server: true})
	self := certtest.SelfSigned(t, certtest.Options{Subject: pkix.Name{CommonName: "self"}})
	selfOther := certtest.SelfSigned(t, certtest.Options{Subject: pkix.Name{CommonName: "self"}})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Leaf)
	// SAP's client certificates: two OUs, L after OU, in this order; a
	// DN copied from openssl -nameopt RFC2253 lists them in reverse.
	sap := ca.Issue(t, certtest.Options{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: []int{2, 5, 4, 6}, Value: "DE"}, {Type: []int{2, 5, 4, 10}, Value: "SAP SE"},
		{Type: []int{2, 5, 4, 11}, Value: "SAP Cloud Platform Clients"}, {Type: []int{2, 5, 4, 11}, Value: "sub-1"},
		{Type: []int{2, 5, 4, 7}, Value: "EU10"}, {Type: []int{2, 5, 4, 3}, Value: "erp"},
	}}})

	file := `{"clients": [
	  {"id": "dn", "name": "dn", "tls_client_auth_subject_dn": "cn=sender, O=Example, C=DE"},
	  {"id": "dns", "name": "dns", "tls_client_auth_san_dns": "SENDER.example"},
	  {"id": "uri", "name": "uri", "tls_client_auth_san_uri": "spiffe://example/sender"},
	  {"id": "ip", "name": "ip", "tls_client_auth_san_ip": "10.0.0.7"},
	  {"id": "email", "name": "email", "tls_client_auth_san_email": "erp@example.com"},
	  {"id": "otherdn", "name": "otherdn", "tls_client_auth_subject_dn": "CN=someone else,O=Example,C=DE"},
	  {"id": "sap", "name": "sap", "tls_client_auth_subject_dn": "CN=erp,L=EU10,OU=sub-1,OU=SAP Cloud Platform Clients,O=SAP SE,C=DE"},
	  {"id": "sapreordered", "name": "sapreordered", "tls_client_auth_subject_dn": "CN=erp,OU=SAP Cloud Platform Clients+OU=sub-1,O=SAP SE,L=EU10,C=DE"},
	  {"id": "self", "name": "self", "tls_client_certificates": [` + jsonString(string(self.CertPEM)) + `]},
	  {"id": "off", "name": "off", "disabled": true, "tls_client_auth_san_dns": "sender.example"}
	]}`
	f, err := clients.Parse([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	reg := clients.NewRegistry(f)
	cases := []struct {
		name   string
		id     string
		cert   *certtest.Cert
		roots  *x509.CertPool
		wantOK bool
	}{
		{"the subject DN, written otherwise, authenticates", "dn", good, roots, true},
		{"a DNS name authenticates, whatever its case", "dns", good, roots, true},
		{"a URI authenticates", "uri", good, roots, true},
		{"an IP address authenticates", "ip", good, roots, true},
		{"an email address authenticates", "email", good, roots, true},
		{"another subject does not", "otherdn", good, roots, false},
		{"an SAP client certificate's DN, as openssl prints it, authenticates", "sap", sap, roots, true},
		{"the same attributes in another order do not", "sapreordered", sap, roots, false},
		{"a certificate of an unknown CA does not", "dns", foreign, roots, false},
		{"no trusted CA configured, no tls_client_auth", "dns", good, nil, false},
		{"an expired certificate does not", "dn", expired, roots, false},
		{"a certificate for servers only does not", "dn", serverOnly, roots, false},
		{"a disabled client cannot", "off", good, roots, false},
		{"an unknown client cannot", "nobody", good, roots, false},
		{"the registered self-signed certificate authenticates", "self", self, nil, true},
		{"another self-signed certificate with the same subject does not", "self", selfOther, roots, false},
		{"a CA-issued certificate does not authenticate a self-signed client", "self", good, roots, false},
		{"a self-signed certificate does not authenticate a tls_client_auth client", "dn", self, roots, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := reg.AuthenticateCertificate(tc.id, tc.cert.Leaf, nil, clients.CertificateCheck{Roots: tc.roots})
			switch {
			case tc.wantOK && (err != nil || c.ID != tc.id):
				t.Errorf("got %v, %v; want client %s", c, err, tc.id)
			case !tc.wantOK && !errors.Is(err, clients.ErrCertificate):
				t.Errorf("got %v, %v; want ErrCertificate", c, err)
			}
		})
	}
}

func TestParse_CertificateFieldsAreChecked(t *testing.T) {
	self := certtest.SelfSigned(t, certtest.Options{Subject: pkix.Name{CommonName: "self"}})
	cases := []struct{ name, client, wantErr string }{
		{"a client with neither secret nor certificate cannot authenticate", `{"id": "a", "name": "a"}`, "no credential"},
		{"two names of the certificate are one too many", `{"id": "a", "name": "a", "tls_client_auth_subject_dn": "CN=a", "tls_client_auth_san_dns": "a.example"}`, "register one name"},
		{"a subject DN must be a DN", `{"id": "a", "name": "a", "tls_client_auth_subject_dn": "sender"}`, "not a distinguished name"},
		{"an IP must be an IP", `{"id": "a", "name": "a", "tls_client_auth_san_ip": "10.0.0"}`, "not an IP address"},
		{"a certificate must be PEM", `{"id": "a", "name": "a", "tls_client_certificates": ["MIIB"]}`, "not a PEM certificate"},
		{"self-signed and CA names do not mix", `{"id": "a", "name": "a", "tls_client_auth_san_dns": "a.example", "tls_client_certificates": [` + jsonString(string(self.CertPEM)) + `]}`, "not both"},
		{"a certificate alone is enough", `{"id": "a", "name": "a", "tls_client_certificates": [` + jsonString(string(self.CertPEM)) + `]}`, ""},
		{"bound tokens with a subject name is enough", `{"id": "a", "name": "a", "tls_client_auth_san_dns": "a.example", "tls_client_certificate_bound_access_tokens": true}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := clients.Parse([]byte(`{"clients": [` + tc.client + `]}`))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("got %v, want an error saying %q", err, tc.wantErr)
			}
		})
	}
}

func TestNormalizeDN_SameNameWrittenOtherwise(t *testing.T) {
	cases := []struct{ in, want string }{
		{"CN=sender,O=Example,C=DE", "CN=sender,O=Example,C=DE"},
		{"cn=sender, o=Example , c=DE", "CN=sender,O=Example,C=DE"},
		{`CN=Doe\, John,O=Example`, `CN=Doe\, John,O=Example`},
		{"CN=a+UID=7,O=b", "CN=a+UID=7,O=b"},
		{"sender", ""},
		{"CN=,O=b", ""},
	}
	for _, tc := range cases {
		if got := clients.NormalizeDN(tc.in); got != tc.want {
			t.Errorf("NormalizeDN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// FuzzNormalizeDN: any registered or presented DN normalizes without a
// panic, and a normalized DN is its own normal form, so that comparing
// two normal forms is comparing names.
func FuzzNormalizeDN(f *testing.F) {
	for _, s := range []string{"CN=sender,O=Example,C=DE", `CN=Doe\, John , O = x`, "CN=a+UID=7", `CN=a\ `, `CN=\`, "=,=", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := clients.NormalizeDN(s)
		if n != "" && clients.NormalizeDN(n) != n {
			t.Fatalf("NormalizeDN(%q) = %q, which normalizes to %q", s, n, clients.NormalizeDN(n))
		}
	})
}
