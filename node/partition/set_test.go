package partition

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
)

func newSet(t *testing.T, timeout time.Duration) *Set {
	t.Helper()
	s, err := New(Config{
		Partitions: 8,
		Limits:     locktable.Limits{MaxWaiters: 10, DefaultTimeout: timeout},
		Epoch:      1,
		AutoEpoch:  true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func attach(t *testing.T, s *Set, id string) uint64 {
	t.Helper()
	a, err := s.Attach(id, "home")
	if err != nil {
		t.Fatalf("attach %s: %v", id, err)
	}
	return a.Epoch
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Partitions: 1}, true},
		{Config{Partitions: 0}, false},
		{Config{Partitions: 1 << 17}, false},
		{Config{Partitions: 4, Limits: locktable.Limits{DefaultTimeout: -1}}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}

// A waiter is woken by the hand-over, with no polling: in a synctest
// bubble time does not move unless every goroutine is blocked, so a
// polling implementation would advance the fake clock and time out.
func TestLockWaitHandOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSet(t, time.Second)
		attach(t, s, "a")
		attach(t, s, "b")
		ctx := context.Background()
		first, err := s.Lock(ctx, "a", []byte("x"), 0)
		if err != nil || first.Status != locktable.Granted {
			t.Fatalf("first lock = %+v, %v", first, err)
		}
		got := make(chan locktable.Result, 1)
		start := time.Now()
		go func() {
			r, _ := s.Lock(ctx, "b", []byte("x"), 10*time.Second)
			got <- r
		}()
		synctest.Wait() // b is queued
		time.Sleep(3 * time.Second)
		if r, _ := s.Unlock("a", []byte("x")); r.Status != locktable.Unlocked {
			t.Fatalf("unlock = %v", r.Status)
		}
		r := <-got
		if r.Status != locktable.Granted || r.Token <= first.Token {
			t.Fatalf("hand-over = %+v, want granted with token above %d", r, first.Token)
		}
		if waited := time.Since(start); waited != 3*time.Second {
			t.Fatalf("waited %v, want exactly the 3s until the unlock", waited)
		}
	})
}

func TestLockWaitTimesOutExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSet(t, time.Second)
		attach(t, s, "a")
		attach(t, s, "b")
		ctx := context.Background()
		s.Lock(ctx, "a", []byte("x"), 0)
		start := time.Now()
		r, err := s.Lock(ctx, "b", []byte("x"), 2*time.Second)
		if err != nil || r.Status != locktable.Unavailable {
			t.Fatalf("lock = %+v, %v; want unavailable", r, err)
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Fatalf("timed out after %v, want 2s", d)
		}
		if c := s.Counts(); c.Waiters != 0 {
			t.Fatalf("waiters after timeout = %d, want 0", c.Waiters)
		}
	})
}

func TestLockCancelLeavesQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSet(t, time.Second)
		for _, id := range []string{"a", "b", "c"} {
			attach(t, s, id)
		}
		s.Lock(context.Background(), "a", []byte("x"), 0)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := s.Lock(ctx, "b", []byte("x"), time.Minute)
			errc <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled lock err = %v", err)
		}
		if c := s.Counts(); c.Waiters != 0 {
			t.Fatalf("waiters = %d after cancel, want 0", c.Waiters)
		}
		s.Unlock("a", []byte("x"))
		if r, _ := s.Lock(context.Background(), "c", []byte("x"), 0); r.Status != locktable.Granted {
			t.Fatalf("after the cancelled waiter left, lock = %v, want granted", r.Status)
		}
	})
}

