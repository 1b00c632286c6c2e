package metrics

import (
	"context"
	"github.com/elock/elock/node/locktable"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/mesh"
	"github.com/elock/elock/testcluster/wait"
)

// meshNode is one in-process mesh node with its own registry, wired as
// elockd wires it.
type meshNode struct {
	m       *mesh.Mesh
	reg     *prometheus.Registry
	clients *node.Clients
}

// startMesh starts n voters on loopback that form one mesh, and waits
// until every node is ready.
func startMesh(t testing.TB, n, partitions int) []*meshNode {
	return startMeshWith(t, n, partitions, true)
}

// startMeshWith is startMesh with or without metrics.
func startMeshWith(t testing.TB, n, partitions int, withMetrics bool) []*meshNode {
	t.Helper()
	var nodes []*meshNode
	var join []string
	for i := range n {
		reg := NewRegistry()
		mm, err := NewMesh(reg)
		if err != nil {
			t.Fatal(err)
		}
		mc := mesh.DefaultConfig()
		mc.ID = "n" + string(rune('1'+i))
		mc.ClientAddr = "127.0.0.1:1"
		mc.GossipAddr, mc.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
		mc.Join, mc.Voter, mc.Expect = join, true, n
		mc.Partitions = partitions
		mc.Lease, mc.HomeLease = time.Second, time.Second
		mc.Clients = node.NewClients()
		if withMetrics {
			mc.ObservePeer, mc.ObserveBatch = mm.PeerCall, mm.Batch
		}
		m, err := mesh.Start(mc)
		if err != nil {
			t.Fatal(err)
		}
		if withMetrics {
			if err := RegisterMeshFigures(reg, m.Figures); err != nil {
				t.Fatal(err)
			}
			if err := RegisterNode(reg, Node{Counts: m.Counts, Ready: m.Ready, Version: node.Version}); err != nil {
				t.Fatal(err)
			}
		}
		nd := &meshNode{m: m, reg: reg, clients: mc.Clients.(*node.Clients)}
		t.Cleanup(func() { nd.close() })
		nodes = append(nodes, nd)
		join = append(join, m.GossipAddr())
	}
	wait.For(t, 60*time.Second, "every node ready", func() bool {
		for _, nd := range nodes {
			if !nd.m.Ready() {
				return false
			}
		}
		return true
	})
	return nodes
}

func (nd *meshNode) close() {
	if nd.m != nil {
		nd.m.Close()
		nd.m = nil
	}
}

// In a mesh, raft, gossip, partition roles, peer calls and replication
// batches show, and a takeover moves the survivors' owned partitions.
func TestMeshMetricsFollowATakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node mesh")
	}
	const parts = 8
	nodes := startMesh(t, 3, parts)

	// Locks through one node: their owners replicate them in batches.
	b := nodes[0].m.Backend()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := b.Attach(ctx, "mesh-metrics-session")
	if err != nil {
		t.Fatal(err)
	}
	ref := node.SessionRef{ID: "mesh-metrics-session", Epoch: a.Epoch, Born: a.Born}
	for _, name := range []string{"ma", "mb", "mc", "md", "me", "mf"} {
		if _, _, err := b.Lock(ctx, ref, []byte(name), locktable.Want{}, 0, nil); err != nil {
			t.Fatalf("lock %s: %v", name, err)
		}
	}

	owners := func(nds []*meshNode) (sum float64, each []float64) {
		for _, nd := range nds {
			v := scrape(t, nd.reg).get(t, "elock_partitions", "role", "owner")
			each = append(each, v)
			sum += v
		}
		return sum, each
	}
	var leaders, batches, held float64
	victim := -1
	for i, nd := range nodes {
		s := scrape(t, nd.reg)
		leaders += s.get(t, "elock_raft_leader")
		if s.get(t, "elock_raft_term") < 1 || s.get(t, "elock_raft_applied_index") < 1 {
			t.Errorf("n%d: raft term or applied index under 1", i+1)
		}
		if got := s.get(t, "elock_gossip_members", "state", "alive"); got != 3 {
			t.Errorf("n%d: %v members alive, want 3", i+1, got)
		}
		if s.get(t, "elock_lease_remaining_seconds") <= 0 {
			t.Errorf("n%d: a ready node without a lease", i+1)
		}
		if s.get(t, "elock_node_ready") != 1 {
			t.Errorf("n%d: elock_node_ready is not 1", i+1)
		}
		if s.get(t, "elock_partitions", "role", "replica") < 1 {
			t.Errorf("n%d replicates nothing", i+1)
		}
		if v, _ := s.value("elock_peer_rpc_duration_seconds", "method", "heartbeat"); v == 0 && s.get(t, "elock_raft_leader") == 0 {
			t.Errorf("n%d: a follower with no heartbeat timed", i+1)
		}
		batches += s.get(t, "elock_replication_batch_size")
		held += s.get(t, "elock_locks_held")
		s.get(t, "elock_replication_lag_changes")
		s.get(t, "elock_replication_lag_seconds")
		if i > 0 && s.get(t, "elock_partitions", "role", "owner") > 0 && victim < 0 {
			victim = i
		}
	}
	if leaders != 1 {
		t.Errorf("%v leaders, want 1", leaders)
	}
	if batches < 1 {
		t.Errorf("no replication batch observed")
	}
	if held != 6 {
		t.Errorf("%v locks held across the owners, want 6", held)
	}
	if sum, _ := owners(nodes); sum != parts {
		t.Fatalf("%v partitions owned, want %d", sum, parts)
	}
	if victim < 0 {
		t.Fatal("neither n2 nor n3 owns a partition")
	}

	var survivors []*meshNode
	for i, nd := range nodes {
		if i != victim {
			survivors = append(survivors, nd)
		}
	}
	_, before := owners(survivors)
	nodes[victim].close()
	wait.For(t, 60*time.Second, "the survivors own every partition", func() bool {
		sum, _ := owners(survivors)
		return sum == parts
	})
	_, after := owners(survivors)
	if after[0]+after[1] <= before[0]+before[1] {
		t.Errorf("survivors owned %v before the takeover and %v after", before, after)
	}
}
