package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/replication"
)

// The in-memory seams: a partition table a test sets by hand, and a
// network whose nodes are registries in this process, with faults a test
// injects. With them every role runs in one process, and under
// testing/synctest its timers run on the bubble's clock.

// memTable is a Table that a test changes with change.
type memTable struct {
	mu sync.Mutex
	st *replication.State
	ch chan struct{}
	// delayed partitions refuse grants, as a partition in its lock-delay
	// after losing both copies does.
	delayed map[int]bool
	// since is, per partition, the epoch at which its current owner's
	// unbroken ownership began, as the data plane keeps it.
	since map[int]uint64
}

// ownedSince is replication.Data.OwnedSince for node self.
func (t *memTable) ownedSince(self replication.Incarnation) func(int) (uint64, bool) {
	return func(p int) (uint64, bool) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if p >= len(t.st.Parts) || !t.st.Part(p).OwnedBy(self.ID, self.Nonce) {
			return 0, false
		}
		return t.since[p], true
	}
}

func (t *memTable) setDelayed(p int, d bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.delayed == nil {
		t.delayed = map[int]bool{}
	}
	t.delayed[p] = d
}

func (t *memTable) isDelayed(p int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.delayed[p]
}

func newMemTable() *memTable {
	return &memTable{st: &replication.State{Nodes: map[string]replication.Node{}}, ch: make(chan struct{})}
}

func (t *memTable) State() *replication.State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st
}

func (t *memTable) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ch
}

// change applies f to a copy of the table, at the next index, and then
// signals the change.
func (t *memTable) change(f func(st *replication.State)) { t.changeThen(f, nil) }

// changeThen applies f as change does, and runs then after the new table
// is in place but before the change is signalled: as a node takes up the
// roles of a table (the data plane's Apply) before it notifies anyone.
func (t *memTable) changeThen(f func(st *replication.State), then func()) {
	t.mu.Lock()
	st := &replication.State{Index: t.st.Index + 1, Parts: append([]replication.Part(nil), t.st.Parts...), Nodes: map[string]replication.Node{}}
	for k, v := range t.st.Nodes {
		st.Nodes[k] = v
	}
	f(st)
	if t.since == nil {
		t.since = map[int]uint64{}
	}
	for p := range st.Parts {
		cur := st.Part(p)
		if p >= len(t.st.Parts) || !t.st.Part(p).OwnedBy(cur.Owner, cur.ONonce) {
			t.since[p] = cur.Epoch
		}
	}
	t.st = st
	t.mu.Unlock()
	if then != nil {
		then()
	}
	t.mu.Lock()
	close(t.ch)
	t.ch = make(chan struct{})
	t.mu.Unlock()
}

// memNet is an in-memory network of nodes: a call runs the called node's
// registry in this process. A test can cut a node off (calls to it are
// unreachable: nothing is sent), pause it (calls are sent and held until
// it resumes, so a caller that gives up learns the outcome is unknown),
// or drop its next replies (carried out, answer lost).
type memNet struct {
	mu      sync.Mutex
	regs    map[replication.Incarnation]*peer.Registry
	cut     map[string]bool
	gone    map[string]bool          // what gossip says is dead (members), whatever cut says
	paused  map[string]chan struct{} // closed on resume
	drop    map[string]int
	held    map[peer.Method]chan struct{} // closed by release
	calls   map[peer.Method]int
	connCtx context.Context // what handlers get as their connection
}

func newMemNet(ctx context.Context) *memNet {
	return &memNet{regs: map[replication.Incarnation]*peer.Registry{}, cut: map[string]bool{}, gone: map[string]bool{}, paused: map[string]chan struct{}{},
		drop: map[string]int{}, held: map[peer.Method]chan struct{}{}, calls: map[peer.Method]int{}, connCtx: ctx}
}

func (n *memNet) setCut(id string, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[id] = cut
}

// setGone makes the members command (gossip) report id dead, or alive.
func (n *memNet) setGone(id string, gone bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gone[id] = gone
}

// members lists the table's nodes as gossip would: dead if setGone.
func (mm *memMesh) members() []node.Member {
	mm.net.mu.Lock()
	defer mm.net.mu.Unlock()
	var out []node.Member
	for _, n := range mm.table.State().Nodes {
		st := "alive"
		if mm.net.gone[n.ID] {
			st = "dead"
		}
		out = append(out, node.Member{ID: n.ID, State: st})
	}
	return out
}

func (n *memNet) pause(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.paused[id] == nil {
		n.paused[id] = make(chan struct{})
	}
}

func (n *memNet) resume(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch := n.paused[id]; ch != nil {
		close(ch)
		delete(n.paused, id)
	}
}

// hold keeps every request of method m from its handler until release,
// as TCP holds what a partition drops: an abandoned one still arrives.
func (n *memNet) hold(m peer.Method) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.held[m] == nil {
		n.held[m] = make(chan struct{})
	}
}

