package main

// End-to-end tests of elockd against /work/shared/elock-protocol.md: each
// test starts the real binary (see e2e_helpers_test.go) and talks to it
// over TCP with exact bytes.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/certs"
	"github.com/elock/elock/testcluster/wait"
)

// atOnce bounds replies the protocol says come "at once". It leaves room
// for a loaded machine running the race detector, and is still far below
// any wait the tests could mistake for one.
const atOnce = time.Second

func elapsed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func unknown(token string) string { return `400 Unknown command: "` + token + `"` }

// resume takes over session id on a new connection. The server detaches a
// closed connection's session asynchronously, so "403 cannot set conn id"
// is tolerated for a short while; a refused conn_id does not register a
// session, so the same connection can try again.
func resume(t *testing.T, p *proc, name, id string) *client {
	t.Helper()
	c := p.dial(t, name)
	deadline := time.Now().Add(2 * time.Second)
	for {
		r := c.do("conn_id " + id)
		if r == "200 conn id set" {
			return c
		}
		if r != "403 cannot set conn id" || time.Now().After(deadline) {
			t.Fatalf("%s: conn_id %s -> %q, want 200 conn id set", name, id, r)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------
// The command table, row by row.

func TestCommandTable(t *testing.T) {
	t.Parallel()
	rows := []struct {
		name string
		run  func(t *testing.T, p *proc)
	}{
		{"lock free", func(t *testing.T, p *proc) {
			a := p.dial(t, "A")
			a.expect("lock a", "200 Acquired")
			if in := a.info("a"); in["held"] != 1 || in["mine"] != 1 {
				t.Fatalf("info after lock: %v", in)
			}
		}},
		{"lock own is re-entrant and not counted", func(t *testing.T, p *proc) {
			a, b := p.dial(t, "A"), p.dial(t, "B")
			a.expect("lock a", "200 Acquired")
			a.expect("lock a", "200 Acquired")
			a.expect("lock a", "200 Acquired")
			a.expect("unlock a", "200 Unlocked") // one unlock releases it
			a.expect("unlock a", "403 not_locked")
			b.expect("lock a", "200 Acquired")
		}},
		{"lock held by other", func(t *testing.T, p *proc) {
			a, b := p.dial(t, "A"), p.dial(t, "B")
			a.expect("lock a", "200 Acquired")
			b.expect("lock a", "409 Unavailable")
			b.expect("lock a", "409 Unavailable")
			a.expect("lock a", "200 Acquired") // still A's
		}},
		{"lock SECS free is immediate", func(t *testing.T, p *proc) {
			a := p.dial(t, "A")
			if d := elapsed(func() { a.expect("lock a 10", "200 Acquired") }); d > atOnce {
				t.Fatalf("lock a 10 on a free lock took %v", d)
			}
		}},
		{"lock SECS own is immediate", func(t *testing.T, p *proc) {
			a := p.dial(t, "A")
			a.expect("lock a", "200 Acquired")
			if d := elapsed(func() { a.expect("lock a 10", "200 Acquired") }); d > atOnce {
				t.Fatalf("lock a 10 on an own lock took %v", d)
			}
			a.expect("unlock a", "200 Unlocked")
			a.expect("unlock a", "403 not_locked")
		}},
		{"lock 0 held by other is 409 at once", func(t *testing.T, p *proc) {
			a, b := p.dial(t, "A"), p.dial(t, "B")
			a.expect("lock a", "200 Acquired")
			if d := elapsed(func() { b.expect("lock a 0", "409 Unavailable") }); d > atOnce {
				t.Fatalf("lock a 0 took %v", d)
			}
			b.expect("lock free 0", "200 Acquired")
		}},
		{"unlock own", func(t *testing.T, p *proc) {
			a, b := p.dial(t, "A"), p.dial(t, "B")
			a.expect("lock a", "200 Acquired")
			a.expect("unlock a", "200 Unlocked")
			if in := b.info("a"); in["held"] != 0 {
				t.Fatalf("info after unlock: %v", in)
			}
			b.expect("lock a", "200 Acquired")
		}},
		{"unlock held by other", func(t *testing.T, p *proc) {
			a, b := p.dial(t, "A"), p.dial(t, "B")
			a.expect("lock a", "200 Acquired")
			b.expect("unlock a", "403 not_yours")
			b.expect("lock a", "409 Unavailable") // still held
			a.expect("unlock a", "200 Unlocked")
		}},
		{"unlock not held", func(t *testing.T, p *proc) {
			a := p.dial(t, "A")
			a.expect("unlock nothing", "403 not_locked")
			a.expect("lock a", "200 Acquired")
			a.expect("unlock a", "200 Unlocked")
			a.expect("unlock a", "403 not_locked")
		}},
		{"unlock_all with no locks", func(t *testing.T, p *proc) {
			a := p.dial(t, "A")
			a.expect("unlock_all", "200 OK")
			a.expect("unlock_all", "200 OK")
		}},
		{"unlock_all releases every lock", func(t *testing.T, p *proc) {
			a, b, s := p.dial(t, "A"), p.dial(t, "B"), p.dial(t, "stats")
			b.expect("lock theirs", "200 Acquired")
			for _, n := range []string{"x", "y", "z"} {
				a.expect("lock "+n, "200 Acquired")
			}
			a.expect("lock x", "200 Acquired") // taken twice: still released
			if _, locks := s.counts(); locks != 4 {
				t.Fatalf("STAT locks = %d before unlock_all, want 4", locks)
			}
			a.expect("unlock_all", "200 OK")
			if _, locks := s.counts(); locks != 1 {
				t.Fatalf("STAT locks = %d after unlock_all, want 1 (B's)", locks)
			}
			for _, n := range []string{"x", "y", "z"} {
				b.expect("lock "+n, "200 Acquired")
			}
			a.expect("lock theirs", "409 Unavailable") // B's lock untouched
			a.expect("unlock x", "403 not_yours")
		}},
		{"conn_id is stable for the connection", func(t *testing.T, p *proc) {
			a, b := p.dial(t, "A"), p.dial(t, "B")
			id := a.connID()
			if again := a.connID(); again != id {
				t.Fatalf("second conn_id %q != first %q", again, id)
			}
			a.expect("lock a", "200 Acquired")
			if again := a.connID(); again != id {
				t.Fatalf("conn_id after lock %q != %q", again, id)
			}
			if s := a.session()["id"]; s != id {
				t.Fatalf("session id %q != conn_id %q", s, id)
			}
			b.expect("lock b", "200 Acquired") // registered by lock first
			bid := b.connID()
			if bid == id {
				t.Fatalf("two connections share id %q", id)
			}
		}},
		{"conn_id ID resumes a detached session with its locks", func(t *testing.T, p *proc) {
			a, o := p.dial(t, "A"), p.dial(t, "other")
			a.expect("lock a", "200 Acquired")
			a.expect("lock b", "200 Acquired")
			id := a.connID()
			tok := a.token("a")
			a.close()
			o.expect("lock a", "409 Unavailable")
			r := resume(t, p, "A2", id)
			if got := r.connID(); got != id {
				t.Fatalf("conn_id after resume = %q, want %q", got, id)
			}
			if in := r.info("a"); in["mine"] != 1 || in["held"] != 1 {
				t.Fatalf("resumed session does not hold a: %v", in)
			}
			if got := r.token("a"); got != tok {
				t.Fatalf("token of a after resume = %d, want %d", got, tok)
			}
			o.expect("lock b", "409 Unavailable")
			r.expect("unlock a", "200 Unlocked")
			r.expect("unlock b", "200 Unlocked")
			o.expect("lock a", "200 Acquired")
		}},
		{"conn_id ID on a connection with a session is refused", func(t *testing.T, p *proc) {
			a, b, c := p.dial(t, "A"), p.dial(t, "B"), p.dial(t, "C")
			a.expect("lock a", "200 Acquired")
			a.expect("conn_id SOMEOTHERID", "403 cannot set conn id")
			aid := a.connID()
			a.expect("conn_id "+aid, "403 cannot set conn id") // even its own
			b.connID()
			b.expect("conn_id SOMEOTHERID", "403 cannot set conn id")
			// A detached session is not resumable from a connection that
			// already has one either.
			c.expect("set_timeout 30000", "200 timeout set")
			c.expect("lock c", "200 Acquired")
			cid := c.connID()
			c.close()
			wait.For(t, 2*time.Second, "C to leave the client count", func() bool {
				clients, _ := a.counts()
				return clients == 2
			})
			b.expect("conn_id "+cid, "403 cannot set conn id")
			b.expect("lock c", "409 Unavailable")
			if got := a.connID(); got != aid {
				t.Fatalf("A's id changed to %q after a refused conn_id", got)
			}
			if in := a.info("a"); in["mine"] != 1 {
				t.Fatalf("A lost its lock after a refused conn_id: %v", in)
			}
		}},
		{"conn_id ID attached to a live connection is refused", func(t *testing.T, p *proc) {
			a, b, s := p.dial(t, "A"), p.dial(t, "B"), p.dial(t, "stats")
			a.expect("lock a", "200 Acquired")
			aid := a.connID()
			b.expect("conn_id "+aid, "403 cannot set conn id")
			// The refusal registers nothing and takes nothing.
			if clients, _ := s.counts(); clients != 1 {
				t.Fatalf("STAT clients = %d after a refused conn_id, want 1", clients)
			}
			b.expect("lock a", "409 Unavailable")
			if bid := b.connID(); bid == aid {
				t.Fatalf("B was given A's live session %q", aid)
			}
			b.expect("unlock a", "403 not_yours")
			if in := a.info("a"); in["mine"] != 1 {
				t.Fatalf("A lost its lock: %v", in)
			}
		}},
		{"set_timeout", func(t *testing.T, p *proc) {
			a := p.dial(t, "A")
			a.expect("lock a", "200 Acquired")
			if got := a.session()["timeout_ms"]; got != "30000" {
				t.Fatalf("default timeout_ms = %s, want 30000", got)
			}
			a.expect("set_timeout 1234", "200 timeout set")
			if got := a.session()["timeout_ms"]; got != "1234" {
				t.Fatalf("timeout_ms after set_timeout 1234 = %s", got)
			}
			a.expect("set_timeout 0", "200 timeout set")
			a.expect("set_timeout 007", "200 timeout set")
			if got := a.session()["timeout_ms"]; got != "7" {
				t.Fatalf("timeout_ms after set_timeout 007 = %s", got)
			}
			b := p.dial(t, "B") // set_timeout registers a session
			b.expect("set_timeout 500", "200 timeout set")
			if got := b.session()["timeout_ms"]; got != "500" {
				t.Fatalf("B timeout_ms = %s", got)
			}
		}},
		{"quit", func(t *testing.T, p *proc) {
			a := p.dial(t, "A")
			a.expect("quit", "200 Hey, it was nice seeing you.")
			if extra := a.waitEOF(2 * time.Second); len(extra) > 0 {
				t.Fatalf("lines after the goodbye: %q", extra)
			}
			// Requests pipelined after quit are not run.
			b, o := p.dial(t, "B"), p.dial(t, "other")
			b.write("quit\r\nlock piped\r\n")
			b.expectRead("quit", "200 Hey, it was nice seeing you.")
			if extra := b.waitEOF(2 * time.Second); len(extra) > 0 {
				t.Fatalf("lines after the goodbye: %q", extra)
			}
			o.expect("lock piped", "200 Acquired")
		}},
		{"quit detaches the session and keeps its locks for the timeout", func(t *testing.T, p *proc) {
			a, b := p.dial(t, "A"), p.dial(t, "B")
			a.expect("set_timeout 400", "200 timeout set")
			a.expect("lock a", "200 Acquired")
			id := a.connID()
			a.expect("quit", "200 Hey, it was nice seeing you.")
			quitAt := time.Now()
			a.waitEOF(2 * time.Second)
			b.expect("lock a", "409 Unavailable") // kept after quit
			b.send("lock a 10")
			b.expectRead("lock a 10 after the quitter's timeout", "200 Acquired")
			if d := time.Since(quitAt); d < 400*time.Millisecond || d > 3*time.Second {
				t.Fatalf("lock released %v after quit, want about 400ms", d)
			}
			// The expired session no longer holds anything.
			c := p.dial(t, "C")
			c.expect("conn_id "+id, "200 conn id set")
			if s := c.session(); s["resumed"] != "0" || s["held"] != "0" {
				t.Fatalf("expired session after quit: %v", s)
			}
		}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			row.run(t, startElockd(t))
		})
	}
}

func TestLockWaitHandOverFIFO(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	h := p.dial(t, "holder")
	h.expect("lock q", "200 Acquired")
	tok := h.token("q")
	ws := make([]*client, 4)
	for i := range ws {
		ws[i] = p.dial(t, fmt.Sprintf("W%d", i+1))
		ws[i].send("lock q 20")
		h.waitWaiters("q", int64(i+1))
	}
	for _, w := range ws {
		w.noReply("queued behind the holder")
	}
	prev := h
	for i, w := range ws {
		prev.expect("unlock q", "200 Unlocked")
		if d := elapsed(func() { w.expectRead("lock q 20 at hand-over", "200 Acquired") }); d > atOnce {
			t.Fatalf("hand-over to %s took %v", w.name, d)
		}
		in := w.info("q")
		if in["mine"] != 1 || in["waiters"] != int64(len(ws)-i-1) {
			t.Fatalf("after hand-over to %s: info %v, want mine 1 and %d waiters", w.name, in, len(ws)-i-1)
		}
		for _, later := range ws[i+1:] {
			later.noReply("still queued")
		}
		nt := w.token("q")
		if nt <= tok {
			t.Fatalf("token after hand-over to %s = %d, not above %d", w.name, nt, tok)
		}
		tok = nt
		prev = w
	}
	prev.expect("unlock q", "200 Unlocked")
	h.expect("lock q", "200 Acquired")
}

func TestLockWaitTimesOut(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	h, w := p.dial(t, "holder"), p.dial(t, "waiter")
	h.expect("lock q", "200 Acquired")
	for _, secs := range []int{1, 2} {
		var r string
		d := elapsed(func() { r = w.do(fmt.Sprintf("lock q %d", secs)) })
		if r != "409 Unavailable" {
			t.Fatalf("lock q %d -> %q, want 409 Unavailable", secs, r)
		}
		want := time.Duration(secs) * time.Second
		if d < want || d > want+1500*time.Millisecond {
			t.Fatalf("lock q %d answered after %v, want about %v", secs, d, want)
		}
		// Bug 3: the timed-out waiter has left the queue at once.
		if in := w.info("q"); in["waiters"] != 0 {
			t.Fatalf("right after the timeout info reports %d waiters", in["waiters"])
		}
	}
	h.expect("unlock q", "200 Unlocked")
	w.expect("lock q", "200 Acquired")
}

// ---------------------------------------------------------------------
// stats

func TestStatsFormat(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	s := p.dial(t, "stats")
	s.send("stats")
	lines := s.readBlock(s.read())
	if lines[0] != "200 STATS" {
		t.Fatalf("stats header %q", lines[0])
	}
	if len(lines) < 5 || lines[1] != "STAT clients 0" || lines[2] != "STAT locks 0" || lines[3] != "STAT monitoring 0" {
		t.Fatalf("stats on an idle server: %q", lines)
	}
	st := s.parseStats(lines)
	if len(st) <= 3 {
		t.Logf("no extra STAT lines (allowed): %q", lines)
	}
	for _, x := range st[3:] {
		switch x.key {
		case "clients", "locks", "monitoring":
			t.Fatalf("STAT %s repeated after the first three: %q", x.key, lines)
		}
	}
	if lines[len(lines)-1] != "END" {
		t.Fatalf("stats does not end with END: %q", lines)
	}
}

func TestStatsCounting(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	s := p.dial(t, "stats")
	want := func(clients, locks int64) {
		t.Helper()
		c, l := s.counts()
		if c != clients || l != locks {
			t.Fatalf("stats: clients %d locks %d, want clients %d locks %d", c, l, clients, locks)
		}
	}
	waitCounts := func(clients, locks int64) {
		t.Helper()
		var c, l int64
		wait.For(t, atOnce, fmt.Sprintf("clients %d locks %d", clients, locks), func() bool {
			c, l = s.counts()
			return c == clients && l == locks
		})
	}
	want(0, 0) // a connection that only sends stats is not a client
	want(0, 0)

	// Commands that do not register a session.
	n := p.dial(t, "nosession")
	n.expect("LOCK a", unknown("LOCK"))
	n.expect("bogus", unknown("bogus"))
	n.expect("lock", unknown("lock"))
	n.stats()
	want(0, 0)

	a := p.dial(t, "A")
	aid := a.connID()
	want(1, 0)
	n.expect("conn_id "+aid, "403 cannot set conn id") // refused: not registered
	want(1, 0)

	b := p.dial(t, "B")
	b.expect("lock x", "200 Acquired")
	want(2, 1)
	b.expect("lock x", "200 Acquired") // re-entrant: still one name
	b.expect("lock y", "200 Acquired")
	want(2, 2)
	for i, reg := range []string{"unlock nope", "unlock_all", "set_timeout 1000"} {
		c := p.dial(t, fmt.Sprintf("reg%d", i))
		c.do(reg)
		want(int64(3+i), 2)
	}

	// A disconnected client leaves the count at once, even while its locks
	// wait out the timeout.
	b.expect("set_timeout 60000", "200 timeout set")
	b.close()
	waitCounts(4, 2)
	a.close()
	waitCounts(3, 2)
	if in := s.info("x"); in["held"] != 1 {
		t.Fatalf("B's lock x released at disconnect: %v", in)
	}
	if clients, _ := s.counts(); clients != 3 {
		t.Fatalf("clients %d", clients)
	}
	// A quit leaves the count too.
	q := p.dial(t, "quitter")
	q.expect("lock z", "200 Acquired")
	want(4, 3)
	q.expect("quit", "200 Hey, it was nice seeing you.")
	q.waitEOF(2 * time.Second)
	waitCounts(3, 3)
}

// ---------------------------------------------------------------------
// Unknown commands, argument counts, case.

func TestUnknownCommands(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	c, o := p.dial(t, "C"), p.dial(t, "other")
	cases := []struct{ req, token string }{
		{"foo", "foo"},
		{"foo bar baz", "foo"},
		{"LOCK a", "LOCK"},
		{"Lock a", "Lock"},
		{"UNLOCK a", "UNLOCK"},
		{"Unlock_all", "Unlock_all"},
		{"CONN_ID", "CONN_ID"},
		{"STATS", "STATS"},
		{"QUIT", "QUIT"},
		{"lockx a", "lockx"},
		{"unlockall", "unlockall"},
		{"lock", "lock"},
		{"lock a 1 2", "lock"},
		{"lock a 1 2 3 4 5", "lock"},
		{"unlock", "unlock"},
		{"unlock a b", "unlock"},
		{"unlock_all x", "unlock_all"},
		{"conn_id a b", "conn_id"},
		{"set_timeout", "set_timeout"},
		{"set_timeout 1 2", "set_timeout"},
		{"stats x", "stats"},
		{"quit now", "quit"},
		{"   foo   bar  ", "foo"},
		{"lock\ta", "lock\ta"},
		{"\x00\xff\x01", "\x00\xff\x01"},
	}
	for _, tc := range cases {
		c.expect(tc.req, unknown(tc.token))
	}
	// None of them registered a session or took a lock, and the
	// connection is still usable.
	if clients, locks := o.counts(); clients != 0 || locks != 0 {
		t.Fatalf("after unknown commands: clients %d locks %d", clients, locks)
	}
	c.expect("session", "403 no session")
	o.expect("lock a", "200 Acquired")
	c.expect("lock a", "409 Unavailable")
}

// ---------------------------------------------------------------------
// Framing.

func TestFramingLFAndCRLF(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	c := p.dial(t, "C")
	c.write("lock a\n")
	c.expectRead("lock a LF", "200 Acquired") // replies are CRLF either way
	c.write("lock b\r\n")
	c.expectRead("lock b CRLF", "200 Acquired")
	c.write("unlock a\n")
	c.expectRead("unlock a LF", "200 Unlocked")
	c.write("stats\n")
	c.readBlock(c.read())
	c.write("unlock b\nunlock a\r\nconn_id\n")
	c.expectRead("unlock b", "200 Unlocked")
	c.expectRead("unlock a", "403 not_locked")
	if l := c.read(); !idForm.MatchString(strings.TrimPrefix(l, "200 ")) {
		t.Fatalf("conn_id LF -> %q", l)
	}
}

func TestFramingSplitAtEveryByte(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	c := p.dial(t, "C")
	id := c.connID()
	type step struct {
		req  string
		want []string // nil: a block reply with this header is read instead
		head string
	}
	steps := []step{
		// Each step leaves the state as it found it.
		{req: "lock split-name\r\nunlock split-name\r\n", want: []string{"200 Acquired", "200 Unlocked"}},
		{req: "lock split-name 5\nunlock split-name\n", want: []string{"200 Acquired", "200 Unlocked"}},
		{req: "conn_id\r\n", want: []string{"200 " + id}},
		{req: "set_timeout 30000\r\n", want: []string{"200 timeout set"}},
		{req: "stats\r\n", head: "200 STATS"},
		{req: "info split-name\r\n", head: "200 INFO"},
		{req: "  nope  \r\n", want: []string{unknown("nope")}},
	}
	for _, st := range steps {
		for i := 1; i < len(st.req); i++ {
			c.write(st.req[:i])
			// Give the server a chance to read the first part alone, so the
			// split is real at the server and not merged by the kernel.
			time.Sleep(time.Millisecond)
			c.write(st.req[i:])
			what := fmt.Sprintf("%q split at %d", st.req, i)
			if st.want == nil {
				h := c.read()
				if h != st.head {
					t.Fatalf("%s -> %q, want %q", what, h, st.head)
				}
				c.readBlock(h)
				continue
			}
			for _, w := range st.want {
				c.expectRead(what, w)
			}
		}
	}
	// Byte by byte, a whole pipeline.
	req := "lock bytewise\r\ninfo bytewise\nunlock bytewise\r\n"
	for i := range len(req) {
		c.write(req[i : i+1])
	}
	c.expectRead("bytewise lock", "200 Acquired")
	c.readBlock(c.read())
	c.expectRead("bytewise unlock", "200 Unlocked")
	c.noReply("nothing more was sent")
}

func TestFramingPipelining(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	c, o := p.dial(t, "C"), p.dial(t, "other")
	o.expect("lock theirs", "200 Acquired")
	c.write("lock a\r\nlock b\nunlock a\r\nunlock theirs\r\nbogus\r\nlock theirs\r\nunlock nothing\r\nstats\r\nunlock_all\r\nlock a 0\r\n")
	for _, w := range []string{"200 Acquired", "200 Acquired", "200 Unlocked", "403 not_yours", unknown("bogus"), "409 Unavailable", "403 not_locked"} {
		c.expectRead("pipelined", w)
	}
	if h := c.read(); h != "200 STATS" {
		t.Fatalf("pipelined stats -> %q", h)
	} else {
		c.readBlock(h)
	}
	c.expectRead("pipelined unlock_all", "200 OK")
	c.expectRead("pipelined lock a 0", "200 Acquired")

	// A blocking lock holds back what is pipelined behind it.
	c.write("lock theirs 10\r\ninfo theirs\r\nunlock theirs\r\n")
	o.waitWaiters("theirs", 1)
	c.noReply("the lock is still held by other")
	o.expect("unlock theirs", "200 Unlocked")
	c.expectRead("lock theirs 10", "200 Acquired")
	if h := c.read(); h != "200 INFO" {
		t.Fatalf("info behind the blocking lock -> %q", h)
	}
	lines := c.readBlock("200 INFO")
	if lines[2] != "STAT mine 1" {
		t.Fatalf("info behind the blocking lock: %q", lines)
	}
	c.expectRead("unlock theirs", "200 Unlocked")
}

func TestFramingSpaces(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	c, o := p.dial(t, "C"), p.dial(t, "other")
	c.expect("lock    a", "200 Acquired")
	o.expect("lock a", "409 Unavailable") // the name is "a", not " a"
	c.expect("   lock b   ", "200 Acquired")
	o.expect("lock b", "409 Unavailable")
	c.expect("lock   c    3   ", "200 Acquired")
	o.expect("lock c", "409 Unavailable")
	c.expect("  unlock     a  ", "200 Unlocked")
	c.expect("unlock_all    ", "200 OK")
	c.expect(" set_timeout  1000 ", "200 timeout set")
	o.expect("lock a", "200 Acquired")
	o.expect("lock b", "200 Acquired")
	o.expect("lock c", "200 Acquired")
}

func TestFramingTabIsNotASeparator(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	c, o := p.dial(t, "C"), p.dial(t, "other")
	c.expect("lock\ta", unknown("lock\ta"))
	c.expect("lock a\tb", "200 Acquired") // the name is "a\tb"
	if in := o.info("a\tb"); in["held"] != 1 {
		t.Fatalf(`"a\tb" not held: %v`, in)
	}
	if in := o.info("a"); in["held"] != 0 {
		t.Fatalf(`"a" held: %v`, in)
	}
	o.expect("lock a", "200 Acquired")
	o.expect("lock b", "200 Acquired")
	c.expect("lock a\t5", "200 Acquired") // one argument: the name "a\t5"
	o.expect("lock a\t5", "409 Unavailable")
}

func TestFramingBareCRIsNotALineEnd(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	c, o := p.dial(t, "C"), p.dial(t, "other")
	// One line "stats\rstats": one reply, an unknown command.
	c.write("stats\rstats\r\n")
	c.expectRead("stats CR stats", unknown("stats\rstats"))
	// "lock a\r" + CRLF: the name would be "a\r", not "a".
	c.write("lock a\r\r\n")
	if l := c.read(); !is4xx(l) {
		t.Fatalf(`"lock a\r\r\n" -> %q, want a 4xx line`, l)
	}
	if in := o.info("a"); in["held"] != 0 {
		t.Fatalf(`"lock a\r\r\n" took "a": %v`, in)
	}
	// "lock x\rlock y": one lock request with two arguments, the second
	// not a number, not two requests.
	c.write("lock x\rlock y\r\n")
	if l := c.read(); !is4xx(l) {
		t.Fatalf(`"lock x\rlock y" -> %q, want one 4xx line`, l)
	}
	c.connID() // the next reply is this request's: one reply per line
	if in := o.info("y"); in["held"] != 0 {
		t.Fatalf("bare CR split a line: y is held: %v", in)
	}
	c.noReply("one reply per line")
}

func TestFramingNonUTF8Names(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	a, b := p.dial(t, "A"), p.dial(t, "B")
	names := []string{"\xff\xfe", "\xff", "\x00", "\x00\x00", "caf\xe9", "caf\xc3\xa9", "\xc3\x28", "\x01\x02\x7f", "\x80", "日本", "a\"b"}
	for _, n := range names {
		a.expect("lock "+n, "200 Acquired")
	}
	for _, n := range names {
		b.expect("lock "+n, "409 Unavailable")
		if in := b.info(n); in["held"] != 1 || in["mine"] != 0 {
			t.Fatalf("info %q: %v", n, in)
		}
		b.expect("unlock "+n, "403 not_yours")
	}
	b.expect("lock \xff\xfe\xfd", "200 Acquired") // a different name
	if _, locks := b.counts(); locks != int64(len(names)+1) {
		t.Fatalf("STAT locks = %d, want %d", locks, len(names)+1)
	}
	for _, n := range names {
		a.expect("unlock "+n, "200 Unlocked")
	}
	for _, n := range names {
		b.expect("lock "+n, "200 Acquired")
	}
}

// ---------------------------------------------------------------------
// Sessions.

func TestSessionDisconnectKeepsLocksThenReleasesToWaiter(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	a, b, o := p.dial(t, "A"), p.dial(t, "B"), p.dial(t, "observer")
	a.expect("set_timeout 300", "200 timeout set")
	a.expect("lock a", "200 Acquired")
	a.expect("lock b", "200 Acquired")
	closedAt := time.Now()
	a.close()
	b.expect("lock a", "409 Unavailable") // kept after the disconnect
	b.send("lock a 10")
	b.expectRead("lock a 10 waiting for the detached session to expire", "200 Acquired")
	if d := time.Since(closedAt); d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("the waiter got the lock %v after the disconnect, want about 300ms", d)
	}
	wait.For(t, atOnce, "lock b to be released with its session", func() bool {
		return o.info("b")["held"] == 0
	})
	o.expect("lock b", "200 Acquired")
}

func TestSessionDisconnectKeepsLocksForTheTimeout(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	a, o := p.dial(t, "A"), p.dial(t, "observer")
	a.expect("set_timeout 1500", "200 timeout set")
	a.expect("lock a", "200 Acquired")
	closedAt := time.Now()
	a.close()
	var freedAt time.Time
	wait.For(t, 5*time.Second, "the detached session's lock to be released", func() bool {
		if o.do("lock a") == "200 Acquired" {
			freedAt = time.Now()
			return true
		}
		return false
	})
	if d := freedAt.Sub(closedAt); d < 1500*time.Millisecond || d > 3500*time.Millisecond {
		t.Fatalf("lock released %v after the disconnect, want about 1.5s", d)
	}
}

func TestSessionResumeKeepsLocks(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	a, o := p.dial(t, "A"), p.dial(t, "other")
	a.expect("set_timeout 20000", "200 timeout set")
	a.expect("lock a", "200 Acquired")
	a.expect("lock b", "200 Acquired")
	id := a.connID()
	if s := a.session(); s["resumed"] != "0" || s["held"] != "2" {
		t.Fatalf("session before resume: %v", s)
	}
	a.close()
	r := resume(t, p, "resumer", id)
	s := r.session()
	if s["id"] != id || s["resumed"] != "1" || s["held"] != "2" || s["timeout_ms"] != "20000" {
		t.Fatalf("session after resume: %v", s)
	}
	o.expect("lock a", "409 Unavailable")
	// The resumed connection owns the locks: it can release them.
	r.expect("unlock a", "200 Unlocked")
	o.expect("lock a", "200 Acquired")
	// And resuming twice in a row works too.
	r.close()
	r2 := resume(t, p, "resumer2", id)
	if in := r2.info("b"); in["mine"] != 1 {
		t.Fatalf("second resume lost b: %v", in)
	}
	if s := r2.session(); s["resumed"] != "1" || s["held"] != "1" {
		t.Fatalf("session after second resume: %v", s)
	}
}

func TestSessionUnknownAndExpiredIDs(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	n := p.dial(t, "new")
	n.expect("session", "403 no session")
	const claimed = "NEVERISSUEDBYTHESERVER2345"
	n.expect("conn_id "+claimed, "200 conn id set")
	if s := n.session(); s["id"] != claimed || s["resumed"] != "0" || s["held"] != "0" {
		t.Fatalf("session of an unknown id: %v", s)
	}
	if got := n.do("conn_id"); got != "200 "+claimed {
		t.Fatalf("conn_id after claiming %s -> %q", claimed, got)
	}
	n.expect("lock n", "200 Acquired")
	n.close()
	r := resume(t, p, "resume-claimed", claimed)
	if s := r.session(); s["resumed"] != "1" || s["held"] != "1" {
		t.Fatalf("resume of the claimed id: %v", s)
	}

	// An expired id starts an empty session, and says so.
	a, o := p.dial(t, "A"), p.dial(t, "observer")
	a.expect("set_timeout 100", "200 timeout set")
	a.expect("lock a", "200 Acquired")
	id := a.connID()
	a.close()
	wait.For(t, 3*time.Second, "A's session to expire", func() bool {
		return o.info("a")["held"] == 0
	})
	e := p.dial(t, "expired")
	e.expect("conn_id "+id, "200 conn id set")
	if s := e.session(); s["resumed"] != "0" || s["held"] != "0" {
		t.Fatalf("session of an expired id: %v", s)
	}
	if in := e.info("a"); in["held"] != 0 {
		t.Fatalf("the expired session's lock came back: %v", in)
	}
}

// ---------------------------------------------------------------------
// "Where the original is buggy", items 1 to 9.

func TestBug1MalformedNumbers(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	c, o := p.dial(t, "C"), p.dial(t, "other")
	c.expect("lock keep", "200 Acquired")
	id := c.connID()
	o.expect("lock busy", "200 Acquired")
	bad := []string{
		"lock a x", "lock a 1.5", "lock a -1", "lock a +1", "lock a 1e3", "lock a 0x10",
		"lock a 99999999999999999999999", "lock a \xef\xbc\x91", "lock a 1s",
		"lock busy x", "lock busy 1.5",
		"set_timeout abc", "set_timeout 1.5", "set_timeout 10ms", "set_timeout 0x10",
	}
	for _, req := range bad {
		var r string
		if d := elapsed(func() { r = c.do(req) }); d > atOnce {
			t.Fatalf("%q took %v", req, d)
		}
		if !is4xx(r) {
			t.Fatalf("%q -> %q, want a 4xx line", req, r)
		}
	}
	// The connection, its session and its locks survive.
	if got := c.connID(); got != id {
		t.Fatalf("session changed from %s to %s", id, got)
	}
	if in := c.info("keep"); in["mine"] != 1 {
		t.Fatalf("lock keep lost: %v", in)
	}
	if in := o.info("a"); in["held"] != 0 {
		t.Fatalf("a malformed lock took a: %v", in)
	}
	o.expect("lock keep", "409 Unavailable")
	if s := c.session(); s["timeout_ms"] != "30000" {
		t.Fatalf("malformed set_timeout changed the timeout: %v", s)
	}
	c.expect("lock a 1", "200 Acquired")
}

func TestBug2BlankLines(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	c := p.dial(t, "C")
	c.expect("lock keep", "200 Acquired")
	id := c.connID()
	for _, blank := range []string{"\r\n", "\n", " \r\n", "     \n", "   \r\n", "\n\n\r\n\n"} {
		c.write(blank + "conn_id\r\n")
		n := strings.Count(blank, "\n")
		// Each blank line is ignored or answered with one 4xx line; then
		// the sentinel's reply.
		var errs int
		for {
			l := c.read()
			if l == "200 "+id {
				break
			}
			if !is4xx(l) {
				t.Fatalf("blank line %q -> %q, want nothing or a 4xx line", blank, l)
			}
			if errs++; errs > n {
				t.Fatalf("blank lines %q got %d replies", blank, errs)
			}
		}
	}
	if in := c.info("keep"); in["mine"] != 1 {
		t.Fatalf("blank lines cost the lock: %v", in)
	}
	c.noReply("every blank line accounted for")
}

func TestBug3TimedOutWaitersLeaveTheQueue(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	h := p.dial(t, "holder")
	h.expect("lock q", "200 Acquired")
	const n = 40
	ws := make([]*client, n)
	for i := range ws {
		ws[i] = p.dial(t, fmt.Sprintf("W%d", i))
		ws[i].send("lock q 1")
	}
	late := p.dial(t, "late") // queued behind the stale ones, waits longer
	h.waitWaiters("q", n)
	late.send("lock q 20")
	h.waitWaiters("q", n+1)
	for _, w := range ws {
		w.expectRead("lock q 1", "409 Unavailable")
	}
	// Right after its timeout the waiter is out of the queue.
	if in := ws[n-1].info("q"); in["waiters"] != 1 {
		t.Fatalf("after %d waiters timed out info reports %d waiters, want 1", n, in["waiters"])
	}
	// A release now is not stalled by the stale waiters, and the live
	// waiter behind them gets the lock.
	d := elapsed(func() {
		h.expect("unlock q", "200 Unlocked")
		late.expectRead("lock q 20 behind timed-out waiters", "200 Acquired")
	})
	if d > 250*time.Millisecond {
		t.Fatalf("release past %d timed-out waiters took %v", n, d)
	}
	d = elapsed(func() {
		late.expect("unlock q", "200 Unlocked")
		h.expect("lock q", "200 Acquired")
	})
	if d > 250*time.Millisecond {
		t.Fatalf("unlock and relock took %v", d)
	}
	if in := h.info("q"); in["waiters"] != 0 {
		t.Fatalf("waiters left: %v", in)
	}
}

func TestBug4DisconnectedWaiterNeverGetsTheLock(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	h := p.dial(t, "holder")
	h.expect("lock q", "200 Acquired")
	w := p.dial(t, "waiter")
	w.send("lock q 30")
	h.waitWaiters("q", 1)
	w.close()
	h.waitWaiters("q", 0) // noticed while it waits
	h.expect("unlock q", "200 Unlocked")
	n := p.dial(t, "newcomer")
	n.expect("lock q", "200 Acquired")

	// With another waiter queued behind the one that left, that one gets
	// the lock at once.
	w1, w2 := p.dial(t, "W1"), p.dial(t, "W2")
	w1.send("lock q 30")
	n.waitWaiters("q", 1)
	w2.send("lock q 30")
	n.waitWaiters("q", 2)
	w1.close()
	n.waitWaiters("q", 1)
	n.expect("unlock q", "200 Unlocked")
	if d := elapsed(func() { w2.expectRead("lock q 30", "200 Acquired") }); d > atOnce {
		t.Fatalf("the waiter behind a disconnected one waited %v", d)
	}
}

// TestBug4DisconnectedWaiterRace releases the lock right after the waiter
// disconnects, without waiting for the server to notice: a waiter that has
// disconnected before the release must still not be handed the lock.
func TestBug4DisconnectedWaiterRace(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	h, n := p.dial(t, "holder"), p.dial(t, "newcomer")
	for i := range 50 {
		name := fmt.Sprintf("q%d", i)
		h.expect("lock "+name, "200 Acquired")
		w := p.dial(t, fmt.Sprintf("waiter%d", i))
		wid := w.connID()
		w.send("lock " + name + " 30")
		h.waitWaiters(name, 1)
		w.hangUp()
		h.expect("unlock "+name, "200 Unlocked")
		if r := n.do("lock " + name + " 2"); r != "200 Acquired" {
			// Show who holds it: resume the gone waiter's session.
			r2 := resume(t, p, "waiter-session", wid)
			t.Fatalf("iteration %d: the waiter disconnected, then the holder released %s; a newcomer's \"lock %s 2\" -> %q, "+
				"and the gone waiter's session %s holds it: info %v, session %v",
				i, name, name, r, wid, r2.info(name), r2.session())
		}
	}
}

func TestBug5SessionIDs(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	seen := map[string]bool{}
	var prev []byte
	for i := range 200 {
		c := p.dial(t, fmt.Sprintf("C%d", i))
		if i%2 == 1 {
			c.expect("lock x"+strconv.Itoa(i), "200 Acquired") // registered by lock
		}
		id := c.connID()
		if seen[id] {
			t.Fatalf("session id %s issued twice", id)
		}
		seen[id] = true
		raw, err := enc.DecodeString(id)
		if err != nil || len(raw) != 16 {
			t.Fatalf("id %s does not decode to 128 bits: %v", id, err)
		}
		if prev != nil {
			d := 0
			for j := range raw {
				d += bits.OnesCount8(raw[j] ^ prev[j])
			}
			// Random 128-bit ids differ in about 64 bits; sequential or
			// counter-based ones in a few.
			if d < 24 {
				t.Fatalf("consecutive ids differ in only %d bits: guessable", d)
			}
		}
		prev = raw
		c.close()
	}
	// Ids a client claims never collide with issued ones: claim one, and
	// the server still issues fresh ids.
	cl := p.dial(t, "claimer")
	cl.expect("conn_id 1", "200 conn id set")
	if s := cl.session(); s["id"] != "1" || s["resumed"] != "0" || s["held"] != "0" {
		t.Fatalf("conn_id of an unknown id: session %v, want a new empty one", s)
	}
	n := p.dial(t, "next")
	if id := n.connID(); id == "1" || seen[id] {
		t.Fatalf("issued id %s collides", id)
	}
}

func TestBug6TimeoutValues(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-session-timeout", "500ms")
	a, b, o := p.dial(t, "A"), p.dial(t, "B"), p.dial(t, "observer")
	a.expect("lock z", "200 Acquired")
	b.expect("lock other", "200 Acquired")
	b.expect("set_timeout 60000", "200 timeout set")
	for _, v := range []string{"-5", "-1", "-0", "99999999999999999999", "18446744073709551616", "18446744073709551615",
		"9223372036854775807", "300001", "1000000000"} {
		if r := a.do("set_timeout " + v); !is4xx(r) {
			t.Fatalf("set_timeout %s -> %q, want a 4xx line", v, r)
		}
	}
	if s := a.session(); s["timeout_ms"] != "500" {
		t.Fatalf("refused set_timeout changed the timeout: %v", s)
	}
	a.expect("set_timeout 300000", "200 timeout set") // the documented maximum
	a.expect("set_timeout 200", "200 timeout set")
	a.close()
	// A's lock is released after its timeout, not leaked.
	wait.For(t, 3*time.Second, "A's lock z to be released", func() bool {
		return o.do("lock z") == "200 Acquired"
	})
	// B is unaffected, the server alive.
	o.expect("lock other", "409 Unavailable")
	if in := b.info("other"); in["mine"] != 1 {
		t.Fatalf("B lost its lock: %v", in)
	}
	if s := b.session(); s["timeout_ms"] != "60000" {
		t.Fatalf("B's timeout changed: %v", s)
	}
	o.stats()
	p.alive(t)
}

func TestBug7HalfClose(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	c := p.dial(t, "C")
	c.write("conn_id\r\nstats\r\n")
	if err := c.nc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	lines := c.waitEOF(3 * time.Second)
	if len(lines) < 6 {
		t.Fatalf("half-closed client got %q", lines)
	}
	if id, ok := strings.CutPrefix(lines[0], "200 "); !ok || !idForm.MatchString(id) {
		t.Fatalf("conn_id -> %q", lines[0])
	}
	if lines[1] != "200 STATS" || lines[2] != "STAT clients 1" || lines[3] != "STAT locks 0" ||
		lines[4] != "STAT monitoring 1" || lines[len(lines)-1] != "END" {
		t.Fatalf("stats after half-close: %q", lines[1:])
	}

	// Every request gets its reply, a blocking lock included.
	h := p.dial(t, "holder")
	h.expect("lock held", "200 Acquired")
	d := p.dial(t, "D")
	d.write("lock mine\r\nlock held 1\r\nunlock mine\r\nbogus\r\ninfo held\n")
	if err := d.nc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	lines = d.waitEOF(4 * time.Second)
	want := []string{"200 Acquired", "409 Unavailable", "200 Unlocked", unknown("bogus"), "200 INFO", "STAT held 1", "STAT mine 0"}
	if len(lines) < len(want) {
		t.Fatalf("half-closed client got %q, want %q...", lines, want)
	}
	for i, w := range want {
		if lines[i] != w {
			t.Fatalf("half-closed client got %q, want %q...", lines, want)
		}
	}
	if lines[len(lines)-1] != "END" {
		t.Fatalf("half-closed client got %q", lines)
	}
}

func TestBug8LongLines(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	c := p.dial(t, "C")
	id := c.connID()
	big := "lock " + strings.Repeat("x", 1<<20) + "\r\nconn_id\r\n"
	var r string
	d := elapsed(func() {
		c.write(big)
		r = c.read()
	})
	if r != "413 line too long (max 4096 bytes)" {
		t.Fatalf("1 MB line -> %q", r)
	}
	if d > 2*time.Second {
		t.Fatalf("1 MB line took %v", d)
	}
	c.expectRead("conn_id after the long line", "200 "+id) // resynchronised
	c.noReply("one reply for the long line")

	// A long line in many writes: still one reply.
	chunk := strings.Repeat("y", 64<<10)
	d = elapsed(func() {
		for range 16 {
			c.write(chunk)
		}
		c.write("\nlock after\r\n")
		c.expectRead("1 MB line in 16 writes", "413 line too long (max 4096 bytes)")
		c.expectRead("lock after the long line", "200 Acquired")
	})
	if d > 2*time.Second {
		t.Fatalf("1 MB line in 16 writes took %v", d)
	}
	c.noReply("one reply for the long line")

	// The boundary: 4096 bytes of line are fine, 4097 are not.
	verb := strings.Repeat("v", 4096)
	c.expect(verb, unknown(verb))
	c.expect(verb+"v", "413 line too long (max 4096 bytes)")
	c.write(verb + "v\nlock boundary\n")
	c.expectRead("4097 bytes LF", "413 line too long (max 4096 bytes)")
	c.expectRead("lock after 4097 bytes", "200 Acquired")

	// Names: 250 bytes are fine, 251 are not.
	n250 := strings.Repeat("n", 250)
	c.expect("lock "+n250, "200 Acquired")
	c.expect("lock "+n250+"n", "413 name too long (max 250 bytes)")
	c.expect("unlock "+n250+"n", "413 name too long (max 250 bytes)")
	c.expect("lock "+strings.Repeat("n", 4000), "413 name too long (max 250 bytes)")
	c.expect("unlock "+n250, "200 Unlocked")
	if in := c.info("after"); in["mine"] != 1 {
		t.Fatalf("lost a lock: %v", in)
	}
}

func TestBug9GarbageNeverHurtsOthers(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	owner, other := p.dial(t, "owner"), p.dial(t, "other")
	owner.expect("set_timeout 60000", "200 timeout set")
	owner.expect("lock precious", "200 Acquired")
	ownerID := owner.connID()
	tok := owner.token("precious")

	// Targeted attempts first, with their replies checked.
	atk := p.dial(t, "attacker")
	atk.expect("conn_id "+ownerID, "403 cannot set conn id")
	atk.expect("unlock precious", "403 not_yours")
	atk.expect("unlock_all", "200 OK")
	atk.expect("lock precious 0", "409 Unavailable")
	atk.expect("conn_id "+ownerID, "403 cannot set conn id")
	atk.expect("unlock precious", "403 not_yours")

	rng := rand.New(rand.NewPCG(9, 9))
	randomBytes := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return string(b)
	}
	tokens := []string{"lock", "unlock", "unlock_all", "conn_id", "set_timeout", "stats", "info", "token", "session", "precious", ownerID, "-1", "99999999999999999999", "\x00", "\xff", " ", "  ", "\t", "\r"}
	fuzzLines := func(n int) string {
		var sb strings.Builder
		for range n {
			for k := rng.IntN(5); k >= 0; k-- {
				sb.WriteString(tokens[rng.IntN(len(tokens))])
				if rng.IntN(3) > 0 {
					sb.WriteByte(' ')
				}
			}
			if rng.IntN(2) == 0 {
				sb.WriteString("\r\n")
			} else {
				sb.WriteString("\n")
			}
		}
		return sb.String()
	}
	payloads := []struct {
		name     string
		data     string
		abortive bool // close with RST instead of a half-close
	}{
		{"random", randomBytes(256 << 10), false},
		{"random-abort", randomBytes(64 << 10), true},
		{"nuls", strings.Repeat("\x00", 100000) + "\n" + strings.Repeat("\x00", 10) + "\r\n", false},
		{"ff", strings.Repeat("\xff", 70000) + "\n", false},
		{"crs", strings.Repeat("\r", 100000) + "\n", false},
		{"spaces", strings.Repeat(" ", 1<<20) + "\n", false},
		{"huge-no-newline", strings.Repeat("A", 3<<20), false},
		{"huge-abort", strings.Repeat("B", 2<<20), true},
		{"partial", "lock pre", true},
		{"fuzz", fuzzLines(3000), false},
		{"fuzz-abort", fuzzLines(3000), true},
		{"hostile", "unlock precious\r\nunlock_all\r\nconn_id " + ownerID + "\r\nset_timeout -1\r\nset_timeout 0\r\nlock precious 99999999999999999999999\r\nlock precious 1\r\n", false},
		{"blocked-then-gone", "lock precious 30\r\n", true},
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(payloads))
	for _, pl := range payloads {
		nc, err := net.DialTimeout("tcp", p.addr, readTimeout)
		if err != nil {
			t.Fatal(err)
		}
		tc := nc.(*net.TCPConn)
		t.Cleanup(func() { tc.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			drained := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, tc)
				drained <- err
			}()
			tc.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.WriteString(tc, pl.data); err != nil {
				errs <- fmt.Errorf("%s: write: %v", pl.name, err)
				return
			}
			if pl.abortive {
				tc.SetLinger(0)
				tc.Close()
				<-drained
				return
			}
			tc.CloseWrite()
			// The server answers what it got and closes.
			if err := <-drained; err != nil {
				errs <- fmt.Errorf("%s: reading the replies: %v", pl.name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p.alive(t)
	// The owner's lock and session survived everything.
	if in := owner.info("precious"); in["mine"] != 1 || in["held"] != 1 || uint64(in["token"]) != tok {
		t.Fatalf("owner's lock after the garbage: %v (token was %d)", in, tok)
	}
	if got := owner.connID(); got != ownerID {
		t.Fatalf("owner's session changed to %s", got)
	}
	other.expect("lock precious", "409 Unavailable")
	other.expect("lock fine", "200 Acquired")
	other.stats()
	if s := owner.session(); s["timeout_ms"] != "60000" {
		t.Fatalf("owner's timeout changed: %v", s)
	}
}

// ---------------------------------------------------------------------
// Limits, each through its flag.

func TestLimitMaxLine(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-max-line", "100", "-max-name", "50")
	c := p.dial(t, "C")
	v100 := strings.Repeat("v", 100)
	c.expect(v100, unknown(v100))
	c.write(v100 + "\n")
	c.expectRead("100 bytes LF", unknown(v100))
	c.expect(v100+"v", "413 line too long (max 100 bytes)")
	c.write(v100 + "vv\nlock ok\n")
	c.expectRead("102 bytes", "413 line too long (max 100 bytes)")
	c.expectRead("lock after the long line", "200 Acquired")
	c.write(strings.Repeat("z", 5000) + "\r\nunlock ok\r\n")
	c.expectRead("5000 bytes", "413 line too long (max 100 bytes)")
	c.expectRead("unlock after the long line", "200 Unlocked")
}

func TestLimitMaxName(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-max-name", "10")
	c, o := p.dial(t, "C"), p.dial(t, "other")
	c.expect("lock 0123456789", "200 Acquired")
	const tooLong = "413 name too long (max 10 bytes)"
	for _, req := range []string{"lock 0123456789a", "lock 0123456789a 5", "unlock 0123456789a", "token 0123456789a", "info 0123456789a"} {
		c.expect(req, tooLong)
	}
	o.expect("lock 0123456789a", tooLong)
	if _, locks := o.counts(); locks != 1 {
		t.Fatalf("STAT locks = %d, want 1", locks)
	}
	c.expect("unlock 0123456789", "200 Unlocked")
}

func TestLimitMaxWait(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-max-wait", "5s")
	c, o := p.dial(t, "C"), p.dial(t, "other")
	c.expect("lock a 5", "200 Acquired")
	for _, req := range []string{"lock b 6", "lock b 86400", "lock a 6"} {
		if r := c.do(req); !strings.HasPrefix(r, "400 bad wait: ") {
			t.Fatalf("%q with -max-wait 5s -> %q, want 400 bad wait: ...", req, r)
		}
	}
	if in := o.info("b"); in["held"] != 0 {
		t.Fatalf("a refused wait took b: %v", in)
	}
	c.expect("lock b 5", "200 Acquired")
}

func TestLimitMaxTimeout(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-max-timeout", "2s", "-session-timeout", "1s")
	c := p.dial(t, "C")
	c.expect("lock a", "200 Acquired")
	if s := c.session(); s["timeout_ms"] != "1000" {
		t.Fatalf("-session-timeout 1s: session %v", s)
	}
	c.expect("set_timeout 2000", "200 timeout set")
	for _, v := range []string{"2001", "30000"} {
		if r := c.do("set_timeout " + v); !strings.HasPrefix(r, "400 bad timeout: ") {
			t.Fatalf("set_timeout %s with -max-timeout 2s -> %q, want 400 bad timeout: ...", v, r)
		}
	}
	if s := c.session(); s["timeout_ms"] != "2000" {
		t.Fatalf("session after refused set_timeout: %v", s)
	}
}

func TestLimitMaxConns(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-max-conns", "2")
	a, b := p.dial(t, "A"), p.dial(t, "B")
	a.expect("lock a", "200 Acquired")
	b.stats()
	x := p.dial(t, "extra")
	if l := x.read(); l != "503 too many connections (max 2)" {
		t.Fatalf("third connection got %q", l)
	}
	if extra := x.waitEOF(2 * time.Second); len(extra) > 0 {
		t.Fatalf("after the 503: %q", extra)
	}
	// The served connections are unaffected.
	a.expect("lock b", "200 Acquired")
	b.expect("lock a", "409 Unavailable")
	// A slot frees when a connection closes.
	b.close()
	wait.For(t, 3*time.Second, "a free connection slot", func() bool {
		c := p.dialRaw(t, "retry")
		defer c.close()
		c.startReader()
		c.nc.Write([]byte("lock c\r\n"))
		l, err := c.next(readTimeout)
		if err != nil {
			return false
		}
		if l == "503 too many connections (max 2)" {
			return false
		}
		if l != "200 Acquired" {
			t.Fatalf("a connection after a slot freed got %q", l)
		}
		return true
	})
}

func TestLimitMaxLocks(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-max-locks", "3")
	c, o := p.dial(t, "C"), p.dial(t, "other")
	const limit = "429 too many locks held by this session (max 3)"
	for _, n := range []string{"a", "b", "c"} {
		c.expect("lock "+n, "200 Acquired")
	}
	c.expect("lock d", limit)
	c.expect("lock d 5", limit)
	c.expect("lock a", "200 Acquired") // re-entrant: not a new lock
	if in := o.info("d"); in["held"] != 0 {
		t.Fatalf("lock d taken past the limit: %v", in)
	}
	c.expect("unlock a", "200 Unlocked")
	c.expect("lock d", "200 Acquired")
	c.expect("lock e", limit)
	o.expect("lock e", "200 Acquired") // the limit is per session
	c.expect("unlock_all", "200 OK")
	for _, n := range []string{"a", "b", "c"} {
		c.expect("lock "+n, "200 Acquired")
	}
	// A resumed session keeps its count.
	id := c.connID()
	c.close()
	r := resume(t, p, "resumer", id)
	r.expect("lock d", limit)
	r.expect("unlock c", "200 Unlocked")
	r.expect("lock d", "200 Acquired")
}

func TestLimitMaxWaiters(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-max-waiters", "2")
	h := p.dial(t, "holder")
	h.expect("lock q", "200 Acquired")
	w1, w2, w3 := p.dial(t, "W1"), p.dial(t, "W2"), p.dial(t, "W3")
	w1.send("lock q 20")
	h.waitWaiters("q", 1)
	w2.send("lock q 20")
	h.waitWaiters("q", 2)
	var r string
	if d := elapsed(func() { r = w3.do("lock q 20") }); d > atOnce {
		t.Fatalf("the refused waiter was answered after %v", d)
	}
	if r != "429 too many waiters for this lock (max 2)" {
		t.Fatalf("third waiter got %q", r)
	}
	w3.expect("lock q", "409 Unavailable") // not waiting: no limit
	w3.expect("lock other 20", "200 Acquired")
	h.expect("unlock q", "200 Unlocked")
	w1.expectRead("first waiter", "200 Acquired")
	w1.expect("unlock q", "200 Unlocked")
	w2.expectRead("second waiter", "200 Acquired")
}

// ---------------------------------------------------------------------
// Extensions: token, info, session.

func TestTokens(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	a, b, c := p.dial(t, "A"), p.dial(t, "B"), p.dial(t, "C")
	a.expect("token t", "403 not_locked") // no session, nothing held
	a.expect("lock t", "200 Acquired")
	t1 := a.token("t")
	a.expect("lock t", "200 Acquired")
	if again := a.token("t"); again != t1 {
		t.Fatalf("re-entrant lock changed the token from %d to %d", t1, again)
	}
	if in := a.info("t"); uint64(in["token"]) != t1 {
		t.Fatalf("info token %d != token %d", in["token"], t1)
	}
	b.expect("token t", "403 not_yours")
	c.expect("token t", "403 not_yours") // c has no session at all
	a.expect("unlock t", "200 Unlocked")
	a.expect("token t", "403 not_locked")

	last := t1
	next := func(cl *client) {
		t.Helper()
		tok := cl.token("t")
		if tok <= last {
			t.Fatalf("%s's token %d is not above the previous grant's %d", cl.name, tok, last)
		}
		last = tok
	}
	b.expect("lock t", "200 Acquired")
	next(b)
	// Hand-overs, and grants of other names in between.
	a.send("lock t 20")
	b.waitWaiters("t", 1)
	c.expect("lock u", "200 Acquired")
	b.expect("unlock t", "200 Unlocked")
	a.expectRead("hand-over", "200 Acquired")
	next(a)
	c.send("lock t 20")
	a.waitWaiters("t", 1)
	a.expect("unlock_all", "200 OK")
	c.expectRead("hand-over by unlock_all", "200 Acquired")
	next(c)
	// And a release by session expiry.
	c.expect("set_timeout 100", "200 timeout set")
	b.send("lock t 20")
	a.waitWaiters("t", 1)
	c.close()
	b.expectRead("hand-over at expiry", "200 Acquired")
	next(b)
	for range 5 {
		b.expect("unlock t", "200 Unlocked")
		b.expect("lock t", "200 Acquired")
		next(b)
	}
}

func TestInfo(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	a, b := p.dial(t, "A"), p.dial(t, "B")
	if in := b.info("i"); in["held"] != 0 || in["mine"] != 0 || in["waiters"] != 0 || in["held_ms"] != 0 {
		t.Fatalf("info of a free lock: %v", in)
	}
	a.expect("lock i", "200 Acquired")
	aid := a.connID()
	tok := a.token("i")
	if in := a.info("i"); in["held"] != 1 || in["mine"] != 1 || uint64(in["token"]) != tok || in["waiters"] != 0 {
		t.Fatalf("holder's info: %v", in)
	}
	b.send("lock i 20")
	a.waitWaiters("i", 1)
	wait.For(t, 2*time.Second, "held_ms to grow", func() bool { return a.info("i")["held_ms"] >= 50 })
	// Another session's view: held, not mine, and never the holder's id.
	c := p.dial(t, "C")
	c.expect("lock other", "200 Acquired")
	lines := c.block("info i", "200 INFO")
	for _, l := range lines {
		if strings.Contains(l, aid) {
			t.Fatalf("info shows the holder's session id: %q", lines)
		}
	}
	if in := c.info("i"); in["held"] != 1 || in["mine"] != 0 || in["waiters"] != 1 {
		t.Fatalf("other session's info: %v", in)
	}
	// A connection with no session sees the same, without registering.
	n := p.dial(t, "nosession")
	for _, l := range n.block("info i", "200 INFO") {
		if strings.Contains(l, aid) {
			t.Fatalf("info shows the holder's session id: %q", l)
		}
	}
	n.expect("session", "403 no session")
	a.expect("unlock i", "200 Unlocked")
	b.expectRead("hand-over", "200 Acquired")
	if in := a.info("i"); in["mine"] != 0 || in["held"] != 1 {
		t.Fatalf("old holder's info: %v", in)
	}
	if in := b.info("i"); in["mine"] != 1 || uint64(in["token"]) <= tok {
		t.Fatalf("new holder's info: %v", in)
	}
}

// ---------------------------------------------------------------------
// Shutdown.

func TestShutdownSIGTERM(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	h := p.dial(t, "holder")
	h.expect("lock a", "200 Acquired")
	w := p.dial(t, "waiter")
	w.send("lock a 60")
	h.waitWaiters("a", 1)
	idle := p.dial(t, "idle")
	idle.stats()
	partial := p.dial(t, "partial")
	partial.stats()
	partial.write("lock b") // no line end yet
	d := p.stop(t, 10*time.Second)
	t.Logf("elockd exited %v after SIGTERM", d)
	if d > 3*time.Second {
		t.Fatalf("elockd took %v to exit after SIGTERM", d)
	}
	// The blocked waiter is answered or disconnected, never granted.
	for _, l := range w.waitEOF(2 * time.Second) {
		if l == "200 Acquired" {
			t.Fatalf("the blocked waiter was granted at shutdown")
		}
		if !strings.HasPrefix(l, "503 ") {
			t.Fatalf("the blocked waiter got %q at shutdown", l)
		}
	}
	idle.waitEOF(2 * time.Second)
	partial.waitEOF(2 * time.Second)
	h.waitEOF(2 * time.Second)
}

// A session id is a bearer secret: not even the debug log, which shows
// every command, prints it.
func TestTheLogNeverPrintsASessionID(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-log-level", "debug")
	id := "secret-0123456789abcdef"
	a := p.dial(t, "A")
	a.expect("conn_id "+id, "200 conn id set")
	a.expect("lock a", "200 Acquired")
	a.close()
	r := resume(t, p, "resumer", id)
	r.expect("unlock a", "200 Unlocked")
	wait.For(t, 10*time.Second, "the resume to be logged", func() bool {
		return strings.Count(p.Log(), "conn_id #") >= 2
	})
	if strings.Contains(p.Log(), "0123456789abcdef") {
		t.Fatalf("the log prints a session id:\n%s", p.Log())
	}
}

// -max-conns-per-ip caps the connections from one IP address; another
// address is served, and a place freed by a closed connection is taken
// again.
func TestLimitMaxConnsPerIP(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-listen", "127.0.0.1:0", "-max-conns-per-ip", "2")
	from := func(ip, name string) *client {
		d := net.Dialer{Timeout: readTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		nc, err := d.Dial("tcp", p.addr)
		if err != nil {
			t.Fatalf("%s: dial from %s: %v", name, ip, err)
		}
		c := &client{t: t, name: name, nc: nc.(*net.TCPConn)}
		t.Cleanup(func() { c.nc.Close() })
		c.startReader()
		return c
	}
	a, b := from("127.0.0.1", "A"), from("127.0.0.1", "B")
	a.expect("lock a", "200 Acquired")
	b.expect("lock b", "200 Acquired")
	x := from("127.0.0.1", "extra")
	if l := x.read(); l != "503 too many connections from this address (max 2)" {
		t.Fatalf("a third connection from one address got %q", l)
	}
	if extra := x.waitEOF(2 * time.Second); len(extra) > 0 {
		t.Fatalf("after the 503: %q", extra)
	}
	from("127.0.0.2", "other address").expect("lock c", "200 Acquired")
	b.close()
	wait.For(t, 5*time.Second, "a place from 127.0.0.1 to free", func() bool {
		c := from("127.0.0.1", "retry")
		defer c.close()
		c.nc.Write([]byte("lock d\r\n"))
		l, err := c.next(readTimeout)
		return err == nil && l == "200 Acquired"
	})
}

// A client that stops reading its replies is disconnected after
// -write-timeout: its session detaches and times out, and its lock goes
// to the next in line, instead of both staying pinned for as long as the
// client does nothing.
func TestAClientThatDoesNotReadIsDisconnected(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-write-timeout", "1s", "-session-timeout", "1s")
	stuck := p.dialRaw(t, "stuck")
	stuck.nc.SetReadBuffer(4096)
	stuck.nc.Write([]byte("lock a\r\n"))
	// Pipelined requests whose replies are never read: once the socket
	// buffers are full, the server's write blocks.
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := bytes.Repeat([]byte("stats\r\n"), 1000)
		stuck.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for range 1000 {
			if _, err := stuck.nc.Write(req); err != nil {
				return
			}
		}
	}()
	b := p.dial(t, "B")
	start := time.Now()
	if got := b.do("lock a 20"); got != "200 Acquired" {
		t.Fatalf("the waiter got %q after %v, want the lock of the client that stopped reading", got, time.Since(start))
	}
	stuck.nc.Close()
	<-done
}

// A single node with -data-dir that stops with locks held, by a crash or
// by a stop while sessions hold locks, refuses grants for the lock-delay
// when it starts again (a holder may still act on a grant it lost), and
// says so with 503 and the reason; a delay carries over a restart within
// it. A node that stopped holding nothing starts granting at once.
func TestARestartAfterLocksWereLostRefusesGrantsForTheLockDelay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	flags := []string{"-data-dir", dir, "-session-timeout", "1s", "-max-timeout", "3s"}
	lockDelay := func(p *proc, what string) {
		t.Helper()
		c := p.dial(t, what)
		if got := c.do("lock x"); !strings.HasPrefix(got, "503 ") || !strings.Contains(got, "lock-delay") {
			t.Fatalf("%s: lock x -> %q, want 503 ... lock-delay", what, got)
		}
		c.expect("unlock_all", "200 OK") // the connection stays usable
		c.close()
	}
	granted := func(p *proc, what string) {
		t.Helper()
		c := p.dial(t, what)
		c.expect("lock x", "200 Acquired")
		c.expect("unlock x", "200 Unlocked")
		c.close()
	}

	// A clean stop with nothing held: no delay.
	p := startElockd(t, flags...)
	granted(p, "first run")
	p.stop(t, 10*time.Second)
	p = startElockd(t, flags...)
	granted(p, "after a clean stop")

	// A crash: the next start refuses grants, and so does one restarted
	// again within the delay, until the delay passes.
	p.Kill()
	p = startElockd(t, flags...)
	lockDelay(p, "after a crash")
	p.stop(t, 10*time.Second)
	p = startElockd(t, flags...)
	lockDelay(p, "restarted within the delay")
	wait.For(t, 10*time.Second, "the lock-delay to pass", func() bool {
		c := p.dial(t, "poll")
		defer c.close()
		return c.do("lock x") == "200 Acquired"
	})

	// A stop while a session holds a lock: delayed too.
	h := p.dial(t, "holder")
	h.expect("lock y", "200 Acquired")
	p.stop(t, 10*time.Second)
	p = startElockd(t, flags...)
	lockDelay(p, "after a stop with a lock held")
}

// exchange sends script on nc, then quit, and returns every byte the
// server answered until it closed the connection.
func exchange(t *testing.T, nc net.Conn, script []string) []byte {
	t.Helper()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(nc, strings.Join(script, "\r\n")+"\r\nquit\r\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(nc)
	if err != nil {
		t.Fatalf("reading the replies: %v (after %q)", err, b)
	}
	return b
}

// Over TLS (-tls-cert, -tls-key) the protocol is the original one byte
// for byte: the same requests get the same reply bytes as over plain TCP.
func TestTLSRepliesAreThoseOfPlainTCP(t *testing.T) {
	t.Parallel()
	ca := certs.New(t)
	cert, key := ca.Issue(t, "127.0.0.1")
	plain := startElockd(t)
	secure := startElockd(t, "-tls-cert", cert, "-tls-key", key)
	script := []string{"lock a", "lock a", "lock b 0", "unlock a", "unlock a", "set_timeout 1000", "bogus", "lock", "unlock_all", "unlock b"}
	pc, err := net.DialTimeout("tcp", plain.addr, readTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	want := exchange(t, pc, script)
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: readTimeout}, "tcp", secure.addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if got := exchange(t, tc, script); !bytes.Equal(got, want) {
		t.Fatalf("over TLS:\n%q\nover TCP:\n%q", got, want)
	}
	// A client that does not speak TLS gets nothing it could mistake for
	// a reply, and the server goes on serving.
	raw, err := net.DialTimeout("tcp", secure.addr, readTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(raw, "lock a\r\n")
	if b, _ := io.ReadAll(raw); bytes.Contains(b, []byte("200")) {
		t.Fatalf("a plain client got %q from the TLS port", b)
	}
	secure.alive(t)
}

// With -tls-client-ca, only clients with a certificate from that CA are
// served.
func TestTLSClientCertificatesAreRequired(t *testing.T) {
	t.Parallel()
	ca, other := certs.New(t), certs.New(t)
	cert, key := ca.Issue(t, "127.0.0.1")
	p := startElockd(t, "-tls-cert", cert, "-tls-key", key, "-tls-client-ca", ca.CA)
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	try := func(certs []tls.Certificate) ([]byte, error) {
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: readTimeout}, "tcp", p.addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: certs})
		if err != nil {
			return nil, err
		}
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(tc, "lock a\r\nquit\r\n"); err != nil {
			return nil, err
		}
		return io.ReadAll(tc)
	}
	load := func(s *certs.Set, name string) []tls.Certificate {
		c, k := s.Issue(t, name)
		pair, err := tls.LoadX509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{pair}
	}
	if b, err := try(load(ca, "app1")); err != nil || !bytes.HasPrefix(b, []byte("200 Acquired\r\n")) {
		t.Fatalf("a client with a certificate from the CA: %q, %v", b, err)
	}
	for what, c := range map[string][]tls.Certificate{"no certificate": nil, "another CA's": load(other, "app2")} {
		if b, err := try(c); err == nil && bytes.Contains(b, []byte("200")) {
			t.Errorf("a client with %s was served: %q", what, b)
		}
	}
	p.alive(t)
}

// aclFile writes an ACL: app1 and app2 lock under jobs/ and read
// everything, monitor only reads, anonymous may do nothing; each has a
// token of its name.
func aclFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "acl.json")
	body := `{"identities": {
	  "app1": {"lock": ["jobs/"], "read": [""]},
	  "app2": {"lock": ["jobs/"], "read": [""]},
	  "monitor": {"read": [""]}},
	 "tokens": {"tok-app1": "app1", "tok-app2": "app2", "tok-monitor": "monitor"}}`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// With -acl, each command class is allowed or denied by the identity's
