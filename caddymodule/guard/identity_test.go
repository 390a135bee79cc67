package guard

import (
	"strings"
	"testing"
)

func TestJoinTwice_IsStringsJoinWithEachSeparator(t *testing.T) {
	for _, elems := range [][]string{nil, {}, {"a"}, {"", ""}, {"Orders.send", "x.read"}, {"a", "bb", "ccc"}} {
		space, comma := joinTwice(elems, " ", ",")
		if want := strings.Join(elems, " "); space != want {
			t.Errorf("%q: %q, want %q", elems, space, want)
		}
		if want := strings.Join(elems, ","); comma != want {
			t.Errorf("%q: %q, want %q", elems, comma, want)
		}
	}
}
