package replication

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/testcluster/wait"
)

// dataNode is one node's data plane serving on a loopback peer address.
type dataNode struct {
	inc  Incarnation
	data *Data
	set  *partition.Set
	mux  *peer.Mux
	addr string
	// lease is granted for an hour at start; renewAt renews it as of a
	// given time.
	lease *Lease
}

func startData(t *testing.T, id string) *dataNode {
	t.Helper()
	return startDataN(t, id, 1)
}

func startDataN(t testing.TB, id string, partitions int) *dataNode {
	t.Helper()
	return startDataWith(t, id, partitions, nil)
}

// startDataWith starts a data plane whose configuration mod may change.
func startDataWith(t testing.TB, id string, partitions int, mod func(*DataConfig)) *dataNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pool := peer.NewPool(time.Second, nil, nil)
	t.Cleanup(pool.Close)
	n := &dataNode{inc: Incarnation{ID: id, Nonce: id + "-1"}, addr: ln.Addr().String(), lease: NewLease()}
	n.renewAt(time.Now())
	cfg := DefaultDataConfig()
	cfg.Self, cfg.Pool, cfg.Lease, cfg.AwaitTimeout = n.inc, pool, n.lease, 10*time.Second
	cfg.Partitions = partition.Config{Partitions: partitions, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Minute}}
	if mod != nil {
		mod(&cfg)
	}
	n.data, err = NewData(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.data.Close)
	n.set = n.data.Set()
	reg := peer.NewRegistry()
	if err := n.data.Register(reg); err != nil {
		t.Fatal(err)
	}
	n.mux = peer.NewMux(ln, nil, nil)
	n.mux.Serve(peer.NewServer(reg, nil), nil)
	t.Cleanup(func() { n.mux.Close() })
	return n
}

// renewAt grants the node an hour's lease, renewed by a request sent at
// sent.
func (n *dataNode) renewAt(sent time.Time) {
	n.lease.grant(int64(sent.Sub(n.lease.start)), time.Hour, 0)
}

// syncPair makes a the owner and b the replica of partition 0 at epoch 1,
// and returns that table once b holds a full copy.
func syncPair(t *testing.T, a, b *dataNode) *State {
	t.Helper()
	st := table(1, Part{Epoch: 1, Owner: "a", ONonce: "a-1", Replica: "b", RNonce: "b-1", Mode: Fresh}, a, b)
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(&State{}, st, []int{0})
	}
	wait.For(t, 10*time.Second, "the replica to sync", func() bool { return a.data.Synced()[0] == 1 })
	return st
}

func table(index uint64, part Part, nodes ...*dataNode) *State {
	st := &State{Index: index, Parts: []Part{part}, Nodes: map[string]Node{}}
	for _, n := range nodes {
		st.Nodes[n.inc.ID] = Node{ID: n.inc.ID, Nonce: n.inc.Nonce, PeerAddr: n.addr}
	}
	return st
}