// When the grant and the cancellation race and the grant wins, the lock
// must not stay with the session whose request was abandoned.
func TestLockCancelAfterGrantReleases(t *testing.T) {
	s := newSet(t, time.Second)
	attach(t, s, "a")
	attach(t, s, "b")
	for i := range 200 {
		name := []byte(fmt.Sprint("x", i))
		s.Lock(context.Background(), "a", name, 0)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		var res locktable.Result
		var err error
		go func() {
			defer wg.Done()
			res, err = s.Lock(ctx, "b", name, time.Minute)
		}()
		// Wait until b is queued, then unlock and cancel as close together
		// as the scheduler allows.
		for in, _ := s.Info("a", name); in.Waiters == 0; in, _ = s.Info("a", name) {
			time.Sleep(10 * time.Microsecond)
		}
		go s.Unlock("a", name)
		cancel()
		wg.Wait()
		if err == nil {
			if res.Status != locktable.Granted {
				t.Fatalf("uncancelled result %v", res.Status)
			}
			s.Unlock("b", name)
			continue
		}
		// Cancelled: whatever the race did, b must not hold the lock once
		// the unlock has finished.
		deadline := time.Now().Add(5 * time.Second)
		for {
			in, _ := s.Info("b", name)
			if !in.Held || !in.Mine {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: cancelled waiter still holds the lock", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func TestSessionExpiryReleasesEverywhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSet(t, 5*time.Second)
		ep := attach(t, s, "a")
		attach(t, s, "b")
		ctx := context.Background()
		var names [][]byte
		for i := range 20 { // spread over all 8 partitions
			n := []byte(fmt.Sprint("lock-", i))
			names = append(names, n)
			if r, _ := s.Lock(ctx, "a", n, 0); r.Status != locktable.Granted {
				t.Fatal("setup lock failed")
			}
		}
		waited := make(chan locktable.Result, 1)
		go func() {
			r, _ := s.Lock(ctx, "b", names[3], time.Minute)
			waited <- r
		}()
		synctest.Wait()
		s.Detach("a", ep)
		time.Sleep(5*time.Second - time.Nanosecond)
		synctest.Wait()
		if got := s.HeldBy("a"); got != 20 {
			t.Fatalf("before the timeout a holds %d, want 20", got)
		}
		time.Sleep(time.Nanosecond)
		if r := <-waited; r.Status != locktable.Granted {
			t.Fatalf("waiter after expiry = %v, want granted", r.Status)
		}
		// The release goes partition by partition; the waiter may wake
		// before the last one. Let it finish.
		synctest.Wait()
		if got := s.HeldBy("a"); got != 0 {
			t.Fatalf("after expiry a holds %d, want 0", got)
		}
		if c := s.Counts(); c.Locks != 1 || c.Sessions != 1 {
			t.Fatalf("counts after expiry = %+v, want 1 lock (b's) and 1 session", c)
		}
	})
}

func TestResumeBeforeExpiryKeepsLocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSet(t, 5*time.Second)
		ep := attach(t, s, "a")
		s.Lock(context.Background(), "a", []byte("x"), 0)
		s.Detach("a", ep)
		time.Sleep(4 * time.Second)
		a, err := s.Attach("a", "home")
		if err != nil || !a.Resumed {
			t.Fatalf("resume = %+v, %v", a, err)
		}
		time.Sleep(time.Minute)
		if s.HeldBy("a") != 1 {
			t.Fatal("resumed session lost its lock")
		}
		if _, err := s.Attach("a", "home"); !errors.Is(err, locktable.ErrAttached) {
			t.Fatalf("second attach err = %v, want ErrAttached", err)
		}
	})
}

func TestZeroTimeoutReleasesOnDetach(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSet(t, 0)
		ep := attach(t, s, "a")
		s.Lock(context.Background(), "a", []byte("x"), 0)
		s.Detach("a", ep)
		if s.HeldBy("a") != 0 {
			t.Fatal("zero-timeout session kept its lock after detach")
		}
	})
}

func TestOfMatchesPartitionCount(t *testing.T) {
	seen := map[int]bool{}
	for i := range 1000 {
		p := Of([]byte(fmt.Sprint(i)), 8)
		if p < 0 || p >= 8 {
			t.Fatalf("Of = %d", p)
		}
		seen[p] = true
	}
	if len(seen) != 8 {
		t.Fatalf("1000 keys hit only %d of 8 partitions", len(seen))
	}
}