// rules, a denial has its own reply (not 403 not_yours) and leaves the
// connection usable, and auth comes before the session.
func TestACLCommandClasses(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-acl", aclFile(t))
	anon := p.dial(t, "anonymous")
	anon.expect("lock jobs/x", "403 denied: anonymous may not lock this name")
	anon.expect("info jobs/x", "403 denied: anonymous may not read this name")
	anon.expect("stats", "403 denied: anonymous may not read this node's state")
	anon.expect("auth nope", "403 denied: unknown token")
	anon.expect("unlock_all", "200 OK") // its own session: allowed, and the connection still serves

	app := p.dial(t, "app1")
	app.expect("auth tok-app1", "200 authenticated as app1")
	app.expect("lock jobs/x", "200 Acquired")
	app.expect("lock other/x", "403 denied: app1 may not lock this name")
	app.expect("unlock other/x", "403 denied: app1 may not lock this name")
	app.expect("token other/x", "403 denied: app1 may not lock this name")
	app.expect("rlock other/x", "403 denied: app1 may not lock this name")
	app.expect("acquire other/x 2", "403 denied: app1 may not lock this name")
	app.expect("rlock jobs/r", "200 Acquired")
	app.expect("acquire jobs/s 2", "200 Acquired")
	if in := app.info("other/x"); in["held"] != 0 {
		t.Fatalf("info other/x: %v", in)
	}
	if s := app.stats(); s["uptime"] == "" {
		t.Fatalf("stats: %v", s)
	}
	app.expect("auth tok-monitor", "403 denied: auth must come before the session is made")

	mon := p.dial(t, "monitor")
	mon.expect("auth tok-monitor", "200 authenticated as monitor")
	mon.expect("lock jobs/y", "403 denied: monitor may not lock this name")
	mon.expect("rlock jobs/y", "403 denied: monitor may not lock this name")
	mon.expect("acquire jobs/y 3", "403 denied: monitor may not lock this name")
	if in := mon.info("jobs/x"); in["held"] != 1 {
		t.Fatalf("the monitor reads jobs/x as %v", in)
	}
}

