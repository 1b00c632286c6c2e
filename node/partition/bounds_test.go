package partition

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
)

func newBoundedSet(t *testing.T, locks, sessions int) *Set {
	t.Helper()
	s, err := New(Config{Partitions: 8, Limits: locktable.Limits{MaxWaiters: 10}, Epoch: 1, AutoEpoch: true,
		MaxLocks: locks, MaxSessions: sessions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// MaxLocks counts the locks of every partition together: a new lock
// beyond it is refused as retryable (reason Full) whatever partition
// its name falls in, while what adds no lock (a re-entrant grant, a
// wait for a held lock) goes on, and a release makes room again.
func TestMaxLocksBoundsTheNode(t *testing.T) {
	s := newBoundedSet(t, 3, 0)
	ctx := context.Background()
	attach(t, s, "a")
	attach(t, s, "b")
	for i := range 3 {
		if res, err := s.Lock(ctx, "a", fmt.Appendf(nil, "n%d", i), 0); err != nil || res.Status != locktable.Granted {
			t.Fatalf("lock n%d: %v %v", i, res.Status, err)
		}
	}
	for i := 3; i < 20; i++ { // names in every partition
		_, err := s.Lock(ctx, "a", fmt.Appendf(nil, "n%d", i), 0)
		if !failure.Is(err, failure.Full) || failure.ClassOf(err) != failure.Retryable {
			t.Fatalf("lock n%d past the bound: %v, want a retryable refusal of reason full", i, err)
		}
		if want := "too many locks on this node (max 3)"; failure.Text(err) != want {
			t.Fatalf("refusal %q, want %q", failure.Text(err), want)
		}
	}
	if res, err := s.Lock(ctx, "a", []byte("n0"), 0); err != nil || !res.Reentrant {
		t.Fatalf("re-entrant lock at the bound: %+v %v", res, err)
	}
	if res, err := s.Lock(ctx, "b", []byte("n1"), 0); err != nil || res.Status != locktable.Unavailable {
		t.Fatalf("lock of a held name at the bound: %+v %v, want 409", res, err)
	}
	if c := s.Counts(); c.Locks != 3 {
		t.Fatalf("%d locks held, want 3", c.Locks)
	}
	if _, err := s.Unlock("a", []byte("n2")); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Lock(ctx, "b", []byte("n9"), 0); err != nil || res.Status != locktable.Granted {
		t.Fatalf("lock after an unlock made room: %+v %v", res, err)
	}
	if n, err := s.ReleaseSession("a"); err != nil || n != 2 {
		t.Fatalf("release: %d %v", n, err)
	}
	if got := s.locks.Load(); got != 1 {
		t.Fatalf("the node's count is %d after the release, want 1", got)
	}
}

// Shared grants and permits count against MaxLocks one by one: a second
// reader of a held name is one more grant, refused at the bound.
func TestMaxLocksCountsSharedGrants(t *testing.T) {
	s := newBoundedSet(t, 2, 0)
	for _, id := range []string{"a", "b", "c"} {
		attach(t, s, id)
	}
	shared := locktable.Want{Mode: locktable.Shared}
	permit := locktable.Want{Mode: locktable.Permit, Limit: 5}
	for _, id := range []string{"a", "b"} {
		if res, _, err := s.LockAs(Asker{Session: id}, []byte("doc"), shared, 0, nil); err != nil || res.Status != locktable.Granted {
			t.Fatalf("rlock by %s: %+v %v", id, res, err)
		}
	}
	if _, _, err := s.LockAs(Asker{Session: "c"}, []byte("doc"), shared, 0, nil); !failure.Is(err, failure.Full) {
		t.Fatalf("a third shared grant past the bound: %v, want refused as full", err)
	}
	if res, _, err := s.LockAs(Asker{Session: "a"}, []byte("doc"), shared, 0, nil); err != nil || !res.Reentrant {
		t.Fatalf("re-entrant rlock at the bound: %+v %v", res, err)
	}
	if _, err := s.Unlock("b", []byte("doc")); err != nil {
		t.Fatal(err)
	}
	if res, _, err := s.LockAs(Asker{Session: "b"}, []byte("pool"), permit, 0, nil); err != nil || res.Status != locktable.Granted {
		t.Fatalf("a permit after an unlock made room: %+v %v", res, err)
	}
	if _, _, err := s.LockAs(Asker{Session: "c"}, []byte("pool"), permit, 0, nil); !failure.Is(err, failure.Full) {
		t.Fatalf("a second permit past the bound: %v, want refused as full", err)
	}
}

// MaxSessions refuses a new session record beyond it, never the resume
// of a session that has one, and counts an ended record no longer.
func TestMaxSessionsBoundsTheNode(t *testing.T) {
	s := newBoundedSet(t, 0, 2)
	ea := attach(t, s, "a")
	eb := attach(t, s, "b")
	_, err := s.Attach("c", "home")
	if !failure.Is(err, failure.Full) || failure.Text(err) != "too many sessions on this node (max 2)" {
		t.Fatalf("a third session: %v", err)
	}
	if err := s.SetTimeout("a", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Detach("a", ea); err != nil { // a waits out its timeout
		t.Fatal(err)
	}
	attach(t, s, "a")                         // its resume, at the bound
	if err := s.Detach("b", eb); err != nil { // timeout 0: the record ends
		t.Fatal(err)
	}
	attach(t, s, "c")
	if got := s.sessions.Load(); got != 2 {
		t.Fatalf("the node counts %d sessions, want 2", got)
	}
}

// The totals follow tables replaced whole (a replica's copy, a
// promotion), which are never refused.
func TestTotalsFollowReplacedTables(t *testing.T) {
	s := newBoundedSet(t, 1, 0)
	ctx := context.Background()
	attach(t, s, "a")
	src := locktable.New(1, locktable.Limits{}, false)
	for i := range 5 {
		src.Lock(0, "x", fmt.Appendf(nil, "m%d", i), 0, 0)
	}
	s.With(0, func(*locktable.Table, locktable.Time) *locktable.Table { return src })
	if got := s.locks.Load(); got != 5 {
		t.Fatalf("count after With: %d, want 5", got)
	}
	if _, err := s.Lock(ctx, "a", []byte("new"), 0); !failure.Is(err, failure.Full) {
		t.Fatalf("lock over the bound after a copy came in: %v", err)
	}
	s.With(0, func(*locktable.Table, locktable.Time) *locktable.Table {
		return locktable.New(1, locktable.Limits{}, false)
	})
	if got := s.locks.Load(); got != 0 {
		t.Fatalf("count after the copy went: %d, want 0", got)
	}
}

// MaxLocksPerSession is checked where a lock is granted: a session that
// holds that many locks on the node is refused a new one, or a wait for
// one another session holds (its hand-over would take it past), as a
// definite failure of reason Limit; a re-entrant lock and other sessions
// go on, and an unlock makes room.
func TestMaxLocksPerSessionWhereGranted(t *testing.T) {
	s, err := New(Config{Partitions: 8, Limits: locktable.Limits{MaxWaiters: 10}, Epoch: 1, AutoEpoch: true, MaxLocksPerSession: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	attach(t, s, "a")
	attach(t, s, "b")
	for _, n := range []string{"a1", "a2"} {
		if res, err := s.Lock(ctx, "a", []byte(n), 0); err != nil || res.Status != locktable.Granted {
			t.Fatalf("lock %s: %+v %v", n, res, err)
		}
	}
	if res, err := s.Lock(ctx, "b", []byte("b1"), 0); err != nil || res.Status != locktable.Granted {
		t.Fatalf("b's first lock: %+v %v", res, err)
	}
	_, err = s.Lock(ctx, "a", []byte("a3"), 0)
	if !failure.Is(err, failure.Limit) || failure.ClassOf(err) != failure.Definite || failure.Text(err) != "too many locks held by this session (max 2)" {
		t.Fatalf("a third lock for a: %v", err)
	}
	if _, _, err := s.LockAsync("a", []byte("b1"), time.Minute, func(Outcome) {}); !failure.Is(err, failure.Limit) {
		t.Fatalf("a wait for b's lock at a's limit: %v", err)
	}
	if res, err := s.Lock(ctx, "a", []byte("a1"), 0); err != nil || !res.Reentrant {
		t.Fatalf("a re-entrant lock at the limit: %+v %v", res, err)
	}
	if _, err := s.Unlock("a", []byte("a2")); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Lock(ctx, "a", []byte("a3"), 0); err != nil || res.Status != locktable.Granted {
		t.Fatalf("a lock after an unlock: %+v %v", res, err)
	}
}
