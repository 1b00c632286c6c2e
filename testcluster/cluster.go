package testcluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elock/elock/client"
	"github.com/elock/elock/testcluster/certs"
)

const (
	// ConvergeTimeout bounds how long New waits for a new cluster to
	// converge.
	ConvergeTimeout = 60 * time.Second
	// StopTimeout bounds a graceful Stop, which includes leaving the mesh:
	// longer than elockd's own -leave-timeout (1m), so that a leave that
	// cannot finish is cut short by the node, as in production, and the
	// harness sees how it exits rather than racing it.
	StopTimeout = 90 * time.Second
	// LogsEnv, when set in the environment, makes a cluster print every
	// node's log at cleanup even when the test passed.
	LogsEnv = "ELOCK_TESTCLUSTER_LOGS"

	// cleanupStopTimeout bounds SIGTERM at cleanup; then comes SIGKILL.
	cleanupStopTimeout = 20 * time.Second
	// pollInterval is the pause between two convergence checks.
	pollInterval = 100 * time.Millisecond
	// startAttempts is how often a node that exits before it serves is
	// started again.
	startAttempts = 3
)

// Options say what cluster New starts.
type Options struct {
	// Nodes is how many nodes to start, 1 to 253.
	Nodes int
	// Voters is how many of them are voters, nodes 0 to Voters-1; they are
	// started with -bootstrap-expect Voters. Zero means all of them.
	Voters int
	// DataDir gives each node a -data-dir under the test's temporary
	// directory, kept across Restart.
	DataDir bool
	// Flags are extra flags for every node. They come after the
	// harness's own flags, so they override them.
	Flags []string
	// NodeFlags, if set, gives extra flags for one node (its certificate,
	// say), after Flags.
	NodeFlags func(n *Node) []string
	// Secure runs every node of a mesh with a gossip key and peer TLS: a
	// CA of the test's, and a certificate per node naming its id, issued
	// as the node starts. SecureEnv=1 makes every mesh secure, except one
	// whose NodeFlags bring their own security (its test is about it).
	Secure bool
	// HTTP gives every node an HTTP endpoint (-http) on its own loopback
	// address and a port of the kernel's choosing: Cluster.HTTPAddr
	// says which, once the node serves.
	HTTP bool
}

// SecureEnv, set to "1", runs every mesh of the tests secured (see
// Options.Secure): the whole suite then runs with TLS and a gossip key.
const SecureEnv = "ELOCK_TESTCLUSTER_SECURE"

// security is what a secured cluster adds to every node's flags.
type security struct {
	key string // base64 gossip key
	ca  *certs.Set
}

// Node is one incarnation of a cluster node: Restart and a start retry
// make a new Node with the same Index, ID, addresses and data dir, and a
// new Process. A Node never changes once made, so it may be read from any
// goroutine; ask the Cluster again for the current one.
//
// Act on a node through the Cluster (c.Kill(i), not Process.Kill): the
// cluster keeps track of which nodes are meant to be up. Read the client
// address from ClientAddr; Process.Addr is set while the node starts.
type Node struct {
	Index      int
	ID         string // "n" and the index: n0, n1, ...
	ClientAddr string // -listen
	GossipAddr string // -gossip, TCP and UDP
	PeerAddr   string // -peer
	Voter      bool
	DataDir    string // empty without Options.DataDir
	Process    *Process
}

// nodeState is what the test has done to a node.
type nodeState int

const (
	starting nodeState = iota // launched, not yet serving
	running
	paused
	killed
	stopped
)

func (s nodeState) String() string {
	return [...]string{"starting", "running", "paused", "killed", "stopped"}[s]
}

// slot is one node of the cluster across its incarnations.
type slot struct {
	node  *Node
	state nodeState
	procs []*Process // every process started for the node, oldest first
}

// Cluster is a set of elockd processes that form one mesh, each on its
// own loopback address. New starts it; the test's cleanup stops it.
//
// New, Restart, Join, Raw, Client and Where fail the test with FailNow and
// so belong on the test goroutine. Kill, Stop, Pause, Resume, Node, N,
// Addrs, Live, IndexOf and WaitConverged may be called from any goroutine,
// but two operations on the same node must not overlap.
type Cluster struct {
	tb   testing.TB
	opt  Options
	mesh bool   // false: standalone nodes without mesh flags, for this package's tests
	blk  *block // the addresses the cluster owns
	dir  string // parent of the data dirs, if any
	sec  *security

	mu    sync.Mutex // guards slots, the fields of each slot, and conns
	slots []*slot
	conns []*Conn // closed at cleanup
}

