package testcluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// readEvent reads lines from conn until one is an EVENT line, within d.
func readEvent(t *testing.T, conn *Conn, d time.Duration) string {
	t.Helper()
	conn.Timeout = d
	l, err := conn.Line()
	if err != nil {
		t.Fatalf("waiting for an event: %v", err)
	}
	if !strings.HasPrefix(l, "EVENT ") {
		t.Fatalf("got %q, want an EVENT line", l)
	}
	return l
}

// expectEvent reads events until want, failing on a token going back or
// on timeout: after a takeover a watcher may be told the state again.
func expectEvent(t *testing.T, conn *Conn, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if l := readEvent(t, conn, time.Until(deadline)); l == want {
			return
		}
	}
	t.Fatalf("no %q within 30 s", want)
}

// Watches in a 3-node mesh, from homes that do not own the name: the
// current state at once, every change, the same leader told again
// after its owner dies, and the vacancy when the leader resigns.
func TestWatchThroughATakeover(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	_, owner, _, _ := c.Where("svc")
	victim := c.IndexOf(owner)
	a, b := (victim+1)%3, (victim+2)%3
	watcher, lead := c.Raw(a), c.Raw(b)
	watcher.Timeout, lead.Timeout = time.Minute, time.Minute
	if got := lead.Do("set_timeout 120000"); got != "200 timeout set" {
		t.Fatal(got)
	}
	if got := watcher.Do("watch svc"); got != "200 watching" {
		t.Fatal(got)
	}
	expectEvent(t, watcher, "EVENT svc free 0")
	if got := lead.Do("campaign svc host-b"); got != "200 Elected" {
		t.Fatal(got)
	}
	tok := lead.Do("token svc")[4:]
	expectEvent(t, watcher, "EVENT svc held "+tok+" host-b")
	if got := lead.Do("proclaim svc host-b2"); got != "200 OK" {
		t.Fatal(got)
	}
	expectEvent(t, watcher, "EVENT svc held "+tok+" host-b2")

	c.Kill(victim)
	if err := c.WaitConverged(60 * time.Second); err != nil {
		t.Fatalf("after killing %s: %v", owner, err)
	}
	// The new owner tells the state it took over; then the vacancy.
	expectEvent(t, watcher, "EVENT svc held "+tok+" host-b2")
	if got := lead.Do("unlock svc"); got != "200 Unlocked" {
		t.Fatal(got)
	}
	expectEvent(t, watcher, fmt.Sprintf("EVENT svc free %s", tok))
}

// Session events in a 3-node mesh, through a home that does not own the
// name: "wanted" reaches the holder when a session on another node
// starts waiting, and nothing (no jeopardy) troubles a healthy mesh.
func TestSessionEventsThroughAHome(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	_, owner, _, _ := c.Where("job")
	o := c.IndexOf(owner)
	h, w := c.Raw((o+1)%3), c.Raw((o+2)%3)
	h.Timeout, w.Timeout = time.Minute, time.Minute
	for _, step := range [][2]string{{"events on", "200 events on"}, {"lock job", "200 Acquired"}} {
		if got := h.Do(step[0]); got != step[1] {
			t.Fatalf("%q: %q", step[0], got)
		}
	}
	if err := w.Send("lock job 30"); err != nil {
		t.Fatal(err)
	}
	if got := readEvent(t, h, 30*time.Second); got != "EVENT wanted job 1" {
		t.Fatalf("the holder was told %q, want EVENT wanted job 1", got)
	}
	if got := h.Do("unlock job"); got != "200 Unlocked" {
		t.Fatalf("unlock: %q", got)
	}
	if got, err := w.Line(); err != nil || got != "200 Acquired" {
		t.Fatalf("the waiter: %q, %v", got, err)
	}
}