// A grant that the replica has not confirmed when this node stops owning
// the partition has an unknown outcome: the new owner may not have it.
// Confirming it would acknowledge a grant that is lost.
func TestGrantUnconfirmedWhenOwnershipEnds(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	st1 := syncPair(t, a, b)
	if res, _, err := a.set.LockAsync("s1", []byte("x"), 0, nil); err != nil || res.Status != locktable.Granted {
		t.Fatalf("grant with a synced replica: %v %v", res, err)
	}

	// The replica goes silent: the next grant waits for its confirmation.
	b.mux.Close()
	l := a.data.parts[0]
	l.mu.Lock()
	before := l.seq
	l.mu.Unlock()
	type result struct {
		res locktable.Result
		err error
	}
	got := make(chan result, 1)
	go func() {
		res, _, err := a.set.LockAsync("s2", []byte("y"), 0, nil)
		got <- result{res, err}
	}()
	for recorded := false; !recorded; {
		select {
		case r := <-got:
			t.Fatalf("the grant returned before its replica confirmed it: %v %v", r.res, r.err)
		case <-time.After(5 * time.Millisecond):
		}
		l.mu.Lock()
		recorded = l.seq > before
		l.mu.Unlock()
	}
	// Meanwhile the control plane hands the partition to b.
	st2 := table(2, Part{Epoch: 2, Owner: "b", ONonce: "b-1", Mode: Takeover}, a, b)
	a.data.Apply(st1, st2, []int{0})
	select {
	case r := <-got:
		if failure.ClassOf(r.err) != failure.Indeterminate {
			t.Fatalf("unconfirmed grant after losing the partition: %v, err %v; want an unknown outcome (504)", r.res, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the grant still waits after the partition moved")
	}
}

// gate forwards TCP connections to a backend; while closed, it holds
// back what the backend sends, so a test can decide when a reply lands.
type gate struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	open    *sync.Cond
	shut    bool
}

func newGate(t *testing.T, backend string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, backend: backend}
	g.open = sync.NewCond(&g.mu)
	t.Cleanup(func() { g.set(false); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(b, c); b.Close() }()
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := b.Read(buf)
					g.mu.Lock()
					for g.shut {
						g.open.Wait()
					}
					g.mu.Unlock()
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return g
}

func (g *gate) addr() string { return g.ln.Addr().String() }

// set holds back (true) or lets through (false) what the backend sends.
func (g *gate) set(hold bool) {
	g.mu.Lock()
	g.shut = hold
	g.mu.Unlock()
	g.open.Broadcast()
}

// An acknowledgement that lands after the partition moved to a new epoch
// (same owner, same replica) is ignored; the owner must still get every
// recorded position confirmed, without waiting for another change.
func TestAckAcrossEpochChange(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	g := newGate(t, b.addr)
	at := func(index, epoch uint64) *State {
		st := table(index, Part{Epoch: epoch, Owner: "a", ONonce: "a-1", Replica: "b", RNonce: "b-1", Mode: Fresh}, a, b)
		n := st.Nodes["b"]
		n.PeerAddr = g.addr()
		st.Nodes["b"] = n
		return st
	}
	st1 := at(1, 1)
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(&State{}, st1, []int{0})
	}
	wait.For(t, 10*time.Second, "the replica to sync", func() bool { return a.data.Synced()[0] == 1 })

	// The replica applies the grant, but its acknowledgement is held back
	// until the owner has moved to epoch 2.
	g.set(true)
	rl := b.data.parts[0]
	rl.mu.Lock()
	before := rl.rseq
	rl.mu.Unlock()
	got := grantAsync(a.set, "s1", "x")
	wait.For(t, 10*time.Second, "the replica to apply the grant", func() bool {
		rl.mu.Lock()
		defer rl.mu.Unlock()
		return rl.rseq > before
	})
	st2 := at(2, 2)
	a.data.Apply(st1, st2, []int{0})
	g.set(false)
	b.data.Apply(st1, st2, []int{0})
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("grant across the epoch change: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the grant still waits for a confirmation nothing will send")
	}
}

// grantAsync asks set for name on behalf of session without waiting,
// and reports on the channel nil once it is granted, or why not.
func grantAsync(set *partition.Set, session, name string) <-chan error {
	got := make(chan error, 1)
	go func() {
		res, _, err := set.LockAsync(session, []byte(name), 0, nil)
		if err == nil && res.Status != locktable.Granted {
			err = fmt.Errorf("status %v", res.Status)
		}
		got <- err
	}()
	return got
}

// A full copy that fails for one partition must not drop the changes of
// another partition going to the same replica in the same round: nothing
// would send them again, and the grant that made them would wait for a
// confirmation that never comes.
func TestFailedCopyKeepsOtherChanges(t *testing.T) {
	a, b := startDataN(t, "a", 2), startDataN(t, "b", 2)
	at := func(index, epoch1 uint64) *State {
		st := &State{Index: index, Nodes: map[string]Node{}}
		for _, e := range []uint64{1, epoch1} {
			st.Parts = append(st.Parts, Part{Epoch: e, Owner: "a", ONonce: "a-1", Replica: "b", RNonce: "b-1", Mode: Fresh})
		}
		for _, n := range []*dataNode{a, b} {
			st.Nodes[n.inc.ID] = Node{ID: n.inc.ID, Nonce: n.inc.Nonce, PeerAddr: n.addr}
		}
		return st
	}
	st1 := at(1, 1)
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(&State{}, st1, []int{0, 1})
	}
	wait.For(t, 10*time.Second, "both replicas to sync", func() bool {
		s := a.data.Synced()
		return s[0] == 1 && s[1] == 1
	})
	// Partition 1 moves to epoch 2 at the owner only: until the replica
	// learns of it, every full copy of partition 1 is refused as stale.
	a.data.Apply(st1, at(2, 2), []int{1})
	name := ""
	for i := 0; name == ""; i++ {
		if n := fmt.Sprintf("x%d", i); a.set.PartitionOf([]byte(n)) == 0 {
			name = n
		}
	}
	got := grantAsync(a.set, "s1", name)
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("grant in partition 0: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a grant in partition 0 waits for its replica while partition 1's copy fails")
	}
}

