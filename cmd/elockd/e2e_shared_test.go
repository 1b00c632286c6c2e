package main

import (
	"fmt"
	"strings"
	"testing"
)

// Shared locks (rlock) and semaphores (acquire) over a real elockd: every
// row of their protocol.

func TestSharedLockProtocol(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	r1, r2, w, r3 := p.dial(t, "R1"), p.dial(t, "R2"), p.dial(t, "W"), p.dial(t, "R3")

	// Readers hold it together, each with its own, growing token.
	r1.expect("rlock doc", "200 Acquired")
	r2.expect("rlock doc 5", "200 Acquired")
	t1, t2 := r1.token("doc"), r2.token("doc")
	if t2 <= t1 {
		t.Fatalf("second shared grant's token %d not above the first's %d", t2, t1)
	}
	if in := r1.infoText("doc"); in["kind"] != "lock" || in["mode"] != "shared" || in["holders"] != "2" || in["mine"] != "1" || in["token"] != fmt.Sprint(t1) {
		t.Fatalf("a reader's info: %v", in)
	}
	// locks lists a row per grant, each with its own token.
	lines := r3.block("locks doc", "200 LOCKS")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], fmt.Sprintf("LOCK doc %d ", t1)) || !strings.HasPrefix(lines[2], fmt.Sprintf("LOCK doc %d ", t2)) {
		t.Fatalf("locks doc: %q", lines)
	}
	r1.expect("rlock doc", "200 Acquired") // re-entrant
	if r1.token("doc") != t1 {
		t.Fatal("a re-entrant rlock changed the token")
	}

	// A writer is refused while readers hold it, and waits behind them.
	w.expect("lock doc", "409 Unavailable")
	w.send("lock doc 20")
	r1.waitWaiters("doc", 1)
	// A reader that comes after a waiting writer queues behind it.
	r3.expect("rlock doc", "409 Unavailable")
	r3.send("rlock doc 20")
	r1.waitWaiters("doc", 2)
	w.noReply("readers hold it")
	r1.expect("unlock doc", "200 Unlocked")
	w.noReply("one reader still holds it")
	r2.expect("unlock doc", "200 Unlocked")
	w.expectRead("writer at hand-over", "200 Acquired")
	r3.noReply("the writer holds it")
	tw := w.token("doc")
	if tw <= t2 {
		t.Fatalf("writer's token %d not above the readers' %d", tw, t2)
	}
	if in := w.infoText("doc"); in["mode"] != "exclusive" || in["holders"] != "1" || in["waiters"] != "1" {
		t.Fatalf("the writer's info: %v", in)
	}
	// An exclusive holder's rlock is covered by its grant.
	w.expect("rlock doc", "200 Acquired")
	if w.token("doc") != tw {
		t.Fatal("rlock under an exclusive grant changed the token")
	}
	w.expect("unlock doc", "200 Unlocked")
	r3.expectRead("reader after the writer", "200 Acquired")
	if tr := r3.token("doc"); tr <= tw {
		t.Fatalf("reader's token %d not above the writer's %d", tr, tw)
	}

	// No upgrade: a reader asking to write is refused, waiting or not, and
	// keeps its shared grant; the connection goes on.
	const noUpgrade = "400 no upgrade: doc is held shared by this session"
	r3.expect("lock doc", noUpgrade)
	r3.expect("lock doc 5", noUpgrade)
	if in := r3.infoText("doc"); in["mine"] != "1" || in["mode"] != "shared" {
		t.Fatalf("after a refused upgrade: %v", in)
	}
	r3.expect("unlock doc", "200 Unlocked")
	r3.expect("unlock doc", "403 not_locked")
	if in := r3.infoText("doc"); in["held"] != "0" || in["mode"] != "free" || in["holders"] != "0" || in["kind"] != "lock" {
		t.Fatalf("a free name's info: %v", in)
	}
	// Bad waits are refused as for lock.
	r3.expect("rlock doc x", "400 bad wait: want whole seconds from 0 to 86400")
}

