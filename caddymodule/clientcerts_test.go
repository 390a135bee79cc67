package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/clientcert/certtest"
)

func TestClientCertificates_ProvisionReadsTheCAsAndRefusesWhatCannotWork(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, certtest.NewCA(t, "client CA").CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		cc      *ClientCertificates
		wantErr string
		wantCAs bool
	}{
		{name: "off", cc: nil},
		{name: "self-signed only", cc: &ClientCertificates{}},
		{name: "a CA and a header", cc: &ClientCertificates{TrustedCAFiles: []string{ca}, Header: "X-Client-Cert"}, wantCAs: true},
		{name: "a missing CA file", cc: &ClientCertificates{TrustedCAFiles: []string{filepath.Join(dir, "missing.pem")}}, wantErr: "missing.pem"},
		{name: "a CA file without a certificate", cc: &ClientCertificates{TrustedCAFiles: []string{notPEM}}, wantErr: "holds no PEM certificate"},
		{name: "the Authorization header", cc: &ClientCertificates{Header: "authorization"}, wantErr: "must not be Authorization"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &App{ClientCertificates: tc.cc}
			err := a.provisionCertificates()
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if (a.certs != nil) != (tc.cc != nil) || (a.clientCAs != nil) != tc.wantCAs {
				t.Errorf("certs %v, CAs %v", a.certs, a.clientCAs)
			}
			if tc.cc == nil && (a.serverCertificates() != nil || a.guardCertificates() != nil) {
				t.Error("certificates off, yet the handlers get a source (a typed nil?)")
			}
		})
	}
}
