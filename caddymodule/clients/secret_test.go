package clients

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// cheapArgon2 keeps the tests fast. The parameters are read back from the
// stored hash, so verification and the dummy use them too.
var cheapArgon2 = argon2Params{memory: 64, time: 1, threads: 1, saltLen: 16, keyLen: 32}

// argonHashOf is the stored argon2id form of secret under cheapArgon2.
func argonHashOf(secret string) string { return hashArgon2id(secret, cheapArgon2) }

// argon2Counter records every argon2id computation made through the
// package's hook, with its parameters.
type argon2Counter struct{ calls []argon2Params }

// countArgon2 installs the counting hook for the rest of the test.
func countArgon2(t *testing.T) *argon2Counter {
	t.Helper()
	c := &argon2Counter{}
	orig := argon2IDKey
	argon2IDKey = func(password, salt []byte, tm, memory uint32, threads uint8, keyLen uint32) []byte {
		c.calls = append(c.calls, argon2Params{memory: memory, time: tm, threads: threads, saltLen: len(salt), keyLen: int(keyLen)})
		return orig(password, salt, tm, memory, threads, keyLen)
	}
	t.Cleanup(func() { argon2IDKey = orig })
	return c
}

// take returns the computations since the last take.
func (c *argon2Counter) take() []argon2Params {
	calls := c.calls
	c.calls = nil
	return calls
}

var phcRE = regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

func TestHashChosenSecret_StoresArgon2idWithOWASPParametersAndVerifies(t *testing.T) {
	const secret = "correct horse battery staple"
	s1, err := HashChosenSecret(secret)
	if err != nil {
		t.Fatalf("HashChosenSecret: %v", err)
	}
	s2, err := HashChosenSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	if !phcRE.MatchString(s1.Hash) {
		t.Errorf("stored hash %q: want $argon2id$v=19$m=19456,t=2,p=1$<16-byte salt>$<32-byte key>", s1.Hash)
	}
	if s1.Hash == s2.Hash {
		t.Error("the same secret hashed twice gave the same hash: the salt is not random")
	}
	if s1.Algorithm() != "argon2id" || s1.ID == "" || s1.Created == "" {
		t.Errorf("stored secret = %+v, want algorithm argon2id, an id and a creation time", s1)
	}
	if strings.Contains(s1.Hash, secret) {
		t.Error("stored form contains the secret in clear")
	}

	// The key is argon2id of the secret under the stored salt, computed
	// here with x/crypto directly.
	parts := strings.Split(s1.Hash, "$")
	salt, _ := base64.RawStdEncoding.DecodeString(parts[4])
	key, _ := base64.RawStdEncoding.DecodeString(parts[5])
	if want := argon2.IDKey([]byte(secret), salt, 2, 19456, 1, 32); !bytes.Equal(key, want) {
		t.Error("stored key is not argon2id(secret, salt, t=2, m=19456, p=1)")
	}

	// Through a file and a registry: the secret verifies, another does not.
	f := mustParse(t, fmt.Sprintf(`{"clients": [{"id": "c", "secrets": [{"hash": %q}]}]}`, s1.Hash))
	reg := NewRegistry(f)
	if _, err := reg.Authenticate("c", secret, AuthOptions{}); err != nil {
		t.Errorf("Authenticate with the chosen secret: %v", err)
	}
	if _, err := reg.Authenticate("c", secret+"!", AuthOptions{}); err != ErrAuthentication {
		t.Errorf("Authenticate with another secret = %v, want ErrAuthentication", err)
	}
}