func TestSemaphoreProtocol(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-max-permits", "100")
	a, b, c, d := p.dial(t, "A"), p.dial(t, "B"), p.dial(t, "C"), p.dial(t, "D")

	a.expect("acquire pool 2", "200 Acquired")
	b.expect("acquire pool 2 5", "200 Acquired")
	ta, tb := a.token("pool"), b.token("pool")
	if tb <= ta {
		t.Fatalf("second permit's token %d not above the first's %d", tb, ta)
	}
	a.expect("acquire pool 2", "200 Acquired") // one permit per session
	if a.token("pool") != ta {
		t.Fatal("a re-entrant acquire changed the token")
	}
	c.expect("acquire pool 2", "409 Unavailable")
	c.expect("acquire pool 3", "400 limit mismatch: pool has 2 permits")
	c.expect("lock pool", "400 kind mismatch: pool is a semaphore")
	c.expect("rlock pool 5", "400 kind mismatch: pool is a semaphore")
	if in := c.infoText("pool"); in["kind"] != "semaphore" || in["mode"] != "shared" || in["holders"] != "2" || in["limit"] != "2" || in["mine"] != "0" || in["token"] != fmt.Sprint(tb) {
		t.Fatalf("a semaphore's info: %v", in)
	}
	// Waiters are served FIFO as permits come back.
	c.send("acquire pool 2 20")
	a.waitWaiters("pool", 1)
	d.send("acquire pool 2 20")
	a.waitWaiters("pool", 2)
	a.expect("unlock pool", "200 Unlocked")
	c.expectRead("first waiter", "200 Acquired")
	d.noReply("both permits are held")
	b.expect("unlock_all", "200 OK") // releases its permit too
	d.expectRead("second waiter", "200 Acquired")
	if tc, td := c.token("pool"), d.token("pool"); tc <= tb || td <= tc {
		t.Fatalf("tokens %d, %d, %d, %d do not grow in grant order", ta, tb, tc, td)
	}

	// Bad limits, and the flag's bound.
	for _, bad := range []string{"acquire pool 0", "acquire pool 101", "acquire pool x", "acquire pool -1"} {
		a.expect(bad, "400 bad limit: want whole permits from 1 to 100")
	}
	a.expect("acquire pool 2 x", "400 bad wait: want whole seconds from 0 to 86400")

	// A lock's name refuses permits; a forgotten semaphore takes a new
	// limit.
	a.expect("lock plain", "200 Acquired")
	b.expect("acquire plain 3", "400 kind mismatch: plain is a lock")
	a.expect("unlock plain", "200 Unlocked")
	b.expect("acquire plain 3", "200 Acquired")
	c.expect("unlock pool", "200 Unlocked")
	d.expect("unlock pool", "200 Unlocked")
	a.expect("acquire pool 7", "200 Acquired")
	if in := a.infoText("pool"); in["limit"] != "7" || in["holders"] != "1" {
		t.Fatalf("a semaphore made again: %v", in)
	}
}

// A session's shared grants and permits end with it, as its locks do:
// its waiters are handed them.
func TestSharedGrantsEndWithTheSession(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	a, w1, w2, o := p.dial(t, "A"), p.dial(t, "W1"), p.dial(t, "W2"), p.dial(t, "O")
	a.expect("set_timeout 0", "200 timeout set")
	a.expect("rlock doc", "200 Acquired")
	a.expect("acquire one 1", "200 Acquired")
	w1.send("lock doc 20")
	w2.send("acquire one 1 20")
	o.waitWaiters("doc", 1)
	o.waitWaiters("one", 1)
	a.close()
	w1.expectRead("writer after the reader's session ended", "200 Acquired")
	w2.expectRead("permit after the holder's session ended", "200 Acquired")
}
