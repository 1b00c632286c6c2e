package node

import (
	"context"
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
)

// The single node's grants carry the attach epoch of the connection that
// made them, so that the release of an expired session, bounded by the
// epoch it ended at, spares a new session under the same id (see
// partition.TestAnExpiryReleaseSparesANewSession): a release bounded
// below a session's attach epoch leaves its lock.
func TestLocalGrantsCarryTheAttachEpoch(t *testing.T) {
	set, err := partition.New(partition.Config{Partitions: 4, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Minute}, Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	l := &Local{Set: set, Home: "h"}
	ctx := context.Background()
	l.Attach(ctx, "first") // the epochs of the session below are not the first
	a, err := l.Attach(ctx, "s")
	if err != nil || a.Epoch < 1 {
		t.Fatalf("attach: %+v %v", a, err)
	}
	ref := SessionRef{ID: "s", Epoch: a.Epoch, Born: a.Born}
	if res, _, err := l.Lock(ctx, ref, []byte("x"), locktable.Want{}, 0, nil); err != nil || res.Status != locktable.Granted {
		t.Fatalf("lock: %v %v", res, err)
	}
	all := []int{0, 1, 2, 3}
	set.ReleaseSessionIn("s", all, a.Epoch-1)
	if _, st, _ := l.Token(ctx, ref, []byte("x")); st != locktable.Granted {
		t.Fatal("a release bounded below the session's attach epoch took its lock")
	}
	set.ReleaseSessionIn("s", all, a.Epoch)
	if _, st, _ := l.Token(ctx, ref, []byte("x")); st == locktable.Granted {
		t.Fatal("a release bounded at the session's attach epoch left its lock")
	}
}
