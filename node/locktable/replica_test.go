package locktable_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
)

// state lists a table's locks and sessions as Changes, the form a
// replica learns them in.
func state(t *locktable.Table, now locktable.Time, names, sessions []string) []locktable.Change {
	var out []locktable.Change
	for _, n := range names {
		out = append(out, t.NameChanges(now, n)...)
	}
	for _, s := range sessions {
		out = append(out, t.SessionChange(now, s))
	}
	return out
}

// A replica fed the owner's changes, and a table restored from the
// owner's snapshot, both describe the owner's state exactly (waiters
// aside, which are not replicated), for grants of every mode.
func TestReplicaFollowsOwner(t *testing.T) {
	names := []string{"a", "b", "c", "d"}
	sessions := []string{"s1", "s2", "s3"}
	limits := locktable.Limits{MaxWaiters: 4, DefaultTimeout: 10 * time.Second}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		owner := locktable.New(3, limits, true)
		replica := locktable.New(0, limits, false)
		now := locktable.Time(0)
		epochs := map[string]uint64{}
		var waiter locktable.WaiterID
		for step := range 300 {
			now += int64(rng.IntN(3)) * int64(time.Second)
			s := sessions[rng.IntN(len(sessions))]
			n := []byte(names[rng.IntN(len(names))])
			var fx []locktable.Effect
			touchedSession := ""
			// a and b are locks taken either way, c and d semaphores of
			// two permits.
			wish := locktable.Want{Mode: locktable.Permit, Limit: 2}
			if n[0] < 'c' {
				wish = locktable.Want{Mode: locktable.Mode(rng.IntN(2))}
				if wish.Mode == locktable.Exclusive && rng.IntN(2) == 0 {
					wish.Value = fmt.Sprint("v", rng.IntN(3)) // a campaign
				}
			}
			switch rng.IntN(8) {
			case 0, 1:
				_, fx, _ = owner.Acquire(now, s, 0, n, wish, 0, 0)
			case 7:
				// A wait: a later release hands the lock to it, which
				// the replica learns as a new holder of a held lock.
				waiter++
				_, fx, _ = owner.Acquire(now, s, 0, n, wish, waiter, now+int64(rng.IntN(4))*int64(time.Second))
			case 2:
				_, fx = owner.Unlock(now, s, n)
			case 3:
				_, fx = owner.ReleaseSession(now, s)
			case 4:
				a, afx, err := owner.Attach(now, s, "h")
				if err == nil {
					epochs[s] = a.Epoch
				}
				fx, touchedSession = afx, s
			case 5:
				fx, touchedSession = owner.Detach(now, s, epochs[s]), s
			case 6:
				fx = owner.Tick(now)
			}
			apply(replica, owner, now, fx)
			if touchedSession != "" {
				replica.Apply(now, owner.SessionChange(now, touchedSession))
			}
			want := state(owner, now, names, sessions)
			if got := state(replica, now, names, sessions); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d step %d: replica %v\nowner %v", seed, step, got, want)
			}
			if err := replica.CheckInvariants(); err != nil {
				t.Fatalf("seed %d step %d: replica: %v", seed, step, err)
			}
			for _, s := range sessions {
				got, want := replica.HeldNames(s), owner.HeldNames(s)
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: %s holds %v on the replica, %v on the owner", seed, step, s, got, want)
				}
			}
			later := now + int64(time.Second)
			restored, err := locktable.Restore(later, owner.Snapshot(now), limits, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := state(restored, later, names, sessions); !reflect.DeepEqual(got, state(owner, now, names, sessions)) {
				// Ages and remaining times moved by the same second.
				shifted := state(owner, now, names, sessions)
				for i := range shifted {
					if shifted[i].Kind == locktable.ChangeHeld {
						shifted[i].Age += time.Second
					}
				}
				if !reflect.DeepEqual(got, shifted) {
					t.Fatalf("seed %d step %d: restored %v\nowner %v", seed, step, got, shifted)
				}
			}
		}
	}
}

