package mesh

import (
	"fmt"

	"github.com/elock/elock/node"
	"github.com/elock/elock/ring"
)

// Ready reports whether this node has a partition table, every partition
// a live owner, and every partition this node owns can serve: NotReady
// says "".
func (m *Mesh) Ready() bool { return m.NotReady() == "" }

// NotReady says why this node is not ready, or "" if it is. Ready and
// the node_ready stat rest on it, so the readiness probe, the stat and
// the reason given can never disagree.
//
// A partition still in the lock-delay of a loss does not make a node
// unready: it is served (every command but a grant), and no other node
// could serve it sooner.
func (m *Mesh) NotReady() string {
	st := m.control.State()
	if !st.Initialized() {
		return "partition table not applied"
	}
	if !m.lease.Valid() {
		return "no lease"
	}
	// Every owner must be a live member, at the incarnation the table
	// names: a dead owner's partitions are not served until taken over.
	live := map[string]string{}
	for _, mb := range m.ring.Members() {
		if mb.State == ring.Alive {
			live[mb.ID] = mb.Nonce
		}
	}
	for i, p := range st.Parts {
		if nonce, ok := live[p.Owner]; !ok || nonce != p.ONonce {
			return fmt.Sprintf("owner of partition %d not alive", i)
		}
	}
	if !m.data.Serving() {
		return "a partition owned here has no synced replica yet"
	}
	if m.data.Reconciled() < st.Index {
		return "partition table not applied"
	}
	return ""
}

// Overview describes the cluster as this node sees it, for the status
// page: gossip's members, the leader, the applied table, and whether
// each replica this node knows of holds a full copy.
func (m *Mesh) Overview() node.Overview {
	o := node.Overview{ID: m.self.ID, ClientAddr: m.cfg.ClientAddr, GossipAddr: m.GossipAddr(), PeerAddr: m.PeerAddr(),
		Members: m.members(), Leader: m.control.Leader()}
	st := m.control.State()
	if !st.Initialized() {
		return o
	}
	synced := m.data.Synced()
	o.Partitions = make([]node.PartitionState, len(st.Parts))
	for i, p := range st.Parts {
		ps := node.PartitionState{Owner: p.Owner, Replica: p.Replica, Epoch: p.Epoch, Mode: p.Mode.String()}
		if p.Owner == m.self.ID || p.Replica == m.self.ID {
			ep, ok := synced[i]
			s := ok && ep == p.Epoch && p.Replica != ""
			ps.Synced = &s
		}
		o.Partitions[i] = ps
	}
	return o
}