// A position that stays unconfirmed for a whole AwaitTimeout, however its
// batch was lost, is confirmed by a full copy sent then: the answers and
// hand-over seals waiting on it must not wait for the next change.
func TestUnconfirmedPositionResyncs(t *testing.T) {
	a := startDataWith(t, "a", 1, func(c *DataConfig) { c.AwaitTimeout = 300 * time.Millisecond })
	b := startData(t, "b")
	syncPair(t, a, b)
	// A position recorded whose batch never went out: the loss is
	// simulated, since every known way to lose one is fixed.
	l := a.data.parts[0]
	l.mu.Lock()
	l.seq++
	pos := l.position(l.seq)
	l.mu.Unlock()
	if err := a.data.Await(0, pos); failure.ClassOf(err) != failure.Indeterminate {
		t.Fatalf("first wait on a lost position: %v; want 504 after the timeout", err)
	}
	wait.For(t, 10*time.Second, "the full copy to confirm the position", func() bool { return a.data.Await(0, pos) == nil })
}

// A replica replaced by one that never gets its copy keeps its own, and
// when the owner dies it takes the partition over with the owner's grants.
func TestPrevReplicaKeepsItsCopy(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	st1 := syncPair(t, a, b)
	if res, _, err := a.set.LockAsync("s1", []byte("x"), 0, nil); err != nil || res.Status != locktable.Granted {
		t.Fatalf("grant: %v %v", res, err)
	}
	// b is replaced by c, which never answers; b is the previous replica.
	st2 := table(2, Part{Epoch: 2, Owner: "a", ONonce: "a-1", Replica: "c", RNonce: "c-1", Mode: Keep, Prev: "b", PNonce: "b-1", PEpoch: 1}, a, b)
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(st1, st2, []int{0})
	}
	if got := b.data.Synced()[0]; got != 1 {
		t.Fatalf("previous replica reports its copy at epoch %d; want 1", got)
	}
	// The kept copy is no role in the table: leaving need not wait for it.
	if owned, replicated, _ := b.data.Roles(); owned != 0 || replicated != 0 {
		t.Fatalf("previous replica's roles: %d owned, %d replicated; want none", owned, replicated)
	}
	// a dies; b takes over.
	st3 := table(3, Part{Epoch: 3, Owner: "b", ONonce: "b-1", Mode: Takeover}, b)
	b.data.Apply(st2, st3, []int{0})
	tok, status, err := b.set.Token("s1", []byte("x"))
	if err != nil || status != locktable.Granted || tok == 0 {
		t.Fatalf("after the takeover by the previous replica: token %d, %v, %v; want s1 to hold x", tok, status, err)
	}
}

// An owner sealed for a hand-over that has not reached it serves again
// once the seal runs out, but only under a lease renewed since: the
// leader may have decided the hand-over late, and a lease is granted only
// to a node that applied the leader's table, so an older lease could let
// it answer from a copy the new owner has moved on from.
func TestUnsealWaitsForALeaseRenewedSince(t *testing.T) {
	a := startDataWith(t, "a", 1, func(c *DataConfig) { c.SealHold = 20 * time.Millisecond })
	b := startData(t, "b")
	a.renewAt(time.Now())
	syncPair(t, a, b)
	if err := a.data.Admit(0, partition.Grant); err != nil {
		t.Fatalf("synced owner: %v", err)
	}
	var e peer.Enc
	e.Uint(0)
	e.Uint(1)
	sealed := make(chan error, 1)
	a.data.serveSeal(context.Background(), peer.Seal, e.B, func(_ []byte, err error) { sealed <- err })
	if err := <-sealed; err != nil {
		t.Fatalf("seal: %v", err)
	}
	until := a.data.parts[0].sealUntil
	wait.For(t, 10*time.Second, "the seal to run out", func() bool { return time.Now().After(until) })
	if err := a.data.Admit(0, partition.Grant); !failure.Is(err, failure.Moved) {
		t.Fatalf("after the seal ran out, under a lease from before: %v; want it still sealed", err)
	}
	a.renewAt(time.Now())
	if err := a.data.Admit(0, partition.Grant); err != nil {
		t.Fatalf("under a lease renewed since: %v", err)
	}
}

