package clients

import (
	"fmt"

	"github.com/oauthgate/oauthgate/caddymodule/filewatch"
)

// Watcher holds the registry of a clients file in force and reloads it
// when the file changes; see filewatch.Watcher. A file that does not
// parse is refused and the last good registry stays.
type Watcher = filewatch.Watcher[Registry]

// NewWatcher reads the clients file at path into a registry that uses
// cache; a file that cannot be read or parsed is an error.
func NewWatcher(path string, cache *Cache) (*Watcher, error) {
	return filewatch.New(path, maxFileSize, func(data []byte) (*Registry, error) {
		f, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return NewRegistry(f, cache), nil
	})
}