func TestConcurrentDistinctLocks(t *testing.T) {
	s := newSet(t, time.Second)
	const workers, rounds = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		id := fmt.Sprint("s", w)
		attach(t, s, id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				n := []byte(fmt.Sprint(id, "-", i%7))
				if r, _ := s.Lock(context.Background(), id, n, 0); r.Status != locktable.Granted {
					t.Errorf("lock %s = %v", n, r.Status)
					return
				}
				if r, _ := s.Unlock(id, n); r.Status != locktable.Unlocked {
					t.Errorf("unlock %s = %v", n, r.Status)
					return
				}
			}
		}()
	}
	wg.Wait()
	if c := s.Counts(); c.Locks != 0 || c.Grants != workers*rounds {
		t.Fatalf("counts = %+v, want 0 locks and %d grants", c, workers*rounds)
	}
}

// Contended: every hand-over is exclusive and FIFO keeps all workers fed.
func TestContendedExclusion(t *testing.T) {
	s := newSet(t, time.Second)
	const workers, rounds = 6, 200
	var mu sync.Mutex
	holder := ""
	done := make([]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		id := fmt.Sprint("s", w)
		attach(t, s, id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				r, err := s.Lock(context.Background(), id, []byte("hot"), time.Minute)
				if err != nil || r.Status != locktable.Granted {
					t.Errorf("%s lock = %+v, %v", id, r, err)
					return
				}
				mu.Lock()
				if holder != "" {
					t.Errorf("%s granted while %s holds the lock", id, holder)
				}
				holder = id
				mu.Unlock()
				mu.Lock()
				holder = ""
				done[w]++
				mu.Unlock()
				s.Unlock(id, []byte("hot"))
			}
		}()
	}
	wg.Wait()
	for w, n := range done {
		if n != rounds {
			t.Errorf("worker %d did %d rounds", w, n)
		}
	}
}

// heldRep is a Replicator whose replica acknowledges nothing until the
// test says so, or loses everything.
type heldRep struct {
	mu         sync.Mutex
	seq, acked uint64
	lost       bool
	changed    chan struct{} // closed and replaced on ack or loss
}

func newHeldRep() *heldRep { return &heldRep{changed: make(chan struct{})} }

func (r *heldRep) Admit(int, Op) error { return nil }

func (r *heldRep) Record(_ int, cs []locktable.Change) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(cs) == 0 {
		if r.acked >= r.seq {
			return 0
		}
		return r.seq
	}
	r.seq++
	return r.seq
}

// Confirm answers from a goroutine of its own once await does.
func (r *heldRep) Confirm(_ int, pos uint64, then func(error)) {
	go func() { then(r.await(pos)) }()
}

func (r *heldRep) await(pos uint64) error {
	for {
		r.mu.Lock()
		acked, lost, ch := r.acked, r.lost, r.changed
		r.mu.Unlock()
		switch {
		case acked >= pos:
			return nil
		case lost:
			return failure.Unknown(failure.Unconfirmed, "lost")
		}
		<-ch
	}
}

