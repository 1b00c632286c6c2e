package testcluster

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/wait"
)

// infoOn runs "info NAME" on conn and returns its STAT lines.
func infoOn(t *testing.T, conn *Conn, name string) map[string]string {
	t.Helper()
	h, st := conn.Block("info " + name)
	if h != "200 INFO" {
		t.Fatalf("info %s: %q", name, h)
	}
	return st
}

// Shared grants and permits in a 3-node mesh, asked through homes that
// do not own the names: every row of the protocol, then a takeover. The
// grants survive the death of their owner with their tokens, and the
// waiters, queued at the dead owner, are queued again at the new one and
// served in their turn.
func TestSharedLocksAndSemaphoresThroughATakeover(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	_, owner, _, _ := c.Where("doc")
	victim := c.IndexOf(owner)
	// pool is a semaphore name owned by the same node, so that one kill
	// takes both over.
	pool := ""
	for i := range 1000 {
		if _, o, _, _ := c.Where(fmt.Sprint("pool/", i)); o == owner {
			pool = fmt.Sprint("pool/", i)
			break
		}
	}
	if pool == "" {
		t.Fatal("no pool name owned by " + owner)
	}
	a, b := (victim+1)%3, (victim+2)%3
	dial := func(i int) *Conn {
		conn := c.Raw(i)
		if got := conn.Do("set_timeout 120000"); got != "200 timeout set" {
			t.Fatal(got)
		}
		return conn
	}
	r1, r2, w := dial(a), dial(b), dial(a)
	p1, p2, pw := dial(b), dial(a), dial(b)
	x := dial(a)

	expect := func(conn *Conn, line, want string) {
		t.Helper()
		if got := conn.Do(line); got != want {
			t.Fatalf("%q -> %q, want %q", line, got, want)
		}
	}
	token := func(conn *Conn, name string) uint64 {
		t.Helper()
		r := conn.Do("token " + name)
		v, ok := strings.CutPrefix(r, "200 ")
		n, err := strconv.ParseUint(v, 10, 64)
		if !ok || err != nil {
			t.Fatalf("token %s -> %q", name, r)
		}
		return n
	}

	expect(r1, "rlock doc", "200 Acquired")
	expect(r2, "rlock doc", "200 Acquired")
	expect(r1, "lock doc", "400 no upgrade: doc is held shared by this session")
	expect(x, "lock doc", "409 Unavailable")
	expect(x, "acquire doc 2", "400 kind mismatch: doc is a lock")
	expect(p1, "acquire "+pool+" 2", "200 Acquired")
	expect(p2, "acquire "+pool+" 2 5", "200 Acquired")
	expect(x, "acquire "+pool+" 2", "409 Unavailable")
	expect(x, "acquire "+pool+" 3", "400 limit mismatch: "+pool+" has 2 permits")
	expect(x, "lock "+pool, "400 kind mismatch: "+pool+" is a semaphore")
	tr1, tr2, tp1, tp2 := token(r1, "doc"), token(r2, "doc"), token(p1, pool), token(p2, pool)
	if in := infoOn(t, x, "doc"); in["mode"] != "shared" || in["holders"] != "2" || in["kind"] != "lock" {
		t.Fatalf("info doc: %v", in)
	}
	if in := infoOn(t, x, pool); in["kind"] != "semaphore" || in["holders"] != "2" || in["limit"] != "2" {
		t.Fatalf("info %s: %v", pool, in)
	}
	// A writer and a permit waiter queue at the owner.
	if err := w.Send("lock doc 60"); err != nil {
		t.Fatal(err)
	}
	if err := pw.Send("acquire " + pool + " 2 60"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "both waits queued", func() bool {
		return infoOn(t, x, "doc")["waiters"] == "1" && infoOn(t, x, pool)["waiters"] == "1"
	})

	c.Kill(victim)
	if err := c.WaitConverged(60 * time.Second); err != nil {
		t.Fatalf("after killing %s: %v", owner, err)
	}
	if _, o, _, _ := c.Where("doc"); o == owner {
		t.Fatal("doc still owned by the dead node")
	}
	// The grants survived with their tokens; the waits are queued again.
	wait.For(t, 30*time.Second, "the waits queued at the new owner", func() bool {
		return infoOn(t, x, "doc")["waiters"] == "1" && infoOn(t, x, pool)["waiters"] == "1"
	})
	if got, was := []uint64{token(r1, "doc"), token(r2, "doc"), token(p1, pool), token(p2, pool)}, []uint64{tr1, tr2, tp1, tp2}; !slices.Equal(got, was) {
		t.Fatalf("tokens after the takeover %v, before %v", got, was)
	}
	if in := infoOn(t, x, "doc"); in["mode"] != "shared" || in["holders"] != "2" {
		t.Fatalf("info doc after the takeover: %v", in)
	}
	if in := infoOn(t, x, pool); in["holders"] != "2" || in["limit"] != "2" {
		t.Fatalf("info %s after the takeover: %v", pool, in)
	}
	expect(x, "lock doc", "409 Unavailable")
	expect(x, "acquire "+pool+" 2", "409 Unavailable")

	// Served in turn: the writer once both readers are gone, the permit
	// waiter once one permit is back.
	expect(r1, "unlock doc", "200 Unlocked")
	expect(r2, "unlock doc", "200 Unlocked")
	if got, err := w.Line(); err != nil || got != "200 Acquired" {
		t.Fatalf("the waiting writer: %q, %v", got, err)
	}
	expect(p1, "unlock "+pool, "200 Unlocked")
	if got, err := pw.Line(); err != nil || got != "200 Acquired" {
		t.Fatalf("the waiting permit: %q, %v", got, err)
	}
	if tw := token(w, "doc"); tw <= max(tr1, tr2) {
		t.Fatalf("the writer's token %d not above the readers' %d, %d", tw, tr1, tr2)
	}
	expect(x, "rlock doc", "409 Unavailable")

	// A session's shared grant and permit end with it: a reader and a
	// permit holder whose connections close with no time to live hand
	// what they held to the waiters.
	expect(w, "unlock doc", "200 Unlocked")
	expect(p2, "unlock "+pool, "200 Unlocked")
	gone, gone2 := c.Raw(a), c.Raw(b)
	expect(gone, "set_timeout 0", "200 timeout set")
	expect(gone2, "set_timeout 0", "200 timeout set")
	expect(gone, "rlock doc", "200 Acquired")
	expect(gone2, "acquire "+pool+" 2", "200 Acquired")
	expect(pw, "unlock "+pool, "200 Unlocked")
	expect(gone, "acquire "+pool+" 2", "200 Acquired")
	if err := w.Send("lock doc 60"); err != nil {
		t.Fatal(err)
	}
	if err := x.Send("acquire " + pool + " 2 60"); err != nil {
		t.Fatal(err)
	}
	y := dial(a)
	wait.For(t, 10*time.Second, "both waits queued", func() bool {
		return infoOn(t, y, "doc")["waiters"] == "1" && infoOn(t, y, pool)["waiters"] == "1"
	})
	gone.Close()
	if got, err := w.Line(); err != nil || got != "200 Acquired" {
		t.Fatalf("the writer after the reader's session ended: %q, %v", got, err)
	}
	if got, err := x.Line(); err != nil || got != "200 Acquired" {
		t.Fatalf("the permit after its holder's session ended: %q, %v", got, err)
	}
}
