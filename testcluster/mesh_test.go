package testcluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/certs"
	"github.com/elock/elock/testcluster/wait"
)

// The tests below need the mesh elockd (-gossip, -peer, -join,
// -bootstrap-expect, and the node_ready, cluster_index, members and where
// replies). They run one at a time: several mesh clusters at once under
// the race detector could starve memberlist's probes into false deaths.

// members returns node i's "members" reply as id -> member.
func members(t *testing.T, c *Cluster, i int) map[string]member {
	t.Helper()
	h, body, err := c.Raw(i).Lines("members")
	if err != nil || h != "200 MEMBERS" {
		t.Fatalf("members on node %d: %q %v", i, h, err)
	}
	ms, err := parseMembers(body)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]member{}
	for _, m := range ms {
		byID[m.id] = m
	}
	return byID
}

// whereOn asks node i, and only node i, where name lives.
func whereOn(t *testing.T, c *Cluster, i int, name string) placement {
	t.Helper()
	w, err := where(c.Node(i).ClientAddr, name)
	if err != nil {
		t.Fatalf("where %s on node %d: %v", name, i, err)
	}
	return w
}

func TestClusterConverges(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	for i := range 3 {
		_, stats := c.Raw(i).Block("stats")
		if stats["node_ready"] != "1" {
			t.Errorf("node %d: node_ready %q", i, stats["node_ready"])
		}
		ms := members(t, c, i)
		for j := range 3 {
			n := c.Node(j)
			if m := ms[n.ID]; m.status != "alive" || m.role != "voter" || m.addr != n.ClientAddr {
				t.Errorf("node %d lists %s as %+v, want alive voter at %s", i, n.ID, m, n.ClientAddr)
			}
		}
	}
	// Every node places a name alike, on nodes of the cluster.
	for _, name := range []string{"a", "b", "some/lock"} {
		p, owner, replica, epoch := c.Where(name)
		want := placement{p, owner, replica, epoch}
		for i := range 3 {
			if got := whereOn(t, c, i, name); got != want {
				t.Errorf("where %s: node %d says %+v, node 0 %+v", name, i, got, want)
			}
		}
		if c.IndexOf(owner) < 0 || c.IndexOf(replica) < 0 || owner == replica {
			t.Errorf("where %s: owner %q replica %q", name, owner, replica)
		}
	}
	// A lock taken through one node is held for the others.
	ctx := context.Background()
	if _, err := c.Client(t, 0).TryLock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client(t, 2).TryLock(ctx, "x"); err == nil {
		t.Fatal("x granted through node 2 while held through node 0")
	}
}

func TestKillAndRestart(t *testing.T) {
	c := New(t, Options{Nodes: 3, DataDir: true})
	_, owner, _, epoch := c.Where("k")
	o := c.IndexOf(owner)
	home, other := (o+1)%3, (o+2)%3
	ctx := context.Background()
	if _, err := c.Client(t, home).TryLock(ctx, "k"); err != nil {
		t.Fatal(err)
	}

	c.Kill(o)
	if err := c.WaitConverged(60 * time.Second); err != nil {
		t.Fatalf("after killing the owner %s of k: %v", owner, err)
	}
	_, owner2, _, epoch2 := c.Where("k")
	if owner2 == owner || epoch2 <= epoch {
		t.Errorf("k after its owner died: owner %s epoch %d, was %s epoch %d", owner2, epoch2, owner, epoch)
	}
	if _, err := c.Client(t, other).TryLock(ctx, "k"); err == nil {
		t.Fatal("k granted again after its owner died: the takeover lost it")
	}

	c.Restart(o)
	if err := c.WaitConverged(60 * time.Second); err != nil {
		t.Fatalf("after restarting %s: %v", owner, err)
	}
	if got := len(c.Live()); got != 3 {
		t.Fatalf("%d live nodes", got)
	}
	if _, err := c.Client(t, o).TryLock(ctx, "k"); err == nil {
		t.Fatal("k granted through the restarted node")
	}
}

func TestJoinAndStop(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	j := c.Join()
	n := c.Node(j)
	if n.Voter || j != 3 || n.ID != "n3" {
		t.Fatalf("joined %+v", n)
	}
	if strings.Contains(strings.Join(n.Process.Args, " "), "-bootstrap-expect") {
		t.Fatalf("a joining member was started as a voter: %v", n.Process.Args)
	}
	if err := c.WaitConverged(60 * time.Second); err != nil {
		t.Fatalf("after Join: %v", err)
	}
	for i := range 4 {
		if m := members(t, c, i)[n.ID]; m.status != "alive" || m.role != "member" {
			t.Errorf("node %d lists %s as %+v, want an alive member", i, n.ID, m)
		}
	}

	if err := c.Stop(j); err != nil {
		t.Fatalf("graceful stop of the joined node: %v", err)
	}
	if err := c.WaitConverged(60 * time.Second); err != nil {
		t.Fatalf("after stopping the joined node: %v", err)
	}
	if err := c.Stop(0); err != nil {
		t.Fatalf("graceful stop of voter n0: %v", err)
	}
	if err := c.WaitConverged(60 * time.Second); err != nil {
		t.Fatalf("after stopping voter n0: %v", err)
	}
	c.Restart(j)
	c.Restart(0)
	if err := c.WaitConverged(60 * time.Second); err != nil {
		t.Fatalf("after restarting n0 and %s: %v", n.ID, err)
	}
}

