package replication

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/peer"
)

// fsmOf returns the fsm of a control plane with parts partitions and no
// raft, over a data plane of its own.
func fsmOf(t testing.TB, parts int) (*fsm, *Control) {
	n := startDataN(t, "a", parts)
	c := &Control{cfg: ControlConfig{Partitions: parts, Data: n.data}, log: slog.New(slog.DiscardHandler), changed: make(chan struct{})}
	c.state.Store(&State{Nodes: map[string]Node{}})
	return &fsm{c: c}, c
}

// A raft entry or a snapshot made for another partition count (another
// build, a corrupt log, a forged entry) is refused, not applied: a table
// of the wrong size would index partitions this node does not have, and
// replayed from -data-dir it would crash the node at every start.
func TestATableOfAnotherSizeIsRefused(t *testing.T) {
	f, c := fsmOf(t, 4)
	bad := []Command{
		{Init: make([]Part, 9)},
		{Assign: []Assignment{{P: 4, From: 0, To: Part{Epoch: 1}}}},
		{Assign: []Assignment{{P: -1, From: 0, To: Part{Epoch: 1}}}},
		{Settle: []Settled{{P: 70000, Epoch: 1}}},
	}
	for i, cmd := range bad {
		b, err := cmd.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Apply(&raft.Log{Index: uint64(i + 1), Data: b}); got == nil {
			t.Errorf("command %d (%+v) applied to a table of 4 partitions", i, cmd)
		}
	}
	if st := c.State(); st.Initialized() {
		t.Fatalf("a bad Init made a table of %d partitions", len(st.Parts))
	}
	good, _ := Command{Init: make([]Part, 4)}.Encode()
	if got := f.Apply(&raft.Log{Index: 9, Data: good}); got != nil {
		t.Fatalf("a table of the right size: %v", got)
	}
	snap, _ := (&State{Index: 10, Parts: make([]Part, 5), Nodes: map[string]Node{}}).Encode()
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err == nil {
		t.Fatal("a snapshot of 5 partitions restored on a node of 4")
	}
	if st := c.State(); len(st.Parts) != 4 || st.Index != 9 {
		t.Fatalf("after a refused snapshot the table is %d partitions at index %d, want 4 at 9", len(st.Parts), st.Index)
	}
}

// leadingControl is a control plane that leads, with nothing noted yet.
func leadingControl() *Control {
	return &Control{leading: true, heard: map[Incarnation]time.Time{}, synced: map[int]uint64{},
		prevSynced: map[int]uint64{}, delayOver: map[int]uint64{}, frozen: map[int]uint64{}}
}

// A heartbeat counts only for the roles the table gives its sender: an
// incarnation the table does not know is not remembered, and only a lost
// partition's owner can end its lock-delay (anyone else ending it early
// would let a grant through while a lost holder may still act).
func TestAHeartbeatCountsOnlyForItsSendersRoles(t *testing.T) {
	c := leadingControl()
	st := &State{
		Parts: []Part{
			{Epoch: 3, Owner: "a", ONonce: "a1", Replica: "b", RNonce: "b1", Mode: Lost, LostAt: 3},
			{Epoch: 5, Owner: "b", ONonce: "b1", Replica: "a", RNonce: "a1", Mode: Keep, LostAt: 4},
		},
		Nodes: map[string]Node{"a": {ID: "a", Nonce: "a1"}, "b": {ID: "b", Nonce: "b1"}},
	}
	stranger := Incarnation{ID: "x", Nonce: "x1"}
	if !c.note(st, stranger, map[int]uint64{0: 3}, map[int]uint64{0: 3, 1: 5, 99: 1}, map[int]uint64{0: 3}) {
		t.Fatal("a leader refused to note")
	}
	if len(c.heard) != 0 || len(c.synced) != 0 || len(c.delayOver) != 0 || len(c.frozen) != 0 {
		t.Fatalf("a stranger's heartbeat counted: heard %v synced %v delay over %v frozen %v", c.heard, c.synced, c.delayOver, c.frozen)
	}
	b := Incarnation{ID: "b", Nonce: "b1"}
	// A report names the loss (LostAt), not the epoch: 5 is no loss.
	c.note(st, b, map[int]uint64{0: 3}, map[int]uint64{0: 3, 1: 5}, nil)
	if len(c.delayOver) != 0 {
		t.Fatalf("a report of a loss that did not happen counted: %v", c.delayOver)
	}
	c.note(st, b, nil, map[int]uint64{0: 3, 1: 4}, map[int]uint64{0: 3, 1: 4})
	if c.frozen[1] != 0 || c.frozen[0] != 0 {
		t.Fatalf("a freeze of another node's partition, or of an epoch gone by, counted: %v", c.frozen)
	}
	c.note(st, b, nil, nil, map[int]uint64{1: 5})
	if c.frozen[1] != 5 {
		t.Fatalf("the owner's freeze was not noted: %v", c.frozen)
	}
	if _, ok := c.heard[b]; !ok {
		t.Fatal("a registered node's heartbeat was not noted")
	}
	if c.synced[0] != 3 {
		t.Fatalf("the replica's synced report was dropped: %v", c.synced)
	}
	if _, ok := c.delayOver[0]; ok {
		t.Fatal("the replica of a lost partition ended its lock-delay")
	}
	if c.delayOver[1] != 4 {
		t.Fatalf("the owner of a lost partition could not end its lock-delay: %v", c.delayOver)
	}
}

