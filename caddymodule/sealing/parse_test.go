package sealing_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/oauthgate/oauthgate/caddymodule/sealing"
)

// Fixed keys, so that a test can spell one in every way.
var (
	key1 = []byte("0123456789abcdef0123456789abcdef")
	key2 = []byte("fedcba9876543210fedcba9876543210")
	key3 = []byte{0xfb, 0xff, 0xbf, 0x3e, 0xf8, 30: 0xfe, 31: 0xff} // + and / in standard base64
)

func std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// fixed is the entries of the fixed keys, for assertNoKeyMaterial.
var fixed = map[string]string{"key1": "key1:" + std(key1), "key2": "key2:" + std(key2), "key3": "key3:" + std(key3)}

func TestParse_ReadsTheWaysOperatorsWriteARing(t *testing.T) {
	k1, k2, k3 := std(key1), std(key2), std(key3)
	cases := []struct {
		name, text string
		want       []string
	}{
		{"one entry", "a:" + k1, []string{"a"}},
		{"one entry with the newline of a file", "a:" + k1 + "\n", []string{"a"}},
		{"comma-separated, as in an environment variable", "b:" + k2 + ",a:" + k1, []string{"b", "a"}},
		{"comma-separated with spaces and a trailing comma", " b : " + k2 + " , a:" + k1 + ", ", []string{"b", "a"}},
		{"one per line", "b:" + k2 + "\na:" + k1 + "\n", []string{"b", "a"}},
		{"Windows line ends", "b:" + k2 + "\r\na:" + k1 + "\r\n", []string{"b", "a"}},
		{
			"comments and blank lines",
			"# sealing keys of the gateway fleet\n\nk-2025_b:" + k2 + "  # since March\n\n# the previous key, until re-sealed:\nk-2025_a:" + k1 + "\n",
			[]string{"k-2025_b", "k-2025_a"},
		},
		{"lines and commas mixed", "c:" + k3 + "\nb:" + k2 + ",a:" + k1, []string{"c", "b", "a"}},
		{"standard base64 without padding", "a:" + strings.TrimRight(k1, "="), []string{"a"}},
		{"URL base64 with padding", "c:" + base64.URLEncoding.EncodeToString(key3), []string{"c"}},
		{"URL base64 without padding", "c:" + base64.RawURLEncoding.EncodeToString(key3), []string{"c"}},
		{"an ID of 32 characters", strings.Repeat("x", 32) + ":" + k1, []string{strings.Repeat("x", 32)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := sealing.Parse(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.IDs(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("IDs = %v, want %v", got, tc.want)
			}
		})
	}
}

// Every spelling of a key is the same key: what one spelling sealed,
// another opens.
func TestParse_EverySpellingOfAKeyOpensWhatAnotherSealed(t *testing.T) {
	spellings := []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}
	sealer, err := sealing.Parse("c:" + std(key3))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := sealer.Seal([]byte("x"), signingName)
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range spellings {
		r, err := sealing.Parse("c:" + enc.EncodeToString(key3))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Open(sealed, signingName); err != nil {
			t.Errorf("spelled %q: %v", enc.EncodeToString(key3), err)
		}
	}
}

