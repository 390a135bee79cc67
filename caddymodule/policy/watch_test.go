package policy

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	policyA = "subjects:\n  s: [A]\n"
	policyB = "subjects:\n  s: [A, B]\n"
)

// watched is a Watcher on a temporary file that records what it reports.
type watched struct {
	*Watcher
	path     string
	reloads  int
	refusals []error
	clock    time.Time
}

func newWatched(t *testing.T, content string) *watched {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, content)
	w, err := NewWatcher(path)
	if err != nil {
		t.Fatal(err)
	}
	x := &watched{Watcher: w, path: path, clock: time.Now()}
	w.now = func() time.Time { return x.clock }
	w.OnReload = func(*Policy) { x.reloads++ }
	w.OnRefuse = func(err error) { x.refusals = append(x.refusals, err) }
	return x
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// roles is what the policy in force grants s.
func (x *watched) roles() string { return strings.Join(x.Current().Roles("s"), ",") }

func TestWatcher_ReloadsAChangedFile(t *testing.T) {
	x := newWatched(t, policyA)
	x.poll()
	if x.reloads != 0 || x.roles() != "A" {
		t.Fatalf("unchanged file: %d reloads, roles %s; want 0, A", x.reloads, x.roles())
	}
	old := x.Current()
	writeFile(t, x.path, policyB)
	x.poll()
	if x.reloads != 1 || x.roles() != "A,B" {
		t.Errorf("changed file: %d reloads, roles %s; want 1, A,B", x.reloads, x.roles())
	}
	if got := strings.Join(old.Roles("s"), ","); got != "A" {
		t.Errorf("the old snapshot changed under its reader: roles %s, want A", got)
	}
}

func TestWatcher_ReloadsAFileReplacedByRename(t *testing.T) {
	x := newWatched(t, policyA)
	tmp := x.path + ".new"
	writeFile(t, tmp, policyB)
	if err := os.Rename(tmp, x.path); err != nil {
		t.Fatal(err)
	}
	x.poll()
	if x.reloads != 1 || x.roles() != "A,B" {
		t.Errorf("%d reloads, roles %s; want 1, A,B", x.reloads, x.roles())
	}
}

func TestWatcher_BrokenFileKeepsTheLastGoodPolicy(t *testing.T) {
	x := newWatched(t, policyA)
	writeFile(t, x.path, "subjects:\n  s: [A]\nrole: []\n")
	x.poll()
	x.poll()
	if x.roles() != "A" || x.reloads != 0 {
		t.Errorf("after a broken file: roles %s, %d reloads; want A, 0", x.roles(), x.reloads)
	}
	if len(x.refusals) != 1 || !strings.HasPrefix(x.refusals[0].Error(), x.path+":3: ") {
		t.Errorf("refusals = %v, want one naming %s:3", x.refusals, x.path)
	}
	writeFile(t, x.path, policyB)
	x.poll()
	if x.roles() != "A,B" || x.reloads != 1 {
		t.Errorf("after the fix: roles %s, %d reloads; want A,B, 1", x.roles(), x.reloads)
	}
}

func TestWatcher_DeletedFileKeepsTheLastGoodPolicyAndIsReportedOnce(t *testing.T) {
	x := newWatched(t, policyA)
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
	writeFile(t, x.path, policyB)
	x.poll()
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
	x := newWatched(t, policyA)
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
	rewrite("subjects:\n  s: [C]\n")
	x.clock = st.ModTime().Add(time.Hour) // NewWatcher read it just now
	x.poll()
	if x.roles() != "C" {
		t.Errorf("recent file: roles = %s, want C", x.roles())
	}
	rewrite("subjects:\n  s: [D]\n")
	x.poll()
	if x.roles() != "C" {
		t.Errorf("file at rest: roles = %s, want C (read only when its stat changes)", x.roles())
	}
}

func TestWatcher_SameContentIsNotAReload(t *testing.T) {
	x := newWatched(t, policyA)
	writeFile(t, x.path, policyA)
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(x.path, later, later); err != nil {
		t.Fatal(err)
	}
	x.poll()
	if x.reloads != 0 {
		t.Errorf("%d reloads of identical content, want 0", x.reloads)
	}
}

func TestNewWatcher_RefusesABrokenFirstFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, "rules: {}\n")
	if _, err := NewWatcher(path); err == nil || !strings.HasPrefix(err.Error(), path+":1: ") {
		t.Errorf("NewWatcher error = %v, want %s:1: ...", err, path)
	}
}

func TestWatcher_RunPollsOnEachTickAndStops(t *testing.T) {
	x := newWatched(t, policyA)
	tick := make(chan time.Time)
	reloaded := make(chan *Policy, 1)
	x.tick = tick
	x.OnReload = func(p *Policy) { reloaded <- p }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { x.Run(ctx); close(done) }()

	writeFile(t, x.path, policyB)
	tick <- time.Now()
	select {
	case p := <-reloaded:
		if p != x.Current() {
			t.Error("OnReload got a policy that is not the current one")
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
