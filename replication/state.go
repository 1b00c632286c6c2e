// Package replication moves lock state between the owner and the replica
// of each partition, and decides who owns what.
//
// Two planes:
//   - The control plane is the partition table: for every partition its
//     epoch, owner and replica. It changes only through raft among a
//     static set of voter nodes (State, FSM, Control), so that a pair of
//     nodes can never decide alone and memberlist's live count is never
//     the denominator. The leader also grants every node a lease; an owner
//     serves only while it holds one.
//   - The data plane is owner to replica: every change to a partition's
//     locks is acknowledged by its replica before anyone hears of it, and a
//     replica refuses changes from any epoch but its own (Data).
//
// The ring (package ring) only proposes placements. A partition changes
// hands only by an explicit epoch change, and its new owner serves only
// once it holds the state: a synced replica promoted, or a table known to
// be lost, refused for a lock-delay.
//
// Files: the control plane in state.go (the table and its commands),
// control.go (raft, bootstrap), heartbeat.go (leases), coordinator.go and
// plan.go (the leader's decisions); the data plane in data.go (the
// partition.Replicator), roles.go (taking up each table's roles, seals),
// stream.go (owner to replica) and replica.go (the replica's side); and
// lease.go, which both planes share. A node builds its Lease, then its
// Data (which hosts the partition set), then its Control on both.
//
// Imports: node/partition, node/locktable, node/peer, node/failure, ring,
// hashicorp/raft and raft-wal. Never node or node/mesh.
//
// Lock order: a partition's mutex, then that partition's local.mu, then a
// link's mu; Data.mu and Control's mutexes are leaves. No mutex is held
// while calling a peer or raft.
package replication

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Mode says how a partition's owner came by its state at this epoch.
type Mode uint8

const (
	// Fresh: the owner starts from an empty table that nothing was lost
	// from (the cluster's first table).
	Fresh Mode = iota
	// Keep: same owner as the previous epoch; only the replica changed.
	Keep
	// Handover: the previous owner sealed the partition and its synced
	// replica, the new owner, holds everything it acknowledged.
	Handover
	// Takeover: the previous owner's lease ran out; its replica, the new
	// owner, promotes the copy it holds if that copy was synced.
	Takeover
	// Lost: no copy of the state survived. The owner starts empty and
	// refuses grants until a lock-delay has passed, by when every session
	// that held a lock here has ended or learned that it is at risk.
	Lost
)

var modeNames = [...]string{"fresh", "keep", "handover", "takeover", "lost"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", m)
}

// Part is one partition's configuration at one epoch. Owner and replica
// are incarnations, node id plus boot nonce: a node that restarts is a new
// incarnation and never serves what its previous one was given.
type Part struct {
	Epoch   uint64 `json:"e"`
	Owner   string `json:"o"`
	ONonce  string `json:"on"`
	Replica string `json:"r,omitempty"`
	RNonce  string `json:"rn,omitempty"`
	Mode    Mode   `json:"m"`
	// Sealed is the last change position the previous owner had
	// acknowledged when it sealed the partition (Handover only).
	Sealed uint64 `json:"s,omitempty"`
	// Settled is set once an owner has waited out the lock-delay of the
	// loss at LostAt, so later owners need not wait again. Like LostAt,
	// it goes with the partition to every later epoch until the next loss.
	Settled bool `json:"st,omitempty"`
	// Prev (PNonce) is the last replica known to hold a full copy, at
	// epoch PEpoch, kept while the replica that replaced it may not have
	// one yet. If the owner dies before that replica is synced, Prev's
	// copy is the only one left (the owner serves nothing while its
	// replica is unsynced, so it is complete): Prev keeps it, and takes
	// the partition over instead of its being declared lost.
	Prev   string `json:"pv,omitempty"`
	PNonce string `json:"pvn,omitempty"`
	PEpoch uint64 `json:"pve,omitempty"`
	// LostAt is the latest epoch at which the partition was lost (Mode
	// Lost), carried to every later epoch: a node that skips epochs (it
	// restored a raft snapshot) learns of a loss it never applied, and
	// does not carry a copy from before it across; and every owner until
	// the loss is Settled serves it behind the lock-delay.
	LostAt uint64 `json:"la,omitempty"`
}

// PrevIs reports whether incarnation (id, nonce) is the partition's
// previous replica, holding the full copy of epoch PEpoch.
func (p Part) PrevIs(id, nonce string) bool {
	return p.Prev != "" && p.Prev == id && p.PNonce == nonce
}

// UnsettledLoss reports whether the partition's last loss was at epoch ep
// (not 0: never lost) and its lock-delay has not been waited out yet:
// every owner since serves it behind the delay, and a settle of ep is
// news.
func (p Part) UnsettledLoss(ep uint64) bool { return ep != 0 && p.LostAt == ep && !p.Settled }

// OwnedBy reports whether incarnation (id, nonce) owns the partition.
func (p Part) OwnedBy(id, nonce string) bool { return p.Owner == id && p.ONonce == nonce }

// ReplicatedBy reports whether incarnation (id, nonce) is the replica.
func (p Part) ReplicatedBy(id, nonce string) bool { return p.Replica == id && p.RNonce == nonce }

// Node is a node as the control plane knows it.
type Node struct {
	ID         string `json:"id"`
	Nonce      string `json:"n"`
	PeerAddr   string `json:"p"`
	ClientAddr string `json:"c"`
	Voter      bool   `json:"v,omitempty"`
	Leaving    bool   `json:"l,omitempty"`
}