func TestParse_ErrorsNameTheLineOrEntryAndNeverTheKey(t *testing.T) {
	k1, k2, k3 := std(key1), std(key2), std(key3)
	cases := []struct {
		name, text string
		want       string // the start of the error
	}{
		{"nothing", "", "no key:"},
		{"only comments and blank lines", "# keys\n\n# none yet\n", "no key:"},
		{"a key without an ID", "key1:" + k1 + "\n" + k2, "line 2: want <key ID>:<base64 of 32 bytes>, found no colon"},
		{"the key before the ID", k1 + ":key1", "entry 1: the key ID is longer than 32 characters (is the key before the colon?)"},
		{"the URL-safe key before the ID", base64.RawURLEncoding.EncodeToString(key3) + ":key3", "entry 1: the key ID is longer than 32"},
		{"an ID with a dot", "key.1:" + k1, "entry 1: the key ID may hold only A-Z a-z 0-9 _ -"},
		{"an ID with a space", "key 1:" + k1, "entry 1: the key ID may hold only"},
		{"an ID of 33 characters", strings.Repeat("x", 33) + ":" + k1, "entry 1: the key ID is longer than 32"},
		{"no ID before the colon", ":" + k1, "entry 1: no key ID before the colon"},
		{"no key after the colon", "key1:" + k1 + ",key2:", `entry 2: key "key2": no key after the colon`},
		{"a key with a character changed", "key1:" + k1[:10] + "*" + k1[11:], `entry 1: key "key1": the key is not base64`},
		{"a key mixing the two alphabets", "key3:" + strings.Replace(k3, "/", "_", 1), `entry 1: key "key3": the key is not base64`},
		{"a key with its unused bits set", "key1:" + k1[:42] + "h=", `entry 1: key "key1": the key is not base64`},
		{"a key of 16 bytes", "key1:" + std(key1[:16]), `entry 1: key "key1": the key is 16 bytes, want 32`},
		{"a key of 31 bytes", "key1:" + std(key1[:31]), `entry 1: key "key1": the key is 31 bytes, want 32`},
		{"a key of 33 bytes", "key1:" + std(append(key1[:32:32], 'x')), `entry 1: key "key1": the key is 33 bytes, want 32`},
		{"a key of zero bytes", "key1:" + std(make([]byte, 32)), `entry 1: key "key1": the key is all zero bytes`},
		{"an ID used twice", "key1:" + k1 + "\nkey2:" + k2 + "\n\nkey1:" + k3, `line 4: key ID "key1" is already used at line 1`},
		{"one key under two IDs", "key1:" + k1 + ",key2:" + k1, `entry 2: key "key2" is the same key as "key1" at entry 1`},
		{"a fault in the second entry of a line", "key1:" + k1 + "\nkey2:" + k2 + ", key3:" + k3[:20], "line 2, entry 2: key \"key3\": the key is"},
		{"a fault after a comment line", "# the ring\nkey1" + k1, "line 2: want <key ID>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := sealing.Parse(tc.text)
			if err == nil {
				t.Fatalf("Parse = %v, want an error", r)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Parse = %q, want it to start %q", err, tc.want)
			}
			assertNoKeyMaterial(t, err.Error(), fixed)
		})
	}
}

func TestGenerate_WritesAnEntryOfANewKeyThatParses(t *testing.T) {
	a, err := sealing.Generate("k-2025_a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := sealing.Generate("k-2025_b")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a, "k-2025_a:") || len(a) != len("k-2025_a:")+44 {
		t.Errorf("Generate = %q, want k-2025_a: and 44 characters of base64", a)
	}
	r, err := sealing.Parse(b + "\n" + a)
	if err != nil {
		t.Fatalf("Parse of two generated entries: %v", err)
	}
	if got := r.IDs(); fmt.Sprint(got) != "[k-2025_b k-2025_a]" {
		t.Errorf("IDs = %v", got)
	}
	for _, id := range []string{"", "k.1", "k 1", "k\n1", strings.Repeat("x", 33)} {
		if _, err := sealing.Generate(id); err == nil {
			t.Errorf("Generate(%q) succeeded, want an error", id)
		}
	}
}

func TestFromEnv_ReadsTheVariableAndNamesItInErrors(t *testing.T) {
	const name = "OAUTHGATE_TEST_SEALING_KEYS"
	t.Setenv(name, "key2:"+std(key2)+",key1:"+std(key1))
	r, err := sealing.FromEnv(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.IDs(); fmt.Sprint(got) != "[key2 key1]" {
		t.Errorf("IDs = %v", got)
	}

	t.Setenv(name, "key2:"+std(key2)+",key1:"+std(key1[:16]))
	if _, err := sealing.FromEnv(name); err == nil || !strings.HasPrefix(err.Error(), "$"+name+": entry 2: ") {
		t.Errorf("FromEnv with a short key = %v, want an error naming $%s and entry 2", err, name)
	} else {
		assertNoKeyMaterial(t, err.Error(), fixed)
	}

	for _, v := range []string{"", " \n"} {
		t.Setenv(name, v)
		if _, err := sealing.FromEnv(name); err == nil || !strings.Contains(err.Error(), "$"+name+" is unset or empty") {
			t.Errorf("FromEnv with %q = %v, want unset or empty", v, err)
		}
	}
	if _, err := sealing.FromEnv("OAUTHGATE_TEST_SEALING_NEVER_SET"); err == nil {
		t.Error("FromEnv of an unset variable succeeded")
	}
}