// A node that restarted is a new incarnation with an empty table: its
// heartbeat counts for none of the roles its old incarnation had. Taken
// for them, its word would make a replica without a copy look synced (and
// take over), a previous copy look kept, or end a lock-delay it never
// waited out.
func TestAHeartbeatOfANewIncarnationCountsForNoneOfTheOld(t *testing.T) {
	c := leadingControl()
	st := &State{
		Parts: []Part{
			{Epoch: 3, Owner: "a", ONonce: "a1", Replica: "b", RNonce: "b1", Mode: Lost, LostAt: 3},
			{Epoch: 5, Owner: "b", ONonce: "b1", Replica: "a", RNonce: "a1", Mode: Keep},
			{Epoch: 7, Owner: "b", ONonce: "b1", Replica: "c", RNonce: "c1", Mode: Keep, Prev: "a", PNonce: "a1", PEpoch: 6},
		},
		Nodes: map[string]Node{"a": {ID: "a", Nonce: "a2"}, "b": {ID: "b", Nonce: "b1"}, "c": {ID: "c", Nonce: "c1"}},
	}
	a2 := Incarnation{ID: "a", Nonce: "a2"}
	c.note(st, a2, map[int]uint64{0: 3, 1: 5, 2: 6}, map[int]uint64{0: 3}, map[int]uint64{0: 3})
	if len(c.synced) != 0 || len(c.prevSynced) != 0 || len(c.delayOver) != 0 || len(c.frozen) != 0 {
		t.Fatalf("the new incarnation's report counted for the old one's roles: synced %v prev %v delay over %v frozen %v",
			c.synced, c.prevSynced, c.delayOver, c.frozen)
	}
	// The old incarnation's own (late) report still counts: it did hold
	// those roles.
	a1 := Incarnation{ID: "a", Nonce: "a1"}
	c.note(st, a1, map[int]uint64{0: 3, 1: 5, 2: 6}, map[int]uint64{0: 3}, map[int]uint64{0: 3})
	if c.synced[0] != 3 || c.synced[1] != 5 || c.prevSynced[2] != 6 || c.delayOver[0] != 3 || c.frozen[0] != 3 {
		t.Fatalf("the old incarnation's report: synced %v prev %v delay over %v frozen %v", c.synced, c.prevSynced, c.delayOver, c.frozen)
	}
}

// With peer TLS, a heartbeat counts only from the node it is for: one
// node renewing another's lease, or reporting on its partitions, is
// refused before anything is noted. Without TLS nobody's identity is
// known and the check passes.
func TestAHeartbeatForAnotherNodeIsRefused(t *testing.T) {
	c := &Control{}
	var e peer.Enc
	e.Str("a")
	e.Str("a1")
	encodeEpochs(&e, nil)
	encodeEpochs(&e, map[int]uint64{0: 3})
	encodeEpochs(&e, nil)
	_, err := c.heartbeat(peer.WithCaller(context.Background(), "b", "localhost"), e.B)
	if failure.ClassOf(err) != failure.Definite {
		t.Fatalf("b heartbeating for a: %v, want a definite refusal", err)
	}
}

