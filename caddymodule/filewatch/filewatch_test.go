package filewatch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The files of these tests hold a line of roles; a line "!" does not
// parse.
const (
	fileA = "A\n"
	fileB = "A,B\n"
)

type doc struct{ roles string }

func parseDoc(path string) func([]byte) (*doc, error) {
	return func(data []byte) (*doc, error) {
		lines := strings.Split(string(data), "\n")
		for i, l := range lines {
			if l == "!" {
				return nil, fmt.Errorf("%s:%d: not a line of roles", path, i+1)
			}
		}
		return &doc{roles: lines[0]}, nil
	}
}

// watched is a Watcher on a temporary file that records what it reports.
type watched struct {
	*Watcher[doc]
	path     string
	reloads  int
	refusals []error
	clock    time.Time
}

func newWatched(t *testing.T, content string) *watched {
	t.Helper()
	path := filepath.Join(t.TempDir(), "roles.txt")
	writeFile(t, path, content)
	w, err := New(path, 1<<20, parseDoc(path))
	if err != nil {
		t.Fatal(err)
	}
	x := &watched{Watcher: w, path: path, clock: time.Now()}
	w.now = func() time.Time { return x.clock }
	w.OnReload = func(*doc) { x.reloads++ }
	w.OnRefuse = func(err error) { x.refusals = append(x.refusals, err) }
	return x
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// settle polls twice: once to see the change, once to see it stayed.
func (x *watched) settle() { x.poll(); x.poll() }

// roles is what the file in force says.
func (x *watched) roles() string { return x.Current().roles }

func TestWatcher_ReloadsAChangedFile(t *testing.T) {
	x := newWatched(t, fileA)
	x.poll()
	if x.reloads != 0 || x.roles() != "A" {
		t.Fatalf("unchanged file: %d reloads, roles %s; want 0, A", x.reloads, x.roles())
	}
	old := x.Current()
	writeFile(t, x.path, fileB)
	x.poll()
	if x.reloads != 0 {
		t.Fatalf("a file just changed: %d reloads, want 0 until it has stayed so for an interval", x.reloads)
	}
	x.poll()
	if x.reloads != 1 || x.roles() != "A,B" {
		t.Errorf("changed file: %d reloads, roles %s; want 1, A,B", x.reloads, x.roles())
	}
	if got := old.roles; got != "A" {
		t.Errorf("the old snapshot changed under its reader: roles %s, want A", got)
	}
}

func TestWatcher_ReloadsAFileReplacedByRename(t *testing.T) {
	x := newWatched(t, fileA)
	tmp := x.path + ".new"
	writeFile(t, tmp, fileB)
	if err := os.Rename(tmp, x.path); err != nil {
		t.Fatal(err)
	}
	x.settle()
	if x.reloads != 1 || x.roles() != "A,B" {
		t.Errorf("%d reloads, roles %s; want 1, A,B", x.reloads, x.roles())
	}
}

func TestWatcher_BrokenFileKeepsTheLastGoodValue(t *testing.T) {
	x := newWatched(t, fileA)
	writeFile(t, x.path, "A\nB\n!\n")
	x.settle()
	x.poll()
	if x.roles() != "A" || x.reloads != 0 {
		t.Errorf("after a broken file: roles %s, %d reloads; want A, 0", x.roles(), x.reloads)
	}
	if len(x.refusals) != 1 || !strings.HasPrefix(x.refusals[0].Error(), x.path+":3: ") {
		t.Errorf("refusals = %v, want one naming %s:3", x.refusals, x.path)
	}
	writeFile(t, x.path, fileB)
	x.settle()
	if x.roles() != "A,B" || x.reloads != 1 {
		t.Errorf("after the fix: roles %s, %d reloads; want A,B, 1", x.roles(), x.reloads)
	}
}

func TestWatcher_DeletedFileKeepsTheLastGoodValueAndIsReportedOnce(t *testing.T) {
	x := newWatched(t, fileA)
	if err := os.Remove(x.path); err != nil {
		t.Fatal(err)
	}
	x.poll()
	x.poll()
	if x.roles() != "A" {
		t.Errorf("roles = %s, want A", x.roles())
	}
	if len(x.refusals) != 1 || !errors.Is(x.refusals[0], fs.ErrNotExist) {
		t.Errorf("refusals = %v, want one not-exist error", x.refusals)
	}
	writeFile(t, x.path, fileB)
	x.settle()
	if x.roles() != "A,B" || x.reloads != 1 {
		t.Errorf("after the file came back: roles %s, %d reloads; want A,B, 1", x.roles(), x.reloads)
	}
	if err := os.Remove(x.path); err != nil {
		t.Fatal(err)
	}
	x.poll()
	if len(x.refusals) != 2 {
		t.Errorf("a second deletion: %d refusals, want 2", len(x.refusals))
	}
}

// A file rewritten with the same size within its timestamp's granularity
// looks unchanged to stat; while it is recent, its content is compared.
// Once it is older than that, the stat is trusted and the file not read.
func TestWatcher_ComparesContentOnlyWhileTheFileIsRecent(t *testing.T) {
	x := newWatched(t, fileA)
	st, err := os.Stat(x.path)
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(content string) { // same size, same mtime, same inode
		writeFile(t, x.path, content)
		if err := os.Chtimes(x.path, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	rewrite("C\n")
	x.clock = st.ModTime().Add(time.Hour) // NewWatcher read it just now
	x.poll()
	if x.roles() != "C" {
		t.Errorf("recent file: roles = %s, want C", x.roles())
	}
	rewrite("D\n")
	x.poll()
	if x.roles() != "C" {
		t.Errorf("file at rest: roles = %s, want C (read only when its stat changes)", x.roles())
	}
}

func TestWatcher_SameContentIsNotAReload(t *testing.T) {
	x := newWatched(t, fileA)
	writeFile(t, x.path, fileA)
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(x.path, later, later); err != nil {
		t.Fatal(err)
	}
	x.poll()
	if x.reloads != 0 {
		t.Errorf("%d reloads of identical content, want 0", x.reloads)
	}
}

func TestNew_RefusesABrokenOrOversizedFirstFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "roles.txt")
	writeFile(t, path, "!\n")
	if _, err := New(path, 1<<20, parseDoc(path)); err == nil || !strings.HasPrefix(err.Error(), path+":1: ") {
		t.Errorf("New error = %v, want %s:1: ...", err, path)
	}
	writeFile(t, path, "A,B,C\n")
	if _, err := New(path, 4, parseDoc(path)); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Errorf("New of an oversized file: %v", err)
	}
}

func TestWatcher_RunPollsOnEachTickAndStops(t *testing.T) {
	x := newWatched(t, fileA)
	tick := make(chan time.Time)
	reloaded := make(chan *doc, 1)
	x.tick = tick
	x.OnReload = func(p *doc) { reloaded <- p }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { x.Run(ctx); close(done) }()

	writeFile(t, x.path, fileB)
	tick <- time.Now()
	tick <- time.Now() // the file has stayed the same for an interval
	select {
	case p := <-reloaded:
		if p != x.Current() {
			t.Error("OnReload got a value that is not the current one")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload after a tick")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