func TestCheckChosenSecret_LengthBounds(t *testing.T) {
	tests := map[string]struct {
		secret string
		want   string // "" = accepted
	}{
		"15 characters is too short":         {strings.Repeat("a", 15), "at least 16"},
		"empty is too short":                 {"", "at least 16"},
		"16 characters is enough":            {strings.Repeat("a", 16), ""},
		"characters, not bytes, are counted": {strings.Repeat("é", 15), "at least 16"},
		"16 two-byte characters are enough":  {strings.Repeat("é", 16), ""},
		"512 bytes is the most":              {strings.Repeat("a", MaxSecretLen), ""},
		"513 bytes is too long":              {strings.Repeat("a", MaxSecretLen+1), "the most allowed is 512"},
		"invalid UTF-8 is refused":           {strings.Repeat("a", 16) + "\xff", "not valid UTF-8"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := CheckChosenSecret(tc.secret)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("CheckChosenSecret = %v, want accepted", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("CheckChosenSecret = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := HashChosenSecret("short"); err == nil {
		t.Error("HashChosenSecret accepted a 5-character secret")
	}
}

func TestParseArgon2id_RefusesMalformedAndAbsurdParameters(t *testing.T) {
	salt := base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16))
	key := base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	phc := func(version, params, salt, key string) string {
		return "$argon2id$" + version + "$" + params + "$" + salt + "$" + key
	}
	ok := func(params string) string { return phc("v=19", params, salt, key) }
	tests := map[string]struct {
		hash, want string // want "" = accepted
	}{
		"the parameters this package writes": {ok("m=19456,t=2,p=1"), ""},
		"the largest accepted parameters":    {ok("m=65536,t=10,p=16"), ""},
		"the smallest accepted parameters":   {ok("m=8,t=1,p=1"), ""},
		"memory over 64 MiB":                 {ok("m=65537,t=2,p=1"), "m=65537"},
		"memory of 4 TiB":                    {ok("m=4294967295,t=2,p=1"), "m=4294967295"},
		"memory beyond 32 bits":              {ok("m=4294967296,t=2,p=1"), "not a number"},
		"memory under 8 KiB per lane":        {ok("m=31,t=1,p=4"), "m=31"},
		"zero passes":                        {ok("m=19456,t=0,p=1"), "t=0"},
		"a thousand passes":                  {ok("m=19456,t=1000,p=1"), "t=1000"},
		"zero lanes":                         {ok("m=19456,t=2,p=0"), "p=0"},
		"255 lanes":                          {ok("m=19456,t=2,p=255"), "p=255"},
		"negative memory":                    {ok("m=-1,t=2,p=1"), "not a number"},
		"plus sign":                          {ok("m=+19456,t=2,p=1"), "not a number"},
		"leading zero":                       {ok("m=019456,t=2,p=1"), "canonical"},
		"parameters out of order":            {ok("t=2,m=19456,p=1"), "want"},
		"missing parameter":                  {ok("m=19456,t=2"), "want"},
		"extra parameter":                    {ok("m=19456,t=2,p=1,k=1"), "want"},
		"older version 16":                   {phc("v=16", "m=19456,t=2,p=1", salt, key), "only v=19"},
		"no version":                         {"$argon2id$m=19456,t=2,p=1$" + salt + "$" + key, "want"},
		"missing key":                        {"$argon2id$v=19$m=19456,t=2,p=1$" + salt, "want"},
		"trailing field":                     {ok("m=19456,t=2,p=1") + "$x", "want"},
		"padded base64 salt":                 {phc("v=19", "m=19456,t=2,p=1", salt+"==", key), "salt"},
		"salt of 4 bytes":                    {phc("v=19", "m=19456,t=2,p=1", "AQEBAQ", key), "salt"},
		"key of 8 bytes":                     {phc("v=19", "m=19456,t=2,p=1", salt, "AgICAgICAgI"), "key"},
		"key of 128 bytes":                   {phc("v=19", "m=19456,t=2,p=1", salt, base64.RawStdEncoding.EncodeToString(make([]byte, 128))), "key"},
		"URL-safe base64":                    {phc("v=19", "m=19456,t=2,p=1", strings.Repeat("_", 22), key), "salt"},
		"argon2i is not argon2id":            {"$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key, "unknown format"},
		"bcrypt is not supported":            {"$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW", "unknown format"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := Secret{Hash: tc.hash}
			err := s.parse()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("parse = %v, want accepted", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParse_SecretIDsAndDates(t *testing.T) {
	file := func(secrets string) string {
		return `{"clients": [{"id": "a", "secrets": [` + secrets + `]}]}`
	}
	h := hashOf("x")
	tests := map[string]struct {
		data, want string // want "" = accepted
	}{
		"only a hash, as files were written before": {file(`{"hash": "` + h + `"}`), ""},
		"id, created and expires": {
			file(`{"id": "0a1b2c3d", "hash": "` + h + `", "created": "2025-01-02T03:04:05Z", "expires": "2025-02-01T00:00:00+01:00"}`), ""},
		"expires not RFC 3339":   {file(`{"hash": "` + h + `", "expires": "tomorrow"}`), "expires: want an RFC 3339 time"},
		"expires without zone":   {file(`{"hash": "` + h + `", "expires": "2025-02-01T00:00:00"}`), "expires"},
		"created not RFC 3339":   {file(`{"hash": "` + h + `", "created": "2025-01-02"}`), "created: want an RFC 3339 time"},
		"secret id with a space": {file(`{"id": "a b", "hash": "` + h + `"}`), `id "a b"`},
		"duplicate secret ids": {
			file(`{"id": "s1", "hash": "` + h + `"}, {"id": "s1", "hash": "` + hashOf("y") + `"}`), `duplicate id "s1"`},
		"eight secrets": {file(strings.TrimSuffix(strings.Repeat(`{"hash": "`+h+`"},`, 8), ",")), ""},
		"nine secrets":  {file(strings.TrimSuffix(strings.Repeat(`{"hash": "`+h+`"},`, 9), ",")), "at most 8"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.data))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Parse = %v, want accepted", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParse_FileOfThePreviousFormatLoadsAndAuthenticates(t *testing.T) {
	// Exactly what the code before secret IDs wrote.
	data := `{
  "clients": [
    {
      "id": "3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6",
      "name": "order-sender",
      "secrets": [
        {
          "hash": "` + hashOf("old-secret") + `"
        }
      ],
      "token_lifetime": "1h0m0s"
    }
  ]
}
`
	f := mustParse(t, data)
	s := f.Clients[0].Secrets[0]
	if s.ID != "" || s.Created != "" || s.Expires != "" || s.Algorithm() != "sha256" {
		t.Errorf("secret = %+v, want a sha256 secret without id or dates", s)
	}
	if _, err := NewRegistry(f).Authenticate("3f9a6c0e5b7d41a2a8c4e1f2d3b4a5c6", "old-secret", AuthOptions{}); err != nil {
		t.Errorf("Authenticate: %v", err)
	}
}

func TestNewSecret_HasAShortIDAndCreationTime(t *testing.T) {
	_, s := NewSecret()
	if !regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(s.ID) {
		t.Errorf("id %q: want 8 lower-case hex digits", s.ID)
	}
	created, err := time.Parse(time.RFC3339, s.Created)
	if err != nil || time.Since(created) > time.Minute || time.Until(created) > time.Second {
		t.Errorf("created %q: want the current time in RFC 3339 (%v)", s.Created, err)
	}
}
