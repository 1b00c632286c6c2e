package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/replication"
	"github.com/elock/elock/ring"
)

// MeshConfig configures a mesh node.
type MeshConfig struct {
	ID         string
	ClientAddr string   // the client listener's address, published to peers
	GossipAddr string   // memberlist bind address
	PeerAddr   string   // internal RPC listen address
	Join       []string // gossip addresses of members to join
	Voter      bool
	Expect     int // bootstrap-expect of a voter
	DataDir    string
	Partitions int
	Limits     locktable.Limits
	// MaxTimeout is the longest session timeout a client may set; with the
	// lease it sizes the lock-delay after a double failure.
	MaxTimeout time.Duration
	// Lease is the owner lease; HomeLease how long a home may go without
	// renewing a session before it closes the client's connection;
	// LostAfter how long both copies of a partition may be out of reach
	// before it is declared lost.
	Lease, HomeLease, LostAfter time.Duration
	Logger                      *slog.Logger
}

// Mesh is a running mesh node: gossip, the control and data planes, and
// the router that is the server's Backend.
type Mesh struct {
	cfg     MeshConfig
	log     *slog.Logger
	Nonce   string
	peerLn  net.Listener
	mux     *peer.Mux
	pool    *peer.Pool
	data    *replication.Data
	set     *partition.Set
	ring    *ring.Ring
	control *replication.Control
	router  *Router
	methods atomic.Pointer[peer.Methods]
}

// StartMesh starts every part of a mesh node. It returns once the node
// listens and gossips; joining, forming the control plane and receiving
// partitions go on in the background.
func StartMesh(cfg MeshConfig) (_ *Mesh, err error) {
	if cfg.Lease <= 0 {
		cfg.Lease = replication.DefaultLease
	}
	if cfg.HomeLease <= 0 {
		cfg.HomeLease = DefaultHomeLease
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mesh{cfg: cfg, log: log, Nonce: ring.NewNonce()}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	self := replication.Incarnation{ID: cfg.ID, Nonce: m.Nonce}

	m.peerLn, err = net.Listen("tcp", cfg.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("node: peer listener: %w", err)
	}
	m.mux = peer.NewMux(m.peerLn, peer.NewServer(peer.HandlerFunc(m.serve), log), log)
	undo = append(undo, func() { m.mux.Close() })
	m.pool = peer.NewPool(2*time.Second, peer.Source(m.peerLn.Addr()))
	undo = append(undo, m.pool.Close)

	// The data plane needs the control plane's lease and the router's
	// expiry, both built after it.
	var (
		ctl     atomic.Pointer[replication.Control]
		expired atomic.Pointer[func(string)]
	)
	m.data = replication.NewData(replication.DataConfig{
		Self: self,
		// Long enough for a dead replica to be replaced and sent a copy:
		// the write is then confirmed instead of answered "unknown".
		AwaitTimeout: 2*cfg.Lease + 2*time.Second,
		Pool:         m.pool,
		Lease: func(since time.Time) bool {
			c := ctl.Load()
			return c != nil && c.LeaseValidSince(since)
		},
		LockDelay: cfg.MaxTimeout + cfg.Lease + cfg.HomeLease,
		Expired: func(id string) {
			if f := expired.Load(); f != nil {
				(*f)(id)
			}
		},
		Logger: log,
	}, cfg.Partitions)
	undo = append(undo, m.data.Close)
	m.set, err = partition.New(partition.Config{Partitions: cfg.Partitions, Limits: cfg.Limits, Replicator: m.data})
	if err != nil {
		return nil, err
	}
	undo = append(undo, m.set.Close)
	m.data.Bind(m.set)

	raftID := cfg.ID
	if cfg.DataDir == "" {
		// Without its log on disk a restarted node must not vote under the
		// identity whose log it lost: each boot is a new raft server.
		raftID = cfg.ID + "#" + m.Nonce
	}
	peerAddr := m.peerLn.Addr().String()
	rc := ring.DefaultConfig()
	rc.BindAddr = cfg.GossipAddr
	rc.Meta = ring.Meta{
		ID: cfg.ID, Nonce: m.Nonce, ClientAddr: cfg.ClientAddr, PeerAddr: peerAddr,
		Voter: cfg.Voter, Expect: cfg.Expect, RingHash: ring.RingHash(cfg.Partitions), RaftID: raftID,
	}
	rc.Join = cfg.Join
	rc.Logger = log.With("component", "gossip")
	m.ring, err = ring.New(rc)
	if err != nil {
		return nil, fmt.Errorf("node: gossip: %w", err)
	}
	undo = append(undo, func() { m.ring.Shutdown() })

	control, err := replication.NewControl(replication.ControlConfig{
		Self: self, RaftID: raftID, PeerAddr: peerAddr, ClientAddr: cfg.ClientAddr,
		Voter: cfg.Voter, Expect: cfg.Expect, DataDir: cfg.DataDir, Partitions: cfg.Partitions,
		Lease: cfg.Lease, LostAfter: cfg.LostAfter, Ring: m.ring, Mux: m.mux, Pool: m.pool, Data: m.data,
		Logger: log.With("component", "control"),
	})
	if err != nil {
		return nil, err
	}
	m.control = control
	ctl.Store(control)
	undo = append(undo, func() { control.Close() })

	m.router = newRouter(self, control, m.set, m.pool, m.ring, cfg.HomeLease, log)
	f := m.router.sessions.expired
	expired.Store(&f)
	methods := peer.Methods{}
	for _, ms := range []peer.Methods{m.data.Methods(), control.Methods(), m.router.Methods()} {
		for k, v := range ms {
			methods[k] = v
		}
	}
	m.methods.Store(&methods)
	m.router.sessions.start()
	return m, nil
}

// DefaultHomeLease is how long a home may fail to renew a session before
// it closes the client's connection.
const DefaultHomeLease = 3 * time.Second

// serve dispatches peer requests once every part has been built.
func (m *Mesh) serve(conn context.Context, method byte, payload []byte, reply func([]byte, error)) {
	ms := m.methods.Load()
	if ms == nil {
		reply(nil, errors.New("node starting"))
		return
	}
	ms.Serve(conn, method, payload, reply)
}

// Backend returns the server backend of this node.
func (m *Mesh) Backend() *Router { return m.router }

// Attach connects the mesh to the server whose clients it serves.
func (m *Mesh) Attach(srv *Server) {
	m.router.clients = srv.LocalClients
	m.router.sessions.kick = srv.Kick
	m.router.sessions.live = srv.Live
}

// GossipAddr and PeerAddr are the bound addresses.
func (m *Mesh) GossipAddr() string { return m.ring.GossipAddr() }
func (m *Mesh) PeerAddr() string   { return m.peerLn.Addr().String() }

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
			return fmt.Errorf("node: leaving with %d partitions owned and %d replicated: %w", owned, replicated, ctx.Err())
		case <-m.control.Changed():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close stops every part of the node.
func (m *Mesh) Close() error {
	m.router.sessions.close()
	m.ring.Leave(time.Second)
	err := m.control.Close()
	m.data.Close()
	m.set.Close()
	m.ring.Shutdown()
	m.mux.Close()
	m.pool.Close()
	return err
}
