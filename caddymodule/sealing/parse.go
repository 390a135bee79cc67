package sealing

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxFileLen bounds a key file: a ring is a few lines, and a path that
// names a large file or a device by mistake should fail, not be read.
const maxFileLen = 64 << 10

// Parse reads a key ring written as entries <key ID>:<base64 key>, one
// per line or separated by commas (the same text serves as a file and
// as an environment variable); the first entry is the sealing key. A key
// is KeyLen bytes in base64, standard or URL alphabet, padded or not
// (`openssl rand -base64 32` writes one). A key ID is 1 to MaxIDLen of
// A-Z a-z 0-9 _ -. A # starts a comment to the end of its line; blank
// lines and empty entries are skipped.
//
// An error names where the fault is: the line (and the entry, when the
// line holds several) of a text of several lines, else the entry. It
// never contains key material, whatever the mistake, nor an ID that does
// not pass as one.
func Parse(text string) (*Ring, error) {
	lines := strings.Split(strings.TrimRight(text, "\r\n"), "\n")
	var (
		r       Ring
		secrets [][]byte // of r.keys, to refuse one key under two IDs
		places  []string // of r.keys, for errors
		entry   int      // entries seen, for a one-line text
	)
	for i, line := range lines {
		line, _, _ = strings.Cut(line, "#")
		var fields []string
		for f := range strings.SplitSeq(line, ",") {
			if f = strings.TrimSpace(f); f != "" {
				fields = append(fields, f)
			}
		}
		for j, f := range fields {
			entry++
			place := fmt.Sprintf("entry %d", entry)
			if len(lines) > 1 {
				place = fmt.Sprintf("line %d", i+1)
				if len(fields) > 1 {
					place += fmt.Sprintf(", entry %d", j+1)
				}
			}
			id, secret, err := parseEntry(f)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", place, err)
			}
			for k, prev := range r.keys {
				if prev.id == id {
					return nil, fmt.Errorf("%s: key ID %q is already used at %s", place, id, places[k])
				}
				if subtle.ConstantTimeCompare(secrets[k], secret) == 1 {
					// A copy of the old key under a new ID would make a
					// rotation that rotates nothing.
					return nil, fmt.Errorf("%s: key %q is the same key as %q at %s", place, id, prev.id, places[k])
				}
			}
			k, err := newRingKey(id, secret)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", place, err)
			}
			r.keys = append(r.keys, k)
			secrets = append(secrets, secret)
			places = append(places, place)
		}
	}
	if len(r.keys) == 0 {
		return nil, errors.New("no key: want <key ID>:<base64 of 32 bytes>, one per line or comma-separated, the sealing key first")
	}
	return &r, nil
}

// parseEntry splits one entry. Its errors quote nothing of the entry: an
// operator may have pasted the key alone, or before the ID.
func parseEntry(entry string) (id string, secret []byte, err error) {
	id, enc, ok := strings.Cut(entry, ":")
	if !ok {
		return "", nil, errors.New("want <key ID>:<base64 of 32 bytes>, found no colon")
	}
	id, enc = strings.TrimSpace(id), strings.TrimSpace(enc)
	switch {
	case id == "":
		return "", nil, errors.New("no key ID before the colon")
	case len(id) > MaxIDLen:
		return "", nil, fmt.Errorf("the key ID is longer than %d characters (is the key before the colon?)", MaxIDLen)
	case !validID(id):
		return "", nil, errors.New("the key ID may hold only A-Z a-z 0-9 _ -")
	case enc == "":
		return "", nil, fmt.Errorf("key %q: no key after the colon", id)
	}
	if secret, err = decodeKey(enc); err != nil {
		return "", nil, fmt.Errorf("key %q: %w", id, err)
	}
	return id, secret, nil
}

func decodeKey(enc string) ([]byte, error) {
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		// Strict: one key has one spelling in each alphabet.
		b, err := e.Strict().DecodeString(enc)
		if err != nil {
			continue
		}
		switch {
		case len(b) != KeyLen:
			return nil, fmt.Errorf("the key is %d bytes, want %d", len(b), KeyLen)
		case subtle.ConstantTimeCompare(b, make([]byte, KeyLen)) == 1:
			return nil, errors.New("the key is all zero bytes, not a random key")
		}
		return b, nil
	}
	return nil, fmt.Errorf("the key is not base64 (standard or URL alphabet) of %d bytes", KeyLen)
}

// FromFile reads a key ring from a file in Parse's format.
//
// On Unix it refuses a file that users other than its owner and its
// group may read, or that its group may change: whoever reads the key
// file can read the sealed state, which is what sealing is for. A group
// may read it (root:caddy 0640, a Kubernetes fsGroup), but a Kubernetes
// secret volume's default 0644 is refused: set its defaultMode.
func FromFile(path string) (*Ring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Stat of the open file, not of the path: it is what is read, and a
	// symlink (as Kubernetes mounts secrets) is followed.
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkPrivate(fi); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileLen+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxFileLen {
		return nil, fmt.Errorf("%s: more than %d bytes, not a key ring", path, maxFileLen)
	}
	r, err := Parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// FromEnv reads a key ring from the environment variable name, in
// Parse's format (comma-separated is easiest to set). A file is the
// better home: a process's environment is passed to its children and
// shown to its user in /proc/<pid>/environ.
func FromEnv(name string) (*Ring, error) {
	text := os.Getenv(name)
	if strings.TrimSpace(text) == "" {
		return nil, fmt.Errorf("$%s is unset or empty", name)
	}
	r, err := Parse(text)
	if err != nil {
		return nil, fmt.Errorf("$%s: %w", name, err)
	}
	return r, nil
}

// Generate returns an entry for a new random key with the given ID, in
// Parse's format, for the operator to put in a ring.
func Generate(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("key ID %q: want 1 to %d of A-Z a-z 0-9 _ -", id, MaxIDLen)
	}
	key := make([]byte, KeyLen)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go ≥ 1.24)
	return id + ":" + base64.StdEncoding.EncodeToString(key), nil
}