// settle acknowledges everything recorded, or loses it.
func (r *heldRep) settle(lose bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if lose {
		r.lost = true
	} else {
		r.acked = r.seq
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// An answer that rests on a grant not yet acknowledged (another session's
// 409, a waiter's timeout) waits for it. If the grant is lost instead, the
// grant's own request is told the outcome is unknown, and the others that
// it did nothing and may retry: nobody hears of a holder that never was.
func TestAnswersWaitForWhatTheyRestOn(t *testing.T) {
	for _, lose := range []bool{false, true} {
		t.Run(fmt.Sprint("lose=", lose), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rep := newHeldRep()
				s, err := New(Config{Partitions: 1, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Minute}, Epoch: 1, AutoEpoch: true, Replicator: rep})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				ctx := context.Background()
				type answer struct {
					r   locktable.Result
					err error
				}
				lock := func(session string, wait time.Duration) chan answer {
					ch := make(chan answer, 1)
					go func() {
						r, err := s.Lock(ctx, session, []byte("x"), wait)
						ch <- answer{r, err}
					}()
					return ch
				}
				for _, id := range []string{"a", "b", "c"} {
					go s.Attach(id, "home")
				}
				synctest.Wait()
				rep.settle(false) // the sessions are recorded
				synctest.Wait()

				grant := lock("a", 0)
				synctest.Wait()
				plain, waiter, queued := lock("b", 0), lock("c", time.Second), lock("d", time.Hour)
				token := make(chan answer, 1)
				go func() {
					_, st, err := s.Token("a", []byte("x"))
					token <- answer{locktable.Result{Status: st}, err}
				}()
				time.Sleep(2 * time.Second) // past the waiter's timeout
				synctest.Wait()
				for name, ch := range map[string]chan answer{"grant": grant, "409": plain, "timeout": waiter, "token": token, "queued wait": queued} {
					if len(ch) != 0 {
						t.Fatalf("the %s was answered before the grant was acknowledged: %+v", name, <-ch)
					}
				}
				rep.settle(lose)
				g, p, w, tk := <-grant, <-plain, <-waiter, <-token
				if !lose {
					if g.err != nil || g.r.Status != locktable.Granted || p.r.Status != locktable.Unavailable || w.r.Status != locktable.Unavailable || tk.r.Status != locktable.Granted || len(queued) != 0 {
						t.Fatalf("acknowledged: grant %+v, 409 %+v, timeout %+v, token %+v", g, p, w, tk)
					}
					go s.Unlock("a", []byte("x"))
					synctest.Wait()
					rep.settle(false)
					if q := <-queued; q.err != nil || q.r.Status != locktable.Granted {
						t.Fatalf("the queued wait after the unlock: %+v", q)
					}
					return
				}
				if failure.ClassOf(g.err) != failure.Indeterminate {
					t.Errorf("lost grant: %+v, want an unknown outcome", g)
				}
				for name, a := range map[string]answer{"409": p, "timeout": w, "token": tk, "queued wait": <-queued} {
					if failure.ClassOf(a.err) != failure.Retryable {
						t.Errorf("%s resting on a lost grant: %+v, want a retryable refusal", name, a)
					}
				}
				// A refused wait is not left queued, to be granted later to
				// a client that was told nothing happened.
				if n := s.Counts().Waiters; n != 0 {
					t.Errorf("%d waiter(s) still queued after their requests were refused", n)
				}
			})
		})
	}
}

