package mesh

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/testcluster/wait"
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
	o := newLockOwner(set, nil, nil, func() int { return 0 }, func(int) (uint64, bool) { return 0, false }, testLimits, slog.New(slog.DiscardHandler))
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
			b, err := call(ctx, o.lock, lockPayload(node.SessionRef{ID: "s", Epoch: q.epoch}, x, 10*time.Second, q.req))
			waits <- answer{b, err}
		}()
	}
	wait.For(t, 10*time.Second, "both waits to be queued", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.waits) == 2
	})

	// The session is resumed at epoch 2; the new home asks for its locks.
	if _, err := o.held(ctx, heldPayload("s", 1, 2, []int{set.PartitionOf(x)})); err != nil {
		t.Fatalf("held: %v", err)
	}
	select {
	case a := <-waits:
		if !failure.Is(a.err, failure.SessionMoved) {
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
	o.mu.Lock()
	defer o.mu.Unlock()
	if left := len(o.waits); left != 0 {
		t.Fatalf("%d waits left in the table", left)
	}
}

// A wait whose outcome is delivered (its deadline, a hand-over) while it
// is being entered in the owner's table of waits leaves no entry behind:
// a stale entry would stay forever, and every resume would scan it.
func TestWaitAnsweredWhileQueuedLeavesNoEntry(t *testing.T) {
	set, err := partition.New(partition.Config{Partitions: 4, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	o := newLockOwner(set, nil, nil, func() int { return 0 }, func(int) (uint64, bool) { return 0, false }, testLimits, slog.New(slog.DiscardHandler))
	o.testHookQueued = func(qw *queued) {
		// As the deadline timer would: the wait ends unavailable.
		if set.Cancel(qw.w) {
			qw.outcome(partition.Outcome{})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	x := []byte("x")
	if res, err := set.Lock(ctx, "other", x, 0); err != nil || res.Status != locktable.Granted {
		t.Fatalf("holder: %v %v", res, err)
	}
	b, err := call(ctx, o.lock, lockPayload(node.SessionRef{ID: "s", Epoch: 1}, x, 10*time.Second, "home/1"))
	if res, derr := decodeResult(b); err != nil || derr != nil || res.Status != locktable.Unavailable {
		t.Fatalf("the wait: %v %v %v; want unavailable", res, err, derr)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.waits) != 0 {
		t.Fatalf("%d waits still on record after their answers", len(o.waits))
	}
}

// An owner enforces the client port's limits on a lock request itself: a
// peer that skipped them (another configuration, a bug, a forged
// request) gets a definite refusal, and nothing is locked or queued.
func TestAnOwnerRefusesRequestsBeyondTheLimits(t *testing.T) {
	set, err := partition.New(partition.Config{Partitions: 4, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	o := newLockOwner(set, nil, nil, func() int { return 0 }, func(int) (uint64, bool) { return 0, false },
		requestLimits{maxName: 8, maxWait: time.Minute, maxPermits: 10}, slog.New(slog.DiscardHandler))
	s := node.SessionRef{ID: "s", Epoch: 1, Born: 1}
	for what, payload := range map[string][]byte{
		"a name over the maximum":    lockPayload(s, []byte("123456789"), 0, ""),
		"a wait over the maximum":    lockPayload(s, []byte("x"), time.Hour, "r1"),
		"a negative wait":            lockPayload(s, []byte("y"), -time.Second, "r2"),
		"permits over the maximum":   wantPayload(s, []byte("p"), locktable.Want{Mode: locktable.Permit, Limit: 11}, 0, ""),
		"a semaphore of no permits":  wantPayload(s, []byte("p"), locktable.Want{Mode: locktable.Permit}, 0, ""),
		"a shared lock with a limit": wantPayload(s, []byte("p"), locktable.Want{Mode: locktable.Shared, Limit: 2}, 0, ""),
	} {
		got := make(chan error, 1)
		o.lock(context.Background(), peer.Lock, payload, func(_ []byte, err error) { got <- err })
		if err := <-got; failure.ClassOf(err) != failure.Definite {
			t.Errorf("%s: %v, want a definite refusal", what, err)
		}
	}
	if h := set.Holders(); len(h) != 0 {
		t.Fatalf("refused requests left holders or waiters: %v", h)
	}
	got := make(chan error, 1)
	o.lock(context.Background(), peer.Lock, lockPayload(s, []byte("12345678"), 0, ""), func(_ []byte, err error) { got <- err })
	if err := <-got; err != nil {
		t.Fatalf("a request at the limits: %v", err)
	}
}

// A lock request's mode that no table can take is malformed: refused,
// never carried out.
func TestDecodeLockReqRefusesUnknownModes(t *testing.T) {
	s := node.SessionRef{ID: "s", Epoch: 1, Born: 1}
	good := wantPayload(s, []byte("p"), locktable.Want{Mode: locktable.Permit, Limit: 3}, 0, "")
	if q, err := decodeLockReq(good); err != nil || q.want != (locktable.Want{Mode: locktable.Permit, Limit: 3}) {
		t.Fatalf("a permit request decoded as %+v, %v", q.want, err)
	}
	if q, err := decodeLockReq(lockPayload(s, []byte("x"), 0, "")); err != nil || q.want != (locktable.Want{}) {
		t.Fatalf("an exclusive request decoded as %+v, %v", q.want, err)
	}
	var e peer.Enc
	e.B = append(e.B, lockPayload(s, []byte("x"), 0, "")...)
	e.Uint(7) // no such mode
	e.Uint(0)
	if _, err := decodeLockReq(e.B); err == nil {
		t.Fatal("mode 7 decoded")
	}
}