func TestRestoreRejectsCorruptSnapshots(t *testing.T) {
	tb := locktable.New(2, locktable.Limits{DefaultTimeout: time.Second}, false)
	tb.Attach(0, "s", "h")
	tb.Lock(0, "s", []byte("x"), 0, 0)
	snap := tb.Snapshot(0)
	for i := range len(snap) {
		if _, err := locktable.Restore(0, snap[:i], locktable.Limits{}, false); err == nil {
			t.Fatalf("a snapshot cut at %d of %d bytes restored", i, len(snap))
		}
	}
	if _, err := locktable.Restore(0, append(snap, 1), locktable.Limits{}, false); err == nil {
		t.Fatal("trailing bytes accepted")
	}
	r, err := locktable.Restore(0, snap, locktable.Limits{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if tok, st := r.Token("s", []byte("x")); st != locktable.Granted || tok != 2<<32|1 {
		t.Fatalf("restored token %d %v", tok, st)
	}
	if got := fmt.Sprint(r.HeldNames("s")); got != "[x]" {
		t.Fatalf("HeldNames = %s", got)
	}
}

// apply feeds a replica the changes behind an owner's effects, as the
// stream does: the lock's state for a grant or a release, the session's
// record for an expiry.
func apply(replica, owner *locktable.Table, now locktable.Time, fx []locktable.Effect) {
	for _, e := range fx {
		switch e.Kind {
		case locktable.LockHeld, locktable.LockFreed:
			replica.Apply(now, owner.GrantChange(now, e.Name, e.Session))
		case locktable.SessionExpired:
			replica.Apply(now, owner.SessionChange(now, e.Session))
		}
	}
}

// A lock handed from its holder to a waiter reaches the replica as a
// ChangeHeld of a lock it already holds: the old holder lets go of it
// there too. Otherwise, once the replica takes over, the old holder still
// lists the lock, and releasing the old session (its expiry, unlock_all)
// takes the lock from the new holder or corrupts the holder's list.
func TestReplicaHandOffMovesTheHolder(t *testing.T) {
	limits := locktable.Limits{MaxWaiters: 4, DefaultTimeout: 10 * time.Second}
	owner := locktable.New(3, limits, true)
	replica := locktable.New(0, limits, false)
	now := locktable.Time(0)
	for _, s := range []string{"s1", "s2"} {
		if _, _, err := owner.Attach(now, s, "h"); err != nil {
			t.Fatal(err)
		}
		replica.Apply(now, owner.SessionChange(now, s))
	}
	_, fx, _ := owner.Lock(now, "s1", []byte("x"), 0, 0)
	apply(replica, owner, now, fx)
	_, fx, _ = owner.Lock(now, "s1", []byte("y"), 0, 0)
	apply(replica, owner, now, fx)
	if r, _, _ := owner.Lock(now, "s2", []byte("x"), 1, now+int64(time.Minute)); r.Status != locktable.Queued {
		t.Fatalf("s2's wait: %v", r.Status)
	}
	_, fx = owner.Unlock(now, "s1", []byte("x"))
	apply(replica, owner, now, fx)
	want, _ := owner.Token("s2", []byte("x"))

	if got := fmt.Sprint(replica.HeldNames("s1")); got != "[y]" {
		t.Fatalf("the old holder still lists %s on the replica, want [y]", got)
	}
	if n := replica.HeldBy("s1"); n != 1 {
		t.Fatalf("the old holder holds %d on the replica, want 1", n)
	}
	// Promoted, the replica releases the old holder's session: the new
	// holder keeps x.
	if n, _ := replica.ReleaseSession(now, "s1"); n != 1 {
		t.Fatalf("releasing the old holder released %d locks, want 1 (y)", n)
	}
	if tok, st := replica.Token("s2", []byte("x")); st != locktable.Granted || tok != want {
		t.Fatalf("after the old holder's release x is %v with %d, want s2's with %d", st, tok, want)
	}
	if got := fmt.Sprint(replica.HeldNames("s2")); got != "[x]" {
		t.Fatalf("the new holder lists %s, want [x]", got)
	}
}

// A table that held waiters as an owner (an old owner that stays on as
// the replica after a hand-over) drops a freed lock's queue with it: the
// waiters' clients ask the new owner, and a queue left behind would
// outlive its lock, counted as waiting and holding its sessions here.
func TestReplicaFreeDropsTheQueue(t *testing.T) {
	limits := locktable.Limits{MaxWaiters: 4, DefaultTimeout: 10 * time.Second}
	tb := locktable.New(3, limits, true)
	now := locktable.Time(0)
	tb.Lock(now, "s1", []byte("x"), 0, 0)
	if r, _, _ := tb.Lock(now, "s2", []byte("x"), 1, now+int64(time.Minute)); r.Status != locktable.Queued {
		t.Fatalf("s2's wait: %v", r.Status)
	}
	tb.Apply(now, locktable.Change{Kind: locktable.ChangeFreed, Name: "x"})
	if c := tb.Counts(); c.Locks != 0 || c.Waiters != 0 {
		t.Fatalf("after the free: %+v, want no locks and no waiters", c)
	}
	if h := tb.Holders(); len(h) != 0 {
		t.Fatalf("after the free the table still holds %+v", h)
	}
	if _, ok := tb.NextDeadline(); ok {
		t.Fatal("the freed lock's waiter still has a deadline")
	}
	if ok, _ := tb.CancelWait(0, 1); ok {
		t.Fatal("the freed lock's waiter is still queued")
	}
}

// A replica, promoted, attaches sessions at epochs above every one the
// owner used, whether it learnt the owner's sessions change by change or
// from a snapshot. Epochs repeated after a takeover would let a late
// detach of the old attachment detach the session's live connection.
func TestReplicaCarriesAttachEpochs(t *testing.T) {
	limits := locktable.Limits{DefaultTimeout: 10 * time.Second}
	owner := locktable.New(3, limits, true)
	replica := locktable.New(0, limits, false)
	now := locktable.Time(0)
	epochs := map[string]uint64{}
	for _, s := range []string{"s1", "s2", "s1", "s3"} {
		if e, ok := epochs[s]; ok {
			owner.Detach(now, s, e)
		}
		a, _, err := owner.Attach(now, s, "h")
		if err != nil {
			t.Fatal(err)
		}
		epochs[s] = a.Epoch
		replica.Apply(now, owner.SessionChange(now, s))
	}
	// The newest attach belongs to a session that has ended since: no
	// record tells of its epoch, only the table's counter.
	a, _, _ := owner.Attach(now, "brief", "h")
	replica.Apply(now, owner.SessionChange(now, "brief"))
	if err := owner.SetTimeout("brief", 0); err != nil {
		t.Fatal(err)
	}
	if fx := owner.Detach(now, "brief", a.Epoch); len(fx) != 1 {
		t.Fatalf("a session with no timeout did not end when detached: %v", fx)
	}
	replica.Apply(now, owner.SessionChange(now, "brief"))
	// Changes may arrive in any order (a resend after a reconnect): the
	// last one here is not the newest attach.
	replica.Apply(now, owner.SessionChange(now, "s2"))
	bound := owner.SessionEpochBound()
	restored, err := locktable.Restore(now, owner.Snapshot(now), limits, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, tb := range map[string]*locktable.Table{"replica": replica, "restored": restored} {
		if got := tb.SessionEpochBound(); got != bound {
			t.Errorf("%s: epoch bound %d, want the owner's %d", name, got, bound)
		}
		a, _, err := tb.Attach(now, "s4", "h")
		if err != nil {
			t.Fatal(err)
		}
		if a.Epoch <= bound {
			t.Errorf("%s: a new attach got epoch %d, not above the owner's %d", name, a.Epoch, bound)
		}
	}
}

// A restored table goes on from the owner's token counter: a new grant's
// token is above every token the owner issued, in the same epoch too.
func TestRestoreKeepsTheTokenCounter(t *testing.T) {
	limits := locktable.Limits{DefaultTimeout: time.Second}
	owner := locktable.New(2, limits, false)
	var top uint64
	for _, n := range []string{"a", "b", "c"} {
		r, _, _ := owner.Lock(0, "s", []byte(n), 0, 0)
		top = max(top, r.Token)
	}
	owner.Unlock(0, "s", []byte("c")) // the highest token is no longer held
	r, err := locktable.Restore(0, owner.Snapshot(0), limits, false)
	if err != nil {
		t.Fatal(err)
	}
	if left, want := r.TokensLeft(), owner.TokensLeft(); left != want {
		t.Fatalf("restored: %d tokens left, want the owner's %d", left, want)
	}
	g, _, _ := r.Lock(0, "s", []byte("d"), 0, 0)
	if g.Status != locktable.Granted || g.Token <= top {
		t.Fatalf("restored table granted %d (%v), not above the owner's %d", g.Token, g.Status, top)
	}
}

// A detached session's record reaches the replica with the time it has
// left, not its whole timeout: a replica that takes over expires it when
// the owner would have.
func TestSessionChangeSendsTheTimeLeft(t *testing.T) {
	limits := locktable.Limits{DefaultTimeout: 10 * time.Second}
	owner := locktable.New(1, limits, true)
	a, _, _ := owner.Attach(0, "s", "h")
	owner.Detach(0, "s", a.Epoch)
	now := locktable.Time(3 * time.Second)
	c := owner.SessionChange(now, "s")
	if c.Attached || c.Left != 7*time.Second || c.Timeout != 10*time.Second {
		t.Fatalf("change %+v, want detached with 7s left of 10s", c)
	}
	replica := locktable.New(0, limits, false)
	at := locktable.Time(100 * time.Second) // another clock
	replica.Apply(at, c)
	s, ok := replica.Session("s")
	if !ok || s.Expires != at+int64(7*time.Second) {
		t.Fatalf("replica's record %+v, want it to expire at %d", s, at+int64(7*time.Second))
	}
	if fx := replica.Tick(at + int64(7*time.Second) - 1); len(fx) != 0 {
		t.Fatalf("expired early: %v", fx)
	}
	if fx := replica.Tick(at + int64(7*time.Second)); len(fx) != 1 || fx[0].Kind != locktable.SessionExpired {
		t.Fatalf("did not expire on time: %v", fx)
	}
}
