package hazard_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
)

// Hazard 2 as a holder with events on hears it: the owner and the
// replica of the names a session holds (exclusively, shared beside
// another reader, and a permit) die together. Its home is told that
// their owner cannot confirm them ("EVENT session jeopardy"), then, when
// a new owner starts the partition empty, "EVENT lost" for each grant
// with its token, then "EVENT session safe". The session itself lives
// on other nodes and is not disturbed.
func TestDoubleFailureTellsLostGrants(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Flags: []string{"-max-timeout", "2s", "-session-timeout", "2s", "-lost-after", "2s"}})
	owner, replica := c.Node(1).ID, c.Node(2).ID
	doomed := func(o, r string) bool { return o == owner && r == replica }
	x, r, s := nameOwnedBy(t, c, "x", doomed), nameOwnedBy(t, c, "r", doomed), nameOwnedBy(t, c, "s", doomed)
	id := nameOwnedBy(t, c, "sess", func(o, r string) bool {
		return !slices.Contains([]string{owner, replica}, o) && !slices.Contains([]string{owner, replica}, r)
	})
	h, other := c.Raw(0), c.Raw(3)
	h.Timeout, other.Timeout = time.Minute, time.Minute
	for _, step := range [][2]string{
		{"conn_id " + id, "200 conn id set"}, {"set_timeout 2000", "200 timeout set"}, {"events on", "200 events on"},
		{"lock " + x, "200 Acquired"}, {"rlock " + r, "200 Acquired"}, {"acquire " + s + " 3", "200 Acquired"},
	} {
		if got := h.Do(step[0]); got != step[1] {
			t.Fatalf("%q: %q, want %q", step[0], got, step[1])
		}
	}
	if got := other.Do("rlock " + r); got != "200 Acquired" {
		t.Fatalf("the other reader: %q", got)
	}
	want := map[string]bool{}
	for _, name := range []string{x, r, s} {
		want[fmt.Sprintf("EVENT lost %s %d", name, tokenOf(t, h, name))] = true
	}
	c.Kill(1)
	c.Kill(2)
	var got []string
	deadline := time.Now().Add(90 * time.Second)
	for !slices.Contains(got, "EVENT session safe") && time.Now().Before(deadline) {
		h.Timeout = time.Until(deadline)
		l, err := h.Line()
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		if !strings.HasPrefix(l, "EVENT ") {
			t.Fatalf("after %q: %q, want an EVENT line", got, l)
		}
		got = append(got, l)
	}
	// Jeopardy first, then the three losses in any order, then safe.
	if len(got) != 5 || got[0] != "EVENT session jeopardy" || got[4] != "EVENT session safe" {
		t.Fatalf("events %q, want jeopardy, three losses, safe", got)
	}
	for _, l := range got[1:4] {
		if !want[l] {
			t.Fatalf("events %q: %q is not one of %v", got, l, want)
		}
		delete(want, l)
	}
	// The session lives on, and holds nothing of the lost partition.
	if l := h.Do("token " + x); l != "403 not_locked" && !strings.HasPrefix(l, "503 ") {
		t.Fatalf("token of a lost grant: %q", l)
	}
}
