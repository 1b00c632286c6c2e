package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/replication"
	"github.com/elock/elock/ring"
)

// Clients is what the mesh needs of the server whose clients it serves:
// close a session's connection (it could not be kept safe), tell whether
// one is live here, count them, and give the labels of those attached
// here (for the locks command). *node.Clients implements it.
type Clients interface {
	Kick(id string)
	// Jeopardy tells session id's connection whether its locks are at
	// risk: its home has not renewed it for a while (see jeopardyAfter).
	Jeopardy(id string, atRisk bool)
	Live(id string) bool
	Count() int
	Labels(ids []string) map[string]string
}

// Config configures a mesh node. Start from DefaultConfig.
type Config struct {
	ID         string
	ClientAddr string   // the client listener's address, published to peers
	GossipAddr string   // memberlist bind address
	PeerAddr   string   // internal RPC listen address
	Join       []string // gossip addresses of members to join
	// GossipKeys encrypt gossip (see ring.Config.Keys); empty: in clear.
	GossipKeys [][]byte
	// PeerTLS secures peer RPC and raft (see peer.TLS); nil: in clear.
	PeerTLS    *peer.TLS
	Voter      bool
	Expect     int // bootstrap-expect of a voter
	DataDir    string
	Partitions int
	Limits     locktable.Limits
	// MaxName and MaxWait bound a lock request's name and wait, at the
	// owner as at the client port.
	MaxName int
	MaxWait time.Duration
	// MaxPermits bounds a semaphore's permits at the owner, as at the
	// client port (0: any that fits 32 bits).
	MaxPermits int
	// MaxLocks and MaxSessions bound the locks and session records this
	// node keeps, as owner or replica (see partition.Config); zero is no
	// bound.
	MaxLocks, MaxSessions int
	// MaxLocksPerSession bounds the locks one session holds on this
	// node, checked where they are granted (see partition.Config).
	MaxLocksPerSession int
	// MaxTimeout is the longest session timeout a client may set; with the
	// lease and the home lease it sizes the lock-delay after a double
	// failure.
	MaxTimeout time.Duration
	// Lease is the owner lease; HomeLease how long a home may go without
	// renewing a session before it closes the client's connection;
	// LostAfter how long both copies of a partition may be out of reach
	// before it is declared lost.
	Lease, HomeLease, LostAfter time.Duration
	// Clients are the server's clients, by session.
	Clients Clients
	Logger  *slog.Logger
	// ObservePeer and ObserveBatch, if set, are told of each peer call
	// this node makes (its method and time to reply) and of the changes
	// in each batch it ships to a replica, for metrics. They must not
	// block; nil records nothing.
	ObservePeer  func(m peer.Method, took time.Duration)
	ObserveBatch func(changes int)
}

// DefaultHomeLease is how long a home may fail to renew a session before
// it closes the client's connection.
const DefaultHomeLease = 3 * time.Second

// DefaultConfig returns the settings of a stock mesh node; its identity,
// addresses and Clients are left for the caller.
func DefaultConfig() Config {
	return Config{
		GossipAddr:         "127.0.0.1:7946",
		PeerAddr:           "127.0.0.1:11401",
		Partitions:         partition.DefaultPartitions,
		Limits:             locktable.Limits{MaxWaiters: node.DefaultMaxWaiters, DefaultTimeout: node.DefaultSessionTimeout},
		MaxName:            node.DefaultMaxName,
		MaxWait:            node.DefaultMaxWait,
		MaxLocks:           node.DefaultMaxLocksTotal,
		MaxSessions:        node.DefaultMaxSessions,
		MaxLocksPerSession: node.DefaultMaxLocksPerSession,
		MaxTimeout:         node.DefaultMaxTimeout,
		Lease:              replication.DefaultLease,
		HomeLease:          DefaultHomeLease,
		LostAfter:          replication.DefaultLostAfter,
	}
}

// Validate reports every setting that cannot work, joined.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("mesh: "+format, args...))
		}
	}
	check(c.ID != "", "node id is empty")
	check(c.Partitions >= 1 && c.Partitions <= 1<<16, "partitions %d out of range 1..65536", c.Partitions)
	check(c.Lease > 0 && c.HomeLease > 0 && c.LostAfter > 0, "lease, home lease and lost-after must be positive")
	check(c.MaxTimeout >= 0, "max timeout %v is negative", c.MaxTimeout)
	check(c.MaxName >= 1 && c.MaxWait >= 0, "max name %d under 1 or max wait %v negative", c.MaxName, c.MaxWait)
	check(c.MaxLocks >= 0 && c.MaxSessions >= 0 && c.MaxLocksPerSession >= 0, "max locks %d, max sessions %d or max locks per session %d negative",
		c.MaxLocks, c.MaxSessions, c.MaxLocksPerSession)
	check(!c.Voter || c.Expect >= 1, "a voter needs bootstrap-expect of at least 1")
	check(c.Clients != nil, "no Clients")
	check(c.PeerTLS == nil || c.PeerTLS.ID == c.ID, "the peer certificate is for node %q, not %q", tlsID(c.PeerTLS), c.ID)
	for i, k := range c.GossipKeys {
		check(ring.ValidateKey(k) == nil, "gossip key %d is %d bytes, want 16, 24 or 32", i+1, len(k))
	}
	return errors.Join(errs...)
}