// Evict answers every request queued on a partition this node no longer
// serves, even after the partition's table was replaced (a node that
// loses a partition to nobody starts it over empty): a request left
// unanswered kept its caller, and a node's shutdown, waiting forever.
func TestEvictAnswersEveryQueuedRequest(t *testing.T) {
	for _, replaced := range []bool{false, true} {
		t.Run(fmt.Sprint("replaced=", replaced), func(t *testing.T) {
			s := newSet(t, time.Minute)
			x := []byte("x")
			if res, _, err := s.LockAsync("a", x, 0, nil); err != nil || res.Status != locktable.Granted {
				t.Fatalf("holder: %v %v", res, err)
			}
			got := make(chan Outcome, 1)
			if res, w, err := s.LockAsync("b", x, time.Hour, func(o Outcome) { got <- o }); err != nil || w == nil {
				t.Fatalf("waiter: %v %v %v", res, w, err)
			}
			p := s.PartitionOf(x)
			if replaced {
				s.With(p, func(*locktable.Table, locktable.Time) *locktable.Table {
					return locktable.New(1, s.Limits(), false)
				})
			}
			moved := failure.Retry(failure.Moved, "moved")
			s.Evict(p, moved)
			select {
			case o := <-got:
				if o.Err != moved || o.Granted {
					t.Fatalf("evicted request's outcome %+v; want the eviction's error", o)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the queued request was never answered")
			}
		})
	}
}

// refusingRep admits everything but grants while refuse is set (an owner
// whose replica is not synced yet), and confirms at once.
type refusingRep struct{ refuse atomic.Bool }

func (r *refusingRep) Admit(_ int, op Op) error {
	if op == Grant && r.refuse.Load() {
		return failure.Retry(failure.NoReplica, "no synced replica")
	}
	return nil
}
func (*refusingRep) Record(int, []locktable.Change) uint64     { return 0 }
func (*refusingRep) Confirm(_ int, _ uint64, then func(error)) { then(nil) }

// A refused operation leaves the partition's deadlines armed: a waiter
// still times out, and a session still expires, while grants are refused.
func TestRefusedOperationKeepsDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rep := &refusingRep{}
		s, err := New(Config{Partitions: 1, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Minute}, Epoch: 1, AutoEpoch: true, Replicator: rep})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		if r, err := s.Lock(ctx, "a", []byte("x"), 0); err != nil || r.Status != locktable.Granted {
			t.Fatalf("holder: %v %v", r, err)
		}
		waiter := make(chan locktable.Result, 1)
		go func() {
			r, _ := s.Lock(ctx, "b", []byte("x"), time.Second)
			waiter <- r
		}()
		synctest.Wait()
		rep.refuse.Store(true)
		if _, err := s.Lock(ctx, "c", []byte("y"), 0); !failure.Is(err, failure.NoReplica) {
			t.Fatalf("a grant without a replica: %v", err)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		select {
		case r := <-waiter:
			if r.Status != locktable.Unavailable {
				t.Fatalf("the waiter: %v; want its timeout", r)
			}
		default:
			t.Fatal("the waiter's timeout did not fire after a refused operation")
		}
	})
}

// The guard of an unlock or a drop is asked under the partition's mutex:
// its refusal is the answer, and the lock stays held.
func TestGuardRefusesUnlockAndDrop(t *testing.T) {
	s := newSet(t, time.Minute)
	res, err := s.Lock(context.Background(), "a", []byte("x"), 0)
	if err != nil || res.Status != locktable.Granted {
		t.Fatalf("lock: %v %v", res, err)
	}
	refused := errors.New("fenced")
	answers := make(chan error, 2)
	s.UnlockThen(Asker{Session: "a"}, []byte("x"), func() error { return refused }, func(_ locktable.Result, err error) { answers <- err })
	s.DropThen(Asker{Session: "a"}, []byte("x"), res.Token, func() error { return refused }, func(_ locktable.Result, err error) { answers <- err })
	for range 2 {
		if err := <-answers; err != refused {
			t.Fatalf("answer %v; want the guard's refusal", err)
		}
	}
	if tok, st, err := s.Token("a", []byte("x")); err != nil || st != locktable.Granted || tok != res.Token {
		t.Fatalf("after the refusals: %d %v %v; want a to hold x", tok, st, err)
	}
	var got locktable.Result
	s.UnlockThen(Asker{Session: "a"}, []byte("x"), func() error { return nil }, func(r locktable.Result, err error) { got, _ = r, err; answers <- err })
	if err := <-answers; err != nil || got.Status != locktable.Unlocked {
		t.Fatalf("unlock with a guard that passes: %v %v", got, err)
	}
}