// A full copy delivered late (its request was given up on and a newer
// copy and changes went through since) is refused: taking it would drop
// changes the replica has acknowledged, and a takeover from that copy
// would lose the grants they made.
func TestReplicaRefusesAStaleCopy(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	syncPair(t, a, b)
	// The copy the owner would have sent before the grant.
	var stale peer.Enc
	a.set.With(0, func(tb *locktable.Table, now locktable.Time) *locktable.Table {
		l := a.data.parts[0]
		l.mu.Lock()
		data, seq := tb.Snapshot(now), l.seq
		l.mu.Unlock()
		stale.Uint(0)
		stale.Uint(1)
		stale.Uint(seq)
		stale.Uint(0)
		stale.Uint(uint64(len(data)))
		stale.Bytes(data)
		return tb
	})
	if err := <-grantAsync(a.set, "s1", "x"); err != nil {
		t.Fatalf("grant: %v", err)
	}
	replied := make(chan error, 1)
	b.data.serveSnapshot(context.Background(), peer.Snapshot, stale.B, func(_ []byte, err error) { replied <- err })
	if err := <-replied; err == nil {
		t.Fatal("the replica took a late copy from before the grant")
	}
	var held bool
	b.set.With(0, func(tb *locktable.Table, now locktable.Time) *locktable.Table {
		held = tb.Counts().Locks == 1
		return tb
	})
	if !held {
		t.Fatal("the replica's copy lost the acknowledged grant")
	}
}