// With -acl, a session belongs to the identity that made it: the same id
// from another identity is another session, which holds nothing of the
// first, and the owner resumes its own.
func TestACLSessionsBelongToTheirIdentity(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-acl", aclFile(t), "-session-timeout", "20s")
	a := p.dial(t, "app1")
	a.expect("auth tok-app1", "200 authenticated as app1")
	a.expect("conn_id shared-id", "200 conn id set")
	a.expect("lock jobs/x", "200 Acquired")
	a.close()

	b := p.dial(t, "app2")
	b.expect("auth tok-app2", "200 authenticated as app2")
	b.expect("conn_id shared-id", "200 conn id set")
	if s := b.session(); s["resumed"] != "0" || s["held"] != "0" || s["id"] != "shared-id" {
		t.Fatalf("app2 under app1's id: %v", s)
	}
	b.expect("lock jobs/x", "409 Unavailable")

	r := p.dial(t, "app1 again")
	r.expect("auth tok-app1", "200 authenticated as app1")
	r.expect("conn_id shared-id", "200 conn id set")
	if s := r.session(); s["resumed"] != "1" || s["held"] != "1" {
		t.Fatalf("app1 resuming its own session: %v", s)
	}
}

// With -acl and client certificates, the certificate's common name is
// the identity, and no token replaces it. Without -acl, auth is answered
// and changes nothing.
func TestACLIdentityFromACertificate(t *testing.T) {
	t.Parallel()
	ca := certs.New(t)
	cert, key := ca.Issue(t, "127.0.0.1")
	p := startElockd(t, "-acl", aclFile(t), "-tls-cert", cert, "-tls-key", key, "-tls-client-ca", ca.CA)
	ccert, ckey := ca.Issue(t, "monitor")
	pair, err := tls.LoadX509KeyPair(ccert, ckey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca.CA)
	pool.AppendCertsFromPEM(pem)
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: readTimeout}, "tcp", p.addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	got := exchange(t, tc, []string{"lock jobs/x", "auth tok-app1", "info jobs/x"})
	want := "403 denied: monitor may not lock this name\r\n" +
		"403 denied: identified by a client certificate as monitor\r\n" +
		"200 INFO\r\n"
	if !strings.HasPrefix(string(got), want) {
		t.Fatalf("as monitor by certificate:\n%q\nwant it to begin with\n%q", got, want)
	}
	// A common name an ACL cannot name (a colon would let its session
	// keys meet another identity's) leaves the client anonymous.
	bad, badKey := ca.Issue(t, "app1:x")
	badPair, err := tls.LoadX509KeyPair(bad, badKey)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := tls.DialWithDialer(&net.Dialer{Timeout: readTimeout}, "tcp", p.addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{badPair}, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	if got := exchange(t, bc, []string{"info jobs/x"}); !strings.HasPrefix(string(got), "403 denied: anonymous may not read this name\r\n") {
		t.Fatalf("as app1:x by certificate: %q", got)
	}
	open := startElockd(t)
	o := open.dial(t, "no acl")
	o.expect("auth anything", "200 access control is off")
	o.expect("lock x", "200 Acquired")
}

// -max-sessions and -max-locks-total bound what the node keeps for all
// its clients together: past them a new session or a new lock gets a
// 503 naming the bound, the connection stays usable, and an ended
// session or a released lock makes room again.
func TestLimitNodeTotals(t *testing.T) {
	t.Parallel()
	p := startElockd(t, "-max-sessions", "2", "-max-locks-total", "3", "-session-timeout", "0")
	a, b := p.dial(t, "A"), p.dial(t, "B")
	a.expect("lock a1", "200 Acquired")
	a.expect("lock a2", "200 Acquired")
	b.expect("lock b1", "200 Acquired")
	b.expect("lock b2", "503 too many locks on this node (max 3)")
	a.expect("lock a1", "200 Acquired") // re-entrant: no new lock
	b.expect("lock a1 0", "409 Unavailable")
	a.expect("unlock a2", "200 Unlocked")
	b.expect("lock b2", "200 Acquired")

	c := p.dial(t, "C")
	c.expect("lock c1", "503 too many sessions on this node (max 2)")
	c.stats() // usable: stats needs no session
	a.close()
	wait.For(t, 5*time.Second, "room for a session once A's has ended", func() bool {
		return c.do("lock c1") == "200 Acquired"
	})
}
