package redisstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oauthgate/oauthgate/caddymodule/state"
)

// event is one message on the channel. JSON, so that ids and names need
// no escaping rules of their own; the value travels as base64.
type event struct {
	Op    string     `json:"op"` // opPut, opDelete or opBlob
	Kind  state.Kind `json:"kind,omitempty"`
	ID    string     `json:"id,omitempty"`
	Value []byte     `json:"v,omitempty"`
	Exp   int64      `json:"exp,omitempty"`  // unix ms
	Name  string     `json:"name,omitempty"` // of a blob
}

const (
	opPut    = "put"
	opDelete = "del"
	opBlob   = "blob"
	// maxMessage is more than the largest message (a maxValue value in
	// base64 and a maxName id); a longer one is not ours.
	maxMessage = maxValue*4/3 + 2*maxName + 256
)

func putEvent(kind state.Kind, id string, value []byte, exp time.Time) (string, error) {
	return encode(event{Op: opPut, Kind: kind, ID: id, Value: value, Exp: exp.UnixMilli()})
}

func deleteEvent(kind state.Kind, id string) (string, error) {
	return encode(event{Op: opDelete, Kind: kind, ID: id})
}

func blobEvent(name string) (string, error) {
	return encode(event{Op: opBlob, Name: name})
}

func encode(ev event) (string, error) {
	b, err := json.Marshal(ev)
	return string(b), err
}

// decode parses and checks a message. Anything published on the channel
// is decoded, so nothing in it is trusted to be well formed.
func decode(payload string) (event, error) {
	var ev event
	if len(payload) > maxMessage {
		return ev, fmt.Errorf("message of %d bytes", len(payload))
	}
	if err := json.Unmarshal([]byte(payload), &ev); err != nil {
		return ev, err
	}
	switch ev.Op {
	case opBlob:
		return ev, checkName("blob name", ev.Name)
	case opPut, opDelete:
		if err := checkKind(ev.Kind); err != nil {
			return ev, err
		}
		if err := checkName("id", ev.ID); err != nil {
			return ev, err
		}
		if ev.Op == opPut {
			if ev.Exp <= 0 {
				return ev, errors.New("put without expiry")
			}
			if ev.Value == nil {
				ev.Value = []byte{} // a put, not a delete
			}
		}
		return ev, nil
	default:
		return ev, fmt.Errorf("unknown op %q", ev.Op)
	}
}

func checkKind(k state.Kind) error {
	switch k {
	case state.Revoked, state.Opaque, state.Latest:
		return nil
	}
	return fmt.Errorf("unknown kind %q", k)
}
