package replication

import (
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/peer"
)

// replicateBatch encodes a Replicate request for partition p at epoch
// of changes at positions from..to.
func replicateBatch(p int, epoch, from, to uint64, cs ...locktable.Change) []byte {
	var e peer.Enc
	e.Uint(1)
	e.Uint(uint64(p))
	e.Uint(epoch)
	e.Uint(from)
	e.Uint(to)
	e.Uint(uint64(len(cs)))
	for _, c := range cs {
		encodeChange(&e, c)
	}
	return e.B
}

// FuzzReplicate: whatever a peer sends as changes or as a copy, the
// replica answers (a status per partition, or a refusal) and keeps
// serving; it never panics, and a count larger than the message can hold
// is refused before anything is allocated for it.
func FuzzReplicate(f *testing.F) {
	held := locktable.Change{Kind: locktable.ChangeHeld, Name: "x", Session: "s", Token: 1, Epoch: 1}
	sess := locktable.Change{Kind: locktable.ChangeSession, Session: "s", Timeout: time.Second, Attached: true, Epoch: 1, Home: "n1"}
	f.Add(byte(0), replicateBatch(0, 1, 1, 2, sess, held))
	f.Add(byte(0), replicateBatch(3, 1, 1, 1, held))
	f.Add(byte(0), []byte{1, 0, 1, 1, 1, 0xff, 0xff, 0xff, 0x7f})
	var e peer.Enc
	for _, v := range []uint64{0, 1, 0, 0, 3} {
		e.Uint(v)
	}
	e.Bytes([]byte{1, 2, 3})
	f.Add(byte(1), e.B)
	n := startDataN(f, "a", 4)
	f.Fuzz(func(t *testing.T, which byte, payload []byte) {
		replied := 0
		reply := func([]byte, error) { replied++ }
		if which%2 == 0 {
			n.data.serveReplicate(t.Context(), peer.Replicate, payload, reply)
		} else {
			n.data.serveSnapshot(t.Context(), peer.Snapshot, payload, reply)
		}
		if replied != 1 {
			t.Fatalf("%d replies to one request", replied)
		}
	})
}

// FuzzTable: a raft entry or snapshot of any bytes is refused or applied
// to a 4-partition table without a panic, and an applied one leaves a
// table of 4 partitions or none.
func FuzzTable(f *testing.F) {
	for _, c := range []Command{
		{Init: make([]Part, 4)},
		{Init: make([]Part, 5)},
		{Node: &Node{ID: "a", Nonce: "1"}},
		{Assign: []Assignment{{P: 2, From: 0, To: Part{Epoch: 1, Owner: "a"}}}},
		{Settle: []Settled{{P: 9, Epoch: 1}}},
	} {
		b, _ := c.Encode()
		f.Add(b)
	}
	st, _ := (&State{Index: 3, Parts: make([]Part, 4), Nodes: map[string]Node{}}).Encode()
	f.Add(st)
	f.Fuzz(func(t *testing.T, b []byte) {
		base := (&State{Nodes: map[string]Node{}}).clone()
		base.Parts = make([]Part, 4)
		if c, err := DecodeCommand(b); err == nil && c.Check(4) == nil {
			if next, _ := base.Apply(1, c); len(next.Parts) != 4 {
				t.Fatalf("a checked command left %d partitions", len(next.Parts))
			}
			if next, _ := (&State{Nodes: map[string]Node{}}).Apply(1, c); len(next.Parts) != 0 && len(next.Parts) != 4 {
				t.Fatalf("a checked command made a table of %d partitions", len(next.Parts))
			}
		}
		if s, err := DecodeState(b); err == nil && s.Check(4) == nil && len(s.Parts) != 0 && len(s.Parts) != 4 {
			t.Fatalf("a checked state of %d partitions", len(s.Parts))
		}
	})
}
