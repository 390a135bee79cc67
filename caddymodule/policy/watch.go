package policy

import "github.com/oauthgate/oauthgate/caddymodule/filewatch"

// Watcher holds the policy of a file in force and reloads it when the file
// changes; see filewatch.Watcher. A file that does not parse is refused
// with "file:line: message" and the last good policy stays.
type Watcher = filewatch.Watcher[Policy]

// NewWatcher reads the policy at path; a file that does not parse is an
// error, as there is no last good policy yet.
func NewWatcher(path string) (*Watcher, error) {
	return filewatch.New(path, MaxFileSize, func(data []byte) (*Policy, error) { return Parse(data, path) })
}
