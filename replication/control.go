package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"

	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/ring"
)

// ControlConfig configures the control plane of one node. Start from
// DefaultControlConfig.
type ControlConfig struct {
	Self       Incarnation
	RaftID     string // raft server id: stable with a data dir, per boot without
	PeerAddr   string
	ClientAddr string
	Voter      bool
	Expect     int    // bootstrap-expect of a voter
	DataDir    string // raft state lives under DataDir/raft; "" keeps it in memory
	Partitions int
	// Lease is how long an owner may serve after the leader last heard
	// from it. The leader takes a partition over only after its owner's
	// lease has run out, plus Margin.
	Lease time.Duration
	// LostAfter is how long both copies of a partition must be silent
	// before it is declared lost (unless both are known to have
	// restarted): a network partition may give them back, state and all.
	LostAfter time.Duration
	// Raft timings; zero means the defaults below.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	Ring                                                  *ring.Ring
	// Mux carries raft's connections on the -peer port.
	Mux  *peer.Mux
	Pool *peer.Pool
	// Data is the data plane that takes up the roles of every table
	// applied here, and whose partitions' health the heartbeats report.
	Data *Data
	// Held is this node's lease, which the heartbeats renew.
	Held   *Lease
	Logger *slog.Logger
}

// DefaultControlConfig returns the timings of a stock node; identities and
// the parts it drives are left for the caller.
func DefaultControlConfig() ControlConfig {
	return ControlConfig{
		Partitions:         partition.DefaultPartitions,
		Lease:              DefaultLease,
		LostAfter:          DefaultLostAfter,
		HeartbeatTimeout:   defaultHeartbeatTimeout,
		ElectionTimeout:    defaultElectionTimeout,
		LeaderLeaseTimeout: defaultLeaderLeaseTimeout,
	}
}

// Defaults of the control plane's timings.
const (
	DefaultLease              = 3 * time.Second
	DefaultLostAfter          = time.Minute
	defaultHeartbeatTimeout   = time.Second
	defaultElectionTimeout    = time.Second
	defaultLeaderLeaseTimeout = 500 * time.Millisecond
	// maxMoves bounds the partitions one round of the coordinator starts
	// moving for balance, so a join or leave does not move everything at
	// once. Repairs (takeovers, new replicas) are not bounded.
	maxMoves = 16
)

// verifyWindow is how long after a confirmed round of contact with a
// quorum the leader may grant leases: well under the heartbeat timeout
// after which followers may elect another leader.
func verifyWindow(c ControlConfig) time.Duration { return c.HeartbeatTimeout / 2 }

// Margin is what the leader adds to an owner's lease before it takes the
// owner's partitions over: clock-rate drift, and the time a deposed
// leader may still have granted leases before it noticed (its raft
// leader lease).
func (c ControlConfig) Margin() time.Duration {
	return c.LeaderLeaseTimeout + c.Lease/10 + 100*time.Millisecond
}

// Control is the control plane of one node: a raft member (voter or not)
// holding the partition table, the renewal of this node's lease, and, on
// the leader, the coordinator that decides every epoch change.
type Control struct {
	cfg   ControlConfig
	log   *slog.Logger
	raft  *raft.Raft
	trans *raft.NetworkTransport
	close []io.Closer
	start time.Time

	state   atomic.Pointer[State]
	changed chan struct{} // closed and replaced whenever a table is applied
	chMu    sync.Mutex    // guards changed

	// verified is when (nanoseconds since start) the last successful
	// check of this node's leadership began; see heartbeat.
	verified atomic.Int64

	mu         sync.Mutex // guards the leader's state below
	leading    bool
	ledSince   time.Time // when this term of leadership began
	heard      map[Incarnation]time.Time
	synced     map[int]uint64 // partition -> epoch at which its owner reported a synced replica, or its replica a full copy
	prevSynced map[int]uint64 // partition -> epoch at which its previous replica reported still holding its full copy
	delayOver  map[int]uint64
	frozen     map[int]uint64       // partition -> epoch its owner froze (Data.Frozen)
	unproved   map[string]time.Time // incarnation and address -> last failed proof (see proved)

	stop chan struct{}
	wg   sync.WaitGroup
}

// Validate reports every setting that cannot work, joined.
func (c ControlConfig) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("replication: "+format, args...))
		}
	}
	check(c.Self.ID != "" && c.Self.Nonce != "", "control plane without an incarnation")
	check(c.RaftID != "", "control plane without a raft id")
	check(c.Partitions >= 1, "partitions %d under 1", c.Partitions)
	check(!c.Voter || c.Expect >= 1, "a voter needs bootstrap-expect of at least 1")
	check(c.Lease > 0, "lease %v is not positive", c.Lease)
	check(c.LostAfter > 0, "lost-after %v is not positive", c.LostAfter)
	check(c.HeartbeatTimeout > 0 && c.ElectionTimeout > 0 && c.LeaderLeaseTimeout > 0, "raft timings must be positive")
	check(c.Ring != nil && c.Mux != nil && c.Pool != nil && c.Data != nil && c.Held != nil, "control plane without its ring, mux, pool, data plane or lease")
	return errors.Join(errs...)
}

