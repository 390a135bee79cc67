package state_test

import (
	"context"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/state"
	"github.com/oauthgate/oauthgate/caddymodule/storagetest"
)

const (
	marker = "oauthgate/signing_keys.json"
	macKey = "oauthgate/tokens/opaque_mac_key"
)

// gateway is Caddy's storage of a gateway that has issued, revoked and
// superseded tokens.
func gateway(t *testing.T) *storagetest.Storage {
	t.Helper()
	ctx, st := context.Background(), storagetest.New()
	exp := time.Now().Add(time.Hour)
	for name, value := range map[string]string{marker: `{"keys":[]}`, macKey: "mac"} {
		if err := st.Store(ctx, name, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	e := state.StorageEntries(st, nil)
	for _, put := range []struct {
		kind  state.Kind
		id    string
		value string
	}{
		{state.Revoked, "r1", ""},
		{state.Latest, "client", `{"jti":"j","exp":"` + exp.Format(time.RFC3339) + `"}`},
		{state.Opaque, "o1", `{"client_id":"c","exp":"` + exp.Format(time.RFC3339) + `"}`},
	} {
		if err := e.Put(ctx, put.kind, put.id, []byte(put.value), exp); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestImport_CopiesEveryEntryAndBlobOnce(t *testing.T) {
	ctx := context.Background()
	from, to := gateway(t), storagetest.New()
	entries := state.StorageEntries(to, nil)
	imported, err := state.Import(ctx, from, to, entries, marker, macKey)
	if err != nil || !imported {
		t.Fatalf("Import = %v, %v; want true, nil", imported, err)
	}
	for _, name := range []string{marker, macKey} {
		if _, err := to.Load(ctx, name); err != nil {
			t.Errorf("blob %s not imported: %v", name, err)
		}
	}
	for kind, id := range map[state.Kind]string{state.Revoked: "r1", state.Latest: "client", state.Opaque: "o1"} {
		if _, err := entries.Get(ctx, kind, id); err != nil {
			t.Errorf("%s entry %s not imported: %v", kind, id, err)
		}
	}
	if again, err := state.Import(ctx, from, to, entries, marker, macKey); again || err != nil {
		t.Errorf("second Import = %v, %v; want false: the engine holds the keys already", again, err)
	}
	// The engine restarts empty: the storage's state is the day-of-move
	// state, older than what the running instances write back.
	wiped := storagetest.New()
	if again, err := state.Import(ctx, from, wiped, state.StorageEntries(wiped, nil), marker, macKey); again || err != nil || wiped.Len() != 0 {
		t.Errorf("Import into a wiped engine = %v, %v with %d keys written; want nothing: the move is done", again, err, wiped.Len())
	}
}

func TestImport_NewGatewayImportsNothing(t *testing.T) {
	to := storagetest.New()
	imported, err := state.Import(context.Background(), storagetest.New(), to, state.StorageEntries(to, nil), marker, macKey)
	if imported || err != nil || to.Len() != 0 {
		t.Errorf("Import = %v, %v with %d keys written; want false, nil and nothing", imported, err, to.Len())
	}
}

func TestImport_SkipsACorruptEntryAndImportsTheRest(t *testing.T) {
	ctx := context.Background()
	from, to := gateway(t), storagetest.New()
	if err := from.Store(ctx, state.StorageDir+"/revoked/bad", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	imported, err := state.Import(ctx, from, to, state.StorageEntries(to, nil), marker, macKey)
	var corrupt *state.CorruptError
	if !imported || !errors.As(err, &corrupt) {
		t.Fatalf("Import = %v, %v; want true and a CorruptError", imported, err)
	}
	if _, err := to.Load(ctx, marker); err != nil {
		t.Error("the keys were not imported next to a corrupt entry")
	}
}

// failing is an engine whose writes of entries fail.
type failing struct{ state.Entries }

func (failing) Put(context.Context, state.Kind, string, []byte, time.Time) error {
	return errors.New("connection refused")
}

func TestImport_AFailedImportLeavesNoKeysSoTheNextStartRunsItAgain(t *testing.T) {
	ctx := context.Background()
	from, to := gateway(t), storagetest.New()
	if imported, err := state.Import(ctx, from, to, failing{state.StorageEntries(to, nil)}, marker, macKey); imported || err == nil {
		t.Fatalf("Import = %v, %v; want false and the error", imported, err)
	}
	if _, err := to.Load(ctx, marker); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the keys were stored although the entries were not: the import would never run again (%v)", err)
	}
}
