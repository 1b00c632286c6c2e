package replication

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/ring"
)

// leaderLoop runs the coordinator while this node leads.
func (c *Control) leaderLoop() {
	defer c.wg.Done()
	events, unsubscribe := c.cfg.Ring.Subscribe()
	defer unsubscribe()
	// Often enough that leases, renewed every Lease/6, always find a
	// recent confirmation of leadership (see verifyWindow).
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		case <-events:
		}
		if !c.IsLeader() {
			c.mu.Lock()
			c.leading = false
			c.mu.Unlock()
			continue
		}
		// Confirm leadership with a quorum before granting anything more.
		started := c.now()
		if err := c.raft.VerifyLeader().Error(); err != nil {
			continue
		}
		c.verified.Store(started)
		c.lead()
		if err := c.coordinate(); err != nil {
			c.log.Debug("coordinator round failed", "err", err)
		}
	}
}

// lead starts a term of leadership. The new leader does not know which
// leases its predecessor granted, so it counts every node as heard from
// now: no takeover happens until a full lease (plus margin) has passed.
func (c *Control) lead() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leading {
		return
	}
	c.leading = true
	now := time.Now()
	c.ledSince = now
	clear(c.heard)
	clear(c.synced)
	clear(c.prevSynced)
	clear(c.delayOver)
	clear(c.frozen)
	for _, n := range c.State().Nodes {
		c.heard[Incarnation{n.ID, n.Nonce}] = now
	}
	c.log.Info("leading the control plane")
}

// apply commits a command through raft.
func (c *Control) apply(cmd Command) error {
	b, err := cmd.Encode()
	if err != nil {
		return err
	}
	return c.raft.Apply(b, 5*time.Second).Error()
}

// alive reports whether the leader has heard from incarnation inc within
// its lease plus the margin: a node it has not is presumed unable to
// serve, and its partitions may be taken over.
func (c *Control) alive(inc Incarnation) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.heard[inc]
	return ok && time.Since(t) < c.cfg.Lease+c.cfg.Margin()
}

// reportedAfter reports whether the leader's latest report from inc came
// after owner's lease, as this leader granted it, must have run out.
func (c *Control) reportedAfter(inc, owner Incarnation) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.heard[inc]
	o, ook := c.heard[owner]
	if !ook {
		o = c.ledSince
	}
	return ok && t.After(o.Add(c.cfg.Lease+c.cfg.Margin()))
}

// heardWithin reports whether the leader heard from inc within d.
func (c *Control) heardWithin(inc Incarnation, d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.heard[inc]
	return ok && time.Since(t) < d
}

// coordinate is one round of the leader's decisions.
func (c *Control) coordinate() error {
	members := c.cfg.Ring.Members()
	if err := c.register(members); err != nil {
		return err
	}
	if err := c.membership(members); err != nil {
		c.log.Debug("raft membership change failed", "err", err)
	}
	st := c.State()
	if !st.Initialized() {
		return c.initialize(st)
	}
	if err := c.settle(st); err != nil {
		return err
	}
	return c.transitions(st)
}

// proveEvery is how often the leader asks a node that failed to prove its
// identity to prove it again.
const proveEvery = 5 * time.Second

// proved reports whether n's peer address proves n's id (peer.Pool.Prove),
// asking at most every proveEvery for a node that failed, and logging a
// failure once per incarnation and address rather than every round.
func (c *Control) proved(n Node) bool {
	key := n.ID + "/" + n.Nonce + "/" + n.PeerAddr
	c.mu.Lock()
	last, failed := c.unproved[key]
	c.mu.Unlock()
	if failed && time.Since(last) < proveEvery {
		return false
	}
	err := c.cfg.Pool.Prove(n.PeerAddr, n.ID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.unproved, key)
		return true
	}
	if !failed {
		c.log.Warn("not registering a node that has not proved its identity", "member", n.ID, "err", err)
	}
	if len(c.unproved) >= maxUnproved {
		clear(c.unproved) // a flood of made-up members: forget, and log again
	}
	c.unproved[key] = time.Now()
	return false
}

// maxUnproved bounds the incarnations remembered as unproved.
const maxUnproved = 1024