// NewControl starts the control plane: raft, the renewal of this node's
// lease, and the loops that bootstrap the cluster and, while this node
// leads, coordinate it. Every table raft applies is handed to cfg.Data in
// log order.
func NewControl(cfg ControlConfig) (*Control, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Control{
		cfg: cfg, log: log, start: time.Now(),
		changed:    make(chan struct{}),
		heard:      make(map[Incarnation]time.Time),
		synced:     make(map[int]uint64),
		prevSynced: make(map[int]uint64),
		delayOver:  make(map[int]uint64),
		frozen:     make(map[int]uint64),
		unproved:   make(map[string]time.Time),
		stop:       make(chan struct{}),
	}
	c.state.Store(&State{Nodes: map[string]Node{}})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.RaftID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.ShutdownOnRemove = false
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: logWriter{log}})

	logs, stable, snaps, err := c.stores()
	if err != nil {
		return nil, err
	}
	c.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  streamLayer{cfg.Mux},
		MaxPool: 3,
		Timeout: 2 * time.Second,
		Logger:  rc.Logger,
	})
	r, err := raft.NewRaft(rc, &fsm{c}, logs, stable, snaps, c.trans)
	if err != nil {
		c.trans.Close()
		c.closeStores()
		return nil, fmt.Errorf("replication: starting raft: %w", err)
	}
	c.raft = r
	c.wg.Add(3)
	go c.bootstrapLoop()
	go c.heartbeatLoop()
	go c.leaderLoop()
	return c, nil
}

func (c *Control) stores() (raft.LogStore, raft.StableStore, raft.SnapshotStore, error) {
	if c.cfg.DataDir == "" {
		st := raft.NewInmemStore()
		return st, st, raft.NewInmemSnapshotStore(), nil
	}
	dir := filepath.Join(c.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, nil, fmt.Errorf("replication: %w", err)
	}
	wal, err := raftwal.Open(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("replication: opening raft log in %s: %w", dir, err)
	}
	c.close = append(c.close, wal)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: logWriter{c.log}}))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("replication: snapshot store in %s: %w", dir, err)
	}
	return wal, wal, snaps, nil
}

func (c *Control) closeStores() {
	for _, cl := range c.close {
		cl.Close()
	}
}

// Close stops the control plane. The node stays in the raft
// configuration: the voter set is static, and a restarted node comes back
// under it (or, without a data dir, replaces its old incarnation).
func (c *Control) Close() error {
	select {
	case <-c.stop:
		return nil
	default:
	}
	close(c.stop)
	c.wg.Wait()
	err := c.raft.Shutdown().Error()
	c.trans.Close()
	c.closeStores()
	return err
}

// State returns the partition table as last applied here.
func (c *Control) State() *State { return c.state.Load() }

// Changed returns a channel closed when a newer table is applied.
func (c *Control) Changed() <-chan struct{} {
	c.chMu.Lock()
	defer c.chMu.Unlock()
	return c.changed
}

func (c *Control) notify() {
	c.chMu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.chMu.Unlock()
}

// WaitNewer waits until a table with an index above index is applied, or
// ctx ends.
func (c *Control) WaitNewer(ctx context.Context, index uint64) error {
	for {
		ch := c.Changed()
		if c.State().Index > index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *Control) now() int64 { return int64(time.Since(c.start)) }

// Leader returns the leader's node id, or "".
func (c *Control) Leader() string {
	_, id := c.raft.LeaderWithID()
	node, _, _ := strings.Cut(string(id), "#")
	return node
}

// IsLeader reports whether this node leads the control plane.
func (c *Control) IsLeader() bool { return c.raft.State() == raft.Leader }

// Raft returns this node's raft term and the index of the last entry it
// applied to the partition table.
func (c *Control) Raft() (term, applied uint64) {
	return c.raft.CurrentTerm(), c.raft.AppliedIndex()
}

// fsm applies the raft log to the partition table.
type fsm struct{ c *Control }

func (f *fsm) Apply(l *raft.Log) any {
	cmd, err := DecodeCommand(l.Data)
	if err == nil {
		err = cmd.Check(f.c.cfg.Partitions)
	}
	if err != nil {
		// Skipped by every node alike: they all run with the same
		// partition count (the ring hash in gossip checks it).
		f.c.log.Error("bad command in the raft log, skipped", "index", l.Index, "err", err)
		return err
	}
	old := f.c.state.Load()
	cur, changed := old.Apply(l.Index, cmd)
	f.c.state.Store(cur)
	f.c.cfg.Data.Apply(old, cur, changed)
	f.c.notify()
	return nil
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	b, err := f.c.state.Load().Encode()
	return fsmSnapshot(b), err
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	cur, err := DecodeState(b)
	if err == nil {
		err = cur.Check(f.c.cfg.Partitions)
	}
	if err != nil {
		return err
	}
	old := f.c.state.Load()
	f.c.state.Store(cur)
	all := make([]int, len(cur.Parts))
	for i := range all {
		all[i] = i
	}
	f.c.cfg.Data.Apply(old, cur, all)
	f.c.notify()
	return nil
}

type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}

