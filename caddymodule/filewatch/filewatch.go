// Package filewatch keeps the parsed content of a file that people edit
// while the gateway runs (the policy, the clients), reloading it when it
// changes. Readers get the current value without locks and keep the
// snapshot they got, so a reload drops no request; a file that does not
// parse, or is gone, leaves the last good value in force.
package filewatch

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// racyWindow: a file read less than this after it was written may change
// again without its size or modification time showing it (file systems
// with coarse timestamps), so until it is older its content is compared.
const racyWindow = 2 * time.Second

const defaultInterval = 250 * time.Millisecond

// Watcher holds the current value of a file and reloads it when the file
// changes.
type Watcher[T any] struct {
	// Interval between looks at the file; default 250 ms. A change is in
	// force once it has stayed the same for an interval, so within two:
	// a client disabled in a file that a fleet shares is refused by every
	// instance within half a second. A look costs one stat.
	Interval time.Duration
	// OnReload is called with each new value once it is in force.
	OnReload func(*T)
	// OnRefuse is called when the file cannot be used, with the parse
	// error or why it cannot be read. A missing or unreadable file is
	// reported once, not at every look.
	OnRefuse func(err error)

	path    string
	maxSize int64
	parse   func([]byte) (*T, error)
	current atomic.Pointer[T]

	// Run's goroutine alone uses these.
	stat     os.FileInfo // when the content below was read; nil: look again
	settling os.FileInfo // a changed file's stat, waiting to stay so
	sum      [32]byte    // of the content last parsed, good or bad
	readAt   time.Time
	missing  string // the unreadable-file error last reported
	now      func() time.Time
	tick     <-chan time.Time // replaces the ticker in tests
}

// New reads the file at path, of at most maxSize bytes, and parses it.
// Unlike a reload, a first read that fails is an error: there is no last
// good value to keep.
func New[T any](path string, maxSize int64, parse func([]byte) (*T, error)) (*Watcher[T], error) {
	w := &Watcher[T]{path: path, maxSize: maxSize, parse: parse, now: time.Now}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	readAt := w.now()
	data, err := w.read()
	if err != nil {
		return nil, err
	}
	p, err := parse(data)
	if err != nil {
		return nil, err
	}
	w.current.Store(p)
	w.stat, w.sum, w.readAt = st, sha256.Sum256(data), readAt
	return w, nil
}

// Current returns the value in force.
func (w *Watcher[T]) Current() *T { return w.current.Load() }

// Run looks at the file every Interval until ctx is done.
func (w *Watcher[T]) Run(ctx context.Context) {
	tick := w.tick
	if tick == nil {
		t := time.NewTicker(cmp.Or(w.Interval, defaultInterval))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			w.poll()
		}
	}
}

// poll reloads the file if it changed and has since stayed the same for
// an interval. A stat is all it costs while the file stays the same; the
// content is read when the stat differs, or while the file is recent
// enough for the stat to miss a change.
func (w *Watcher[T]) poll() {
	st, err := os.Stat(w.path)
	if err == nil && w.stat != nil && sameFile(w.stat, st) && w.readAt.Sub(st.ModTime()) > racyWindow {
		return
	}
	if err == nil && (w.stat == nil || !sameFile(w.stat, st)) {
		// Changed since the last read: wait until it has stayed so for a
		// whole interval. An editor that writes in place could otherwise
		// be caught halfway, and a truncated policy can still parse,
		// without the stricter rules further down.
		if w.settling == nil || !sameFile(w.settling, st) {
			w.settling = st
			return
		}
	}
	w.settling = nil
	readAt := w.now()
	var data []byte
	if err == nil {
		data, err = w.read()
	}
	if err != nil {
		w.stat = nil
		if msg := err.Error(); msg != w.missing {
			w.missing = msg
			w.report(err)
		}
		return
	}
	w.stat, w.readAt, w.missing = st, readAt, ""
	sum := sha256.Sum256(data)
	if sum == w.sum {
		return
	}
	w.sum = sum
	p, err := w.parse(data)
	if err != nil {
		w.report(err)
		return
	}
	w.current.Store(p)
	if w.OnReload != nil {
		w.OnReload(p)
	}
}

func (w *Watcher[T]) report(err error) {
	if w.OnRefuse != nil {
		w.OnRefuse(err)
	}
}

func sameFile(a, b os.FileInfo) bool {
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && os.SameFile(a, b)
}

// read reads the file, refusing one larger than maxSize.
func (w *Watcher[T]) read() ([]byte, error) { return Read(w.path, w.maxSize) }

// Read reads the file at path, refusing one larger than maxSize: the
// files people edit are read whole, and a wrong path (a disk image, a
// device) must fail at once, not fill the memory.
func Read(path string, maxSize int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > maxSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxSize)
	}
	return data, nil
}