// register records every live member's current incarnation and addresses.
func (c *Control) register(members []ring.Member) error {
	st := c.State()
	for _, m := range members {
		if m.State != ring.Alive && m.State != ring.Suspect {
			continue
		}
		n := Node{ID: m.ID, Nonce: m.Nonce, PeerAddr: m.PeerAddr, ClientAddr: m.ClientAddr, Voter: m.Voter, Leaving: m.Leaving}
		if old, ok := st.Nodes[m.ID]; ok && old == n {
			continue
		}
		if old, ok := st.Nodes[m.ID]; ok && old.Nonce == n.Nonce && old.Leaving && !n.Leaving {
			n.Leaving = true // a leave is not taken back by stale gossip
		}
		// With peer TLS, a node is registered (and so given partitions,
		// a vote, session records) only once its peer address has shown a
		// certificate of the mesh's CA naming its id; gossip alone only
		// claims them. Retried every round until it does.
		if !c.proved(n) {
			continue
		}
		if err := c.apply(Command{Node: &n}); err != nil {
			return err
		}
		c.mu.Lock()
		if _, ok := c.heard[Incarnation{n.ID, n.Nonce}]; !ok {
			c.heard[Incarnation{n.ID, n.Nonce}] = time.Now()
		}
		c.mu.Unlock()
		c.log.Info("node registered", "member", n.ID, "nonce", n.Nonce, "voter", n.Voter, "leaving", n.Leaving)
	}
	return nil
}

// raftNode returns the node id part of a raft server id.
func raftNode(id raft.ServerID) string {
	node, _, _ := strings.Cut(string(id), "#")
	return node
}

// membership keeps raft's configuration in step with the members: every
// live incarnation of a voter node is a voter, every other node a
// non-voter. A voter is never dropped for being down — the voter set is
// static, and a majority of it is needed for any epoch change — but an
// incarnation that restarted without its raft state is replaced by the new
// one, so an amnesic node never votes under an identity whose log it lost.
func (c *Control) membership(members []ring.Member) error {
	cf := c.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	servers := cf.Configuration().Servers
	st := c.State()
	for _, m := range members {
		if m.RaftID == "" || m.PeerAddr == "" || m.State != ring.Alive {
			continue
		}
		// Only registered nodes (see register) join raft.
		if n, ok := st.Nodes[m.ID]; !ok || n.Nonce != m.Nonce || n.PeerAddr != m.PeerAddr {
			continue
		}
		want := raft.ServerID(m.RaftID)
		var have *raft.Server
		for i, s := range servers {
			if s.ID == want {
				have = &servers[i]
			}
		}
		// Replace older incarnations of the same node first.
		for _, s := range servers {
			if s.ID != want && raftNode(s.ID) == m.ID {
				if err := c.raft.RemoveServer(s.ID, 0, 5*time.Second).Error(); err != nil {
					return err
				}
				c.log.Info("raft: replaced an old incarnation", "old", s.ID, "new", want)
			}
		}
		addr := raft.ServerAddress(m.PeerAddr)
		switch {
		case have != nil && have.Address == addr && (have.Suffrage == raft.Voter) == m.Voter:
		case m.Voter:
			if err := c.raft.AddVoter(want, addr, 0, 5*time.Second).Error(); err != nil {
				return err
			}
			c.log.Info("raft: voter added", "id", want)
		default:
			if err := c.raft.AddNonvoter(want, addr, 0, 5*time.Second).Error(); err != nil {
				return err
			}
			c.log.Info("raft: non-voter added", "id", want)
		}
	}
	// A non-voter that has left for good is dropped: it votes for nothing,
	// and keeping it only makes the leader retry it forever.
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			continue
		}
		for _, m := range members {
			if m.RaftID == string(s.ID) && m.State == ring.Left {
				c.raft.RemoveServer(s.ID, 0, 5*time.Second)
			}
		}
	}
	return nil
}