func (n *memNet) release(m peer.Method) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch := n.held[m]; ch != nil {
		close(ch)
		delete(n.held, m)
	}
}

func (n *memNet) dropReplies(id string, k int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drop[id] = k
}

func (n *memNet) count(m peer.Method) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls[m]
}

// memCaller is one node's Caller on a memNet.
type memCaller struct {
	net  *memNet
	self replication.Incarnation
}

func (c memCaller) Start(conn context.Context, to replication.Node, m peer.Method, payload []byte, done func([]byte, error)) func(error) {
	n := c.net
	inc := replication.Incarnation{ID: to.ID, Nonce: to.Nonce}
	n.mu.Lock()
	n.calls[m]++
	reg, cut, paused, held := n.regs[inc], n.cut[to.ID] && to.ID != c.self.ID, n.paused[to.ID], n.held[m]
	n.mu.Unlock()
	if inc == c.self {
		reg.Serve(conn, m, payload, done)
		return nil
	}
	if reg == nil || cut {
		done(nil, fmt.Errorf("%w: %s", peer.ErrUnreachable, to.ID))
		return nil
	}
	// Whoever answers first (the handler, or an abandon) answers once.
	var once sync.Once
	answer := func(b []byte, err error) { once.Do(func() { done(b, err) }) }
	p := append([]byte(nil), payload...)
	go func() {
		if paused != nil {
			<-paused
		}
		if held != nil {
			<-held
		}
		reg.Serve(n.connCtx, m, p, func(b []byte, err error) {
			if err != nil {
				// Across the wire only failures keep their class.
				if _, ok := failure.As(err); !ok {
					err = failure.Retry(failure.Internal, err.Error())
				}
			}
			n.mu.Lock()
			lost := n.drop[to.ID] > 0
			if lost {
				n.drop[to.ID]--
			}
			n.mu.Unlock()
			if lost {
				answer(nil, fmt.Errorf("%w: %s: reply dropped", peer.ErrLost, to.ID))
				return
			}
			answer(b, err)
		})
	}()
	return func(why error) { answer(nil, fmt.Errorf("%w: %s: no reply: %w", peer.ErrLost, to.ID, why)) }
}

// ownerRep is the Replicator of a test node: it serves the partitions the
// table gives it, and confirms every change at once (no replica).
type ownerRep struct {
	self  replication.Incarnation
	table *memTable
}

func (r ownerRep) Admit(p int, op partition.Op) error {
	if !r.table.State().Part(p).OwnedBy(r.self.ID, r.self.Nonce) {
		return failure.Retry(failure.Moved, failure.Partition(p)+" is not owned by this node; retry")
	}
	if op == partition.Grant && r.table.isDelayed(p) {
		return failure.Retry(failure.LockDelay, failure.Partition(p)+" lost both copies; refusing grants until the lock-delay passes; retry")
	}
	return nil
}
func (ownerRep) Record(int, []locktable.Change) uint64     { return 0 }
func (ownerRep) Confirm(_ int, _ uint64, then func(error)) { then(nil) }

// fakeClients is a node's Clients: the sessions a test says are live
// here, and the ones the mesh kicked.
type fakeClients struct {
	mu     sync.Mutex
	live   map[string]bool
	kicked []string
	label  map[string]string
	risk   map[string]bool
}

func (c *fakeClients) Labels(ids []string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for _, id := range ids {
		if l, ok := c.label[id]; ok && c.live[id] {
			out[id] = l
		}
	}
	return out
}

func (c *fakeClients) setLabel(id, l string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.label == nil {
		c.label = map[string]string{}
	}
	c.label[id] = l
}

func (c *fakeClients) Jeopardy(id string, atRisk bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.risk == nil {
		c.risk = map[string]bool{}
	}
	c.risk[id] = atRisk
}

func (c *fakeClients) atRisk(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.risk[id]
}

func (c *fakeClients) Kick(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kicked = append(c.kicked, id)
	delete(c.live, id)
}

func (c *fakeClients) Live(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live[id]
}

func (c *fakeClients) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.live)
}

func (c *fakeClients) setLive(id string, live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live[id] = live
}

func (c *fakeClients) kicks() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.kicked...)
}

// memNode is one node's roles on the in-memory seams.
type memNode struct {
	inc       replication.Incarnation
	set       *partition.Set
	home      *home
	owner     *lockOwner
	sessOwner *sessionOwner
	sessions  *homeSessions
	clients   *fakeClients
	expired   *expiries
}

// memMesh is a few memNodes sharing a table and a network. The partition
// count is small, so tests can place names by hand.
type memMesh struct {
	t      testing.TB
	table  *memTable
	net    *memNet
	nodes  map[string]*memNode
	cancel context.CancelFunc
	wg     sync.WaitGroup
	work   *workers
}

const memParts = 4

// testLimits are a stock node's request limits.
var testLimits = requestLimits{maxName: node.DefaultMaxName, maxWait: node.DefaultMaxWait}

