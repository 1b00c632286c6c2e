package testcluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/wait"
)

// An election in a 3-node mesh, asked through homes that do not own the
// name: every node answers leader alike, proclaim reaches the owner, and
// the leader and its value survive the death of the name's owner; a
// waiting campaign is elected when the leader resigns.
func TestElectionThroughATakeover(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	_, owner, _, _ := c.Where("svc")
	victim := c.IndexOf(owner)
	a, b := (victim+1)%3, (victim+2)%3
	lead, next := c.Raw(a), c.Raw(b)
	for _, conn := range []*Conn{lead, next} {
		if got := conn.Do("set_timeout 120000"); got != "200 timeout set" {
			t.Fatal(got)
		}
	}
	expect := func(conn *Conn, line, want string) {
		t.Helper()
		if got := conn.Do(line); got != want {
			t.Fatalf("%q -> %q, want %q", line, got, want)
		}
	}
	expect(lead, "campaign svc host-a", "200 Elected")
	tok := lead.Do("token svc")[4:]
	for i := range 3 {
		expect(c.Raw(i), "leader svc", "200 LEADER "+tok+" host-a")
	}
	expect(next, "proclaim svc host-b", "403 not_yours")
	expect(lead, "proclaim svc host-a2", "200 OK")
	if err := next.Send("campaign svc host-b 60"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "the campaign queued", func() bool {
		_, st := c.Raw(a).Block("info svc")
		return st["waiters"] == "1"
	})

	c.Kill(victim)
	if err := c.WaitConverged(60 * time.Second); err != nil {
		t.Fatalf("after killing %s: %v", owner, err)
	}
	for _, i := range c.Live() {
		wait.For(t, 30*time.Second, fmt.Sprintf("node %d names the same leader after the takeover", i), func() bool {
			return c.Raw(i).Do("leader svc") == "200 LEADER "+tok+" host-a2"
		})
	}
	expect(lead, "unlock svc", "200 Unlocked")
	if got, err := next.Line(); err != nil || got != "200 Elected" {
		t.Fatalf("the waiting campaign: %q, %v", got, err)
	}
	tok2 := next.Do("token svc")[4:]
	if len(tok2) < len(tok) || len(tok2) == len(tok) && tok2 <= tok {
		t.Fatalf("term %s after %s", tok2, tok)
	}
	for _, i := range c.Live() {
		expect(c.Raw(i), "leader svc", "200 LEADER "+tok2+" host-b")
	}
}
