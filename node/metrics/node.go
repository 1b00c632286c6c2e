package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/wire"
)

// codes are the reply codes the server gives; each verb has a counter for
// each, made once, so that counting a command indexes an array instead of
// hashing label values.
var codes = [...]int{
	wire.CodeOK, wire.CodeBadRequest, wire.CodeForbidden, wire.CodeUnavailable,
	wire.CodeTooLong, wire.CodeLimit, wire.CodeRetry, wire.CodeIndeterminate,
}

func codeIndex(code int) int {
	for i, c := range codes {
		if c == code {
			return i
		}
	}
	return -1
}

// Commands counts the commands and refusals of a server's connections: it
// is the node.Observer that main puts in node.Config.
type Commands struct {
	verbs    []verb // by wire.Command, sized by the command table
	counts   *prometheus.CounterVec
	refusals *prometheus.CounterVec
}

type verb struct {
	byCode [len(codes)]prometheus.Counter
	took   prometheus.Observer
}

var _ node.Observer = (*Commands)(nil)

// NewCommands registers elock_commands_total, elock_command_duration_seconds
// and elock_refusals_total on reg, and returns their observer.
func NewCommands(reg prometheus.Registerer) (*Commands, error) {
	c := &Commands{
		counts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elock_commands_total",
			Help: "Client commands answered by this node, by verb (unknown for a verb elock does not know) and reply code.",
		}, []string{"command", "code"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "elock_refusals_total",
			Help: "Client requests answered 503 (nothing done; retry) or 504 (outcome unknown), by code and reason (lock-delay, moved, no-replica, no-lease, shutting-down, unavailable, ...).",
		}, []string{"code", "reason"}),
	}
	took := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "elock_command_duration_seconds",
		Help: "Time from a client command's parse to its reply, by verb; a lock that waits in a queue counts its wait.",
		// From a local grant (tens of microseconds) to a replicated one
		// under load, and waits up to minutes.
		Buckets: prometheus.ExponentialBuckets(25e-6, 4, 12),
	}, []string{"command"})
	for _, m := range []prometheus.Collector{c.counts, c.refusals, took} {
		if err := reg.Register(m); err != nil {
			return nil, err
		}
	}
	c.verbs = make([]verb, wire.NumCommands())
	for i := range c.verbs {
		name := wire.Command(i).String()
		for j, code := range codes {
			c.verbs[i].byCode[j] = c.counts.WithLabelValues(name, strconv.Itoa(code))
		}
		c.verbs[i].took = took.WithLabelValues(name)
	}
	return c, nil
}

// Command implements node.Observer.
func (c *Commands) Command(cmd wire.Command, code int, took time.Duration) {
	if int(cmd) >= len(c.verbs) {
		cmd = wire.Unknown
	}
	v := &c.verbs[cmd]
	v.took.Observe(took.Seconds())
	switch i := codeIndex(code); {
	case i >= 0:
		v.byCode[i].Inc()
	case code >= 100 && code <= 999:
		// A code the table above does not know: slower, and rare.
		c.counts.WithLabelValues(cmd.String(), strconv.Itoa(code)).Inc()
	}
	// code 0: the connection broke before any reply; there is no code.
}

// Refused implements node.Observer.
func (c *Commands) Refused(code int, reason failure.Reason) {
	// Off the hot path: a refusal is the exception, so the label values
	// are looked up here rather than made in advance.
	c.refusals.WithLabelValues(strconv.Itoa(code), reason.String()).Inc()
}

// Node is what the node collector reads at each scrape: figures the
// server and the partition set keep anyway, so that serving a client
// costs metrics nothing.
type Node struct {
	// Connections counts the open client connections (node.Server's).
	Connections func() int
	// Accepted and Refused count the connections accepted since start,
	// and those refused among them (node.Server's).
	Accepted, Refused func() uint64
	// Counts sums the partitions this node serves (partition.Set's).
	Counts func() partition.Counts
	// Ready reports node_ready; nil: always ready.
	Ready func() bool
	// Version is the build's version (node.Version).
	Version string
}

// RegisterNode registers the collector of a node's figures on reg.
func RegisterNode(reg prometheus.Registerer, n Node) error {
	return reg.Register(&nodeCollector{n: n})
}

var (
	descConnections = prometheus.NewDesc("elock_client_connections",
		"Open client connections.", nil, nil)
	descAccepted = prometheus.NewDesc("elock_client_connections_accepted_total",
		"Client connections accepted since this node started, refused ones included.", nil, nil)
	descRefused = prometheus.NewDesc("elock_client_connections_refused_total",
		"Client connections refused since this node started: past -max-conns or -max-conns-per-ip.", nil, nil)
	descSessions = prometheus.NewDesc("elock_sessions",
		"Session records this node keeps, by state: attached to a live connection, or detached and counting down their timeout.", []string{"state"}, nil)
	descLocks = prometheus.NewDesc("elock_locks_held",
		"Lock names held in the partitions this node serves.", nil, nil)
	descWaiters = prometheus.NewDesc("elock_lock_waiters",
		"Lock requests queued in the partitions this node serves.", nil, nil)
	descGrants = prometheus.NewDesc("elock_grants_total",
		"Locks granted by this node since it started, hand-offs included (re-entrant locks are not grants).", nil, nil)
	descHandoffs = prometheus.NewDesc("elock_handoffs_total",
		"Grants to a queued waiter since this node started.", nil, nil)
	descReady = prometheus.NewDesc("elock_node_ready",
		"1 when this node is ready to serve (stats' node_ready), else 0.", nil, nil)
	descBuild = prometheus.NewDesc("elock_build_info",
		"Always 1; its label is the version of elockd.", []string{"version"}, nil)
)

type nodeCollector struct{ n Node }

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descAccepted, descRefused, descSessions, descLocks, descWaiters, descGrants, descHandoffs, descReady, descBuild} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.n.Connections != nil {
		gauge(descConnections, float64(c.n.Connections()))
	}
	if c.n.Accepted != nil && c.n.Refused != nil {
		ch <- prometheus.MustNewConstMetric(descAccepted, prometheus.CounterValue, float64(c.n.Accepted()))
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(c.n.Refused()))
	}
	if c.n.Counts != nil {
		n := c.n.Counts()
		gauge(descSessions, float64(n.Sessions-n.Detached), "attached")
		gauge(descSessions, float64(n.Detached), "detached")
		gauge(descLocks, float64(n.Locks))
		gauge(descWaiters, float64(n.Waiters))
		ch <- prometheus.MustNewConstMetric(descGrants, prometheus.CounterValue, float64(n.Grants))
		ch <- prometheus.MustNewConstMetric(descHandoffs, prometheus.CounterValue, float64(n.Handoffs))
	}
	ready := 1.0
	if c.n.Ready != nil && !c.n.Ready() {
		ready = 0
	}
	gauge(descReady, ready)
	gauge(descBuild, 1, c.n.Version)
}