// streamLayer runs raft over the -peer port.
type streamLayer struct{ m *peer.Mux }

func (s streamLayer) Accept() (net.Conn, error) { return s.m.RaftListener().Accept() }
func (s streamLayer) Close() error              { return nil }
func (s streamLayer) Addr() net.Addr            { return s.m.Addr() }
func (s streamLayer) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.m.DialRaft(string(a), timeout)
}

// logWriter turns hclog's lines into slog records. Raft reports every
// failed heartbeat to a dead peer, twice a second; that is expected while
// a node is down, so it goes to the debug level with raft's other chatter,
// and only raft's errors about itself stay warnings.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if strings.Contains(line, "[ERROR]") && !strings.Contains(line, "failed to heartbeat") &&
		!strings.Contains(line, "failed to appendEntries") && !strings.Contains(line, "failed to contact") {
		w.log.Warn(line, "component", "raft")
	} else {
		w.log.Debug(line, "component", "raft")
	}
	return len(p), nil
}

func (c *Control) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.stop:
		return false
	case <-t.C:
		return true
	}
}

// bootstrapLoop forms the cluster: a voter with no raft state waits until
// Expect voters see each other through gossip, none of which belongs to a
// cluster yet, and then every one of them bootstraps the same
// configuration (as Consul's -bootstrap-expect does). A voter that finds
// a cluster already formed waits to be added by its leader instead.
func (c *Control) bootstrapLoop() {
	defer c.wg.Done()
	if !c.cfg.Voter || c.cfg.Expect < 1 {
		return
	}
	c.bootstrapped()
	for c.sleep(250 * time.Millisecond) {
		if c.bootstrapped() {
			return
		}
	}
}

// bootstrapped tries to bootstrap and reports whether there is nothing
// left to do.
func (c *Control) bootstrapped() bool {
	if c.raft.LastIndex() > 0 || c.Leader() != "" {
		return true
	}
	var voters []ring.Member
	for _, m := range c.cfg.Ring.Members() {
		if m.Voter && m.Expect == c.cfg.Expect && m.State == ring.Alive && m.RaftID != "" {
			voters = append(voters, m)
		}
	}
	if len(voters) < c.cfg.Expect {
		return false
	}
	slices.SortFunc(voters, func(a, b ring.Member) int { return strings.Compare(a.RaftID, b.RaftID) })
	voters = voters[:c.cfg.Expect]
	if !slices.ContainsFunc(voters, func(m ring.Member) bool { return m.RaftID == c.cfg.RaftID }) {
		return false // formed without us; the leader will add us
	}
	for _, m := range voters {
		if m.RaftID == c.cfg.RaftID {
			continue
		}
		if err := c.cfg.Pool.Prove(m.PeerAddr, m.ID); err != nil {
			c.log.Warn("not bootstrapping with a voter that has not proved its identity", "member", m.ID, "err", err)
			return false
		}
		formed, err := c.peerFormed(m.ID, m.PeerAddr)
		if err != nil || formed {
			return formed
		}
	}
	var conf raft.Configuration
	for _, m := range voters {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.RaftID), Address: raft.ServerAddress(m.PeerAddr)})
	}
	err := c.raft.BootstrapCluster(conf).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		c.log.Warn("bootstrap failed", "err", err)
		return false
	}
	c.log.Info("control plane bootstrapped", "voters", len(conf.Servers))
	return true
}

// peerFormed asks a voter whether it already belongs to a cluster.
func (c *Control) peerFormed(id, addr string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b, err := c.cfg.Pool.To(id, addr).Call(ctx, peer.Status, nil)
	if err != nil {
		return false, err
	}
	d := peer.Dec{B: b}
	formed := d.Bool()
	return formed, d.End()
}

func (c *Control) serveStatus(_ context.Context, _ peer.Method, _ []byte, reply func([]byte, error)) {
	var e peer.Enc
	e.Bool(c.raft.LastIndex() > 0 || c.Leader() != "")
	reply(e.B, nil)
}

// Register adds the control plane's peer methods to r.
func (c *Control) Register(r *peer.Registry) error {
	return errors.Join(
		r.Handle(peer.Heartbeat, c.serveHeartbeat),
		r.Handle(peer.Status, c.serveStatus),
	)
}