// New starts a cluster of opt.Nodes mesh nodes and waits up to
// ConvergeTimeout for it to converge (see WaitConverged). If it does not,
// New fails the test, and the cleanup prints every node's log.
func New(tb testing.TB, opt Options) *Cluster {
	tb.Helper()
	return start(tb, opt, true)
}

// start starts a cluster; with mesh false, its nodes are standalone
// elockd processes run through the same code, which this package's tests
// use while the mesh is being built.
func start(tb testing.TB, opt Options, mesh bool) *Cluster {
	tb.Helper()
	if opt.Voters == 0 {
		opt.Voters = opt.Nodes
	}
	if opt.Nodes < 1 || opt.Nodes > maxNodes || opt.Voters < 1 || opt.Voters > opt.Nodes {
		tb.Fatalf("testcluster: bad options: %d nodes, %d voters", opt.Nodes, opt.Voters)
	}
	Binary(tb, "elockd") // build first: nothing else is worth doing if it fails
	blk, err := reserveBlock()
	if err != nil {
		tb.Fatalf("testcluster: %v", err)
	}
	c := &Cluster{tb: tb, opt: opt, mesh: mesh, blk: blk}
	if mesh && (opt.Secure || os.Getenv(SecureEnv) == "1" && opt.NodeFlags == nil) {
		key := make([]byte, 32)
		rand.Read(key)
		c.sec = &security{key: base64.StdEncoding.EncodeToString(key), ca: certs.New(tb)}
	}
	if opt.DataDir {
		// Asked for before the cleanup is registered, so that the
		// directory is removed only after the nodes have stopped.
		c.dir = tb.TempDir()
	}
	tb.Cleanup(c.cleanup)
	for i := range opt.Nodes {
		n, err := c.newNode(i, i < opt.Voters)
		if err != nil {
			tb.Fatalf("testcluster: %v", err)
		}
		c.slots = append(c.slots, &slot{node: n})
	}
	// All nodes start at once: a mesh node may wait for its peers before
	// it serves.
	for i := range c.slots {
		if err := c.launch(i); err != nil {
			tb.Fatalf("testcluster: node %d: %v", i, err)
		}
	}
	for i := range c.slots {
		if err := c.awaitServing(i, true); err != nil {
			tb.Fatalf("testcluster: %v", err)
		}
	}
	if err := c.WaitConverged(ConvergeTimeout); err != nil {
		tb.Fatalf("testcluster: a new %d-node cluster: %v", opt.Nodes, err)
	}
	return c
}

