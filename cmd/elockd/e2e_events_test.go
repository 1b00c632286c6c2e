package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Session events over a real elockd: "wanted" when someone starts
// waiting for a lock the session holds, none for its own release, and
// "lost" when its exclusive grant goes without its asking.
func TestSessionEvents(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	h, w1, w2, o := p.dial(t, "H"), p.dial(t, "W1"), p.dial(t, "W2"), p.dial(t, "O")
	h.expect("events off", "400 bad events: want on")
	h.expect("events on", "200 events on")
	h.expect("lock job", "200 Acquired")
	h.expect("rlock doc", "200 Acquired")
	w1.send("lock job 20")
	h.expectRead("the first waiter", "EVENT wanted job 1")
	w2.send("lock job 20")
	h.expectRead("the second waiter", "EVENT wanted job 2")
	o.send("lock doc 20")
	h.expectRead("a writer behind the reader", "EVENT wanted doc 1")
	// Its own unlock is not a loss, and the next holder's changes are
	// not this session's business.
	h.expect("unlock job", "200 Unlocked")
	h.expect("unlock doc", "200 Unlocked")
	w1.expectRead("the hand-over", "200 Acquired")
	h.expect("leader job", fmt.Sprintf("200 LEADER %d -", w1.token("job")))

	o.expectRead("the writer after the reader", "200 Acquired")
	h.noReply("no session events for names it let go")
}

// Names the session held before "events on" are watched too: a session
// that took them on an earlier connection and resumed here hears who
// wants them. And the three words of session events cannot be watched
// on a connection with events on, either way round, where "EVENT lost
// free 7" would read both ways.
func TestSessionEventsAfterAResume(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	first := p.dial(t, "first")
	first.expect("set_timeout 60000", "200 timeout set")
	id := first.connID()
	first.expect("lock job", "200 Acquired")
	first.expect("acquire pool 2", "200 Acquired")
	first.close()

	h, w := p.dial(t, "H"), p.dial(t, "W")
	var resumed string
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resumed = h.do("conn_id " + id); resumed != "403 cannot set conn id" || time.Now().After(deadline) {
			break
		}
	}
	if !strings.HasPrefix(resumed, "200 ") {
		t.Fatalf("resume: %q", resumed)
	}
	h.expect("watch lost", "200 watching")
	h.expectRead("the watched name's state", "EVENT lost free 0")
	h.expect("events on", "400 reserved name: this connection watches lost, wanted or session, whose events would read as session events")
	h.expect("unwatch lost", "200 OK")
	h.expect("events on", "200 events on")
	for _, name := range []string{"lost", "wanted", "session"} {
		h.expect("watch "+name, "400 reserved name: "+name+" cannot be watched on a connection with events on, where its events would read as session events")
	}
	h.expect("watch free", "200 watching")
	h.expectRead("an ordinary name", "EVENT free free 0")
	w.send("lock job 20")
	h.expectRead("a waiter for a name held before events on", "EVENT wanted job 1")
	w2, w3 := p.dial(t, "W2"), p.dial(t, "W3")
	w2.expect("acquire pool 2", "200 Acquired")
	w3.send("acquire pool 2 20")
	h.expectRead("a waiter for a permit held before events on", "EVENT wanted pool 1")
	h.expect("unlock job", "200 Unlocked")
	w.expectRead("the hand-over", "200 Acquired")
	h.noReply("no loss for its own unlock")
}