func tlsID(t *peer.TLS) string {
	if t == nil {
		return ""
	}
	return t.ID
}

// Mesh is a running mesh node: gossip, the control and data planes, and
// the roles this node plays. Its Backend serves the node's clients.
type Mesh struct {
	cfg     Config
	log     *slog.Logger
	self    replication.Incarnation
	peerLn  net.Listener
	mux     *peer.Mux
	pool    *peer.Pool
	lease   *replication.Lease
	data    *replication.Data
	ring    *ring.Ring
	control *replication.Control
	home    *home

	// cancel ends the roles' loops, which wg joins, and work's goroutines.
	cancel context.CancelFunc
	wg     sync.WaitGroup
	work   *workers
}

// Start starts every part of a mesh node, each built on the parts it
// needs, in that order, so that nothing is completed after it runs. It
// returns once the node listens and gossips; joining, forming the control
// plane and receiving partitions go on in the background.
func Start(cfg Config) (_ *Mesh, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mesh{cfg: cfg, log: log, self: replication.Incarnation{ID: cfg.ID, Nonce: ring.NewNonce()}}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	// The peer port: listening, but served only once every method has a
	// handler (the end of Start).
	m.peerLn, err = net.Listen("tcp", cfg.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("mesh: peer listener: %w", err)
	}
	m.mux = peer.NewMux(m.peerLn, cfg.PeerTLS, log)
	undo = append(undo, func() { m.mux.Close() })
	m.pool = peer.NewPool(2*time.Second, peer.Source(m.peerLn.Addr()), cfg.PeerTLS)
	m.pool.Observe = cfg.ObservePeer
	undo = append(undo, m.pool.Close)

	// The data plane and the partition set it hosts. Expired sessions go
	// into a queue that the session owner drains once it runs.
	expired := newExpiries()
	m.lease = replication.NewLease()
	dc := replication.DefaultDataConfig()
	dc.Self, dc.Pool, dc.Lease, dc.Logger = m.self, m.pool, m.lease, log
	dc.ObserveBatch = cfg.ObserveBatch
	dc.Partitions = partition.Config{Partitions: cfg.Partitions, Limits: cfg.Limits, MaxLocks: cfg.MaxLocks, MaxSessions: cfg.MaxSessions,
		MaxLocksPerSession: cfg.MaxLocksPerSession, Expired: expired.add}
	// Long enough for a dead replica to be replaced and sent a copy: the
	// write is then confirmed instead of answered "unknown".
	dc.AwaitTimeout = 2*cfg.Lease + 2*time.Second
	dc.LockDelay = cfg.MaxTimeout + cfg.Lease + cfg.HomeLease
	m.data, err = replication.NewData(dc)
	if err != nil {
		return nil, err
	}
	undo = append(undo, m.data.Close)
	set := m.data.Set()

	// Gossip.
	raftID := cfg.ID
	if cfg.DataDir == "" {
		// Without its log on disk a restarted node must not vote under the
		// identity whose log it lost: each boot is a new raft server.
		raftID = cfg.ID + "#" + m.self.Nonce
	}
	peerAddr := m.peerLn.Addr().String()
	rc := ring.DefaultConfig()
	rc.BindAddr = cfg.GossipAddr
	rc.Meta = ring.Meta{
		ID: cfg.ID, Nonce: m.self.Nonce, ClientAddr: cfg.ClientAddr, PeerAddr: peerAddr,
		Voter: cfg.Voter, Expect: cfg.Expect, RingHash: ring.RingHash(cfg.Partitions), RaftID: raftID,
	}
	rc.Join = cfg.Join
	rc.Keys = cfg.GossipKeys
	rc.Logger = log.With("component", "gossip")
	m.ring, err = ring.New(rc)
	if err != nil {
		return nil, fmt.Errorf("mesh: gossip: %w", err)
	}
	undo = append(undo, func() { m.ring.Shutdown() })

	// The control plane, which hands every table it applies to the data
	// plane.
	cc := replication.DefaultControlConfig()
	cc.Self, cc.RaftID, cc.PeerAddr, cc.ClientAddr = m.self, raftID, peerAddr, cfg.ClientAddr
	cc.Voter, cc.Expect, cc.DataDir, cc.Partitions = cfg.Voter, cfg.Expect, cfg.DataDir, cfg.Partitions
	cc.Lease, cc.LostAfter = cfg.Lease, cfg.LostAfter
	cc.Ring, cc.Mux, cc.Pool, cc.Data, cc.Held = m.ring, m.mux, m.pool, m.data, m.lease
	cc.Logger = log.With("component", "control")
	m.control, err = replication.NewControl(cc)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { m.control.Close() })

	// The roles, on the table and a caller.
	reg := peer.NewRegistry()
	rt := &router{self: m.self, table: m.control, call: netCaller{self: m.self, local: reg, pool: m.pool}, parts: cfg.Partitions, log: log}
	owner := newLockOwner(set, m.control, rt.call, cfg.Clients.Count, m.data.OwnedSince, requestLimits{maxName: cfg.MaxName, maxWait: cfg.MaxWait, maxPermits: uint32(min(uint64(max(cfg.MaxPermits, 0)), math.MaxUint32))}, log)
	// Renewed every sixth of a lease: half of one left means renewals are
	// failing, and the locks this node owns may soon be served elsewhere.
	owner.leaseLow = func() bool { return m.lease.Remaining() < cfg.Lease/2 }
	sessOwner := newSessionOwner(set, rt, cfg.HomeLease, cfg.MaxTimeout, m.data.InLockDelay, log)
	homeSess := newHomeSessions(m.self, rt, cfg.Clients, cfg.HomeLease, log)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.work = &workers{ctx: ctx}
	m.home = &home{self: m.self, rt: rt, table: m.control, call: rt.call, sessions: homeSess, log: log,
		members: m.members, status: m.status, work: m.work}
	if err := errors.Join(
		m.data.Register(reg), m.control.Register(reg),
		owner.register(reg, m.work), sessOwner.register(reg, m.work), homeSess.register(reg, m.work),
		reg.Handle(peer.Event, m.home.event),
	); err != nil {
		cancel()
		return nil, err
	}

	// Everything is built: serve peers, and start the roles' loops.
	m.mux.Serve(peer.NewServer(reg, log), admitted(m.control))
	m.loop(ctx, func(ctx context.Context) { every(ctx, cfg.HomeLease/4, homeSess.renewAll) })
	m.loop(ctx, func(ctx context.Context) { every(ctx, time.Second, sessOwner.sweepRecords) })
	m.loop(ctx, func(ctx context.Context) { every(ctx, 5*time.Second, owner.sweepLocks) })
	owner.watchers.mu.Lock()
	owner.watchers.ctx = ctx
	owner.watchers.mu.Unlock()
	kick := make(chan struct{}, 1)
	m.home.watches.mu.Lock()
	m.home.watches.kick = kick
	m.home.watches.mu.Unlock()
	m.loop(ctx, func(ctx context.Context) { every(ctx, watchRenew, m.home.renewWatches) })
	m.loop(ctx, func(ctx context.Context) { m.home.registerFresh(ctx, kick) })
	m.loop(ctx, func(ctx context.Context) { every(ctx, watchRenew, owner.expireWatches) })
	m.loop(ctx, func(ctx context.Context) { sessOwner.releaseExpired(ctx, expired) })
	return m, nil
}