// A confirmation asked for after the data plane stopped is answered at
// once: nothing will acknowledge it, and a caller blocked in Await would
// otherwise hang a shutdown.
func TestConfirmAfterCloseIsAnswered(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	syncPair(t, a, b)
	l := a.data.parts[0]
	l.mu.Lock()
	pos := l.gen<<posBits | (l.acked + 1) // a position the replica has not acknowledged
	l.mu.Unlock()
	a.data.Close()
	done := make(chan error, 1)
	go func() { done <- a.data.Await(0, pos) }()
	select {
	case err := <-done:
		if failure.ClassOf(err) != failure.Indeterminate {
			t.Fatalf("err = %v; want an unknown outcome", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a confirmation asked for after Close is never answered")
	}
}

// OwnedSince keeps the epoch an ownership began at through a change of
// replica, and starts anew when the partition comes back after going to
// another node: the owner refuses requests sent to its earlier ownership.
func TestOwnedSince(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	st1 := syncPair(t, a, b)
	if since, ok := a.data.OwnedSince(0); !ok || since != 1 {
		t.Fatalf("owner at epoch 1: since %d, %v", since, ok)
	}
	if _, ok := b.data.OwnedSince(0); ok {
		t.Fatal("the replica says it owns the partition")
	}
	st2 := table(2, Part{Epoch: 2, Owner: "a", ONonce: "a-1", Mode: Keep}, a, b)
	a.data.Apply(st1, st2, []int{0})
	if since, ok := a.data.OwnedSince(0); !ok || since != 1 {
		t.Fatalf("after a change of replica: since %d, %v; want 1", since, ok)
	}
	st3 := table(3, Part{Epoch: 3, Owner: "b", ONonce: "b-1", Mode: Takeover}, a, b)
	a.data.Apply(st2, st3, []int{0})
	if _, ok := a.data.OwnedSince(0); ok {
		t.Fatal("a says it owns a partition given to b")
	}
	st4 := table(4, Part{Epoch: 4, Owner: "a", ONonce: "a-1", Mode: Fresh}, a, b)
	a.data.Apply(st3, st4, []int{0})
	if since, ok := a.data.OwnedSince(0); !ok || since != 4 {
		t.Fatalf("back at a: since %d, %v; want 4", since, ok)
	}
	// A snapshot that skips epochs (others may have owned it between)
	// starts a new ownership even though a owns it on both sides.
	st6 := table(6, Part{Epoch: 6, Owner: "a", ONonce: "a-1", Mode: Keep}, a, b)
	a.data.Apply(st4, st6, []int{0})
	if since, ok := a.data.OwnedSince(0); !ok || since != 6 {
		t.Fatalf("after epochs 4 to 6 in one step: since %d, %v; want 6", since, ok)
	}
}

// An owner taken over while it could not serve keeps its table as the
// previous copy, serving nothing, and takes over again from it when the
// new owner dies before its replica has a copy (found by the fault suite:
// the partition was declared lost while the paused old owner held the
// only complete copy).
func TestOldOwnerKeepsItsCopy(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	st1 := syncPair(t, a, b)
	if res, _, err := a.set.LockAsync("s1", []byte("x"), 0, nil); err != nil || res.Status != locktable.Granted {
		t.Fatalf("grant: %v %v", res, err)
	}
	wait.For(t, 10*time.Second, "the grant to be acknowledged", func() bool {
		l := a.data.parts[0]
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.acked >= l.seq
	})
	// a cannot serve; b takes over, with c (never heard from) as replica
	// and a on record as the previous copy.
	st2 := table(2, Part{Epoch: 2, Owner: "b", ONonce: "b-1", Replica: "c", RNonce: "c-1", Mode: Takeover, Prev: "a", PNonce: "a-1", PEpoch: 1}, a, b)
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(st1, st2, []int{0})
	}
	if got := a.data.Synced()[0]; got != 1 {
		t.Fatalf("the old owner reports its copy at epoch %d; want 1", got)
	}
	if err := a.data.Admit(0, partition.Grant); !failure.Is(err, failure.Moved) {
		t.Fatalf("the old owner admits a grant as the previous copy: %v", err)
	}
	// b dies before c has a copy; a takes over again.
	st3 := table(3, Part{Epoch: 3, Owner: "a", ONonce: "a-1", Mode: Takeover}, a)
	a.data.Apply(st2, st3, []int{0})
	tok, status, err := a.set.Token("s1", []byte("x"))
	if err != nil || status != locktable.Granted || tok == 0 {
		t.Fatalf("after the old owner took over again: token %d, %v, %v; want s1 to hold x", tok, status, err)
	}
}

// Abandon answers a confirmation waiting for a silent replica at once, as
// an unknown outcome, and every later one too, before the data plane is
// closed: a node shutting down joins the goroutines that wait on them
// first.
func TestAbandonAnswersWaitingConfirmations(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	syncPair(t, a, b)
	b.mux.Close() // the replica goes silent
	got := make(chan error, 1)
	go func() {
		_, _, err := a.set.LockAsync("s1", []byte("x"), 0, nil)
		got <- err
	}()
	l := a.data.parts[0]
	wait.For(t, 10*time.Second, "the grant to wait for its confirmation", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.confirms) > 0
	})
	a.data.Abandon()
	select {
	case err := <-got:
		if failure.ClassOf(err) != failure.Indeterminate {
			t.Fatalf("a grant abandoned while unconfirmed: %v; want an unknown outcome", err)
		}
	case <-time.After(time.Second): // far below the await timeout
		t.Fatal("the waiting confirmation was not answered by Abandon")
	}
	l.mu.Lock()
	next := l.position(l.seq + 1)
	l.mu.Unlock()
	done := make(chan error, 1)
	a.data.Confirm(0, next, func(err error) { done <- err })
	if err := <-done; failure.ClassOf(err) != failure.Indeterminate {
		t.Fatalf("a confirmation asked for after Abandon: %v; want an unknown outcome at once", err)
	}
}

// A partition that starts over after every copy was lost gives session
// epochs above every one the lost table gave: lock owners fence requests
// below a session's highest epoch, so a new session under an old id
// would otherwise be refused everywhere its old incarnation had resumed.
func TestSessionEpochsGrowAcrossALoss(t *testing.T) {
	noDelay := func(c *DataConfig) { c.LockDelay = 0 }
	a, b := startDataWith(t, "a", 1, noDelay), startDataWith(t, "b", 1, noDelay)
	c, d := startDataWith(t, "c", 1, noDelay), startDataWith(t, "d", 1, noDelay)
	st1 := syncPair(t, a, b)
	var last uint64
	for range 3 {
		at, err := a.set.Attach("s1", "h")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.set.Detach("s1", at.Epoch); err != nil {
			t.Fatal(err)
		}
		last = at.Epoch
	}
	// a and b are gone with every copy; c starts the partition over.
	st2 := table(2, Part{Epoch: 2, Owner: "c", ONonce: "c-1", Replica: "d", RNonce: "d-1", Mode: Lost}, c, d)
	for _, n := range []*dataNode{c, d} {
		n.data.Apply(st1, st2, []int{0})
	}
	wait.For(t, 10*time.Second, "the new replica to sync", func() bool { return c.data.Synced()[0] == 2 })
	at, err := c.set.Attach("s1", "h")
	if err != nil {
		t.Fatal(err)
	}
	if at.Epoch <= last {
		t.Fatalf("after the loss s1 attached at epoch %d; the lost table had reached %d", at.Epoch, last)
	}
}