// A mesh started with a gossip key forms and serves as without one, and a
// stock elockd that joins it without the key never appears in its
// members, however long it keeps trying.
func TestAMeshWithAGossipKeyKeepsOutANodeWithout(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	c := New(t, Options{Nodes: 2, Flags: []string{"-encrypt", key}})
	intruder := Launch(t, "-node-id", "intruder", "-gossip", "127.0.0.1:0", "-peer", "127.0.0.1:0",
		"-join", c.Node(0).GossipAddr+","+c.Node(1).GossipAddr, "-log-level", "debug")
	wait.For(t, 30*time.Second, "the intruder to try joining three times", func() bool {
		return strings.Count(intruder.Log(), "ring join attempt failed") >= 3
	})
	for i := range 2 {
		ms := members(t, c, i)
		if m, ok := ms["intruder"]; ok {
			t.Errorf("node %d lists the node without the key: %+v", i, m)
		}
		if len(ms) != 2 {
			t.Errorf("node %d lists %d members, want 2: %+v", i, len(ms), ms)
		}
	}
	if _, err := c.Client(t, 0).TryLock(context.Background(), "x"); err != nil {
		t.Fatalf("the keyed mesh does not serve: %v", err)
	}
}

// A mesh with peer TLS (-peer-cert, -peer-key, -peer-ca) forms and
// serves, and a node whose certificate comes from another CA is never
// registered: gossip lists it, but it owns and replicates nothing.
func TestAMeshWithPeerTLSKeepsOutANodeOfAnotherCA(t *testing.T) {
	ca, other := certs.New(t), certs.New(t)
	for i := range 3 {
		ca.Issue(t, fmt.Sprintf("n%d", i))
	}
	c := New(t, Options{Nodes: 3, NodeFlags: func(n *Node) []string {
		return []string{"-peer-cert", filepath.Join(ca.Dir, n.ID+".pem"), "-peer-key", filepath.Join(ca.Dir, n.ID+"-key.pem"), "-peer-ca", ca.CA}
	}})
	if _, err := c.Client(t, 0).TryLock(context.Background(), "x"); err != nil {
		t.Fatalf("the mesh over TLS does not serve: %v", err)
	}
	cert, key := other.Issue(t, "intruder")
	intruder := Launch(t, "-node-id", "intruder", "-gossip", "127.0.0.1:0", "-peer", "127.0.0.1:0",
		"-join", c.Node(0).GossipAddr, "-peer-cert", cert, "-peer-key", key, "-peer-ca", other.CA, "-leave-timeout", "1s")
	wait.For(t, 30*time.Second, "the leader to refuse to register the intruder", func() bool {
		for i := range 3 {
			for _, l := range strings.Split(c.Node(i).Process.Log(), "\n") {
				if strings.Contains(l, `msg="not registering a node that has not proved its identity"`) && strings.Contains(l, "member=intruder") {
					return true
				}
			}
		}
		return false
	})
	if m := members(t, c, 0)["intruder"]; m.status != "alive" {
		t.Fatalf("gossip does not list the intruder (%+v): the test proves nothing", m)
	}
	for i := range 200 {
		name := fmt.Sprintf("k%d", i)
		if _, owner, replica, _ := c.Where(name); owner == "intruder" || replica == "intruder" {
			t.Fatalf("%s is placed on the intruder (owner %s, replica %s)", name, owner, replica)
		}
	}
	if _, stats := c.Raw(0).Block("stats"); stats["node_ready"] != "1" {
		t.Errorf("node 0 is not ready with the intruder around: %v", stats)
	}
	_ = intruder
}

// -max-locks-total bounds the locks a mesh node keeps, as owner or
// replica: the owner refuses a lock past it with a 503 that names the
// bound (at once, not after the home's retries), and a release makes
// room again.
func TestAMeshNodeRefusesLocksPastItsTotal(t *testing.T) {
	c := New(t, Options{Nodes: 3, Flags: []string{"-max-locks-total", "2"}})
	conn := c.Raw(0)
	var granted []string
	full := 0
	for i := range 12 {
		name := fmt.Sprintf("l%d", i)
		start := time.Now()
		switch r := conn.Do("lock " + name); r {
		case "200 Acquired":
			granted = append(granted, name)
		case "503 too many locks on this node (max 2)":
			full++
			if d := time.Since(start); d > time.Second {
				t.Fatalf("the refusal took %v: the home retried it", d)
			}
		default:
			t.Fatalf("lock %s: %q", name, r)
		}
	}
	// Each lock counts on its owner and its replica; an owner refuses
	// once it counts two, and a replica's copy is never refused, so each
	// owner grants at most two.
	if len(granted) == 0 || len(granted) > 6 || full == 0 {
		t.Fatalf("granted %v and refused %d of 12, want 1 to 6 granted and the rest refused", granted, full)
	}
	if r := conn.Do("unlock_all"); r != "200 OK" {
		t.Fatal(r)
	}
	for _, name := range granted {
		if r := conn.Do("lock " + name); r != "200 Acquired" {
			t.Fatalf("lock %s again after unlock_all: %q", name, r)
		}
	}
}

// Options.Secure (and ELOCK_TESTCLUSTER_SECURE=1 for every mesh) runs
// each node with a gossip key and peer TLS, and the mesh serves.
func TestASecureClusterIsSecured(t *testing.T) {
	c := New(t, Options{Nodes: 3, Secure: true})
	if _, err := c.Client(t, 1).TryLock(context.Background(), "x"); err != nil {
		t.Fatalf("the secured mesh does not serve: %v", err)
	}
	for i := range 3 {
		log := c.Node(i).Process.Log()
		if !strings.Contains(log, "gossip_encrypted=true") || !strings.Contains(log, "peer_tls=true") {
			t.Errorf("node %d does not run secured:\n%s", i, log)
		}
	}
}
