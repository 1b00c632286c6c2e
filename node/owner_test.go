package node

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/node/wire"
	"github.com/elock/elock/replication"
)

// A resume elsewhere withdraws the waits its session's older homes left
// queued at this owner: granted later, such a wait would reach a home that
// can no longer tell its client, and the session would hold a lock nobody
// knew of. The old home hears that the session moved.
func TestResumeWithdrawsOlderHomesWaits(t *testing.T) {
	set, err := partition.New(partition.Config{Partitions: 4, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	r := newRouter(replication.Incarnation{ID: "n1", Nonce: "n1-1"}, nil, set, nil, nil, time.Second, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	x := []byte("x")
	if res, err := set.Lock(ctx, "other", x, 0); err != nil || res.Status != locktable.Granted {
		t.Fatalf("holder: %v %v", res, err)
	}
	type answer struct {
		b   []byte
		err error
	}
	waits := make(chan answer, 2)
	for _, q := range []struct {
		epoch uint64
		req   string
	}{{1, "old-home/1"}, {2, "new-home/1"}} {
		go func() {
			b, err := r.hLockWait(ctx, lockPayload(SessionRef{ID: "s", Epoch: q.epoch}, x, 10*time.Second, q.req))
			waits <- answer{b, err}
		}()
	}
	waitFor(t, "both waits to be queued", func() bool {
		r.waits.mu.Lock()
		defer r.waits.mu.Unlock()
		return len(r.waits.m) == 2
	})

	// The session is resumed at epoch 2; the new home asks for its locks.
	var e peer.Enc
	e.Str("s")
	e.Uint(2)
	e.Uint(1)
	e.Uint(uint64(set.PartitionOf(x)))
	if _, err := r.hHeld(ctx, e.B); err != nil {
		t.Fatalf("held: %v", err)
	}
	select {
	case a := <-waits:
		var we *wire.Error
		if !errors.As(a.err, &we) || we.Reason != errSessionMoved.Reason {
			t.Fatalf("the old home's wait: %q, %v; want the session moved", a.b, a.err)
		}
	case <-ctx.Done():
		t.Fatal("the old home's wait is still queued")
	}

	// The lock goes to the resumed session's own wait.
	if _, err := set.Unlock("other", x); err != nil {
		t.Fatal(err)
	}
	a := <-waits
	res, err := decodeResult(a.b)
	if a.err != nil || err != nil || res.Status != locktable.Granted {
		t.Fatalf("the resumed session's wait: %v %v %v", res, a.err, err)
	}
	r.waits.mu.Lock()
	defer r.waits.mu.Unlock()
	if left := len(r.waits.m); left != 0 {
		t.Fatalf("%d waits left in the table", left)
	}
}
