package node

import (
	"net"
	"testing"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
)

// A held name's changes become session events: waiters growing is
// "wanted"; an exclusive grant replaced or freed without this session's
// unlock is "lost", once; older events are ignored.
func TestHeldChangedMakesSessionEvents(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &conn{nc: a}
	hw := &heldWatch{token: 7, excl: true}
	c.sessEvents.held = map[string]*heldWatch{"job": hw}
	held := func(seq uint64, tok uint64, waiters int) partition.WatchEvent {
		return partition.WatchEvent{Name: "job", Seq: seq, State: locktable.NameState{Mode: locktable.Exclusive, Token: tok, Holders: 1, Waiters: waiters}}
	}
	c.heldChanged("job", hw, held(1, 7, 0))
	c.heldChanged("job", hw, held(2, 7, 1))
	c.heldChanged("job", hw, held(3, 7, 3))
	c.heldChanged("job", hw, held(2, 7, 9)) // older: ignored
	c.heldChanged("job", hw, held(4, 7, 2)) // fewer: nothing
	c.heldChanged("job", hw, held(5, 9, 0)) // another grant: lost
	c.heldChanged("job", hw, partition.WatchEvent{Name: "job", Seq: 6, State: locktable.NameState{Free: true}})
	c.appendSessionEvents()
	want := "EVENT wanted job 1\r\nEVENT wanted job 3\r\nEVENT lost job 7\r\n"
	if string(c.out) != want {
		t.Fatalf("session events %q, want %q", c.out, want)
	}
}

// The home's view of the session's risk becomes jeopardy and safe, on
// changes only, and only with events on.
func TestJeopardyAndSafe(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &conn{nc: a}
	c.jeopardy(true) // events off: nothing
	c.sessEvents.on = true
	for _, r := range []bool{false, true, true, false, false, true} {
		c.jeopardy(r)
	}
	c.appendSessionEvents()
	want := "EVENT session jeopardy\r\nEVENT session safe\r\nEVENT session jeopardy\r\n"
	if string(c.out) != want {
		t.Fatalf("session events %q, want %q", c.out, want)
	}
}
