package tokenstate

import (
	"fmt"
	"testing"
	"time"
)

func TestOpaqueCache_AFloodPushesOutOthersAtRandomNotInOrder(t *testing.T) {
	const size, flood = 1000, 500
	c := newOpaqueCache(size)
	exp := time.Now().Add(time.Hour)
	for i := range size {
		c.put(digestOfToken(fmt.Sprint("victim", i)), &Opaque{ClientID: "victim", Expiry: exp})
	}
	for i := range flood {
		c.put(digestOfToken(fmt.Sprint("flood", i)), &Opaque{ClientID: "attacker", Expiry: exp})
	}
	if n := len(c.m); n != size {
		t.Fatalf("%d entries, want the bound %d", n, size)
	}
	victims := 0
	for i := range size {
		if c.get(digestOfToken(fmt.Sprint("victim", i))) != nil {
			victims++
		}
	}
	// At random, each of the flood's puts evicts one of the entries held
	// then, so a victim survives with probability (1-1/size)^flood: about
	// 606 of them (σ ≈ 15). In order (oldest first), 500 would; with the
	// newest evicted first, 1000.
	if victims < 540 || victims > 680 {
		t.Errorf("%d of %d victims kept after a flood of %d, want about 606", victims, size, flood)
	}
}

func TestOpaqueCache_RecordsShareWhatTheyHaveInCommonButNotTheCallersLists(t *testing.T) {
	c := newOpaqueCache(10)
	aud := []string{"https://api.example"}
	a := &Opaque{ClientID: "c", Subject: "oauth_client_c", Audience: aud, Scope: []string{"r1", "r2"}, ID: "1"}
	b := &Opaque{ClientID: "c", Subject: "oauth_client_c", Audience: []string{"https://api.example"}, Scope: []string{"r1", "r2"}, ID: "2"}
	c.put(digestOfToken("a"), a)
	c.put(digestOfToken("b"), b)
	ga, gb := c.get(digestOfToken("a")), c.get(digestOfToken("b"))
	if ga.ID != "1" || gb.ID != "2" || ga.Scope[1] != "r2" {
		t.Fatalf("got %+v and %+v", ga, gb)
	}
	if &ga.Audience[0] != &gb.Audience[0] || &ga.Scope[0] != &gb.Scope[0] {
		t.Error("two records of one client hold their own audience and scope lists")
	}
	aud[0] = "changed by the caller"
	if ga.Audience[0] != "https://api.example" {
		t.Error("the cache shares the caller's list")
	}
	c.remove(digestOfToken("a"))
	if c.get(digestOfToken("a")) != nil || c.get(digestOfToken("b")) == nil {
		t.Error("remove took the wrong entry")
	}
	if _, ok := digestOf("not a hash"); ok { // an id announced by a foreign writer
		t.Error("an id that is no hash was taken for one")
	}
}
