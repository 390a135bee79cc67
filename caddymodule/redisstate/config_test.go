package redisstate

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNew_RefusesWhatItCannotUseSafely(t *testing.T) {
	noCert := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(noCert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{"no Sealer", Config{URL: "redis://127.0.0.1:6379"}, "Sealer is required"},
		{"a scheme other than redis or rediss", Config{URL: "http://127.0.0.1:6379"}, "scheme"},
		{"a unix socket", Config{URL: "unix:///run/redis.sock"}, "scheme"},
		{"no URL and no Sentinels", Config{}, "scheme"},
		{"options in the query", Config{URL: "redis://127.0.0.1:6379?read_timeout=-1"}, "query"},
		{"skip_verify in the query", Config{URL: "rediss://127.0.0.1:6379?skip_verify=true"}, "query"},
		{"a database that is no number", Config{URL: "redis://127.0.0.1:6379/x"}, "database"},
		{"Sentinels without a MasterName", Config{Sentinels: []string{"127.0.0.1:26379"}}, "MasterName"},
		{"a MasterName without Sentinels", Config{URL: "redis://127.0.0.1", MasterName: "m"}, "Sentinels"},
		{"a CA file without a certificate", Config{URL: "rediss://127.0.0.1", CAFile: noCert}, "no PEM certificate"},
		{"a CA file that is missing", Config{URL: "rediss://127.0.0.1", CAFile: noCert + ".missing"}, "CA file"},
		{"a prefix longer than a name may be", Config{URL: "redis://127.0.0.1", Prefix: strings.Repeat("p", maxName+1)}, "prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.Sealer == nil && tt.want != "Sealer is required" {
				tt.cfg.Sealer = newSealer(t)
			}
			e, err := New(tt.cfg)
			if err == nil {
				_ = e.Close()
				t.Fatalf("New succeeded, want an error about %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestNew_ErrorsNeverRepeatThePassword(t *testing.T) {
	for _, url := range []string{
		"redis://user:s3cret-pw@127.0.0.1:notaport/0",
		"redis://user:s3cret-pw@127.0.0.1:6379/notadb",
		"redis://user:s3cret-pw@127.0.0.1:6379/0?dial_timeout=x",
		"redis://user:s3cret-pw@[::1/0",
		"rediss ://user:s3cret-pw@host/0",
	} {
		_, err := New(Config{URL: url, Sealer: newSealer(t)})
		if err == nil {
			t.Errorf("New(%q) succeeded", url)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("New(%q): error %q repeats the password", url, err)
		}
	}
}

func TestOptions_TakeTheURLAndBoundEverything(t *testing.T) {
	caFile := writeCA(t)
	tests := []struct {
		name  string
		cfg   Config
		check func(t *testing.T, c Config)
	}{
		{"user, password and database come from the URL", Config{URL: "redis://alice:pw1@cache.internal:6380/3"}, func(t *testing.T, c Config) {
			o, _ := options(c)
			if o.Addr != "cache.internal:6380" || o.Username != "alice" || o.Password != "pw1" || o.DB != 3 || o.TLSConfig != nil {
				t.Errorf("got addr %q user %q password %q db %d tls %v", o.Addr, o.Username, o.Password, o.DB, o.TLSConfig != nil)
			}
		}},
		{"Username and Password replace the URL's", Config{URL: "redis://alice:pw1@cache:6380/3", Username: "bob", Password: "pw2"}, func(t *testing.T, c Config) {
			o, _ := options(c)
			if o.Username != "bob" || o.Password != "pw2" {
				t.Errorf("got user %q password %q", o.Username, o.Password)
			}
		}},
		{"rediss verifies the host with the CA file", Config{URL: "rediss://cache.internal/0", CAFile: caFile}, func(t *testing.T, c Config) {
			o, _ := options(c)
			if o.TLSConfig == nil || o.TLSConfig.ServerName != "cache.internal" || o.TLSConfig.RootCAs == nil || o.TLSConfig.InsecureSkipVerify {
				t.Errorf("TLS config %+v", o.TLSConfig)
			}
		}},
		{"a CA file implies TLS for redis://", Config{URL: "redis://cache/0", CAFile: caFile}, func(t *testing.T, c Config) {
			o, _ := options(c)
			if o.TLSConfig == nil || o.TLSConfig.MinVersion < tls.VersionTLS12 || o.TLSConfig.RootCAs == nil {
				t.Errorf("TLS config %+v", o.TLSConfig)
			}
		}},
		{"Sentinel takes credentials, database and TLS from the URL, not its host", Config{URL: "rediss://:pw@primary.internal/2", Sentinels: []string{"s1:26379"}, MasterName: "m"}, func(t *testing.T, c Config) {
			o, _ := options(c)
			if o.Password != "pw" || o.DB != 2 || o.TLSConfig == nil || o.TLSConfig.ServerName != "" {
				t.Errorf("password %q db %d TLS %+v; want the server name left to the dialer", o.Password, o.DB, o.TLSConfig)
			}
		}},
		{"Sentinel needs no URL", Config{Sentinels: []string{"s1:26379"}, MasterName: "m"}, func(t *testing.T, c Config) {
			if _, err := options(c); err != nil {
				t.Error(err)
			}
		}},
		{"every call is bounded", Config{URL: "redis://cache"}, func(t *testing.T, c Config) {
			o, _ := options(c)
			if o.DialTimeout != timeout || o.ReadTimeout != timeout || o.WriteTimeout != timeout || o.PoolTimeout != timeout ||
				!o.ContextTimeoutEnabled || o.MaxRetries != 1 || o.DialerRetries != 1 || o.PoolSize != poolSize {
				t.Errorf("options %+v", o)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := options(tt.cfg); err != nil {
				t.Fatal(err)
			}
			tt.check(t, tt.cfg)
		})
	}
}

// writeCA writes a self-signed CA certificate and returns its file.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}
