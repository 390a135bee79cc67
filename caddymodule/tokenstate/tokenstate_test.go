package tokenstate

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/storagetest"
)

// memStorage runs onList, if set, inside List, as another writer racing
// a Sync would.
type memStorage struct {
	*storagetest.Storage
	onList func()
}

func newMem() *memStorage { return &memStorage{Storage: storagetest.New()} }

func (s *memStorage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	keys, err := s.Storage.List(ctx, dir, recursive)
	if s.onList != nil {
		s.onList()
	}
	return keys, err
}

// entries counts the token-state entries in storage, not the MAC key
// and the epoch.
func entries(st *memStorage) int {
	n := 0
	for _, k := range st.Keys() {
		if k != MACKeyName && k != epochName {
			n++
		}
	}
	return n
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var t0 = time.Unix(1_800_000_000, 0)

func open(t *testing.T, st state.Storage, c *clock) *Store {
	t.Helper()
	s, err := Open(context.Background(), st, state.StorageEntries(st, c.now), c.now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRevoke_AppliesHereAtOnceAndElsewhereAfterSync(t *testing.T) {
	ctx := context.Background()
	st, c := newMem(), &clock{t0}
	a, b := open(t, st, c), open(t, st, c)

	if err := a.Revoke(ctx, "jti-1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !a.Revoked("jti-1") {
		t.Error("revoking instance still accepts the token")
	}
	if a.Revoked("jti-2") {
		t.Error("an unrelated jti is revoked")
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !b.Revoked("jti-1") {
		t.Error("other instance accepts the revoked token after Sync")
	}

	c.t = t0.Add(time.Hour) // the token has expired: nothing left to refuse
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Revoked("jti-1") || entries(st) != 0 {
		t.Errorf("expired revocation kept: in memory %v, %d entries in storage", b.Revoked("jti-1"), entries(st))
	}
}

func TestSync_KeepsARevocationMadeWhileItRuns(t *testing.T) {
	ctx := context.Background()
	st, c := newMem(), &clock{t0}
	s := open(t, st, c)
	once := sync.Once{}
	st.onList = func() {
		once.Do(func() {
			if err := s.Revoke(ctx, "late", t0.Add(time.Hour)); err != nil {
				t.Error(err)
			}
		})
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Revoked("late") {
		t.Error("a revocation made during Sync was lost")
	}
}

func TestOpaque_LookupRevokeAndExpiry(t *testing.T) {
	ctx := context.Background()
	st, c := newMem(), &clock{t0}
	a, b := open(t, st, c), open(t, st, c)
	rec := &Opaque{ClientID: "c", Subject: "oauth_client_c", Scope: []string{"R"}, IssuedAt: t0, Expiry: t0.Add(time.Hour), ID: "j"}
	if err := a.PutOpaque(ctx, "secret-token", rec); err != nil {
		t.Fatal(err)
	}
	for _, k := range st.Keys() {
		v, _ := st.Load(ctx, k)
		if strings.Contains(k, "secret-token") || strings.Contains(string(v), "secret-token") {
			t.Fatalf("storage holds the token itself under %s", k)
		}
	}
	if got := lookup(t, a, "secret-token"); got == nil || got.ClientID != "c" {
		t.Fatalf("LookupOpaque here = %+v", got)
	}
	if got := lookup(t, b, "secret-token"); got == nil || got.ID != "j" {
		t.Errorf("another instance, before any Sync, = %+v, want the record from storage", got)
	}
	if got := lookup(t, a, "other-token"); got != nil {
		t.Errorf("unknown token = %+v, want nil", got)
	}

	if err := a.RevokeOpaque(ctx, "secret-token"); err != nil {
		t.Fatal(err)
	}
	if lookup(t, a, "secret-token") != nil {
		t.Error("revoking instance still accepts the token")
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if lookup(t, b, "secret-token") != nil {
		t.Error("other instance accepts the revoked token after Sync")
	}

	if err := a.PutOpaque(ctx, "short-lived", &Opaque{Expiry: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	c.t = t0.Add(time.Minute)
	if lookup(t, a, "short-lived") != nil {
		t.Error("expired opaque token accepted")
	}
}

func TestSuperseded_LifetimeZeroTokensEndWithTheNextOne(t *testing.T) {
	ctx := context.Background()
	st, c := newMem(), &clock{t0}
	s := open(t, st, c)
	far := t0.Add(180 * 24 * time.Hour)
	issue := func(jti string, iat time.Time, zero bool) {
		t.Helper()
		if err := s.Issued(ctx, "c", jti, iat, iat.Add(time.Hour), zero); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Issued(ctx, "c", "z1", t0, far, true); err != nil {
		t.Fatal(err)
	}
	issue("z2", t0.Add(10*time.Second), true)
	issue("z3", t0.Add(10*time.Second), true) // same second as z2

	cases := []struct {
		name string
		jti  string
		iat  time.Time
		want bool
	}{
		{"earlier token", "z1", t0, true},
		{"same-second predecessor", "z2", t0.Add(10 * time.Second), true},
		{"the latest token", "z3", t0.Add(10 * time.Second), false},
		{"another client's token", "x", t0, false},
	}
	for _, tc := range cases {
		client := "c"
		if tc.name == "another client's token" {
			client = "other"
		}
		if got := isSuperseded(t, s, client, tc.jti, tc.iat); got != tc.want {
			t.Errorf("%s: Superseded = %v, want %v", tc.name, got, tc.want)
		}
	}

	// The client moves to a 60-minute lifetime: its next token still ends
	// the lifetime-0 one, and later tokens of the same second coexist.
	issue("n1", t0.Add(20*time.Second), false)
	if !isSuperseded(t, s, "c", "z3", t0.Add(10*time.Second)) {
		t.Error("the lifetime-0 token survived the change of lifetime")
	}
	if isSuperseded(t, s, "c", "n0", t0.Add(20*time.Second)) {
		t.Error("a same-second token of a non-zero lifetime was superseded")
	}
	c.t = far // every lifetime-0 token has expired: the record goes
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if entries(st) != 0 {
		t.Errorf("%d entries left in storage, want 0", entries(st))
	}
}

func TestIssued_RecordsNothingForOrdinaryClients(t *testing.T) {
	st, c := newMem(), &clock{t0}
	s := open(t, st, c)
	if err := s.Issued(context.Background(), "c", "j", t0, t0.Add(time.Hour), false); err != nil {
		t.Fatal(err)
	}
	if entries(st) != 0 || isSuperseded(t, s, "c", "older", t0.Add(-time.Hour)) {
		t.Error("a client with a non-zero lifetime got a latest-token record")
	}
}

func TestSync_SkipsACorruptEntryAndAppliesTheRest(t *testing.T) {
	ctx := context.Background()
	st, c := newMem(), &clock{t0}
	writer := open(t, st, c)
	if err := writer.Revoke(ctx, "jti-1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.Store(ctx, state.StorageDir+"/revoked/abc", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, st, state.StorageEntries(st, c.now), c.now)
	var corrupt *state.CorruptError
	if !errors.As(err, &corrupt) || !strings.Contains(err.Error(), state.StorageDir+"/revoked/abc") {
		t.Fatalf("Open = %v, want a CorruptError naming the entry", err)
	}
	if s == nil || !s.Revoked("jti-1") {
		t.Fatal("the good revocation was not applied next to the corrupt entry")
	}
	if _, err := st.Load(ctx, state.StorageDir+"/revoked/abc"); err != nil {
		t.Error("the corrupt entry was deleted; it must stay for the operator to see")
	}
}

func TestOpaque_OnlyTokensWithTheGatewaysMACAreAuthentic(t *testing.T) {
	st, c := newMem(), &clock{t0}
	a, b := open(t, st, c), open(t, st, c)
	tok := a.NewOpaque()
	if len(tok) != 64 || tok == a.NewOpaque() {
		t.Fatalf("NewOpaque = %q, want distinct 64-character tokens", tok)
	}
	if !a.Authentic(tok) || !b.Authentic(tok) {
		t.Error("a token made here is not authentic here or on an instance sharing the storage")
	}
	other := open(t, newMem(), c) // another gateway, another key
	flipped := []byte(tok)
	flipped[10] ^= 1
	for name, junk := range map[string]string{
		"another gateway's token": other.NewOpaque(),
		"one character changed":   string(flipped),
		"right length, random":    strings.Repeat("A", 64),
		"too short":               tok[:63],
		"padding":                 tok[:62] + "==",
	} {
		if a.Authentic(junk) {
			t.Errorf("%s: authentic", name)
		}
	}
	if n := entries(st); n != 0 {
		t.Errorf("%d state entries after only making tokens, want 0", n)
	}
}

func TestSync_WritesBackWhatAWipedEngineLost(t *testing.T) {
	ctx := context.Background()
	st, c := newMem(), &clock{t0}
	a := open(t, st, c)
	if err := a.Revoke(ctx, "revoked-jti", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := a.Issued(ctx, "zero-client", "latest-jti", t0, t0.Add(time.Hour), true); err != nil {
		t.Fatal(err)
	}
	opaque := a.NewOpaque()
	if err := a.PutOpaque(ctx, opaque, &Opaque{ClientID: "c", Expiry: t0.Add(time.Hour), ID: "o"}); err != nil {
		t.Fatal(err)
	}

	for _, k := range st.Keys() { // the engine restarts empty
		if err := st.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	b := open(t, st, c) // an instance that starts after the wipe
	switch {
	case !b.Authentic(opaque):
		t.Error("the MAC key was not written back: opaque tokens issued before are not authentic")
	case lookup(t, b, opaque) == nil:
		t.Error("an opaque token held before the wipe was not written back")
	case !b.Revoked("revoked-jti"):
		t.Error("a revocation held before the wipe was not written back: the token is accepted again")
	case !isSuperseded(t, b, "zero-client", "earlier-jti", t0.Add(-time.Minute)):
		t.Error("a lifetime-0 record held before the wipe was not written back")
	}
}

// After a wipe, every instance writes back the opaque tokens it holds, not
// only the first to resync: the others find the MAC key written back
// already, yet their tokens are lost all the same.
func TestSync_EveryInstanceWritesBackItsOpaqueTokensAfterAWipe(t *testing.T) {
	ctx := context.Background()
	st, c := newMem(), &clock{t0}
	a, b := open(t, st, c), open(t, st, c)
	held := map[*Store]string{}
	for s, id := range map[*Store]string{a: "of-a", b: "of-b"} {
		held[s] = s.NewOpaque()
		if err := s.PutOpaque(ctx, held[s], &Opaque{ClientID: "c", Expiry: t0.Add(time.Hour), ID: id}); err != nil {
			t.Fatal(err)
		}
	}

	for _, k := range st.Keys() { // the engine restarts empty
		if err := st.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*Store{a, b, a, b} { // b resyncs after a wrote the MAC key back
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}

	fresh := open(t, st, c)
	for s, name := range map[*Store]string{a: "the first instance to resync", b: "an instance that resynced after it"} {
		if lookup(t, fresh, held[s]) == nil {
			t.Errorf("the opaque token held by %s alone was not written back", name)
		}
	}
}

// Without a wipe, a Sync writes back nothing: an opaque token this
// instance holds that another revoked (an announcement it missed) stays
// revoked.
func TestSync_WithoutAWipeAnOpaqueTokenRevokedElsewhereStaysRevoked(t *testing.T) {
	ctx := context.Background()
	st, c := newMem(), &clock{t0}
	a, b := open(t, st, c), open(t, st, c)
	tok := a.NewOpaque()
	if err := a.PutOpaque(ctx, tok, &Opaque{ClientID: "c", Expiry: t0.Add(time.Hour), ID: "o"}); err != nil {
		t.Fatal(err)
	}
	if lookup(t, b, tok) == nil { // b holds it from now on
		t.Fatal("the opaque token is unknown at the other instance")
	}
	if err := a.RevokeOpaque(ctx, tok); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{b, a, b} {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if lookup(t, b, tok) != nil || lookup(t, open(t, st, c), tok) != nil {
		t.Error("an opaque token revoked at another instance is valid again after a Sync")
	}
}

// lookup is LookupOpaque where the engine always answers.
func lookup(t *testing.T, s *Store, token string) *Opaque {
	t.Helper()
	rec, err := s.LookupOpaque(context.Background(), token)
	if err != nil {
		t.Fatalf("LookupOpaque: %v", err)
	}
	return rec
}

// countingEntries counts Get calls, and fails them while down.
type countingEntries struct {
	state.Entries
	gets int
	down bool
}

func (e *countingEntries) Get(ctx context.Context, kind state.Kind, id string) ([]byte, error) {
	e.gets++
	if e.down {
		return nil, errors.New("engine down")
	}
	return e.Entries.Get(ctx, kind, id)
}

// A JWT's iat is in seconds: a lifetime-0 token issued at another
// instance in the same second as the record held here may be the newer
// one, its announcement still on the way. It must pass at once, and the
// token it superseded must not.
func TestSuperseded_ASameSecondTokenNewerThanTheRecordHeldHerePasses(t *testing.T) {
	ctx := context.Background()
	st, c := newMem(), &clock{t0}
	a := open(t, st, c)
	be := &countingEntries{Entries: state.StorageEntries(st, c.now)}
	b, err := Open(ctx, st, be, c.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Issued(ctx, "c", "first", t0, t0.Add(time.Hour), true); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil { // b holds the record of "first"
		t.Fatal(err)
	}
	if err := a.Issued(ctx, "c", "second", t0, t0.Add(time.Hour), true); err != nil {
		t.Fatal(err)
	}
	// b has not heard of "second" yet.
	be.gets = 0
	if isSuperseded(t, b, "c", "second", t0) {
		t.Error("the newer token of the same second was refused")
	}
	if !isSuperseded(t, b, "c", "first", t0) {
		t.Error("the token it superseded passed")
	}
	if be.gets != 2 {
		t.Errorf("%d reads of the engine, want 2: one for each token", be.gets)
	}

	// A token found older is not asked about again; with the engine down,
	// a token that cannot be placed is refused.
	be.gets = 0
	if !isSuperseded(t, b, "c", "first", t0) || isSuperseded(t, b, "c", "second", t0) {
		t.Error("a token already placed changed its answer")
	}
	if be.gets != 0 {
		t.Errorf("%d reads of the engine for tokens already placed, want 0", be.gets)
	}
	if err := a.Issued(ctx, "c", "third", t0, t0.Add(time.Hour), true); err != nil {
		t.Fatal(err)
	}
	be.down = true
	if _, err := b.Superseded(ctx, "c", "third", t0); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a token that could not be placed while the engine was down: %v, want ErrUnavailable (a 503, not a refusal)", err)
	}
}

// entriesWithHook runs hook after a Get has read the engine and before
// it returns: a token recorded here while the engine was asked.
type entriesWithHook struct {
	state.Entries
	hook func()
}

func (e *entriesWithHook) Get(ctx context.Context, kind state.Kind, id string) ([]byte, error) {
	v, err := e.Entries.Get(ctx, kind, id)
	if e.hook != nil {
		e.hook()
		e.hook = nil
	}
	return v, err
}

func TestSuperseded_ATokenRecordedHereWhileTheEngineIsAskedIsNotOverwritten(t *testing.T) {
	ctx := context.Background()
	st, c := newMem(), &clock{t0}
	other := open(t, st, c)
	he := &entriesWithHook{Entries: state.StorageEntries(st, c.now)}
	s, err := Open(ctx, st, he, c.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Issued(ctx, "c", "r", t0, t0.Add(time.Hour), true); err != nil {
		t.Fatal(err)
	}
	if err := other.Issued(ctx, "c", "y", t0, t0.Add(time.Hour), true); err != nil { // not heard here
		t.Fatal(err)
	}
	he.hook = func() { // the client's next token, issued here during the read
		if err := s.Issued(ctx, "c", "z", t0, t0.Add(time.Hour), true); err != nil {
			t.Error(err)
		}
	}
	if !isSuperseded(t, s, "c", "y", t0) {
		t.Error("y passed although z was issued here after it")
	}
	if !isSuperseded(t, s, "c", "y", t0) || isSuperseded(t, s, "c", "z", t0) {
		t.Error("the engine's stale answer replaced z, the newest token held here")
	}
}

// isSuperseded is s.Superseded for a check that must not fail.
func isSuperseded(t *testing.T, s *Store, client, jti string, iat time.Time) bool {
	t.Helper()
	got, err := s.Superseded(context.Background(), client, jti, iat)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