// The expiry hook is told the attach epoch the session ended at: the
// mesh bounds the release of its locks by it.
func TestExpiryHookGetsTheEpoch(t *testing.T) {
	type expiry struct {
		id    string
		epoch uint64
	}
	got := make(chan expiry, 4)
	s, err := New(Config{Partitions: 8, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: 0}, Epoch: 1,
		Expired: func(id string, epoch uint64) { got <- expiry{id, epoch} }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e1 := attach(t, s, "a")
	if err := s.Detach("a", e1); err != nil { // timeout 0: expires at once
		t.Fatal(err)
	}
	if x := <-got; x.id != "a" || x.epoch != e1 {
		t.Fatalf("expired %+v; want a at epoch %d", x, e1)
	}
}

// writeRefusingRep refuses writes and grants, as an owner with no synced
// replica, while refuse is set; while unconfirmed is set, it confirms
// nothing (a replica that does not answer).
type writeRefusingRep struct {
	refuse, unconfirmed atomic.Bool
	changes             atomic.Int64
}

func (r *writeRefusingRep) Admit(_ int, op Op) error {
	if (op == Grant || op == Write) && r.refuse.Load() {
		return failure.Retry(failure.NoReplica, "no synced replica")
	}
	return nil
}
func (r *writeRefusingRep) Record(_ int, cs []locktable.Change) uint64 {
	r.changes.Add(int64(len(cs)))
	if r.unconfirmed.Load() {
		return 1
	}
	return 0
}
func (r *writeRefusingRep) Confirm(_ int, _ uint64, then func(error)) {
	if r.unconfirmed.Load() {
		then(errors.New("not acknowledged"))
		return
	}
	then(nil)
}

// A resume's listing raises the listed grants' epochs through a write,
// which a replica learns, and lists only what the replica confirmed; with
// no synced replica it raises them here and answers at once; where
// nothing needs raising it writes nothing.
func TestClaimHeldIn(t *testing.T) {
	rep := &writeRefusingRep{}
	s, err := New(Config{Partitions: 1, Limits: locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Minute}, Epoch: 1, Replicator: rep})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lock := func(name string) {
		t.Helper()
		s.LockThen(Asker{Session: "a", Epoch: 3}, []byte(name), locktable.Want{}, 0, nil, func(_ locktable.Result, _ *Wait, err error) {
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	below := func() (n int) {
		s.read(s.parts[0], func(t *locktable.Table, _ locktable.Time) { n = t.HeldBelow("a", 0, 7) })
		return n
	}

	lock("x")
	rep.refuse.Store(true)
	before := rep.changes.Load()
	names, err := s.ClaimHeldIn(Asker{Session: "a", Epoch: 7}, 0)
	if err != nil || len(names) != 1 || below() != 0 || rep.changes.Load() != before+1 {
		t.Fatalf("with no synced replica: %v %v, %d below, %d recorded; want [x], raised and recorded", names, err, below(), rep.changes.Load()-before)
	}
	rep.refuse.Store(false)

	lock("y")
	before = rep.changes.Load()
	names, err = s.ClaimHeldIn(Asker{Session: "a", Epoch: 7}, 0)
	if err != nil || len(names) != 2 || below() != 0 || rep.changes.Load() != before+1 {
		t.Fatalf("with a replica: %v %v, %d below, %d recorded; want [x y], raised, one change", names, err, below(), rep.changes.Load()-before)
	}
	before = rep.changes.Load()
	if names, err = s.ClaimHeldIn(Asker{Session: "a", Epoch: 7}, 0); err != nil || len(names) != 2 || rep.changes.Load() != before {
		t.Fatalf("again: %v %v, %d changes; want [x y] and nothing written", names, err, rep.changes.Load()-before)
	}

	// A replica that does not acknowledge: the raise is not confirmed, and
	// neither the claim nor the one asked again lists it.
	lock("z")
	rep.unconfirmed.Store(true)
	if names, err := s.ClaimHeldIn(Asker{Session: "a", Epoch: 8}, 0); err == nil {
		t.Fatalf("unconfirmed raise listed: %v", names)
	}
	if names, err := s.ClaimHeldIn(Asker{Session: "a", Epoch: 8}, 0); err == nil {
		t.Fatalf("asked again, the unconfirmed raise was listed: %v", names)
	}
}

// The writes of a session born at 5 release first what an earlier session
// under its id left here (epochs below 5), and its reads see those locks
// as another's: an unlock does not report them as its own, and a drop by
// the old grant's token does not take back what it never had.
func TestLeftoversOfAnEarlierSession(t *testing.T) {
	s := newSet(t, time.Minute)
	var tokens []uint64
	for _, name := range []string{"x", "y"} {
		s.LockThen(Asker{Session: "a", Epoch: 3}, []byte(name), locktable.Want{}, 0, nil, func(res locktable.Result, _ *Wait, err error) {
			if err != nil || res.Status != locktable.Granted {
				t.Fatalf("lock %s: %v %v", name, res, err)
			}
			tokens = append(tokens, res.Token)
		})
	}
	token := func(born uint64, name string) (st locktable.Status) {
		s.TokenThen(Asker{Session: "a", Born: born}, []byte(name), func(_ uint64, got locktable.Status, err error) {
			if err != nil {
				t.Fatal(err)
			}
			st = got
		})
		return st
	}
	if token(3, "x") != locktable.Granted || token(5, "x") != locktable.NotYours {
		t.Fatal("a read of the session born at 5 saw the earlier session's lock as its own")
	}
	s.InfoThen(Asker{Session: "a", Born: 5}, []byte("x"), func(in locktable.Info, err error) {
		if err != nil || !in.Held || in.Mine {
			t.Fatalf("info: %+v %v; want held, not mine", in, err)
		}
	})
	s.DropThen(Asker{Session: "a", Epoch: 5, Born: 5}, []byte("y"), tokens[1], nil, func(res locktable.Result, err error) {
		if err != nil || res.Status == locktable.Unlocked {
			t.Fatalf("drop of the earlier session's grant: %v %v", res, err)
		}
	})
	s.UnlockThen(Asker{Session: "a", Epoch: 5, Born: 5}, []byte("x"), nil, func(res locktable.Result, err error) {
		if err != nil || res.Status == locktable.Unlocked {
			t.Fatalf("unlock of the earlier session's lock: %v %v; want not reported as its own", res, err)
		}
	})
	if token(0, "x") != locktable.NotLocked || token(0, "y") != locktable.NotLocked {
		t.Fatal("the earlier session's locks were not released by the later one's writes")
	}
}

// A lock, an unlock, a drop, a token or an info sent at an attach epoch
// below the lock's (a resume listed it at a later one) is refused: it
// comes from a home the session has left. One sent at the lock's epoch,
// or with no epochs, goes ahead.
func TestALaterAttachmentsLockIsNotAnOlderOnes(t *testing.T) {
	s := newSet(t, time.Minute)
	old, later := Asker{Session: "a", Epoch: 3, Born: 3}, Asker{Session: "a", Epoch: 7, Born: 3}
	var token uint64
	for _, name := range []string{"x", "y"} {
		s.LockThen(old, []byte(name), locktable.Want{}, 0, nil, func(res locktable.Result, _ *Wait, err error) {
			if err != nil || res.Status != locktable.Granted {
				t.Fatalf("lock %s: %v %v", name, res, err)
			}
			token = res.Token
		})
	}
	var listed []string
	for _, p := range []int{s.PartitionOf([]byte("x")), s.PartitionOf([]byte("y"))} {
		names, err := s.ClaimHeldIn(later, p)
		if err != nil {
			t.Fatalf("the resume's listing: %v", err)
		}
		listed = append(listed, names...)
	}
	if slices.Sort(listed); !slices.Equal(slices.Compact(listed), []string{"x", "y"}) {
		t.Fatalf("the resume listed %v; want x and y", listed)
	}
	s.LockThen(old, []byte("x"), locktable.Want{}, 0, nil, func(res locktable.Result, _ *Wait, err error) {
		if !errors.Is(err, ErrLaterAttachment) {
			t.Fatalf("a re-entrant lock from the older attachment: %v %v; want refused", res, err)
		}
	})
	s.TokenThen(old, []byte("x"), func(_ uint64, st locktable.Status, err error) {
		if !errors.Is(err, ErrLaterAttachment) {
			t.Fatalf("token from the older attachment: %v %v; want refused", st, err)
		}
	})
	if _, err := s.InfoAs(old, []byte("x")); !errors.Is(err, ErrLaterAttachment) {
		t.Fatalf("info from the older attachment: %v; want refused", err)
	}
	if _, st, err := s.TokenAs(later, []byte("x")); err != nil || st != locktable.Granted {
		t.Fatalf("token from the later attachment: %v %v", st, err)
	}
	s.UnlockThen(old, []byte("x"), nil, func(_ locktable.Result, err error) {
		if !errors.Is(err, ErrLaterAttachment) {
			t.Fatalf("unlock from the older attachment: %v; want refused", err)
		}
	})
	s.DropThen(old, []byte("y"), token, nil, func(_ locktable.Result, err error) {
		if !errors.Is(err, ErrLaterAttachment) {
			t.Fatalf("drop from the older attachment: %v; want refused", err)
		}
	})
	s.UnlockThen(later, []byte("x"), nil, func(res locktable.Result, err error) {
		if err != nil || res.Status != locktable.Unlocked {
			t.Fatalf("unlock from the later attachment: %v %v", res, err)
		}
	})
	if res, err := s.Unlock("a", []byte("y")); err != nil || res.Status != locktable.Unlocked {
		t.Fatalf("unlock with no epochs: %v %v", res, err)
	}
}

// A wait that a bounded release removes (an expiry's, an unlock_all's, a
// later session's release of an earlier one's leftovers) is answered, not
// granted, and forgotten: before, it stayed in the partition's slots and
// its caller was never answered.
func TestAReleasedWaitIsAnswered(t *testing.T) {
	s := newSet(t, time.Minute)
	if res, err := s.Lock(context.Background(), "b", []byte("x"), 0); err != nil || res.Status != locktable.Granted {
		t.Fatalf("holder: %v %v", res, err)
	}
	outcome := make(chan Outcome, 1)
	s.LockThen(Asker{Session: "a", Epoch: 3, Born: 3}, []byte("x"), locktable.Want{}, time.Minute, func(o Outcome) { outcome <- o }, func(res locktable.Result, _ *Wait, err error) {
		if err != nil || res.Status != locktable.Queued {
			t.Fatalf("wait: %v %v", res, err)
		}
	})
	if _, err := s.ReleaseSessionIn("a", []int{s.PartitionOf([]byte("x"))}, 3); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-outcome:
		if o.Granted {
			t.Fatalf("the released wait was granted: %+v", o)
		}
	default:
		t.Fatal("the released wait was not answered")
	}
	if n := len(s.partOf([]byte("x")).slots); n != 0 {
		t.Fatalf("%d waits still kept", n)
	}
}

// The release of a session that expired on this node's timer runs after
// the expiry let go of the partition's mutex; a new session under the id
// can attach and lock in between. The release is bounded by the epoch the
// expired session ended at, and spares the new one's lock (found by
// review: it released everything under the id).
func TestAnExpiryReleaseSparesANewSession(t *testing.T) {
	s := newSet(t, time.Minute)
	for _, l := range []struct {
		epoch uint64
		name  string
	}{{1, "old"}, {5, "new"}} {
		if res, _, err := s.LockAs(Asker{Session: "s", Epoch: l.epoch, Born: l.epoch}, []byte(l.name), locktable.Want{}, 0, nil); err != nil || res.Status != locktable.Granted {
			t.Fatalf("lock %s: %v %v", l.name, res, err)
		}
	}
	// The session of epoch 1 expired; the new one (epoch 5) locked before
	// the release came.
	s.settle(&pending{expired: []expiry{{"s", 1}}}, nil)
	if _, st, _ := s.Token("s", []byte("old")); st == locktable.Granted {
		t.Fatal("the expired session's lock was kept")
	}
	if _, st, _ := s.Token("s", []byte("new")); st != locktable.Granted {
		t.Fatal("the expiry's release took the new session's lock")
	}
}