// newNode allocates node i's addresses and data dir.
func (c *Cluster) newNode(i int, voter bool) (*Node, error) {
	a, err := pickAddrs(c.blk.ip(i))
	if err != nil {
		return nil, err
	}
	n := &Node{
		Index:      i,
		ID:         "n" + strconv.Itoa(i),
		ClientAddr: a.client,
		GossipAddr: a.gossip,
		PeerAddr:   a.peer,
		Voter:      voter,
	}
	if c.dir != "" {
		n.DataDir = filepath.Join(c.dir, n.ID)
		if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// args are n's flags. The caller holds c.mu.
func (c *Cluster) args(n *Node) []string {
	args := []string{"-node-id", n.ID, "-listen", n.ClientAddr}
	if c.mesh {
		args = append(args, "-gossip", n.GossipAddr, "-peer", n.PeerAddr)
		if join := c.joinAddrs(n); len(join) > 0 {
			args = append(args, "-join", strings.Join(join, ","))
		}
		if n.Voter {
			args = append(args, "-bootstrap-expect", strconv.Itoa(c.opt.Voters))
		}
		if n.DataDir != "" {
			args = append(args, "-data-dir", n.DataDir)
		}
		if c.sec != nil {
			cert, key := c.sec.ca.Issue(c.tb, n.ID)
			args = append(args, "-encrypt", c.sec.key, "-peer-cert", cert, "-peer-key", key, "-peer-ca", c.sec.ca.CA)
		}
	}
	if c.opt.HTTP {
		host, _, _ := net.SplitHostPort(n.ClientAddr)
		args = append(args, "-http", net.JoinHostPort(host, "0"))
	}
	args = append(args, c.opt.Flags...)
	if c.opt.NodeFlags != nil {
		args = append(args, c.opt.NodeFlags(n)...)
	}
	return args
}

// joinAddrs are the gossip addresses n joins: every other node's, node 0
// first, whether or not it is up, since elockd retries until one answers.
// n's own address is left out, so that no node can settle for joining
// only itself while the others start (elockd skips its own address
// anyway). A node alone gets no -join. The caller holds c.mu.
func (c *Cluster) joinAddrs(n *Node) []string {
	var addrs []string
	for _, s := range c.slots {
		if s.node.Index != n.Index {
			addrs = append(addrs, s.node.GossipAddr)
		}
	}
	return addrs
}

// launch starts a new process for node i, as a new incarnation.
func (c *Cluster) launch(i int) error {
	c.mu.Lock()
	s := c.slots[i]
	n := *s.node
	args := c.args(&n)
	c.mu.Unlock()
	p, err := launch(c.tb, args)
	if err != nil {
		return err
	}
	n.Process = p
	c.mu.Lock()
	s.node, s.state = &n, starting
	s.procs = append(s.procs, p)
	c.mu.Unlock()
	return nil
}

// awaitServing waits for node i to log that it serves. A node that exits
// first because a port was taken after all ("address already in use") is
// started again, up to startAttempts times in all: on new ports if
// newPorts (at New and Join), on the same ones after a pause otherwise (at
// Restart, where the addresses are the node's identity).
func (c *Cluster) awaitServing(i int, newPorts bool) error {
	for attempt := 1; ; attempt++ {
		n := c.Node(i)
		err := n.Process.WaitServing(StartTimeout)
		if err == nil {
			if n.Process.Addr != n.ClientAddr {
				return fmt.Errorf("node %d (%s) serves on %s, not on its -listen %s", i, n.ID, n.Process.Addr, n.ClientAddr)
			}
			c.setState(i, running)
			return nil
		}
		if n.Process.Alive() {
			return fmt.Errorf("node %d (%s): %v", i, n.ID, err)
		}
		n.Process.markStopping() // a failed start, reported as one, not as a crash
		if attempt == startAttempts || !strings.Contains(n.Process.Log(), "address already in use") {
			return fmt.Errorf("node %d (%s): %v", i, n.ID, err)
		}
		c.tb.Logf("testcluster: node %d (%s) exited before serving (%v); starting it again", i, n.ID, n.Process.State())
		if newPorts {
			a, err := pickAddrs(c.blk.ip(i))
			if err != nil {
				return err
			}
			c.mu.Lock()
			m := *c.slots[i].node
			m.ClientAddr, m.GossipAddr, m.PeerAddr = a.client, a.gossip, a.peer
			c.slots[i].node = &m
			c.mu.Unlock()
		} else {
			time.Sleep(500 * time.Millisecond)
		}
		if err := c.launch(i); err != nil {
			return fmt.Errorf("node %d (%s): %v", i, n.ID, err)
		}
	}
}

func (c *Cluster) setState(i int, st nodeState) {
	c.mu.Lock()
	c.slots[i].state = st
	c.mu.Unlock()
}

// N is how many nodes the cluster has had, up or down; indexes run from 0
// to N()-1.
func (c *Cluster) N() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.slots)
}

// Node returns node i's current incarnation.
func (c *Cluster) Node(i int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slots[i].node
}

// Live returns the indexes of the live nodes: serving, and not killed,
// stopped or paused by the test.
func (c *Cluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var live []int
	for i, s := range c.slots {
		if s.state == running && s.node.Process.Alive() {
			live = append(live, i)
		}
	}
	return live
}

// HTTPAddr is node i's HTTP address (Options.HTTP), as its serving
// line says: it changes when the node restarts.
func (c *Cluster) HTTPAddr(i int) string { return c.Node(i).Process.HTTPAddr }

// Addrs returns the client addresses of the live nodes, by index.
func (c *Cluster) Addrs() []string {
	var addrs []string
	for _, i := range c.Live() {
		addrs = append(addrs, c.Node(i).ClientAddr)
	}
	return addrs
}

// IndexOf returns the index of the node with id nodeID, or -1.
func (c *Cluster) IndexOf(nodeID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.slots {
		if s.node.ID == nodeID {
			return i
		}
	}
	return -1
}

