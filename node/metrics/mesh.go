package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elock/elock/node/mesh"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/ring"
)

// Mesh records what a mesh node's peer calls and replication do as it
// happens: its methods are mesh.Config's ObservePeer and ObserveBatch.
// The rest of a mesh node's figures are read at each scrape
// (RegisterMeshFigures).
type Mesh struct {
	byMethod [256]prometheus.Observer // by peer.Method; nil: undeclared
	batch    prometheus.Observer
}

// NewMesh registers elock_peer_rpc_duration_seconds and
// elock_replication_batch_size on reg.
func NewMesh(reg prometheus.Registerer) (*Mesh, error) {
	rpc := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "elock_peer_rpc_duration_seconds",
		Help:    "Time from a call to another node to its reply or failure, by peer method.",
		Buckets: prometheus.ExponentialBuckets(25e-6, 4, 11),
	}, []string{"method"})
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "elock_replication_batch_size",
		Help:    "Changes in each batch an owner ships to its replica.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 9),
	})
	for _, c := range []prometheus.Collector{rpc, batch} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m := &Mesh{batch: batch}
	for _, meth := range peer.Methods() {
		m.byMethod[meth] = rpc.WithLabelValues(meth.String())
	}
	return m, nil
}

// PeerCall records one peer call (mesh.Config.ObservePeer).
func (m *Mesh) PeerCall(meth peer.Method, took time.Duration) {
	if o := m.byMethod[meth]; o != nil {
		o.Observe(took.Seconds())
	}
}

// Batch records one replication batch (mesh.Config.ObserveBatch).
func (m *Mesh) Batch(changes int) { m.batch.Observe(float64(changes)) }

var (
	descPartitions = prometheus.NewDesc("elock_partitions",
		"Partitions by this node's role: owner, replica, and unsynced (owned without a synced replica, so refusing writes).", []string{"role"}, nil)
	descLease = prometheus.NewDesc("elock_lease_remaining_seconds",
		"What is left of this node's owner lease; 0 without one (it serves nothing).", nil, nil)
	descLeader = prometheus.NewDesc("elock_raft_leader",
		"1 on the leader of the control plane, else 0.", nil, nil)
	descTerm = prometheus.NewDesc("elock_raft_term",
		"This node's raft term.", nil, nil)
	descApplied = prometheus.NewDesc("elock_raft_applied_index",
		"Index of the last raft entry (partition table) this node applied.", nil, nil)
	descLagChanges = prometheus.NewDesc("elock_replication_lag_changes",
		"Changes recorded by the partitions this node owns that their replicas have not acknowledged.", nil, nil)
	descLagSeconds = prometheus.NewDesc("elock_replication_lag_seconds",
		"How long the oldest request waiting for a replica's acknowledgement has waited.", nil, nil)
	descMembers = prometheus.NewDesc("elock_gossip_members",
		"Gossip members as this node sees them, itself included, by state.", []string{"state"}, nil)
)

// RegisterMeshFigures registers the collector of a mesh node's figures
// (partitions by role, lease, raft, replication lag, members), read
// through figures (mesh.Mesh.Figures) at each scrape.
func RegisterMeshFigures(reg prometheus.Registerer, figures func() mesh.Figures) error {
	return reg.Register(figuresCollector(figures))
}

type figuresCollector func() mesh.Figures

func (figuresCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPartitions, descLease, descLeader, descTerm, descApplied, descLagChanges, descLagSeconds, descMembers} {
		ch <- d
	}
}

func (c figuresCollector) Collect(ch chan<- prometheus.Metric) {
	f := c()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descPartitions, float64(f.Owned), "owner")
	gauge(descPartitions, float64(f.Replicated), "replica")
	gauge(descPartitions, float64(f.Unsynced), "unsynced")
	gauge(descLease, f.Lease.Seconds())
	leader := 0.0
	if f.Leader {
		leader = 1
	}
	gauge(descLeader, leader)
	gauge(descTerm, float64(f.Term))
	gauge(descApplied, float64(f.Applied))
	gauge(descLagChanges, float64(f.LagChanges))
	gauge(descLagSeconds, f.Lag.Seconds())
	for s, n := range f.Members {
		gauge(descMembers, float64(n), ring.State(s).String())
	}
}
