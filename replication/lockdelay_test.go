package replication

import (
	"testing"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/testcluster/wait"
)

// lostPair starts a and b with lock-delay delay, partition 0 lost at
// epoch, a its owner and b its replica, and returns that table once b
// holds a's copy.
func lostPair(t *testing.T, delay time.Duration, epoch uint64) (a, b *dataNode, st *State) {
	t.Helper()
	cfg := func(c *DataConfig) { c.LockDelay = delay }
	a, b = startDataWith(t, "a", 1, cfg), startDataWith(t, "b", 1, cfg)
	st = table(1, Part{Epoch: epoch, Owner: "a", ONonce: "a-1", Replica: "b", RNonce: "b-1", Mode: Lost, LostAt: epoch}, a, b)
	applyAll(&State{}, st, a, b)
	wait.For(t, 10*time.Second, "the replica to sync", func() bool { return a.data.Synced()[0] == epoch })
	return a, b, st
}

// applyAll has every node take up st after prev.
func applyAll(prev, st *State, nodes ...*dataNode) {
	for _, n := range nodes {
		n.data.Apply(prev, st, []int{0})
	}
}

// The lock-delay of a loss holds at every owner until the table says it
// passed, however the partition moved since: here a keep and then a
// hand-over (found by the fault suite: the hand-over's new owner granted
// at once, while a lock from before the loss was still held). The new
// owner then reports the loss's delay over by the loss's epoch.
func TestALockDelayOutlivesMoves(t *testing.T) {
	// Long enough that the checks right after each step fall inside it.
	a, b, st1 := lostPair(t, 3*time.Second, 1)
	kept := table(2, keep(st1, 0, st1.Parts[0], "b", true).To, a, b)
	applyAll(st1, kept, a, b)
	wait.For(t, 10*time.Second, "the replica to sync again", func() bool { return a.data.Synced()[0] == 2 })
	handed := table(3, move(kept, 0, kept.Parts[0], "b", "a", Handover).To, a, b)
	applyAll(kept, handed, a, b)
	wait.For(t, 10*time.Second, "the new owner's replica to sync", func() bool { return b.data.Synced()[0] == 3 })
	if err := b.data.Admit(0, partition.Grant); !failure.Is(err, failure.LockDelay) {
		t.Fatalf("a grant at the new owner of an unsettled loss: %v; want refused for the lock-delay", err)
	}
	if over := b.data.DelayOver(); len(over) != 0 {
		t.Fatalf("the new owner reports the lock-delay over at once: %v", over)
	}
	wait.For(t, 10*time.Second, "the new owner to report the loss's delay over", func() bool { return b.data.DelayOver()[0] == 1 })
}

// Once an owner has waited out a loss's lock-delay it reports the loss,
// and the table's settling it does not start the delay again.
func TestSettlingEndsTheLockDelay(t *testing.T) {
	a, b, st1 := lostPair(t, 200*time.Millisecond, 5)
	wait.For(t, 10*time.Second, "the lock-delay to be reported over", func() bool { return a.data.DelayOver()[0] == 5 })
	settled, changed := st1.Apply(2, Command{Settle: []Settled{{P: 0, Epoch: 5}}})
	if len(changed) != 1 {
		t.Fatal("the settle did not apply")
	}
	applyAll(st1, settled, a, b)
	if err := a.data.Admit(0, partition.Grant); err != nil {
		t.Fatalf("a grant once the loss is settled: %v", err)
	}
}