// usable lists the nodes that may be given partitions: registered, heard
// from within their lease, and not leaving.
func (c *Control) usable(st *State) []string {
	var ids []string
	for id, n := range st.Nodes {
		if !n.Leaving && c.alive(Incarnation{id, n.Nonce}) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// epochBase seeds the epochs of a new table from the wall clock, in
// seconds, so that tokens keep growing across a full restart of a cluster
// without data dirs, as long as the clock has moved on by more seconds
// than epochs were used. With data dirs the table, and its epochs, live
// on.
func epochBase() uint64 { return uint64(time.Now().Unix()) & 0x7fffffff }

func (c *Control) initialize(st *State) error {
	ids := c.usable(st)
	if len(ids) == 0 {
		return nil
	}
	base := epochBase()
	placed := ring.Place(ids, c.cfg.Partitions)
	parts := make([]Part, c.cfg.Partitions)
	for p, a := range placed {
		parts[p] = Part{Epoch: base, Owner: a.Owner, ONonce: st.Nodes[a.Owner].Nonce, Mode: Fresh}
		if a.Replica != "" {
			parts[p].Replica, parts[p].RNonce = a.Replica, st.Nodes[a.Replica].Nonce
		}
	}
	c.log.Info("partition table created", "partitions", len(parts), "nodes", ids, "epoch", base)
	return c.apply(Command{Init: parts})
}

// settle marks the losses whose lock-delay an owner reports over.
func (c *Control) settle(st *State) error {
	c.mu.Lock()
	var cmd Command
	for p, ep := range c.delayOver {
		if st.Part(p).UnsettledLoss(ep) {
			cmd.Settle = append(cmd.Settle, Settled{P: p, Epoch: ep})
		}
		delete(c.delayOver, p)
	}
	c.mu.Unlock()
	if cmd.Settle == nil {
		return nil
	}
	return c.apply(cmd)
}

// transitions decides, for every partition, the next epoch change that
// moves it toward a healthy placement (see plan), and commits them.
func (c *Control) transitions(st *State) error {
	ids := c.usable(st)
	if len(ids) == 0 {
		return nil
	}
	c.mu.Lock()
	synced := maps.Clone(c.synced)
	prevSynced := maps.Clone(c.prevSynced)
	frozen := maps.Clone(c.frozen)
	// A new leader learns which replicas hold full copies from their
	// heartbeats; until every live node has had time to send one, a
	// missing report is not yet news.
	informed := time.Since(c.ledSince) >= c.cfg.Lease+c.cfg.Margin()
	c.mu.Unlock()
	repairs, handovers, checks := plan(st, leaderView{
		usable:   ids,
		alive:    c.alive,
		fresh:    func(inc Incarnation) bool { return c.heardWithin(inc, c.cfg.Lease/2) },
		synced:   synced,
		informed: informed,
		gone: func(inc Incarnation) bool {
			n, ok := st.Nodes[inc.ID]
			return !ok || n.Nonce != inc.Nonce || n.Leaving || !c.heardWithin(inc, c.cfg.LostAfter)
		},
		prevSynced:    prevSynced,
		reportedAfter: c.reportedAfter,
		frozen:        frozen,
	}, c.cfg.Partitions, maxMoves)
	for _, a := range repairs {
		if a.To.Mode == Lost {
			cur := st.Part(a.P)
			c.log.Warn("partition lost both copies", "partition", a.P, "epoch", cur.Epoch, "owner", cur.Owner, "replica", cur.Replica)
		}
	}
	if len(repairs) > 0 {
		if err := c.apply(Command{Assign: repairs}); err != nil {
			return err
		}
	}
	if len(handovers) == 0 && len(checks) == 0 {
		return nil
	}
	// Ask every owner in parallel: to seal the partitions to hand over
	// (handed over if sealed with everything acknowledged), and whether
	// the replicas to replace ever held a copy (replaced once answered).
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done []Assignment
	)
	add := func(a Assignment) {
		mu.Lock()
		done = append(done, a)
		mu.Unlock()
	}
	for _, h := range handovers {
		wg.Go(func() {
			pos, err := c.seal(st, h.p, h.cur)
			if err != nil {
				c.log.Debug("seal failed; hand-over postponed", "partition", h.p, "err", err)
				return
			}
			add(handOver(st, h, pos))
		})
	}
	for _, k := range checks {
		wg.Go(func() {
			copied, err := c.replaced(st, k.p, k.cur)
			if err != nil {
				c.log.Debug("replica check failed; replacement postponed", "partition", k.p, "err", err)
				return
			}
			if !copied {
				// Frozen: should this keep not commit, the next round
				// moves on from the epoch all the same.
				c.mu.Lock()
				c.frozen[k.p] = k.cur.Epoch
				c.mu.Unlock()
			}
			add(keep(st, k.p, k.cur, k.replica, copied))
		})
	}
	wg.Wait()
	if len(done) == 0 {
		return nil
	}
	return c.apply(Command{Assign: done})
}

// callOwner sends method m about partition p at cur's epoch to its owner.
func (c *Control) callOwner(st *State, m peer.Method, p int, cur Part) ([]byte, error) {
	n, ok := st.Node(cur.Owner)
	if !ok {
		return nil, fmt.Errorf("owner %s unknown", cur.Owner)
	}
	var e peer.Enc
	e.Uint(uint64(p))
	e.Uint(cur.Epoch)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return c.cfg.Pool.To(n.ID, n.PeerAddr).Call(ctx, m, e.B)
}

// replaced asks a partition's owner whether its replica ever held a full
// copy at the current epoch; if not, the owner has frozen the epoch.
func (c *Control) replaced(st *State, p int, cur Part) (bool, error) {
	b, err := c.callOwner(st, peer.Replaced, p, cur)
	if err != nil {
		return false, err
	}
	d := peer.Dec{B: b}
	copied := d.Bool()
	return copied, d.End()
}

// seal asks a partition's owner to stop serving it ahead of a hand-over.
func (c *Control) seal(st *State, p int, cur Part) (uint64, error) {
	b, err := c.callOwner(st, peer.Seal, p, cur)
	if err != nil {
		return 0, err
	}
	d := peer.Dec{B: b}
	pos := d.Uint()
	return pos, d.End()
}