// An owner that sees its ownership skip epochs (a raft snapshot restored
// over the tables between) to a loss does not keep its table: others
// owned the partition between, granted and released, and its locks may
// have been released since, under tokens below theirs. It starts over,
// behind a lock-delay. A skip to a keep (the same owner all along) keeps
// the table (found by review).
func TestSkippedEpochsToALossStartOver(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	st1 := syncPair(t, a, b)
	if res, _, err := a.set.LockAsync("s1", []byte("x"), 0, nil); err != nil || res.Status != locktable.Granted {
		t.Fatalf("grant: %v %v", res, err)
	}
	// Epoch 2 went by unseen here: a keeps the partition at 3.
	st3 := table(3, Part{Epoch: 3, Owner: "a", ONonce: "a-1", Replica: "b", RNonce: "b-1", Mode: Keep}, a, b)
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(st1, st3, []int{0})
	}
	if _, st, _ := a.set.Token("s1", []byte("x")); st != locktable.Granted {
		t.Fatal("a skip to a keep lost the table")
	}
	// Epochs 4 and 5 went by unseen: the partition was lost, and given
	// back to a at 6.
	st6 := table(6, Part{Epoch: 6, Owner: "a", ONonce: "a-1", Replica: "b", RNonce: "b-1", Mode: Lost}, a, b)
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(st3, st6, []int{0})
	}
	startedOver(t, a, 6)
}

// startedOver checks that a's table of partition 0 no longer has s1's
// lock on x, and that a, once its replica has the copy of epoch, refuses
// grants for the lock-delay of a loss.
func startedOver(t *testing.T, a *dataNode, epoch uint64) {
	t.Helper()
	if _, st, _ := a.set.Token("s1", []byte("x")); st == locktable.Granted {
		t.Fatal("the table from before the loss was kept")
	}
	wait.For(t, 10*time.Second, "the replica to sync", func() bool { return a.data.Synced()[0] == epoch })
	if err := a.data.Admit(0, partition.Grant); !failure.Is(err, failure.LockDelay) {
		t.Fatalf("a grant after starting over: %v; want refused for the lock-delay", err)
	}
}

// A raft snapshot can skip a loss and land on a keep: the partition was
// lost, given back to this node, and kept with a new replica, all unseen
// here. The table from before the loss is void, and the loss's
// lock-delay holds (found by review: the skip to the keep kept it).
func TestSkippedLossBeforeAKeepStartsOver(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	st1 := syncPair(t, a, b)
	if res, _, err := a.set.LockAsync("s1", []byte("x"), 0, nil); err != nil || res.Status != locktable.Granted {
		t.Fatalf("grant: %v %v", res, err)
	}
	st4 := table(4, Part{Epoch: 4, Owner: "a", ONonce: "a-1", Replica: "b", RNonce: "b-1", Mode: Keep, LostAt: 3}, a, b)
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(st1, st4, []int{0})
	}
	startedOver(t, a, 4)
}

