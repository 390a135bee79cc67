package command

import (
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/clientcert/certtest"
	"github.com/oauthgate/oauthgate/caddymodule/clients"
)

func TestClientAdd_RegistersACertificateInsteadOfASecret(t *testing.T) {
	dir := t.TempDir()
	self := certtest.SelfSigned(t, certtest.Options{Subject: pkix.Name{CommonName: "edge"}})
	certFile := filepath.Join(dir, "edge.pem")
	if err := os.WriteFile(certFile, self.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		args    []string
		check   func(*clients.Client) bool
		wantErr string
	}{
		{name: "a subject DN", args: []string{"--tls-subject", "CN=erp,O=Example,C=DE"},
			check: func(c *clients.Client) bool { return c.TLSSubjectDN == "CN=erp,O=Example,C=DE" }},
		{name: "a DNS name", args: []string{"--tls-san", "dns:erp.example"},
			check: func(c *clients.Client) bool { return c.TLSSANDNS == "erp.example" }},
		{name: "an own certificate", args: []string{"--certificate", certFile},
			check: func(c *clients.Client) bool { return len(c.Certificates) == 1 }},
		{name: "an unknown SAN type", args: []string{"--tls-san", "upn:erp"}, wantErr: "want dns:NAME"},
		{name: "a subject and a certificate", args: []string{"--tls-subject", "CN=a", "--certificate", certFile}, wantErr: "give one"},
		{name: "a file that is no certificate", args: []string{"--certificate", filepath.Join(dir, "clients.json")}, wantErr: "--certificate"},
		{name: "a bad subject", args: []string{"--tls-subject", "erp"}, wantErr: "not a distinguished name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "clients.json")
			if err := os.WriteFile(filepath.Join(dir, "clients.json"), []byte(`{"clients": []}`), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := runClient(t, "", append([]string{"add", "--clients", path, "--name", "c"}, tc.args...)...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				if _, statErr := os.Stat(path); statErr == nil {
					t.Error("a refused command wrote the clients file")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, "client_secret:") || !strings.Contains(out, "by its certificate alone") {
				t.Errorf("output:\n%s\nwant no secret and the certificate method", out)
			}
			f, err := clients.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			c := f.Find(field(t, idLine, out))
			if c == nil || len(c.Secrets) != 0 || !tc.check(c) {
				t.Fatalf("stored client %+v", c)
			}
			shown, err := runClient(t, "", "show", "--clients", path, "--id", c.ID)
			if err != nil || !strings.Contains(shown, "certificate:    "+c.CertificateMethod()+" by ") {
				t.Errorf("client show: %v\n%s", err, shown)
			}
		})
	}
}