// With peer TLS, only the owner the replica's table names may change its
// copy: changes or a copy from any other node are refused as stale, and
// applied from the owner.
func TestAReplicaTakesChangesOnlyFromItsOwner(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	syncPair(t, a, b)
	l := b.data.parts[0]
	l.mu.Lock()
	from := l.rseq + 1
	l.mu.Unlock()
	held := locktable.Change{Kind: locktable.ChangeHeld, Name: "x", Session: "s", Token: 1, Epoch: 1}
	status := func(ctx context.Context) uint64 {
		var got []byte
		var err error
		b.data.serveReplicate(ctx, peer.Replicate, replicateBatch(0, 1, from, from, held), func(r []byte, e error) { got, err = r, e })
		if err != nil {
			t.Fatal(err)
		}
		d := peer.Dec{B: got}
		d.Uint()
		d.Uint()
		return d.Uint()
	}
	if s := status(peer.WithCaller(context.Background(), "c")); s != repStale {
		t.Fatalf("changes from c, not the owner: status %d, want stale", s)
	}
	var err error
	b.data.serveSnapshot(peer.WithCaller(context.Background(), "c"), peer.Snapshot, func() []byte {
		copy := locktable.New(1, locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Minute}, false).Snapshot(0)
		var e peer.Enc
		for _, v := range []uint64{0, 1, from, 0, uint64(len(copy))} {
			e.Uint(v)
		}
		e.Bytes(copy)
		return e.B
	}(), func(_ []byte, e error) { err = e })
	if err == nil {
		t.Fatal("a copy from c, not the owner, was taken")
	}
	if s := status(peer.WithCaller(context.Background(), "a")); s != repOK {
		t.Fatalf("changes from the owner: status %d, want ok", s)
	}
}

// An owner seals a partition only at a voter's request: the leader
// seals, and the leader is a voter. A node of the mesh that is not one
// cannot hold a partition down.
func TestASealComesOnlyFromAVoter(t *testing.T) {
	a, b := startData(t, "a"), startData(t, "b")
	st := syncPair(t, a, b)
	seal := func(caller string) error {
		var e peer.Enc
		e.Uint(0)
		e.Uint(1)
		ch := make(chan error, 1)
		a.data.serveSeal(peer.WithCaller(context.Background(), caller), peer.Seal, e.B, func(_ []byte, err error) { ch <- err })
		return <-ch
	}
	sealed := func() bool {
		l := a.data.parts[0]
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.sealed
	}
	if err := seal("b"); err == nil || sealed() {
		t.Fatalf("a seal from b, no voter: %v (sealed %v)", err, sealed())
	}
	next := *st
	next.Index++
	next.Nodes = maps.Clone(st.Nodes)
	nb := next.Nodes["b"]
	nb.Voter = true
	next.Nodes["b"] = nb
	a.data.Apply(st, &next, nil)
	if err := seal("b"); err != nil || !sealed() {
		t.Fatalf("a seal from b, a voter: %v (sealed %v)", err, sealed())
	}
}

// Only a voter (the leader is one) may ask an owner whether its replica
// held a copy: the question freezes an epoch that never had one, and a
// frozen epoch serves nothing until the next.
func TestAReplicaCheckComesOnlyFromAVoter(t *testing.T) {
	a := startData(t, "a")
	st := table(1, Part{Epoch: 1, Owner: "a", ONonce: "a-1", Replica: "b", RNonce: "b-1", Mode: Fresh}, a)
	st.Nodes["b"] = Node{ID: "b", Nonce: "b-1"}
	a.data.Apply(&State{}, st, []int{0})
	var e peer.Enc
	e.Uint(0)
	e.Uint(1)
	var err error
	a.data.serveReplaced(peer.WithCaller(context.Background(), "b"), peer.Replaced, e.B, func(_ []byte, rerr error) { err = rerr })
	if err == nil || len(a.data.Frozen()) != 0 {
		t.Fatalf("a replica check from b, no voter: %v (frozen %v)", err, a.data.Frozen())
	}
}
