package main

import (
	"fmt"
	"testing"
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