// An owner that hands its partition over and stays as the replica holds
// its sealed table as a synced copy at the new epoch: if the new owner
// dies before its own copy arrives, the old owner takes over with every
// grant (found by the fault suite: the copy was dropped as unsynced, and
// the new owner's death lost the partition).
func TestHandedOverOwnerKeepsItsCopyAsReplica(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	st1 := syncPair(t, a, b)
	if res, _, err := a.set.LockAsync("s1", []byte("x"), 0, nil); err != nil || res.Status != locktable.Granted {
		t.Fatalf("grant: %v %v", res, err)
	}
	var e peer.Enc
	e.Uint(0)
	e.Uint(1)
	sealed := make(chan []byte, 1)
	a.data.serveSeal(context.Background(), peer.Seal, e.B, func(b []byte, err error) {
		if err != nil {
			t.Errorf("seal: %v", err)
		}
		sealed <- b
	})
	d := peer.Dec{B: <-sealed}
	pos := d.Uint()
	// b takes over the partition by hand-over, with a as its replica, and
	// dies before it sends a its copy: only a applies the new table.
	b.mux.Close()
	b.data.Close()
	st2 := table(2, Part{Epoch: 2, Owner: "b", ONonce: "b-1", Replica: "a", RNonce: "a-1", Mode: Handover, Sealed: pos}, a, b)
	a.data.Apply(st1, st2, []int{0})
	if got := a.data.Synced()[0]; got != 2 {
		t.Fatalf("the old owner as replica reports its copy at epoch %d; want 2", got)
	}
	st3 := table(3, Part{Epoch: 3, Owner: "a", ONonce: "a-1", Mode: Takeover}, a)
	a.data.Apply(st2, st3, []int{0})
	if tok, status, err := a.set.Token("s1", []byte("x")); err != nil || status != locktable.Granted || tok == 0 {
		t.Fatalf("after the old owner took over again: token %d, %v, %v; want s1 to hold x", tok, status, err)
	}
}

// askReplaced asks n, as the leader would, whether partition p's replica
// ever held a copy at epoch.
func askReplaced(t *testing.T, n *dataNode, p int, epoch uint64) bool {
	t.Helper()
	var e peer.Enc
	e.Uint(uint64(p))
	e.Uint(epoch)
	var (
		copied bool
		err    error
	)
	n.data.serveReplaced(context.Background(), peer.Replaced, e.B, func(b []byte, rerr error) {
		err = rerr
		d := peer.Dec{B: b}
		copied = d.Bool()
		if rerr == nil {
			err = d.End()
		}
	})
	if err != nil {
		t.Fatalf("replica check of partition %d at %d: %v", p, epoch, err)
	}
	return copied
}

// An owner asked whether its replica ever held a copy says so truly, and
// when it never did, freezes the epoch: it never syncs that replica at
// it, so never changes anything, and the older copy the leader keeps on
// record stays complete. The next epoch serves as usual.
func TestAFrozenEpochNeverSyncs(t *testing.T) {
	a, b := startDataN(t, "a", 2), startDataN(t, "b", 2)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	parts := func(epochs ...uint64) []Part {
		var ps []Part
		for _, e := range epochs {
			mode := Fresh
			if e > 1 {
				mode = Keep
			}
			ps = append(ps, Part{Epoch: e, Owner: "a", ONonce: "a-1", Replica: "b", RNonce: "b-1", Mode: mode})
		}
		return ps
	}
	at := func(index uint64, bAddr string, ps []Part) *State {
		st := &State{Index: index, Parts: ps, Nodes: map[string]Node{
			"a": {ID: "a", Nonce: "a-1", PeerAddr: a.addr},
			"b": {ID: "b", Nonce: "b-1", PeerAddr: bAddr},
		}}
		return st
	}
	// The replica is out of reach: nothing is copied yet.
	st1 := at(1, dead.Addr().String(), parts(1, 1))
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(&State{}, st1, []int{0, 1})
	}
	if askReplaced(t, a, 0, 1) {
		t.Fatal("the owner says a replica it never reached held a copy")
	}
	if got := a.data.Frozen(); got[0] != 1 || len(got) != 1 {
		t.Fatalf("frozen partitions %v; want partition 0 at epoch 1", got)
	}
	// The replica comes within reach: partition 1 syncs, partition 0 (sent
	// first in each round) does not.
	st2 := at(2, b.addr, parts(1, 1))
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(st1, st2, nil)
	}
	wait.For(t, 10*time.Second, "partition 1 to sync", func() bool { return a.data.Synced()[1] == 1 })
	if _, ok := a.data.Synced()[0]; ok {
		t.Fatal("the frozen partition synced its replica")
	}
	rl := b.data.parts[0]
	rl.mu.Lock()
	got := rl.rsynced
	rl.mu.Unlock()
	if got {
		t.Fatal("the frozen partition sent its replica a copy")
	}
	if err := a.data.Admit(0, partition.Grant); !failure.Is(err, failure.NoReplica) {
		t.Fatalf("a grant at the frozen epoch: %v; want refused without a synced replica", err)
	}
	if !askReplaced(t, a, 1, 1) {
		t.Fatal("the owner denies the copy its replica acknowledged")
	}
	if askReplaced(t, a, 0, 1) {
		t.Fatal("asked again, the frozen partition says its replica held a copy")
	}
	if _, ok := a.data.Frozen()[1]; ok {
		t.Fatal("a partition whose replica held a copy was frozen")
	}
	// The next epoch, even with the same replica, syncs and serves.
	st3 := at(3, b.addr, parts(2, 1))
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(st2, st3, []int{0})
	}
	wait.For(t, 10*time.Second, "partition 0 to sync at its next epoch", func() bool { return a.data.Synced()[0] == 2 })
	if err := a.data.Admit(0, partition.Grant); err != nil {
		t.Fatalf("a grant at the next epoch: %v", err)
	}
}

