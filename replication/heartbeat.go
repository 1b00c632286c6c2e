package replication

import (
	"context"
	"errors"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/peer"
)

// heartbeatLoop renews this node's lease with the leader. With the lease
// the node also reports which of its partitions have a synced replica,
// which have waited out the lock-delay of a loss, and which it froze.
func (c *Control) heartbeatLoop() {
	defer c.wg.Done()
	for c.sleep(c.cfg.Lease / 6) {
		c.renew()
	}
}

func (c *Control) renew() {
	sent := c.cfg.Held.now()
	var e peer.Enc
	e.Str(c.cfg.Self.ID)
	e.Str(c.cfg.Self.Nonce)
	encodeEpochs(&e, c.cfg.Data.Synced())
	encodeEpochs(&e, c.cfg.Data.DelayOver())
	encodeEpochs(&e, c.cfg.Data.Frozen())
	var (
		reply []byte
		err   error
	)
	if c.IsLeader() {
		reply, err = c.heartbeat(context.Background(), e.B)
	} else {
		addr, id := c.raft.LeaderWithID()
		if addr == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Lease/3)
		// To the leader's node id, proved: a lease from anyone else who
		// answers at its address would be no lease at all.
		reply, err = c.cfg.Pool.To(raftNode(id), string(addr)).Call(ctx, peer.Heartbeat, e.B)
		cancel()
	}
	if err != nil {
		c.log.Debug("lease renewal failed", "err", err)
		return
	}
	d := peer.Dec{B: reply}
	lease, index := time.Duration(d.Int()), d.Uint()
	if d.End() != nil {
		return
	}
	// The lease runs from when the request left, not when the grant came:
	// the leader counts from no earlier than that.
	c.cfg.Held.grant(sent, lease, index)
}

func encodeEpochs(e *peer.Enc, m map[int]uint64) {
	e.Uint(uint64(len(m)))
	for p, ep := range m {
		e.Uint(uint64(p))
		e.Uint(ep)
	}
}

func decodeEpochs(d *peer.Dec) map[int]uint64 {
	n := d.Count(2) // a partition and an epoch
	m := make(map[int]uint64, n)
	for range n {
		p := int(d.Uint())
		m[p] = d.Uint()
	}
	return m
}

func (c *Control) serveHeartbeat(conn context.Context, _ peer.Method, payload []byte, reply func([]byte, error)) {
	reply(c.heartbeat(conn, payload))
}

// heartbeat grants a lease, on the leader only. The grant carries the
// index of the table the leader has applied: the node uses it only once it
// has taken up that table, so a node whose partitions were taken over
// learns so before it may serve again.
func (c *Control) heartbeat(conn context.Context, payload []byte) ([]byte, error) {
	d := peer.Dec{B: payload}
	inc := Incarnation{ID: d.Str(), Nonce: d.Str()}
	synced, over, frozen := decodeEpochs(&d), decodeEpochs(&d), decodeEpochs(&d)
	if err := d.End(); err != nil {
		return nil, err
	}
	if !peer.CallerIs(conn, inc.ID) {
		// A node renews only its own lease and reports only on its own
		// partitions: one heartbeating for another could keep a dead
		// node's lease alive or end a lock-delay early.
		return nil, failure.Refuse(failure.Unspecified, "a heartbeat for "+inc.ID+" from a node whose certificate does not name it")
	}
	if !c.IsLeader() {
		return nil, errors.New("not the leader")
	}
	// Grant only shortly after leadership was confirmed by a quorum. A
	// leader that was paused or cut off still believes it leads until it
	// learns otherwise, and would grant leases, its own included, for a
	// table that is no longer true; within verifyWindow of a confirmed
	// contact no other leader can exist yet, because followers wait a
	// heartbeat timeout after their last contact before electing one.
	if v := c.verified.Load(); v == 0 || c.now()-v > int64(verifyWindow(c.cfg)) {
		return nil, errors.New("leadership not confirmed recently")
	}
	st := c.State()
	if !c.note(st, inc, synced, over, frozen) {
		return nil, errors.New("not the leader yet")
	}
	// The index of the last table change, not raft's applied index: that
	// also counts configuration entries, which no node's table ever sees.
	var e peer.Enc
	e.Int(int64(c.cfg.Lease))
	e.Uint(st.Index)
	return e.B, nil
}

// note records what a heartbeat from inc reports, as far as table st
// gives inc the roles it reports on, and reports false if this node does
// not lead yet. The maps it fills are bounded by the table: an unknown
// incarnation or a partition out of range adds nothing.
func (c *Control) note(st *State, inc Incarnation, synced, over, frozen map[int]uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.leading {
		return false
	}
	// Only the table's own incarnations are remembered: one that is not
	// registered yet is registered from gossip, which notes it as heard
	// then, and a stream of made-up ones must not grow the map.
	if n, ok := st.Node(inc.ID); ok && n.Nonce == inc.Nonce {
		c.heard[inc] = time.Now()
	}
	for p, ep := range synced {
		part := st.Part(p)
		if (part.OwnedBy(inc.ID, inc.Nonce) || part.ReplicatedBy(inc.ID, inc.Nonce)) && part.Epoch == ep {
			c.synced[p] = ep
		}
		if part.PrevIs(inc.ID, inc.Nonce) && part.PEpoch == ep {
			c.prevSynced[p] = ep
		}
	}
	for p, ep := range over {
		// Only the owner can say the lock-delay of the partition's last
		// loss is over: any owner that has waited it out since the loss.
		if part := st.Part(p); part.OwnedBy(inc.ID, inc.Nonce) && part.UnsettledLoss(ep) {
			c.delayOver[p] = ep
		}
	}
	for p, ep := range frozen {
		// Only the owner freezes its epoch, and says so.
		if part := st.Part(p); part.OwnedBy(inc.ID, inc.Nonce) && part.Epoch == ep {
			c.frozen[p] = ep
		}
	}
	return true
}
