package node

// Overview is what a node knows of the cluster, as its status page
// shows it: this node, the members, the control plane's leader and the
// partition table. It is a read-only snapshot, taken without calling
// any peer, so it may be asked for as often as a page refreshes.
type Overview struct {
	ID         string
	ClientAddr string
	GossipAddr string // empty for a single node
	PeerAddr   string // empty for a single node
	Members    []Member
	Leader     string // empty when none is known
	// Partitions is the partition table in partition order; empty until
	// this node has applied one.
	Partitions []PartitionState
}

// PartitionState is one partition of the table, as this node sees it.
type PartitionState struct {
	Owner   string
	Replica string // empty when there is none
	Epoch   uint64
	Mode    string // how the owner came by its state (fresh, keep, handover, takeover, lost)
	// Synced says whether the replica holds a full copy, as far as this
	// node knows: only an owner or a replica does (nil: neither is this
	// node). A partition without a replica is not synced.
	Synced *bool
}

// Overview describes this single node: the only member, leading itself
// and owning every partition, which has no replica.
func (l *Local) Overview() Overview {
	o := Overview{ID: l.Home, ClientAddr: l.Addr, Leader: l.Home,
		Members: []Member{{ID: l.Home, Addr: l.Addr, State: "alive", Voter: true}}}
	no := false
	for p := range l.Set.Partitions() {
		o.Partitions = append(o.Partitions, PartitionState{Owner: l.Home, Epoch: l.Set.Epoch(p), Mode: "fresh", Synced: &no})
	}
	return o
}