// take moves node i from a state in from (any state if from is empty) to
// st, and returns the node and the state it was in. If node i is in none
// of from, take leaves it alone and ok is false.
func (c *Cluster) take(i int, st nodeState, from ...nodeState) (n *Node, was nodeState, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.slots[i]
	if len(from) > 0 && !slices.Contains(from, s.state) {
		return s.node, s.state, false
	}
	was, s.state = s.state, st
	return s.node, was, true
}

// Kill kills node i with SIGKILL and waits for it to exit. A node that
// had already exited on its own is reported as a crash.
func (c *Cluster) Kill(i int) {
	n, _, _ := c.take(i, killed)
	p := n.Process
	if p.crashed() {
		return // the cleanup reports it
	}
	p.Kill()
	if !p.killedBy(syscall.SIGKILL) {
		c.tb.Errorf("testcluster: node %d (%s) exited on its own just before SIGKILL: %v", i, n.ID, p.State())
	}
}

// DumpStacks ends every running or paused node with its goroutines'
// stacks in its log, for the report of a cluster that failed to recover.
// The nodes count as killed afterwards.
func (c *Cluster) DumpStacks() {
	var wg sync.WaitGroup
	for i := range c.slots {
		n, _, ok := c.take(i, killed, running, paused)
		if ok {
			wg.Go(func() { n.Process.DumpStacks(StopTimeout) })
		}
	}
	wg.Wait()
}

// Stop sends node i SIGTERM and waits up to StopTimeout for it to leave
// the mesh and exit with status 0; it is killed after that. The error
// says what went wrong.
func (c *Cluster) Stop(i int) error {
	n, _, _ := c.take(i, stopped)
	p := n.Process
	if !p.Alive() {
		if p.crashed() {
			return fmt.Errorf("node %d (%s) had already exited on its own: %v", i, n.ID, p.State())
		}
		return fmt.Errorf("node %d (%s) is not running", i, n.ID)
	}
	if _, err := p.Stop(StopTimeout); err != nil {
		return fmt.Errorf("node %d (%s): %w", i, n.ID, err)
	}
	return nil
}

// Pause stops node i with SIGSTOP, as a long GC pause would. The cleanup
// resumes a paused node before it stops it.
func (c *Cluster) Pause(i int) {
	n, was, ok := c.take(i, paused, running)
	if !ok {
		c.tb.Errorf("testcluster: Pause(%d): node %s is %v, not running", i, n.ID, was)
		return
	}
	n.Process.Pause()
}

// Resume continues node i after Pause with SIGCONT.
func (c *Cluster) Resume(i int) {
	n, was, ok := c.take(i, running, paused)
	if !ok {
		c.tb.Errorf("testcluster: Resume(%d): node %s is %v, not paused", i, n.ID, was)
		return
	}
	n.Process.Resume()
}

// Restart starts node i again after Kill or Stop, with the same id,
// addresses, flags and data dir, and waits until it logs that it serves.
// It does not wait for convergence: call WaitConverged for that.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	n := c.Node(i)
	if n.Process.Alive() {
		c.tb.Fatalf("testcluster: Restart(%d): node %s is running", i, n.ID)
	}
	if err := c.launch(i); err != nil {
		c.tb.Fatalf("testcluster: Restart(%d): %v", i, err)
	}
	if err := c.awaitServing(i, false); err != nil {
		c.tb.Fatalf("testcluster: Restart(%d): %v", i, err)
	}
}

// Join starts a new non-voting node that joins the cluster, waits until it
// logs that it serves, and returns its index. It does not wait for
// convergence: call WaitConverged for that.
func (c *Cluster) Join() int {
	c.tb.Helper()
	c.mu.Lock()
	i := len(c.slots)
	if i >= maxNodes {
		c.mu.Unlock()
		c.tb.Fatalf("testcluster: Join: a cluster has at most %d nodes", maxNodes)
	}
	n, err := c.newNode(i, false)
	if err != nil {
		c.mu.Unlock()
		c.tb.Fatalf("testcluster: Join: %v", err)
	}
	c.slots = append(c.slots, &slot{node: n})
	c.mu.Unlock()
	if err := c.launch(i); err != nil {
		c.tb.Fatalf("testcluster: Join: %v", err)
	}
	if err := c.awaitServing(i, true); err != nil {
		c.tb.Fatalf("testcluster: Join: %v", err)
	}
	return i
}