// newMemMesh builds nodes with the given ids (nonce: id + "-1"), each
// owning the partitions owners assigns it (partition -> node id), and
// starts their loops as Start does. Stop it with close.
func newMemMesh(t testing.TB, homeLease time.Duration, owners [memParts]string, ids ...string) *memMesh {
	ctx, cancel := context.WithCancel(context.Background())
	mm := &memMesh{t: t, table: newMemTable(), net: newMemNet(ctx), nodes: map[string]*memNode{}, cancel: cancel, work: &workers{ctx: ctx}}
	mm.table.change(func(st *replication.State) {
		for _, id := range ids {
			st.Nodes[id] = replication.Node{ID: id, Nonce: id + "-1", PeerAddr: id + ":peer", ClientAddr: id + ":client"}
		}
		st.Parts = make([]replication.Part, memParts)
		for p, o := range owners {
			st.Parts[p] = replication.Part{Epoch: 1, Owner: o, ONonce: o + "-1", Mode: replication.Fresh}
		}
	})
	log := slog.New(slog.DiscardHandler)
	for _, id := range ids {
		inc := replication.Incarnation{ID: id, Nonce: id + "-1"}
		n := &memNode{inc: inc, clients: &fakeClients{live: map[string]bool{}}, expired: newExpiries()}
		set, err := partition.New(partition.Config{Partitions: memParts, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: 10 * time.Second},
			Replicator: ownerRep{inc, mm.table}, Expired: n.expired.add})
		if err != nil {
			t.Fatal(err)
		}
		n.set = set
		reg := peer.NewRegistry()
		rt := &router{self: inc, table: mm.table, call: memCaller{mm.net, inc}, parts: memParts, log: log}
		n.owner = newLockOwner(set, mm.table, rt.call, n.clients.Count, mm.table.ownedSince(inc), testLimits, log)
		n.sessOwner = newSessionOwner(set, rt, homeLease, node.DefaultMaxTimeout, func(int) bool { return false }, log)
		n.sessions = newHomeSessions(inc, rt, n.clients, homeLease, log)
		n.home = &home{self: inc, rt: rt, table: mm.table, call: rt.call, sessions: n.sessions, log: log, work: mm.work,
			members: mm.members, status: func() []node.StatLine { return nil }}
		for _, err := range []error{n.owner.register(reg, mm.work), n.sessOwner.register(reg, mm.work), n.sessions.register(reg, mm.work)} {
			if err != nil {
				t.Fatal(err)
			}
		}
		mm.net.regs[inc] = reg
		mm.nodes[id] = n
		mm.loop(ctx, func(ctx context.Context) { every(ctx, homeLease/4, n.sessions.renewAll) })
		mm.loop(ctx, func(ctx context.Context) { every(ctx, time.Second, n.sessOwner.sweepRecords) })
		mm.loop(ctx, func(ctx context.Context) { every(ctx, 5*time.Second, n.owner.sweepLocks) })
		mm.loop(ctx, func(ctx context.Context) { n.sessOwner.releaseExpired(ctx, n.expired) })
	}
	return mm
}

func (mm *memMesh) loop(ctx context.Context, f func(context.Context)) {
	mm.wg.Add(1)
	go func() {
		defer mm.wg.Done()
		f(ctx)
	}()
}

// close stops every loop and goroutine, and the sets' timers.
func (mm *memMesh) close() {
	for id := range mm.nodes {
		mm.net.resume(id)
	}
	mm.net.mu.Lock()
	for m, ch := range mm.net.held {
		close(ch)
		delete(mm.net.held, m)
	}
	mm.net.mu.Unlock()
	mm.cancel()
	mm.wg.Wait()
	mm.work.close()
	for _, n := range mm.nodes {
		n.set.Close()
	}
}

// move gives partition p to node id at the next epoch. The old owner
// refuses the requests queued there, as the data plane's eviction does,
// before the change is signalled; no state moves (these nodes have no
// replicas).
func (mm *memMesh) move(p int, id string) {
	old := mm.table.State().Part(p).Owner
	mm.table.changeThen(func(st *replication.State) {
		part := st.Parts[p]
		st.Parts[p] = replication.Part{Epoch: part.Epoch + 1, Owner: id, ONonce: id + "-1", Mode: replication.Takeover}
	}, func() {
		if o := mm.nodes[old]; o != nil {
			o.set.Evict(p, failure.Retry(failure.Moved, failure.Partition(p)+" moved to another node; retry"))
		}
	})
}

// keyIn returns the first key PREFIX-N that hashes to partition p: a lock
// name or a session id placed by hand.
func keyIn(prefix string, p int) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if partition.Of([]byte(k), memParts) == p {
			return k
		}
	}
}

// call runs a peer handler in process and waits for its answer.
func call(ctx context.Context, h peer.HandlerFunc, payload []byte) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	h(ctx, 0, payload, func(b []byte, err error) { ch <- result{b, err} })
	r := <-ch
	return r.b, r.err
}