// A node that restarted is a new incarnation: it takes up no role of
// its old one, whose table it no longer has. Owning the old incarnation's
// partitions it would serve an empty table, granting locks others hold
// (the boot nonce in OwnedBy); as their replica it would take copies
// meant for the old one (ReplicatedBy); and it would keep a copy of its
// own as the old one's previous copy (PrevIs). The leader's side of the
// same rule: TestAHeartbeatOfANewIncarnationCountsForNoneOfTheOld.
func TestARestartedNodeTakesNoRoleOfItsOldIncarnation(t *testing.T) {
	a := startDataWith(t, "a", 1, func(c *DataConfig) { c.Self.Nonce = "a-2" })
	a.inc.Nonce = "a-2"
	for _, tc := range []struct {
		name string
		part Part
	}{
		{"owner", Part{Epoch: 1, Owner: "a", ONonce: "a-1", Replica: "b", RNonce: "b-1", Mode: Fresh}},
		{"replica", Part{Epoch: 2, Owner: "b", ONonce: "b-1", Replica: "a", RNonce: "a-1", Mode: Keep}},
	} {
		st := table(uint64(tc.part.Epoch), tc.part, a)
		a.data.Apply(&State{}, st, []int{0})
		if _, ok := a.data.OwnedSince(0); ok {
			t.Errorf("%s: the new incarnation owns its old one's partition", tc.name)
		}
		if err := a.data.Admit(0, partition.Grant); err == nil {
			t.Errorf("%s: the new incarnation admits a grant", tc.name)
		}
		if ep, ok := a.data.Synced()[0]; ok {
			t.Errorf("%s: the new incarnation reports a copy at epoch %d", tc.name, ep)
		}
		l := a.data.parts[0]
		l.mu.Lock()
		r := l.role
		l.mu.Unlock()
		if r != none {
			t.Errorf("%s: the new incarnation took up the role %v", tc.name, r)
		}
	}
	// The same partitions, given to this incarnation, are taken up.
	st := table(9, Part{Epoch: 9, Owner: "a", ONonce: "a-2", Mode: Fresh}, a)
	a.data.Apply(&State{}, st, []int{0})
	if since, ok := a.data.OwnedSince(0); !ok || since != 9 {
		t.Fatalf("this incarnation's own partition: since %d, %v", since, ok)
	}

	// A synced replica replaced keeps its copy as the previous one only
	// if the table names this incarnation: the old one's entry (an older
	// copy, which this node never held) is not its own.
	b := startData(t, "b")
	st10 := table(10, Part{Epoch: 10, Owner: "b", ONonce: "b-1", Replica: "a", RNonce: "a-2", Mode: Fresh}, a, b)
	for _, n := range []*dataNode{a, b} {
		n.data.Apply(st, st10, []int{0})
	}
	wait.For(t, 10*time.Second, "the replica to sync", func() bool { return a.data.Synced()[0] == 10 })
	st11 := table(11, Part{Epoch: 11, Owner: "b", ONonce: "b-1", Replica: "c", RNonce: "c-1", Mode: Keep, Prev: "a", PNonce: "a-1", PEpoch: 10}, a, b)
	a.data.Apply(st10, st11, []int{0})
	if ep, ok := a.data.Synced()[0]; ok {
		t.Fatalf("kept a copy at epoch %d as the previous copy the table gives another incarnation", ep)
	}
	// (Named by its own nonce, it keeps it: TestPrevReplicaKeepsItsCopy.)
}
