package keys_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/oauthgate/oauthgate/caddymodule/keys"
	"github.com/oauthgate/oauthgate/caddymodule/keys/keystest"
)

func TestDescribe_ListsTheScheduleAsTextAndMarksTheSigningKey(t *testing.T) {
	clock := keystest.NewClock(t0)
	m := newManager(t, newMemStorage(), clock, scheduled(jwa.ES256()))
	mustSync(t, m)
	clock.Set(t0.Add(rotateEvery))
	set := mustSync(t, m) // a key published ahead, and the one that signs
	ids := []string{set.Keys()[0].ID, set.Keys()[1].ID}
	rfc := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }

	steps := []struct {
		name string
		at   time.Duration
		want []keys.Description
	}{
		{"before the new key activates", rotateEvery, []keys.Description{
			{ID: ids[0], Algorithm: "ES256", Created: rfc(rotateEvery), Activates: rfc(rotateEvery + publishAhead)},
			{ID: ids[1], Algorithm: "ES256", Created: rfc(0), Activates: rfc(0),
				Retires: rfc(rotateEvery + publishAhead), Expires: rfc(rotateEvery + publishAhead + retainFor), Signing: true},
		}},
		{"once it has activated", rotateEvery + publishAhead, []keys.Description{
			{ID: ids[0], Algorithm: "ES256", Created: rfc(rotateEvery), Activates: rfc(rotateEvery + publishAhead), Signing: true},
			{ID: ids[1], Algorithm: "ES256", Created: rfc(0), Activates: rfc(0),
				Retires: rfc(rotateEvery + publishAhead), Expires: rfc(rotateEvery + publishAhead + retainFor)},
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clock.Set(t0.Add(st.at))
			got := set.Describe()
			if len(got) != len(st.want) {
				t.Fatalf("Describe() = %+v, want %+v", got, st.want)
			}
			for i := range st.want {
				if got[i] != st.want[i] {
					t.Errorf("key %d: %+v, want %+v", i+1, got[i], st.want[i])
				}
			}
		})
	}
}

func TestDescribe_WireNamesAndEmptyTimesLeftOut(t *testing.T) {
	data, err := json.Marshal(keys.Description{ID: "k1", Algorithm: "ES256", Activates: "2030-01-01T00:00:00Z"})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"kid":"k1","alg":"ES256","activates":"2030-01-01T00:00:00Z","signing":false}`
	if string(data) != want {
		t.Errorf("JSON = %s, want %s", data, want)
	}
}