// State is the partition table. It is a value: Apply returns a new one and
// never changes its receiver, so readers may share a State freely.
type State struct {
	// Index is the raft index of the last command applied.
	Index uint64          `json:"i"`
	Parts []Part          `json:"parts"`
	Nodes map[string]Node `json:"nodes"`
}

// Initialized reports whether the table has been created.
func (s *State) Initialized() bool { return s != nil && len(s.Parts) > 0 }

// Part returns partition p's configuration.
func (s *State) Part(p int) Part {
	if s == nil || p < 0 || p >= len(s.Parts) {
		return Part{}
	}
	return s.Parts[p]
}

// Node returns a node by id.
func (s *State) Node(id string) (Node, bool) {
	if s == nil {
		return Node{}, false
	}
	n, ok := s.Nodes[id]
	return n, ok
}

// Names reports whether any of names (a peer certificate's DNS names) is
// a node of the table for which want holds.
func (s *State) Names(names []string, want func(Node) bool) bool {
	for _, id := range names {
		if n, ok := s.Node(id); ok && want(n) {
			return true
		}
	}
	return false
}

// Command is one change to the table, as a raft log entry. Exactly one
// field is set.
type Command struct {
	// Init creates the table. Ignored once the table exists.
	Init []Part `json:"init,omitempty"`
	// Node registers a node or a new incarnation of one, or updates it.
	Node *Node `json:"node,omitempty"`
	// Assign moves partitions to new epochs. Each applies only if the
	// partition is still at the epoch it was decided from, so a decision
	// made on a stale view (an old leader's) is dropped, never applied.
	Assign []Assignment `json:"assign,omitempty"`
	// Settle marks partitions whose last loss's lock-delay has passed.
	Settle []Settled `json:"settle,omitempty"`
}

// Assignment moves partition P from epoch From to To.
type Assignment struct {
	P    int    `json:"p"`
	From uint64 `json:"f"`
	To   Part   `json:"to"`
}

// Settled says the lock-delay of partition P's loss at epoch Epoch (its
// LostAt) has passed.
type Settled struct {
	P     int    `json:"p"`
	Epoch uint64 `json:"e"`
}

// Check reports whether c fits a table of parts partitions: a command
// from a build or a peer with another partition count (or a corrupt or
// forged entry) would otherwise index partitions this node does not have.
func (c Command) Check(parts int) error {
	if c.Init != nil && len(c.Init) != parts {
		return fmt.Errorf("replication: a table of %d partitions where this node has %d", len(c.Init), parts)
	}
	for _, a := range c.Assign {
		if a.P < 0 || a.P >= parts {
			return fmt.Errorf("replication: assignment of partition %d of %d", a.P, parts)
		}
	}
	for _, st := range c.Settle {
		if st.P < 0 || st.P >= parts {
			return fmt.Errorf("replication: settling partition %d of %d", st.P, parts)
		}
	}
	return nil
}

// Check reports whether s is a table of parts partitions, or no table yet.
func (s *State) Check(parts int) error {
	if len(s.Parts) != 0 && len(s.Parts) != parts {
		return fmt.Errorf("replication: a table of %d partitions where this node has %d", len(s.Parts), parts)
	}
	return nil
}

// Encode serialises a command for the raft log.
func (c Command) Encode() ([]byte, error) { return json.Marshal(c) }

// DecodeCommand reads a command from the raft log.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	err := json.Unmarshal(b, &c)
	return c, err
}

// Apply returns the state after command c at raft index index, and the
// partitions whose configuration changed. It is deterministic: every node
// applying the same log holds the same table.
func (s *State) Apply(index uint64, c Command) (*State, []int) {
	n := s.clone()
	n.Index = index
	var changed []int
	switch {
	case c.Init != nil:
		if len(n.Parts) == 0 {
			n.Parts = slices.Clone(c.Init)
			for i := range n.Parts {
				changed = append(changed, i)
			}
		}
	case c.Node != nil:
		n.Nodes[c.Node.ID] = *c.Node
	case c.Assign != nil:
		for _, a := range c.Assign {
			if a.P < 0 || a.P >= len(n.Parts) {
				continue
			}
			cur := n.Parts[a.P]
			if cur.Epoch != a.From || a.To.Epoch <= cur.Epoch {
				continue // decided on a view that is no longer true
			}
			n.Parts[a.P] = a.To
			changed = append(changed, a.P)
		}
	case c.Settle != nil:
		for _, st := range c.Settle {
			if st.P >= 0 && st.P < len(n.Parts) && n.Parts[st.P].UnsettledLoss(st.Epoch) {
				n.Parts[st.P].Settled = true
				changed = append(changed, st.P)
			}
		}
	}
	return n, changed
}

func (s *State) clone() *State {
	n := &State{Nodes: make(map[string]Node)}
	if s == nil {
		return n
	}
	n.Index = s.Index
	n.Parts = slices.Clone(s.Parts)
	for k, v := range s.Nodes {
		n.Nodes[k] = v
	}
	return n
}

// Encode serialises the whole state, for raft snapshots.
func (s *State) Encode() ([]byte, error) { return json.Marshal(s) }

// DecodeState reads a state written by Encode.
func DecodeState(b []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if s.Nodes == nil {
		s.Nodes = make(map[string]Node)
	}
	return &s, nil
}
