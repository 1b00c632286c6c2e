package main

import (
	"fmt"
	"testing"
)

// Watches over a real elockd: the current state at once, then every
// change, as EVENT lines between replies; unwatch; the bound.
func TestWatchProtocol(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-max-watches", "2")
	w, a, b := p.dial(t, "W"), p.dial(t, "A"), p.dial(t, "B")

	w.expect("watch svc", "200 watching")
	w.expectRead("the state now", "EVENT svc free 0")
	a.expect("campaign svc host-a", "200 Elected")
	ta := a.token("svc")
	w.expectRead("elected", fmt.Sprintf("EVENT svc held %d host-a", ta))
	a.expect("proclaim svc host-a2", "200 OK")
	w.expectRead("proclaimed", fmt.Sprintf("EVENT svc held %d host-a2", ta))
	a.expect("unlock svc", "200 Unlocked")
	w.expectRead("resigned", fmt.Sprintf("EVENT svc free %d", ta))
	a.expect("rlock svc", "200 Acquired")
	b.expect("rlock svc", "200 Acquired")
	tb := b.token("svc")
	w.expectRead("one reader", fmt.Sprintf("EVENT svc shared 1 %d", a.token("svc")))
	w.expectRead("two readers", fmt.Sprintf("EVENT svc shared 2 %d", tb))
	// A plain lock is "held" with no value.
	a.expect("unlock svc", "200 Unlocked")
	w.expectRead("one reader left", fmt.Sprintf("EVENT svc shared 1 %d", tb))
	b.expect("unlock svc", "200 Unlocked")
	w.expectRead("free", fmt.Sprintf("EVENT svc free %d", tb))
	a.expect("lock svc", "200 Acquired")
	w.expectRead("locked", fmt.Sprintf("EVENT svc held %d -", a.token("svc")))

	// Other commands answer as ever on a watching connection; the
	// bound is per connection.
	w.expect("watch svc", "200 watching") // already: no second event
	w.expect("watch other", "200 watching")
	w.expectRead("other now", "EVENT other free 0")
	w.expect("watch third", "429 too many watches on this connection (max 2)")
	w.expect("unwatch other", "200 OK")
	w.expect("unwatch svc", "200 OK")
	a.expect("unlock svc", "200 Unlocked")
	w.expect("leader svc", "409 no leader") // and no EVENT before it
	w.expect("watch third", "200 watching")
	w.expectRead("third now", "EVENT third free 0")
}

// Events reach a connection while its own lock NAME SECS waits, before
// the grant, and the grant's reply is whole after them.
func TestWatchEventsWhileALockWaits(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	w, h, o := p.dial(t, "W"), p.dial(t, "H"), p.dial(t, "O")
	w.expect("watch news", "200 watching")
	w.expectRead("news now", "EVENT news free 0")
	h.expect("lock q", "200 Acquired")
	w.send("lock q 20")
	o.waitWaiters("q", 1)
	for i := range 3 {
		o.expect(fmt.Sprintf("campaign news v%d", i), "200 Elected")
		w.expectRead("an event during the wait", fmt.Sprintf("EVENT news held %d v%d", o.token("news"), i))
	}
	h.expect("unlock q", "200 Unlocked")
	w.expectRead("the grant after the events", "200 Acquired")
	last := o.token("news")
	o.expect("unlock news", "200 Unlocked")
	w.expectRead("and events go on", fmt.Sprintf("EVENT news free %d", last))
}