// admitted admits a peer connection (with peer TLS) whose certificate
// names a node the table registered: the leader registers a node only
// once it proved its id (replication's coordinator), so a certificate
// of the mesh's CA alone does not let its holder call this node's
// methods or take part in raft. Before the table exists (a mesh
// forming, a node that has not received it yet) every node of the CA
// is admitted: there is nobody registered to tell it from.
func admitted(t Table) func(names []string) bool {
	return func(names []string) bool {
		st := t.State()
		return !st.Initialized() || st.Names(names, func(replication.Node) bool { return true })
	}
}

// loop runs f on a goroutine that Close ends (through ctx) and joins.
func (m *Mesh) loop(ctx context.Context, f func(context.Context)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f(ctx)
	}()
}

// Backend returns the server backend of this node.
func (m *Mesh) Backend() node.Backend { return m.home }

// Nonce is this incarnation's boot nonce.
func (m *Mesh) Nonce() string { return m.self.Nonce }

// GossipAddr and PeerAddr are the bound addresses.
func (m *Mesh) GossipAddr() string { return m.ring.GossipAddr() }
func (m *Mesh) PeerAddr() string   { return m.peerLn.Addr().String() }

// members lists the gossip members, for the members command.
func (m *Mesh) members() []node.Member {
	var out []node.Member
	for _, mb := range m.ring.Members() {
		out = append(out, node.Member{ID: mb.ID, Addr: mb.ClientAddr, State: mb.State.String(), Voter: mb.Voter})
	}
	return out
}