// WaitConverged waits up to timeout for the live nodes (see Live) to
// agree: each answers stats with node_ready 1 and the same cluster_index,
// and members on each lists every live node alive at its client address
// and no other node alive or suspect. It must hold on two polls in a row
// with the same cluster_index. It returns at once with an error if a node
// that should be up has exited, and otherwise, at the timeout, with an
// error that says what still differs. With no live node it returns nil.
func (c *Cluster) WaitConverged(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	ok, prev := false, ""
	for {
		live, down, err := c.snapshot()
		if err != nil {
			return err
		}
		index, err := c.converged(live, down)
		switch {
		case err != nil:
			ok, last = false, err
		case ok && index == prev:
			return nil
		default:
			ok, prev = true, index
			last = errors.New("the cluster index kept changing")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not converged within %v: %v", timeout, last)
		}
		time.Sleep(pollInterval)
	}
}

// snapshot sorts the nodes into live and down (killed, stopped or paused);
// starting nodes are in neither. It fails if a node meant to be up has
// exited.
func (c *Cluster) snapshot() (live, down []*Node, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.slots {
		p := s.node.Process
		switch {
		case s.state == starting:
		case p.crashed():
			return nil, nil, fmt.Errorf("node %d (%s) exited on its own: %v", i, s.node.ID, p.State())
		case s.state == running && p.Alive():
			live = append(live, s.node)
		default:
			down = append(down, s.node)
		}
	}
	return live, down, nil
}

