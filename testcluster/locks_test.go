package testcluster

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/wait"
)

// locksOn asks node i for "locks PREFIX" and returns its LOCK lines with
// held_ms left out (it grows between asks), or the failure line.
func locksOn(t *testing.T, c *Cluster, i int, prefix string) ([]string, string) {
	t.Helper()
	h, body, err := c.Raw(i).Lines("locks " + prefix)
	if err != nil {
		t.Fatalf("locks on node %d: %v", i, err)
	}
	if h != "200 LOCKS" {
		return nil, h
	}
	var out []string
	for _, l := range body {
		f := strings.Fields(l)
		if len(f) != 6 || f[0] != "LOCK" {
			t.Fatalf("node %d: bad line %q", i, l)
		}
		out = append(out, strings.Join([]string{f[1], f[2], f[4], f[5]}, " "))
	}
	return out, h
}

// The test: "locks" from every node of a 3-node mesh is the union
// of the owners' tables (every lock taken, with its token and its
// holder's label), and stays so through a takeover.
func TestLocksFromEveryNodeThroughATakeover(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	var want []string // "name token waiters label", sorted by name
	conns := make([]*Conn, 3)
	for i := range 3 {
		conns[i] = c.Raw(i)
		if got := conns[i].Do(fmt.Sprintf("label client-%d", i)); got != "200 label set" {
			t.Fatalf("label on node %d: %q", i, got)
		}
		if got := conns[i].Do("set_timeout 120000"); got != "200 timeout set" {
			t.Fatal(got)
		}
	}
	for k := range 24 {
		i := k % 3
		name := fmt.Sprintf("fleet/%02d", k)
		if got := conns[i].Do("lock " + name); got != "200 Acquired" {
			t.Fatalf("lock %s on node %d: %q", name, i, got)
		}
		tok := strings.TrimPrefix(conns[i].Do("token "+name), "200 ")
		want = append(want, fmt.Sprintf("%s %s 0 client-%d", name, tok, i))
	}
	// A lock outside the prefix is not listed.
	if got := conns[0].Do("lock other"); got != "200 Acquired" {
		t.Fatal(got)
	}
	for i := range 3 {
		got, h := locksOn(t, c, i, "fleet/")
		if !slices.Equal(got, want) {
			t.Fatalf("locks fleet/ on node %d (%s):\n%q\nwant\n%q", i, h, got, want)
		}
	}

	// Kill the owner of fleet/00; its partitions are taken over by their
	// replicas. The victim's client's locks stay held (its session is
	// detached, with 120 s to live), but its label went with its
	// connection.
	_, owner, _, _ := c.Where("fleet/00")
	victim := c.IndexOf(owner)
	c.Kill(victim)
	if err := c.WaitConverged(60 * time.Second); err != nil {
		t.Fatalf("after killing %s: %v", owner, err)
	}
	for k := range want {
		if k%3 == victim {
			f := strings.Fields(want[k])
			want[k] = strings.Join(append(f[:3], "-"), " ")
		}
	}
	for _, i := range c.Live() {
		var got []string
		wait.For(t, 30*time.Second, fmt.Sprintf("node %d lists every lock after the takeover", i), func() bool {
			got, _ = locksOn(t, c, i, "fleet/")
			return slices.Equal(got, want)
		})
	}
}
