package node

import (
	"net"
	"testing"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
)

// A held name's changes become session events: waiters growing is
// "wanted"; the session's grant replaced or gone without its unlock is
// "lost", once, and the name is no longer watched; older events are
// ignored.
func TestHeldChangedMakesSessionEvents(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &conn{nc: a}
	hw := &heldWatch{token: 7}
	c.sessEvents.held = map[string]*heldWatch{"job": hw}
	held := func(seq uint64, tok uint64, waiters int) partition.WatchEvent {
		return partition.WatchEvent{Name: "job", Seq: seq, Mine: tok, State: locktable.NameState{Mode: locktable.Exclusive, Token: tok, Holders: 1, Waiters: waiters}}
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
	if len(c.sessEvents.held) != 0 {
		t.Fatal("a lost name is still watched")
	}
}

// A shared grant or a permit is lost when the session's own grant goes,
// though the name stays shared by others; a name listed at "events on"
// learns its token from the first event, and one already gone by then is
// dropped without a word (nobody knows the token it had).
func TestSharedGrantLostWhileOthersHold(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &conn{nc: a}
	c.sessEvents.on = true
	r, gone := &heldWatch{}, &heldWatch{}
	c.sessEvents.held = map[string]*heldWatch{"r": r, "gone": gone}
	shared := func(seq, mine uint64, holders int) partition.WatchEvent {
		return partition.WatchEvent{Name: "r", Seq: seq, Mine: mine, State: locktable.NameState{Mode: locktable.Shared, Token: 12, Holders: holders}}
	}
	c.heldChanged("r", r, shared(1, 5, 3))
	c.heldChanged("r", r, shared(2, 5, 2)) // another reader left
	c.heldChanged("gone", gone, partition.WatchEvent{Name: "gone", Seq: 1, State: locktable.NameState{Free: true}})
	c.heldChanged("r", r, shared(3, 0, 1)) // this session's grant went
	c.appendSessionEvents()
	if want := "EVENT lost r 5\r\n"; string(c.out) != want {
		t.Fatalf("session events %q, want %q", c.out, want)
	}
	if len(c.sessEvents.held) != 0 {
		t.Fatalf("still watched: %v", c.sessEvents.held)
	}
}

// An owner that cannot confirm a held name puts the session in jeopardy
// as the home's failed renewals do: safe only when neither holds, and
// when the unsure name is released or lost.
func TestUnsureOwnerIsJeopardy(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &conn{nc: a}
	c.sessEvents.on = true
	x, y := &heldWatch{token: 3}, &heldWatch{token: 4}
	c.sessEvents.held = map[string]*heldWatch{"x": x, "y": y}
	unsure := func(name string, u bool) partition.WatchEvent { return partition.WatchEvent{Name: name, Unsure: u} }
	step := func(what, want string) {
		t.Helper()
		c.out = c.out[:0]
		c.appendSessionEvents()
		if string(c.out) != want {
			t.Fatalf("after %s: %q, want %q", what, c.out, want)
		}
	}
	c.heldChanged("x", x, unsure("x", true))
	step("x unsure", "EVENT session jeopardy\r\n")
	c.heldChanged("y", y, unsure("y", true))
	c.jeopardy(true)
	c.heldChanged("x", x, unsure("x", false))
	c.jeopardy(false)
	step("y still unsure", "")
	c.heldChanged("y", y, unsure("y", false))
	step("both sure", "EVENT session safe\r\n")
	c.heldChanged("x", x, unsure("x", true))
	c.eventsReleased([]byte("x"))
	step("the unsure name released", "EVENT session jeopardy\r\nEVENT session safe\r\n")
	c.heldChanged("y", y, unsure("y", true))
	c.heldChanged("y", y, partition.WatchEvent{Name: "y", Seq: 1, State: locktable.NameState{Free: true}})
	step("the unsure name lost", "EVENT session jeopardy\r\nEVENT lost y 4\r\nEVENT session safe\r\n")
	if c.sessEvents.unsure != 0 {
		t.Fatalf("unsure count %d", c.sessEvents.unsure)
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

// A grant under a new token of a name still watched under an older one
// tells the older one lost at once (its event may come late, or not at
// all); a name watched again after an unlock of unknown outcome learns
// its token, and its going is no loss; a full queue drops "wanted"
// lines before any other.
func TestRegrantAskedAndFullQueue(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &conn{nc: a}
	c.sessEvents.on = true
	x, y := &heldWatch{token: 5}, &heldWatch{asked: true}
	c.sessEvents.held = map[string]*heldWatch{"x": x, "y": y}
	c.eventsGranted([]byte("x"), 5) // the same grant: nothing
	c.eventsGranted([]byte("x"), 9)
	if x.token != 9 {
		t.Fatalf("x watched under %d, want 9", x.token)
	}
	ev := func(name string, seq, mine uint64) partition.WatchEvent {
		return partition.WatchEvent{Name: name, Seq: seq, Mine: mine, State: locktable.NameState{Mode: locktable.Exclusive, Token: mine, Holders: 1}}
	}
	c.heldChanged("y", y, ev("y", 1, 4)) // learnt
	c.heldChanged("y", y, partition.WatchEvent{Name: "y", Seq: 2, State: locktable.NameState{Free: true}})
	c.appendSessionEvents()
	if want := "EVENT lost x 5\r\n"; string(c.out) != want {
		t.Fatalf("session events %q, want %q", c.out, want)
	}
	if c.sessEvents.held["y"] != nil || c.sessEvents.held["x"] != x {
		t.Fatalf("watched: %v", c.sessEvents.held)
	}
	e := &c.sessEvents
	e.mu.Lock()
	e.add([]byte("EVENT lost a 1\r\n"))
	for range maxEventLines - 2 {
		e.add([]byte("EVENT wanted w 1\r\n"))
	}
	e.add([]byte("EVENT session jeopardy\r\n"))
	e.add([]byte("EVENT session safe\r\n"))
	n, first, last := len(e.lines), string(e.lines[0]), string(e.lines[len(e.lines)-1])
	e.mu.Unlock()
	if n != maxEventLines || first != "EVENT lost a 1\r\n" || last != "EVENT session safe\r\n" {
		t.Fatalf("full queue: %d lines, first %q, last %q", n, first, last)
	}
}