// status returns this node's own stat lines.
func (m *Mesh) status() []node.StatLine {
	st := m.control.State()
	owned, replicated, unsynced := m.data.Roles()
	ready := 0
	if m.Ready() {
		ready = 1
	}
	return []node.StatLine{
		{Key: "node_id", Value: m.self.ID},
		{Key: "node_ready", Value: strconv.Itoa(ready)},
		{Key: "cluster_index", Value: strconv.FormatUint(st.Index, 10)},
		{Key: "cluster_leader", Value: orDash(m.control.Leader())},
		{Key: "node_partitions_owned", Value: strconv.Itoa(owned)},
		{Key: "node_partitions_replicated", Value: strconv.Itoa(replicated)},
		{Key: "node_partitions_unsynced", Value: strconv.Itoa(unsynced)},
		{Key: "node_lease", Value: strconv.FormatBool(m.lease.Valid())},
	}
}

// Figures are a mesh node's state for metrics: cheap enough to read at
// every scrape (a pass over the partitions, raft's counters and the
// member list), and nothing in them names a lock or a session.
type Figures struct {
	// Owned, Replicated and Unsynced count the partitions this node owns,
	// replicates, and owns without a synced replica.
	Owned, Replicated, Unsynced int
	// Lease is what is left of this node's owner lease; 0 without one.
	Lease time.Duration
	// Leader: this node leads the control plane. Term and Applied are its
	// raft term and last applied index.
	Leader        bool
	Term, Applied uint64
	// LagChanges and Lag: how far the replicas this node feeds are
	// behind (see replication.Data.Lag).
	LagChanges uint64
	Lag        time.Duration
	// Members counts the gossip members by state, this node included.
	Members [ring.Left + 1]int
}

// Figures reads this node's figures.
func (m *Mesh) Figures() Figures {
	var f Figures
	f.Owned, f.Replicated, f.Unsynced = m.data.Roles()
	f.Lease = m.lease.Remaining()
	f.Leader = m.control.IsLeader()
	f.Term, f.Applied = m.control.Raft()
	f.LagChanges, f.Lag = m.data.Lag(time.Now())
	for _, mb := range m.ring.Members() {
		if mb.State >= 0 && int(mb.State) < len(f.Members) {
			f.Members[mb.State]++
		}
	}
	return f
}

// Counts sums the partitions this node serves, as their owner.
func (m *Mesh) Counts() partition.Counts { return m.data.Set().Counts() }

// Leave hands this node's partitions over before it goes: it announces
// that it is leaving, and waits until the leader has moved every partition
// it owns or replicates elsewhere, or ctx ends. Clients of other nodes see
// no error: each partition is sealed, handed to its synced replica, and
// their homes follow it.
func (m *Mesh) Leave(ctx context.Context) error {
	if err := m.ring.UpdateMeta(func(mt *ring.Meta) { mt.Leaving = true }); err != nil {
		return err
	}
	for {
		st := m.control.State()
		owned, replicated, _ := m.data.Roles()
		// Only a live member that is staying can take partitions over: when
		// the whole cluster is shut down together there is nobody to hand
		// them to, and waiting would only delay every node's exit.
		others := 0
		for _, mb := range m.ring.Members() {
			if mb.ID != m.cfg.ID && mb.State == ring.Alive && !mb.Leaving {
				others++
			}
		}
		if others == 0 || (owned == 0 && replicated == 0 && st.Nodes[m.cfg.ID].Leaving) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mesh: leaving with %d partitions owned and %d replicated: %w", owned, replicated, ctx.Err())
		case <-m.control.Changed():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close stops every part of the node, in the reverse order of Start: the
// roles' loops and goroutines (peers are no longer served), then gossip,
// the control plane, the data plane and the peer connections.
func (m *Mesh) Close() error {
	m.cancel()
	m.mux.Close()
	// No answer leaves this node now: a role's goroutine waiting for a
	// replica's acknowledgement is told the outcome is unknown at once
	// instead of holding the joins below for the await timeout.
	m.data.Abandon()
	m.wg.Wait()
	m.work.close()
	m.ring.Leave(time.Second)
	err := m.control.Close()
	m.data.Close()
	m.ring.Shutdown()
	m.pool.Close()
	return err
}