// converged probes the live nodes at once and checks their views.
func (c *Cluster) converged(live, down []*Node) (string, error) {
	views := make([]view, len(live))
	errs := make([]error, len(live))
	var wg sync.WaitGroup
	for i, n := range live {
		wg.Go(func() {
			views[i], errs[i] = probe(n.ClientAddr, c.mesh)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", n.ID, errs[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	if !c.mesh {
		return "", nil
	}
	return checkConverged(live, down, views)
}

// Raw connects to node i's client address. The connection is closed at
// cleanup; the caller may close it earlier.
func (c *Cluster) Raw(i int) *Conn {
	c.tb.Helper()
	n := c.Node(i)
	cn, err := DialConn(c.tb, n.ClientAddr)
	if err != nil {
		c.tb.Fatalf("testcluster: Raw(%d): dial %s: %v", i, n.ClientAddr, err)
	}
	c.mu.Lock()
	c.conns = append(c.conns, cn)
	c.mu.Unlock()
	return cn
}

// Client dials a Go client to node i only, and closes it in t's cleanup.
func (c *Cluster) Client(t testing.TB, i int, opts ...client.Option) *client.Client {
	t.Helper()
	n := c.Node(i)
	ctx, cancel := context.WithTimeout(context.Background(), 2*IOTimeout)
	defer cancel()
	cl, err := client.Dial(ctx, []string{n.ClientAddr}, opts...)
	if err != nil {
		t.Fatalf("testcluster: Client(%d): %v", i, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// Where asks a live node where name lives: its partition, the owner's and
// the replica's node ids ("" for none) and the partition's epoch.
// It tries each live node in turn until one answers "200 WHERE".
func (c *Cluster) Where(name string) (partition int, owner, replica string, epoch uint64) {
	c.tb.Helper()
	var errs []string
	for _, addr := range c.Addrs() {
		w, err := where(addr, name)
		if err == nil {
			return w.partition, w.owner, w.replica, w.epoch
		}
		errs = append(errs, fmt.Sprintf("%s: %v", addr, err))
	}
	if len(errs) == 0 {
		errs = append(errs, "no live node")
	}
	c.tb.Fatalf("testcluster: where %s: %s", name, strings.Join(errs, "; "))
	return
}

// placement is a "where" reply.
type placement struct {
	partition      int
	owner, replica string
	epoch          uint64
}

func where(addr, name string) (placement, error) {
	cn, err := DialConn(nil, addr)
	if err != nil {
		return placement{}, err
	}
	defer cn.Close()
	h, body, err := cn.Lines("where " + name)
	if err != nil {
		return placement{}, err
	}
	if h != "200 WHERE" {
		return placement{}, fmt.Errorf("answered %q", h)
	}
	return parseWhere(statMap(body))
}

func parseWhere(m map[string]string) (placement, error) {
	var w placement
	var err error
	for _, k := range []string{"partition", "owner", "replica", "epoch"} {
		if m[k] == "" {
			return w, fmt.Errorf("no STAT %s in %v", k, m)
		}
	}
	if w.partition, err = strconv.Atoi(m["partition"]); err != nil {
		return w, fmt.Errorf("bad partition: %w", err)
	}
	if w.epoch, err = strconv.ParseUint(m["epoch"], 10, 64); err != nil {
		return w, fmt.Errorf("bad epoch: %w", err)
	}
	w.owner, w.replica = orNone(m["owner"]), orNone(m["replica"])
	return w, nil
}

// orNone maps the "-" of "no node" to "".
func orNone(id string) string {
	if id == "-" {
		return ""
	}
	return id
}

// cleanup reports crashes, stops every node, releases the addresses and,
// if the test failed, prints every node's log.
func (c *Cluster) cleanup() {
	c.mu.Lock()
	conns := c.conns
	c.conns = nil
	nodes := make([]*Node, len(c.slots))
	states := make([]nodeState, len(c.slots))
	procs := make([][]*Process, len(c.slots))
	for i, s := range c.slots {
		nodes[i], states[i], procs[i] = s.node, s.state, s.procs
	}
	c.mu.Unlock()
	for _, cn := range conns {
		cn.Close()
	}
	// Crashes first: stopping marks every process as ended on purpose.
	for i, ps := range procs {
		for k, p := range ps {
			if p.crashed() {
				c.tb.Errorf("testcluster: node %d (%s) run %d exited on its own: %v", i, nodes[i].ID, k+1, p.State())
			}
		}
	}
	var wg sync.WaitGroup
	for i, n := range nodes {
		if !n.Process.Alive() {
			continue
		}
		wg.Go(func() {
			// Stop sends SIGCONT first, so a paused node is not left behind.
			if _, err := n.Process.Stop(cleanupStopTimeout); err != nil {
				c.tb.Errorf("testcluster: stopping node %d (%s) at cleanup: %v", i, n.ID, err)
			}
		})
	}
	wg.Wait()
	c.blk.release()
	if c.tb.Failed() || os.Getenv(LogsEnv) != "" {
		c.dumpLogs(nodes, states, procs)
	}
}

// dumpLogs prints the cluster's layout and every process's log, labelled.
func (c *Cluster) dumpLogs(nodes []*Node, states []nodeState, procs [][]*Process) {
	var b strings.Builder
	fmt.Fprintf(&b, "testcluster: %d nodes on %s (mesh %v):\n", len(nodes), c.blk, c.mesh)
	for i, n := range nodes {
		role := "member"
		if n.Voter {
			role = "voter"
		}
		fmt.Fprintf(&b, "  node %d: id %s, %s, client %s, gossip %s, peer %s, %v at the end of the test, %d run(s)\n",
			i, n.ID, role, n.ClientAddr, n.GossipAddr, n.PeerAddr, states[i], len(procs[i]))
	}
	c.tb.Log(b.String())
	for i, ps := range procs {
		for k, p := range ps {
			c.tb.Logf("==== node %d (%s) run %d of %d: elockd %s\n==== exit: %v\n%s==== end of node %d (%s) run %d",
				i, nodes[i].ID, k+1, len(ps), strings.Join(p.Args, " "), p.State(), p.Log(), i, nodes[i].ID, k+1)
		}
	}
}

// SaveLogs writes every process's log so far into dir, one file per run
// of each node (n0-run1.log, ...), headed by its command line, for a
// failure report that outlives the test's output.
func (c *Cluster) SaveLogs(dir string) error {
	c.mu.Lock()
	type run struct {
		name string
		p    *Process
	}
	var runs []run
	for _, s := range c.slots {
		for k, p := range s.procs {
			runs = append(runs, run{fmt.Sprintf("%s-run%d.log", s.node.ID, k+1), p})
		}
	}
	c.mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("testcluster: saving logs: %w", err)
	}
	for _, r := range runs {
		text := fmt.Sprintf("elockd %s\n%s", strings.Join(r.p.Args, " "), r.p.Log())
		if err := os.WriteFile(filepath.Join(dir, r.name), []byte(text), 0o644); err != nil {
			return fmt.Errorf("testcluster: saving logs: %w", err)
		}
	}
	return nil
}
