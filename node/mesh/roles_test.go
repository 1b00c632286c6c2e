package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/replication"
)

// Tests of the mesh roles in one process, on the in-memory table and
// network (inmem_test.go), under testing/synctest: every timer runs on
// the bubble's clock, so a test that waits out a lease takes no time.

const testHomeLease = 3 * time.Second

// attach attaches session id through node home's Backend and marks its
// connection live there.
func attach(t *testing.T, mm *memMesh, home, id string) node.SessionRef {
	t.Helper()
	a, err := mm.nodes[home].home.Attach(context.Background(), id)
	if err != nil {
		t.Fatalf("attach %s at %s: %v", id, home, err)
	}
	mm.nodes[home].clients.setLive(id, true)
	return node.SessionRef{ID: id, Epoch: a.Epoch, Born: a.Born}
}

// hangUp ends session s's connection at node home, as a client that goes
// away: the session is detached and its timeout starts.
func hangUp(t *testing.T, mm *memMesh, home string, s node.SessionRef) {
	t.Helper()
	mm.nodes[home].clients.setLive(s.ID, false)
	if err := mm.nodes[home].home.Detach(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

type lockAnswer struct {
	res locktable.Result
	err error
}

// lockAsync asks for name through node home without waiting for the
// answer.
func lockAsync(mm *memMesh, home string, s node.SessionRef, name string) <-chan lockAnswer {
	ch := make(chan lockAnswer, 1)
	go func() {
		res, _, err := mm.nodes[home].home.Lock(context.Background(), s, []byte(name), locktable.Want{}, 0, nil)
		ch <- lockAnswer{res, err}
	}()
	return ch
}

// holdAtN1 attaches a session at n1 and has it take the first name of
// partition 1, through n1; it returns the session and the name.
func holdAtN1(t *testing.T, mm *memMesh) (node.SessionRef, string) {
	t.Helper()
	s := attach(t, mm, "n1", keyIn("s", 0))
	name := keyIn("x", 1)
	if a := <-lockAsync(mm, "n1", s, name); a.err != nil || a.res.Status != locktable.Granted {
		t.Fatalf("lock: %+v", a)
	}
	return s, name
}

// holds reports whether node id's set says session holds name.
func holds(mm *memMesh, id, session, name string) bool {
	_, st, err := mm.nodes[id].set.Token(session, []byte(name))
	return err == nil && st == locktable.Granted
}

// waitBehindAHolder has a session attached at n2 take a lock on partition
// 1 (owned by n2 in the tests that use it), and a session attached at n1
// wait 10 s for it; it returns the waiter, the name, the wait and the
// channel its outcome is delivered on, once the wait is queued at n2.
func waitBehindAHolder(t *testing.T, mm *memMesh) (node.SessionRef, string, node.Wait, <-chan partition.Outcome) {
	t.Helper()
	holder := attach(t, mm, "n2", keyIn("h", 0))
	s := attach(t, mm, "n1", keyIn("s", 0))
	name := keyIn("x", 1)
	if a := <-lockAsync(mm, "n2", holder, name); a.res.Status != locktable.Granted {
		t.Fatalf("holder: %+v", a)
	}
	outcome := make(chan partition.Outcome, 1)
	res, w, err := mm.nodes["n1"].home.Lock(context.Background(), s, []byte(name), locktable.Want{}, 10*time.Second, func(o partition.Outcome) { outcome <- o })
	if err != nil || res.Status != locktable.Queued || w == nil {
		t.Fatalf("wait: %v %v %v", res, w, err)
	}
	synctest.Wait() // queued at n2
	return s, name, w, outcome
}

// A request to an owner that cannot be reached is asked again as the
// table changes, and reaches the new owner: the client sees the grant, not
// the failover.
func TestRouteFollowsThePartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2", "n3")
		defer mm.close()
		s := attach(t, mm, "n1", keyIn("s", 0))
		name := keyIn("x", 1)
		mm.net.setCut("n2", true)
		got := lockAsync(mm, "n1", s, name)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if len(got) != 0 {
			t.Fatalf("answered while the owner was unreachable: %+v", <-got)
		}
		mm.move(1, "n3")
		if a := <-got; a.err != nil || a.res.Status != locktable.Granted {
			t.Fatalf("after the move: %+v", a)
		}
		if !holds(mm, "n3", s.ID, name) {
			t.Fatal("the new owner does not hold the grant")
		}
	})
}

// A request already sent to an owner that then stops answering (paused)
// is abandoned once the table gives the partition to another owner, and
// asked there, within moveCheck instead of the whole route timeout.
func TestRequestLeavesAPausedOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2", "n3")
		defer mm.close()
		s := attach(t, mm, "n1", keyIn("s", 0))
		name := keyIn("x", 1)
		mm.net.pause("n2")
		start := time.Now()
		got := lockAsync(mm, "n1", s, name)
		time.Sleep(100 * time.Millisecond)
		mm.move(1, "n3")
		a := <-got
		if a.err != nil || a.res.Status != locktable.Granted {
			t.Fatalf("after the move: %+v", a)
		}
		if took := time.Since(start); took > 2*moveCheck {
			t.Fatalf("the request stayed with the paused owner for %v", took)
		}
	})
}

// A request that reaches an owner only after the partition went
// elsewhere and came back is refused: its home gave up on it and asked
// the next owner, which carried it out. Here the late copy of a plain
// lock, after the grant it was replaced by had been unlocked, would
// grant the lock again to a session whose client never hears of it
// (found by the fault suite: TCP delivered a lock that a network
// partition had held back 13 s late, and the lock was held by nobody
// the history knew).
func TestLateRequestToAnEarlierOwnershipIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2", "n3")
		defer mm.close()
		s := attach(t, mm, "n1", keyIn("s", 0))
		name := keyIn("x", 1)
		mm.net.pause("n2") // held, as TCP holds what a partition drops
		got := lockAsync(mm, "n1", s, name)
		synctest.Wait()
		mm.move(1, "n3")
		if a := <-got; a.err != nil || a.res.Status != locktable.Granted {
			t.Fatalf("lock after the move: %+v", a)
		}
		if res, err := mm.nodes["n1"].home.Unlock(context.Background(), s, []byte(name)); err != nil || res.Status != locktable.Unlocked {
			t.Fatalf("unlock: %v %v", res, err)
		}
		mm.move(1, "n2")
		mm.net.resume("n2") // the first request arrives now
		synctest.Wait()
		if holds(mm, "n2", s.ID, name) {
			t.Fatal("a request sent to n2's earlier ownership granted the lock after it came back")
		}
		// The current ownership serves requests addressed to it.
		if a := <-lockAsync(mm, "n1", s, name); a.err != nil || a.res.Status != locktable.Granted || !holds(mm, "n2", s.ID, name) {
			t.Fatalf("lock at the new epoch: %+v", a)
		}
	})
}

// An unlock whose reply is lost is asked again; the owner then says the
// lock is free, and the home, which knows its session held it, answers
// that the unlock took effect.
func TestUnlockThroughALostReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2")
		defer mm.close()
		s, name := holdAtN1(t, mm)
		mm.net.dropReplies("n2", 1)
		res, err := mm.nodes["n1"].home.Unlock(context.Background(), s, []byte(name))
		if err != nil || res.Status != locktable.Unlocked {
			t.Fatalf("unlock through a lost reply: %v, %v", res, err)
		}
		if holds(mm, "n2", s.ID, name) || mm.nodes["n1"].sessions.count(s.ID) != 0 {
			t.Fatal("the lock is still held after the unlock")
		}
	})
}

// An unlock after one whose outcome was unknown does not claim the
// release: if its own reply is lost and the owner then says the lock is
// another's, the session may not have held it when the request went out
// (the earlier unlock took effect), so the answer is unknown, not
// "unlocked" (found by the fault suite, full run 34 seed 26: a home
// answered 200 Unlocked while another session held the lock).
func TestUnlockAfterAnUnknownUnlockClaimsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2")
		defer mm.close()
		s, name := holdAtN1(t, mm)
		// The first unlock is carried out, but its reply is lost and n2 is
		// cut off before the home asks again: its outcome is unknown.
		mm.net.pause("n2")
		errc := make(chan error, 1)
		go func() {
			_, err := mm.nodes["n1"].home.Unlock(context.Background(), s, []byte(name))
			errc <- err
		}()
		synctest.Wait() // the unlock waits on n2
		mm.net.dropReplies("n2", 1)
		mm.net.setCut("n2", true)
		mm.net.resume("n2")
		if err := <-errc; failure.ClassOf(err) != failure.Indeterminate {
			t.Fatalf("unlock whose reply was lost, its owner then cut off: %v, want an unknown outcome", err)
		}
		if holds(mm, "n2", s.ID, name) {
			t.Fatal("the owner did not carry out the unlock")
		}
		mm.net.setCut("n2", false)
		other := attach(t, mm, "n2", keyIn("o", 0))
		if a := <-lockAsync(mm, "n2", other, name); a.err != nil || a.res.Status != locktable.Granted {
			t.Fatalf("another session's lock: %+v", a)
		}
		// The client asks again; this reply is lost too, and the owner,
		// asked once more, says the lock is another's.
		mm.net.dropReplies("n2", 1)
		res, err := mm.nodes["n1"].home.Unlock(context.Background(), s, []byte(name))
		if err == nil && res.Status == locktable.Unlocked {
			t.Fatal("the second unlock claims a release while another session holds the lock")
		}
		if failure.ClassOf(err) != failure.Indeterminate {
			t.Fatalf("second unlock: %v, %v; want an unknown outcome", res, err)
		}
		if !holds(mm, "n2", other.ID, name) {
			t.Fatal("the other session lost the lock")
		}
		// Asked once more with nothing lost, the answer is definite.
		if res, err := mm.nodes["n1"].home.Unlock(context.Background(), s, []byte(name)); err != nil || res.Status != locktable.NotYours {
			t.Fatalf("third unlock: %v, %v; want not_yours", res, err)
		}
	})
}

// An unlock whose first request may have been carried out (its reply was
// lost, or the home gave up on it) is answered as unknown (504) when the
// second request fails, never as "nothing happened" (503): the owner did
// release the lock, and a client told 503 would believe it still holds it
// (found by the fault suite, full run 8 seed 24: a leaving home answered
// "503 shutting down" to an unlock its owner had carried out).
func TestUnlockWhoseRetryFailsIsUnknown(t *testing.T) {
	for _, tc := range []struct {
		name string
		// lose makes the first request's reply go missing and the second
		// request fail, while n2 is paused with the first in hand.
		lose func(mm *memMesh, cancel context.CancelFunc)
	}{
		{"owner cut off", func(mm *memMesh, _ context.CancelFunc) {
			mm.net.dropReplies("n2", 1)
			mm.net.setCut("n2", true)
		}},
		{"home shutting down", func(_ *memMesh, cancel context.CancelFunc) { cancel() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2")
				defer mm.close()
				s, name := holdAtN1(t, mm)
				mm.net.pause("n2")
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				errc := make(chan error, 1)
				go func() {
					_, err := mm.nodes["n1"].home.Unlock(ctx, s, []byte(name))
					errc <- err
				}()
				synctest.Wait() // the unlock waits on n2
				tc.lose(mm, cancel)
				synctest.Wait()
				mm.net.resume("n2")
				synctest.Wait() // n2 has carried out the first request
				err := <-errc
				if holds(mm, "n2", s.ID, name) {
					t.Fatal("the owner did not carry out the unlock")
				}
				if c := failure.ClassOf(err); c != failure.Indeterminate {
					t.Fatalf("unlock carried out, answered %v (class %v); want an unknown outcome", err, c)
				}
			})
		})
	}
}

// endingCaller is a Caller whose call ends the caller's context (the node
// begins to shut down) just before the owner's answer arrives.
type endingCaller struct {
	cancel context.CancelFunc
	answer error
}

func (c endingCaller) Start(_ context.Context, _ replication.Node, _ peer.Method, _ []byte, done func([]byte, error)) func(error) {
	c.cancel()
	done(nil, c.answer)
	return nil
}

// An owner's answer that the outcome is unknown (504) reaches the client
// as such even when the home's context ended meanwhile: route does not
// replace it with the context's end, which the client is told as 503.
func TestRouteKeepsAnUnknownOutcomeThroughShutdown(t *testing.T) {
	table := newMemTable()
	table.change(func(st *replication.State) {
		st.Nodes["n2"] = replication.Node{ID: "n2", Nonce: "n2-1", PeerAddr: "n2:peer"}
		st.Parts = []replication.Part{{Epoch: 1, Owner: "n2", ONonce: "n2-1", Mode: replication.Fresh}}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	unknown := failure.Unknown(failure.Unconfirmed, "applied, not confirmed")
	rt := &router{self: replication.Incarnation{ID: "n1", Nonce: "n1-1"}, table: table,
		call: endingCaller{cancel, unknown}, parts: 1, log: slog.New(slog.DiscardHandler)}
	if _, err := rt.route(ctx, 0, peer.Unlock, nil, true); err != unknown {
		t.Fatalf("route: %v; want the owner's unknown outcome", err)
	}
}

// A release across partitions is answered as unknown if any partition's
// outcome is unknown, or if some locks were let go before another
// partition refused; a refusal alone says nothing happened.
func TestReleaseOutcome(t *testing.T) {
	refused := failure.Retry(failure.Unavailable, "partition 1 unavailable")
	unknown := failure.Unknown(failure.Unavailable, "partition 2 did not answer in time; outcome unknown")
	for _, tc := range []struct {
		released uint64
		errs     []error
		want     failure.Class
	}{
		{0, nil, 0},
		{0, []error{refused}, failure.Retryable},
		{0, []error{refused, unknown}, failure.Indeterminate},
		{0, []error{unknown, refused}, failure.Indeterminate},
		{3, []error{refused}, failure.Indeterminate},
	} {
		if got := failure.ClassOf(releaseOutcome(tc.released, tc.errs)); got != tc.want {
			t.Errorf("released %d, errors %v: class %v, want %v", tc.released, tc.errs, got, tc.want)
		}
	}
}

// A home that cannot renew a session closes its client's connection before
// the session could expire, and the session owner, hearing nothing,
// detaches the session so its timeout starts.
func TestUnrenewedSessionIsDetachedAndItsClientKicked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n2", "n2", "n2"}, "n1", "n2")
		defer mm.close()
		s := attach(t, mm, "n1", keyIn("s", 0))
		time.Sleep(2 * testHomeLease)
		synctest.Wait()
		if rec, _, _ := mm.nodes["n2"].set.Session(s.ID); !rec.Attached || len(mm.nodes["n1"].clients.kicks()) != 0 {
			t.Fatalf("renewed session: attached %v, kicked %v", rec.Attached, mm.nodes["n1"].clients.kicks())
		}
		if mm.nodes["n1"].clients.atRisk(s.ID) {
			t.Fatal("a renewed session is said to be at risk")
		}
		mm.net.setCut("n2", true)
		// Before the kick, the client is told its session is at risk.
		time.Sleep(testHomeLease)
		synctest.Wait()
		if !mm.nodes["n1"].clients.atRisk(s.ID) || len(mm.nodes["n1"].clients.kicks()) != 0 {
			t.Fatalf("a home lease unrenewed: at risk %v, kicked %v; want at risk, not kicked", mm.nodes["n1"].clients.atRisk(s.ID), mm.nodes["n1"].clients.kicks())
		}
		// The session's timeout is 10 s: the home lets it go unrenewed for
		// half that, the owner for a home lease plus a second.
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if rec, ok, _ := mm.nodes["n2"].set.Session(s.ID); !ok || rec.Attached {
			t.Fatalf("session owner: record %+v, %v; want it detached", rec, ok)
		}
		if k := mm.nodes["n1"].clients.kicks(); !slices.Contains(k, s.ID) {
			t.Fatalf("home kicked %v; want %s", k, s.ID)
		}
	})
}

// A resume on another node asks the old home whether the session's
// connection lives: while it does, the resume is refused; once it is gone
// the session comes back with its locks, and its older home is fenced off
// at every lock owner.
func TestResumeAsksTheOldHome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n2", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s, _ := holdAtN1(t, mm)
		if _, err := mm.nodes["n3"].home.Attach(context.Background(), s.ID); !errors.Is(err, locktable.ErrAttached) {
			t.Fatalf("resume while the old home's connection lives: %v; want ErrAttached", err)
		}
		mm.nodes["n1"].clients.setLive(s.ID, false)
		a, err := mm.nodes["n3"].home.Attach(context.Background(), s.ID)
		if err != nil || !a.Resumed || a.Epoch <= s.Epoch {
			t.Fatalf("resume once the connection is gone: %+v, %v", a, err)
		}
		if n := mm.nodes["n3"].sessions.count(s.ID); n != 1 {
			t.Fatalf("the new home knows of %d locks of the session; want 1", n)
		}
		if mm.nodes["n2"].owner.fenced(lockReq{session: s.ID, epoch: s.Epoch}) == nil {
			t.Fatal("the old home's requests are not fenced off")
		}
	})
}

// A Drop from a home the session has left is refused once the session
// was resumed elsewhere: the resumed client was told which locks its
// session holds, and a grant must not vanish under it afterwards (found
// by the fault suite: a Drop that a network partition held back reached
// the owner after the resume and released the lock).
func TestDropAfterResumeIsFenced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n2", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s, name := holdAtN1(t, mm)
		tok := grantToken(t, mm.nodes["n2"].set, name)
		mm.nodes["n1"].clients.setLive(s.ID, false)
		if a, err := mm.nodes["n3"].home.Attach(context.Background(), s.ID); err != nil || !a.Resumed {
			t.Fatalf("resume: %+v, %v", a, err)
		}
		res, err := mm.nodes["n1"].home.Drop(context.Background(), s, []byte(name), tok)
		if !failure.Is(err, failure.SessionMoved) || !holds(mm, "n2", s.ID, name) {
			t.Fatalf("Drop from the old home after the resume: %v, %v (held %v); want it fenced and the lock kept", res, err, holds(mm, "n2", s.ID, name))
		}
	})
}

// grantToken reads the token of name's grant from the table, without
// telling anyone of it (Token would claim it, and Drop then keep it).
func grantToken(t *testing.T, set *partition.Set, name string) uint64 {
	t.Helper()
	info, err := set.Info("nobody", []byte(name))
	if err != nil || !info.Held {
		t.Fatalf("info %s: %+v, %v", name, info, err)
	}
	return info.Token
}

// resumeWhileAnOwnerIsPaused detaches a session that holds a lock on n3,
// pauses n3, and resumes the session on n1: listing its locks waits on n3
// until after runs and n3 resumes.
func resumeWhileAnOwnerIsPaused(t *testing.T, mm *memMesh, after func()) (node.SessionRef, locktable.Attachment, error) {
	t.Helper()
	s, _ := holdAtN1(t, mm)
	mm.nodes["n1"].clients.setLive(s.ID, false)
	if err := mm.nodes["n1"].home.Detach(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	mm.net.pause("n3")
	type result struct {
		a   locktable.Attachment
		err error
	}
	ch := make(chan result, 1)
	go func() {
		a, err := mm.nodes["n1"].home.Attach(context.Background(), s.ID)
		ch <- result{a, err}
	}()
	synctest.Wait() // the session owner has answered; n3 has not
	after()
	// Longer than the session owner waits for a renewal (a home lease
	// plus a second) before it detaches a session.
	time.Sleep(2 * testHomeLease)
	synctest.Wait()
	mm.net.resume("n3")
	r := <-ch
	return s, r.a, r.err
}

// A resume whose lock listing outlasts the home lease keeps renewing the
// session meanwhile: the client told that it resumed holds a session that
// is attached, not one whose timeout has been running (found by the fault
// suite, seed 6: the session expired under a lock granted after the
// resume).
func TestSlowResumeKeepsTheSessionAttached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n3", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s, a, err := resumeWhileAnOwnerIsPaused(t, mm, func() {})
		if err != nil || !a.Resumed {
			t.Fatalf("resume: %+v, %v", a, err)
		}
		rec, ok, _ := mm.nodes["n2"].set.Session(s.ID)
		if !ok || !rec.Attached || rec.Epoch != a.Epoch {
			t.Fatalf("session owner's record %+v (found %v); want it attached at epoch %d", rec, ok, a.Epoch)
		}
		if n := mm.nodes["n1"].sessions.count(s.ID); n != 1 {
			t.Fatalf("the home knows of %d locks of the session; want 1", n)
		}
	})
}

// A resume that could not renew the session for a home lease while it
// listed the session's locks is refused as retryable: the session owner
// may have detached the session meanwhile.
func TestResumeCutOffFromTheSessionOwnerIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n3", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s, _, err := resumeWhileAnOwnerIsPaused(t, mm, func() { mm.net.setCut("n2", true) })
		if f, ok := failure.As(err); !ok || f.Class != failure.Retryable {
			t.Fatalf("resume cut off from the session owner: %v; want a retryable refusal", err)
		}
		if mm.nodes["n1"].sessions.current(node.SessionRef{ID: s.ID, Epoch: s.Epoch + 1}) || mm.nodes["n1"].sessions.count(s.ID) != 0 {
			t.Fatal("the refused resume is still attached at the home")
		}
	})
}

// A waiting lock whose partition moves is queued again at the new owner
// for the time it has left, and the client sees the grant.
func TestWaitFollowsThePartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2", "n3")
		defer mm.close()
		s, name, _, outcome := waitBehindAHolder(t, mm)
		if n := mm.nodes["n2"].set.Counts().Waiters; n != 1 {
			t.Fatalf("%d waiters at the owner; want 1", n)
		}
		// Before moveCheck: the old owner's refusal, not the table, tells
		// the wait that its partition moved.
		time.Sleep(moveCheck / 2)
		mm.move(1, "n3")
		o := <-outcome
		if !o.Granted || o.Err != nil {
			t.Fatalf("outcome after the move: %+v", o)
		}
		if !holds(mm, "n3", s.ID, name) {
			t.Fatal("the new owner does not hold the grant")
		}
	})
}

// When a session expires at its session owner, every lock owner releases
// its locks, wherever they are.
func TestExpiryReleasesLocksEverywhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n3", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s, name := holdAtN1(t, mm)
		hangUp(t, mm, "n1", s)
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if !holds(mm, "n3", s.ID, name) {
			t.Fatal("released before the session's timeout")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if holds(mm, "n3", s.ID, name) {
			t.Fatal("the expired session still holds its lock at its owner")
		}
		if mm.net.count(peer.Release) < memParts {
			t.Fatalf("%d releases sent; want one per partition", mm.net.count(peer.Release))
		}
	})
}

// A queued wait is withdrawn when its home's connection ends: the client
// behind it can no longer hear of a grant, and must never be handed one.
func TestWaitWithdrawnWhenItsHomeGoes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n1", "n1", "n1"}, "n1")
		defer mm.close()
		o := mm.nodes["n1"].owner
		name := []byte(keyIn("x", 1))
		if res, _, err := mm.nodes["n1"].set.LockAsync("holder", name, 0, nil); err != nil || res.Status != locktable.Granted {
			t.Fatalf("holder: %v %v", res, err)
		}
		conn, hangUp := context.WithCancel(context.Background())
		got := make(chan lockAnswer, 1)
		go func() {
			b, err := call(conn, o.lock, lockPayload(node.SessionRef{ID: "s", Epoch: 1}, name, time.Minute, "home/1"))
			res, _ := decodeResult(b)
			got <- lockAnswer{res, err}
		}()
		synctest.Wait()
		hangUp()
		if a := <-got; a.err != nil || a.res.Status != statusCanceled {
			t.Fatalf("wait after its home went: %+v; want it withdrawn", a)
		}
		if n := mm.nodes["n1"].set.Counts().Waiters; n != 0 {
			t.Fatalf("%d waiters left", n)
		}
	})
}

// A waiting lock is one request to its owner, and its answer is a single
// node's: granted at once (re-entrant if the session held it already),
// refused at once when the lock's queue is full, or queued.
func TestWaitingLockAnswersAsASingleNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2")
		defer mm.close()
		s := attach(t, mm, "n1", keyIn("s", 0))
		waitLock := func(name string) partition.Outcome {
			t.Helper()
			outcome := make(chan partition.Outcome, 1)
			before := mm.net.count(peer.Lock)
			res, w, err := mm.nodes["n1"].home.Lock(context.Background(), s, []byte(name), locktable.Want{}, 10*time.Second, func(o partition.Outcome) { outcome <- o })
			if err != nil || res.Status != locktable.Queued || w == nil {
				t.Fatalf("wait for %s: %v %v %v", name, res, w, err)
			}
			o := <-outcome
			if n := mm.net.count(peer.Lock) - before; n != 1 {
				t.Fatalf("%d lock requests for one waiting lock", n)
			}
			return o
		}
		mine := keyIn("mine", 1)
		if o := waitLock(mine); !o.Granted || o.Reentrant {
			t.Fatalf("a free lock: %+v", o)
		}
		if o := waitLock(mine); !o.Granted || !o.Reentrant {
			t.Fatalf("a lock the session holds: %+v; want a re-entrant grant", o)
		}
		full := keyIn("full", 1)
		set := mm.nodes["n2"].set
		for i := range 11 { // the holder and 10 waiters fill the queue
			if _, _, err := set.LockAsync(keyIn("other", i%memParts)+string(rune('a'+i)), []byte(full), time.Hour, func(partition.Outcome) {}); err != nil {
				t.Fatal(err)
			}
		}
		if o := waitLock(full); !o.Full {
			t.Fatalf("a lock whose queue is full: %+v; want refused as full (429)", o)
		}
		if res, _ := (partition.Outcome{Full: true}).Result(); res.Status != locktable.TooManyWaiters {
			t.Fatalf("a full queue's result: %v", res.Status)
		}
	})
}

// A waiting lock whose owner cannot be reached for its whole wait is not
// told 409: no owner said the lock was held (it is free). It is refused
// as retryable once its time is up, and sends nothing after that (found
// by the fault suite as histories that were not linearizable).
func TestWaitNeverAnsweredIsNotRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2")
		defer mm.close()
		s := attach(t, mm, "n1", keyIn("s", 0))
		name := keyIn("x", 1)
		mm.net.setCut("n2", true)
		outcome := make(chan partition.Outcome, 1)
		if _, _, err := mm.nodes["n1"].home.Lock(context.Background(), s, []byte(name), locktable.Want{}, time.Second, func(o partition.Outcome) { outcome <- o }); err != nil {
			t.Fatal(err)
		}
		o := <-outcome
		if o.Granted || failure.ClassOf(o.Err) != failure.Retryable {
			t.Fatalf("a wait no owner answered: %+v; want refused as retryable, not 409", o)
		}
		sent := mm.net.count(peer.Lock)
		mm.net.setCut("n2", false)
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := mm.net.count(peer.Lock); n != sent || holds(mm, "n2", s.ID, name) {
			t.Fatalf("%d lock requests sent after the wait ended (held %v)", n-sent, holds(mm, "n2", s.ID, name))
		}
	})
}

// A wait whose time ran out after a request went unanswered asks whether
// the session holds the lock: if the lock is free, it is refused as
// retryable, not 409; if another session holds it, 409.
func TestWaitSettledLate(t *testing.T) {
	for _, held := range []bool{false, true} {
		t.Run(fmt.Sprint("held=", held), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2")
				defer mm.close()
				s := attach(t, mm, "n1", keyIn("s", 0))
				name := keyIn("x", 1)
				if held {
					if res, _, err := mm.nodes["n2"].set.LockAsync("other", []byte(name), 0, nil); err != nil || res.Status != locktable.Granted {
						t.Fatalf("holder: %v %v", res, err)
					}
				}
				outcome := make(chan partition.Outcome, 1)
				w := &meshWait{h: mm.nodes["n1"].home, s: s, name: name, deadline: time.Now(), maybe: true,
					done: func(o partition.Outcome) { outcome <- o }}
				w.run(context.Background())
				o := <-outcome
				switch {
				case held && (o.Err != nil || o.Granted):
					t.Fatalf("held by another: %+v; want 409", o)
				case !held && failure.ClassOf(o.Err) != failure.Retryable:
					t.Fatalf("free: %+v; want refused as retryable, not 409", o)
				}
			})
		})
	}
}

// A waiting lock on a partition in its lock-delay is refused at once, as
// a lock without a wait is: the refusal lasts minutes, not a wait's worth.
func TestWaitInLockDelayIsRefusedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2")
		defer mm.close()
		s := attach(t, mm, "n1", keyIn("s", 0))
		mm.table.setDelayed(1, true)
		outcome := make(chan partition.Outcome, 1)
		start := time.Now()
		if _, _, err := mm.nodes["n1"].home.Lock(context.Background(), s, []byte(keyIn("x", 1)), locktable.Want{}, time.Minute, func(o partition.Outcome) { outcome <- o }); err != nil {
			t.Fatal(err)
		}
		o := <-outcome
		if !failure.Is(o.Err, failure.LockDelay) || time.Since(start) > time.Second {
			t.Fatalf("after %v: %+v; want the lock-delay refusal at once", time.Since(start), o)
		}
	})
}

// An expired session's release that arrives after a new session under the
// same id has locked at that owner leaves the new session's locks: the
// ones it was granted, and the ones of the old session it claimed with a
// re-entrant lock (its client was told it holds them). Without the epoch
// bound the late release took both, under a client told it held them.
func TestLateExpiryReleaseSparesANewSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n3", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		old, kept := holdAtN1(t, mm) // kept is in partition 1, at n3
		left := keyIn("y", 1)
		if a := <-lockAsync(mm, "n1", old, left); a.err != nil || a.res.Status != locktable.Granted {
			t.Fatalf("lock %s: %+v", left, a)
		}
		mm.net.hold(peer.Release)
		hangUp(t, mm, "n1", old)
		time.Sleep(11 * time.Second) // the session's timeout: it expires at n2
		synctest.Wait()
		if mm.net.count(peer.Release) == 0 {
			t.Fatal("no release sent for the expired session")
		}
		// A client reuses the id: a new session, which claims one of the
		// old session's locks and takes a new one.
		s := attach(t, mm, "n1", old.ID)
		if s.Epoch <= old.Epoch {
			t.Fatalf("the new session attached at epoch %d, the old one at %d", s.Epoch, old.Epoch)
		}
		fresh := keyIn("z", 1)
		for _, name := range []string{kept, fresh} {
			if a := <-lockAsync(mm, "n1", s, name); a.err != nil || a.res.Status != locktable.Granted {
				t.Fatalf("the new session's lock %s: %+v", name, a)
			}
		}
		mm.net.release(peer.Release) // the old session's release arrives now
		synctest.Wait()
		for _, name := range []string{kept, fresh} {
			if !holds(mm, "n3", s.ID, name) {
				t.Errorf("the late release took %s from the new session", name)
			}
		}
		if holds(mm, "n3", s.ID, left) {
			t.Errorf("the late release left %s, which only the old session held", left)
		}
	})
}

// expireWithReleasesLost has a session attached at n1 take a lock owned
// by n3, and hang up; the session expires at 11 s, with every release
// held back. It returns at 12.5 s (under synctest), between the sweeps at
// 10 s and 15 s, with the session and the name still held.
func expireWithReleasesLost(t *testing.T, mm *memMesh) (node.SessionRef, string) {
	t.Helper()
	s, name := holdAtN1(t, mm)
	mm.net.hold(peer.Release) // lost, as far as these tests go
	time.Sleep(time.Second)
	hangUp(t, mm, "n1", s)
	time.Sleep(11*time.Second + time.Second/2)
	synctest.Wait()
	if !holds(mm, "n3", s.ID, name) {
		t.Fatal("released although every release was held back")
	}
	return s, name
}

// When an expired session's releases never arrive, the lock owners' sweep
// asks the session owner, hears that the session is gone (with the bound
// of its epochs), and releases its locks, but not a floor above that
// bound, which a newer session under the id set (found by review).
func TestSweepReleasesAnEndedSessionsLocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n3", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s, name := expireWithReleasesLost(t, mm)
		// A newer session under the id, attached after the session owner's
		// answer, was resumed and fenced its old homes here: the sweep
		// keeps that floor.
		o := mm.nodes["n3"].owner
		newer := uint64(1) << 60
		o.mu.Lock()
		o.floors[s.ID] = newer
		o.mu.Unlock()
		time.Sleep(3 * time.Second) // the sweep at 15 s
		synctest.Wait()
		if holds(mm, "n3", s.ID, name) {
			t.Fatal("the sweep left the ended session's lock")
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.floors[s.ID] != newer {
			t.Fatalf("the sweep dropped a newer session's floor (now %d)", o.floors[s.ID])
		}
	})
}

// A session that expired while its release was lost, and whose id a new
// session took before the sweep came: the sweep releases what the ended
// session left (the new one never took it, and would otherwise keep it
// for as long as it lives) and keeps what the new session took.
func TestSweepReleasesLeftoversUnderAReusedID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n3", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s, name := expireWithReleasesLost(t, mm)
		again := attach(t, mm, "n2", s.ID)
		if again.Epoch <= s.Epoch {
			t.Fatalf("new session at epoch %d after %d", again.Epoch, s.Epoch)
		}
		if n, _ := mm.nodes["n2"].home.HeldBy(context.Background(), again); n != 0 {
			t.Fatal("the new session was told it holds the ended one's lock")
		}
		other := keyIn("y", 1)
		if a := <-lockAsync(mm, "n2", again, other); a.err != nil || a.res.Status != locktable.Granted {
			t.Fatalf("the new session's lock: %+v", a)
		}
		time.Sleep(3 * time.Second) // the sweep at 15 s
		synctest.Wait()
		if holds(mm, "n3", s.ID, name) {
			t.Fatal("the sweep left the ended session's lock under the reused id")
		}
		if !holds(mm, "n3", s.ID, other) {
			t.Fatal("the sweep released the new session's lock")
		}
	})
}

// A new session under an expired session's id, before any release or
// sweep has reached the lock the old one left: it is not told it holds
// it (token, info, a resume's listing), and a lock of the name gets a
// grant of its own under a new token, not the old grant
// (found by review: the sweep would otherwise take back a lock token had
// told the new session it held).
func TestANewSessionUnderAReusedIDIsNotTheOldOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n3", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s, name := expireWithReleasesLost(t, mm)
		oldTok, _, err := mm.nodes["n3"].set.Token(s.ID, []byte(name))
		if err != nil {
			t.Fatal(err)
		}
		again := attach(t, mm, "n2", s.ID)
		if again.Born != again.Epoch || again.Born <= s.Epoch {
			t.Fatalf("new session born at %d, attached at %d, after %d", again.Born, again.Epoch, s.Epoch)
		}
		ctx := context.Background()
		if _, st, err := mm.nodes["n2"].home.Token(ctx, again, []byte(name)); err != nil || st != locktable.NotYours {
			t.Fatalf("token of the old session's lock: %v %v; want not yours", st, err)
		}
		if in, err := mm.nodes["n2"].home.Info(ctx, again, []byte(name)); err != nil || !in.Held || in.Mine {
			t.Fatalf("info of the old session's lock: %+v %v; want held, not mine", in, err)
		}
		// Resumed at n1: the listing leaves the old session's lock out.
		hangUp(t, mm, "n2", again)
		resumed := attach(t, mm, "n1", s.ID)
		if resumed.Born != again.Born {
			t.Fatalf("resumed with born %d; want %d", resumed.Born, again.Born)
		}
		if n, _ := mm.nodes["n1"].home.HeldBy(ctx, resumed); n != 0 {
			t.Fatalf("the resume listed %d locks; want none", n)
		}
		a := <-lockAsync(mm, "n1", resumed, name)
		if a.err != nil || a.res.Status != locktable.Granted || a.res.Reentrant || a.res.Token <= oldTok {
			t.Fatalf("lock after the old session: %+v; want a new grant above token %d", a, oldTok)
		}
	})
}

// An unlock the network held back from the home of a session that then
// expired reaches the owner after a new session under the id has locked
// the name: it is refused, and the new session keeps its lock (the
// lock's epoch, from the new session's request, is above the unlock's).
func TestALateUnlockOfAnEndedSessionSparesTheNewOnesLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n3", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s, name := holdAtN1(t, mm)
		mm.net.hold(peer.Unlock)
		go mm.nodes["n1"].home.Unlock(context.Background(), s, []byte(name)) // its answer is unknown to the client
		synctest.Wait()
		hangUp(t, mm, "n1", s)
		time.Sleep(15 * time.Second) // expired at 10 s, its locks released
		synctest.Wait()
		again := attach(t, mm, "n2", s.ID)
		if a := <-lockAsync(mm, "n2", again, name); a.err != nil || a.res.Status != locktable.Granted {
			t.Fatalf("the new session's lock: %+v", a)
		}
		mm.net.release(peer.Unlock)
		synctest.Wait()
		if !holds(mm, "n3", s.ID, name) {
			t.Fatal("the ended session's late unlock freed the new session's lock")
		}
	})
}

// An unlock_all that the network held back on its way from a session's
// old home, arriving after the session was resumed elsewhere, leaves the
// locks the resume told the client it holds (found by review: the
// resume's listing did not raise their epoch).
func TestLateUnlockAllAfterResumeKeepsWhatTheResumeListed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n3", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s, name := holdAtN1(t, mm)
		mm.net.hold(peer.Release)
		go mm.nodes["n1"].home.UnlockAll(context.Background(), s) // its answer is unknown to the client
		synctest.Wait()
		// The client reconnects to n2 and resumes; n1 says its connection
		// is gone.
		mm.nodes["n1"].clients.setLive(s.ID, false)
		r := attach(t, mm, "n2", s.ID)
		if r.Epoch <= s.Epoch {
			t.Fatalf("resumed at epoch %d after %d", r.Epoch, s.Epoch)
		}
		if !holds(mm, "n3", s.ID, name) {
			t.Fatal("the lock was gone before the old unlock_all arrived")
		}
		mm.net.release(peer.Release)
		synctest.Wait()
		if !holds(mm, "n3", s.ID, name) {
			t.Fatal("the old home's late unlock_all took a lock the resumed client was told it holds")
		}
	})
}

// A session owner records no timeout above the mesh's maximum, whoever
// asks: the lock-delay after a double failure is sized by that maximum,
// and a session that could outlive it would break the delay's promise.
// The client-facing server checks the same bound first; this is the
// check for a request that did not come through it.
func TestASessionOwnerRefusesATimeoutAboveTheMaximum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n1", "n1", "n1"}, "n1")
		defer mm.close()
		s := attach(t, mm, "n1", "s")
		so := mm.nodes["n1"].sessOwner
		for _, d := range []time.Duration{node.DefaultMaxTimeout + time.Millisecond, 1 << 62, -time.Second} {
			var e peer.Enc
			e.Str(s.ID)
			e.Int(int64(d))
			if _, err := so.setTimeout(context.Background(), e.B); failure.ClassOf(err) != failure.Definite {
				t.Errorf("a timeout of %v: %v, want a definite refusal", d, err)
			}
			if rec, ok, _ := mm.nodes["n1"].set.Session(s.ID); !ok || rec.Timeout == d {
				t.Errorf("a timeout of %v was recorded (%v, %v)", d, rec.Timeout, ok)
			}
		}
		var e peer.Enc
		e.Str(s.ID)
		e.Int(int64(node.DefaultMaxTimeout))
		if _, err := so.setTimeout(context.Background(), e.B); err != nil {
			t.Fatalf("the maximum itself: %v", err)
		}
	})
}

// A resume fences the session's older homes on every lock owner, holding
// a lock there or not. Once the session has ended, the owners' sweep
// forgets those floors: kept, they would grow with every resume for the
// node's life.
func TestSweepForgetsTheFloorsOfEndedSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n2", "n3", "n2", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s := attach(t, mm, "n1", "s")
		mm.nodes["n1"].clients.setLive(s.ID, false)
		if err := mm.nodes["n1"].home.Detach(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		s = attach(t, mm, "n1", s.ID)
		floors := func() (n int) {
			for _, id := range []string{"n2", "n3"} {
				o := mm.nodes[id].owner
				o.mu.Lock()
				if _, ok := o.floors[s.ID]; ok {
					n++
				}
				o.mu.Unlock()
			}
			return n
		}
		if floors() == 0 {
			t.Fatal("the resume raised no floor: nothing to forget")
		}
		hangUp(t, mm, "n1", s)
		// The session times out after 10 s; the sweeps run every 5 s.
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n := floors(); n != 0 {
			t.Fatalf("%d owners still keep the floor of a session that ended", n)
		}
	})
}

// A session owner takes a session's attach, detach, renewal and timeout
// only from the node of its home: another node of the mesh, whose
// certificate names it, may not attach a session for a home it is not,
// nor detach, keep attached or change the timeout of a session attached
// elsewhere.
func TestASessionOwnerHearsOnlyTheSessionsHome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n1", "n1", "n1"}, "n1", "n2")
		defer mm.close()
		s := attach(t, mm, "n2", "s")
		so := mm.nodes["n1"].sessOwner
		rec, ok, _ := mm.nodes["n1"].set.Session(s.ID)
		if !ok || homeNode(rec.Home) != "n2" {
			t.Fatalf("record %+v %v, want one attached at n2", rec, ok)
		}
		asN1 := peer.WithCaller(context.Background(), "n1")
		asN2 := peer.WithCaller(context.Background(), "n2")

		var e peer.Enc
		e.Str("other")
		e.Str(rec.Home) // n2's home name, claimed by n1
		e.Bool(false)
		if _, err := so.attach(asN1, e.B); !errors.Is(err, errNotTheHome) {
			t.Errorf("n1 attaching for n2's home: %v", err)
		}
		if _, ok, _ := mm.nodes["n1"].set.Session("other"); ok {
			t.Error("a record was made for a home that did not ask")
		}

		var r peer.Enc
		r.Uint(1)
		r.Str(s.ID)
		r.Uint(s.Epoch)
		for _, c := range []struct {
			who    string
			caller context.Context
			want   uint64
		}{{"n1", asN1, renewFenced}, {"n2", asN2, renewOK}} {
			b, err := so.renew(c.caller, r.B)
			d := peer.Dec{B: b}
			if got := d.Uint(); err != nil || got != c.want {
				t.Errorf("renew from %s: %d %v, want %d", c.who, got, err, c.want)
			}
		}

		var st peer.Enc
		st.Str(s.ID)
		st.Int(int64(time.Minute))
		if _, err := so.setTimeout(asN1, st.B); !errors.Is(err, errNotTheHome) {
			t.Errorf("n1 setting the timeout of n2's session: %v", err)
		}
		if _, err := so.setTimeout(asN2, st.B); err != nil {
			t.Errorf("its home setting the timeout: %v", err)
		}

		var dt peer.Enc
		dt.Str(s.ID)
		dt.Uint(s.Epoch)
		if _, err := so.detach(asN1, dt.B); !errors.Is(err, errNotTheHome) {
			t.Errorf("n1 detaching n2's session: %v", err)
		}
		if rec, _, _ := mm.nodes["n1"].set.Session(s.ID); !rec.Attached {
			t.Fatal("detached by a node that is not its home")
		}
		if _, err := so.detach(asN2, dt.B); err != nil {
			t.Errorf("its home detaching it: %v", err)
		}
	})
}

// stateTable is a Table that never changes.
type stateTable struct{ st *replication.State }

func (t stateTable) State() *replication.State { return t.st }
func (t stateTable) Changed() <-chan struct{}  { return nil }

// A node admits peer connections from the nodes its table registered,
// by the names of their certificates; before it has a table, from any
// node of the CA.
func TestPeersAdmittedByTheTable(t *testing.T) {
	none := admitted(stateTable{&replication.State{}})
	if !none([]string{"stranger"}) {
		t.Error("no table yet: a node of the CA was refused")
	}
	st := &replication.State{Parts: make([]replication.Part, 1), Nodes: map[string]replication.Node{"n1": {ID: "n1"}}}
	admit := admitted(stateTable{st})
	if !admit([]string{"n1", "10.0.0.1"}) {
		t.Error("a registered node was refused")
	}
	if admit([]string{"n9", "10.0.0.1"}) || admit(nil) {
		t.Error("a node the table does not know was admitted")
	}
}

// A waiting request that its owner refuses for what it asks (no upgrade,
// a kind or limit mismatch) is answered with that refusal, not as a wait
// that ran out: asking again could never change it.
func TestAWaitRefusedForWhatItAsksSaysWhy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2", "n3")
		defer mm.close()
		s := attach(t, mm, "n1", keyIn("s", 0))
		doc, pool := keyIn("x", 1), keyIn("y", 1) // owned by n2
		shared := locktable.Want{Mode: locktable.Shared}
		permit := locktable.Want{Mode: locktable.Permit, Limit: 2}
		for name, want := range map[string]locktable.Want{doc: shared, pool: permit} {
			if res, _, err := mm.nodes["n1"].home.Lock(context.Background(), s, []byte(name), want, 0, nil); err != nil || res.Status != locktable.Granted {
				t.Fatalf("take %s: %+v %v", name, res, err)
			}
		}
		for _, c := range []struct {
			name string
			want locktable.Want
			res  locktable.Result
		}{
			{doc, locktable.Want{}, locktable.Result{Status: locktable.NoUpgrade}},
			{doc, permit, locktable.Result{Status: locktable.KindMismatch, Kind: locktable.KindLock}},
			{pool, shared, locktable.Result{Status: locktable.KindMismatch, Kind: locktable.KindSemaphore}},
			{pool, locktable.Want{Mode: locktable.Permit, Limit: 3}, locktable.Result{Status: locktable.LimitMismatch, Limit: 2}},
		} {
			outcome := make(chan partition.Outcome, 1)
			res, w, err := mm.nodes["n1"].home.Lock(context.Background(), s, []byte(c.name), c.want, 10*time.Second, func(o partition.Outcome) { outcome <- o })
			if err != nil || res.Status != locktable.Queued || w == nil {
				t.Fatalf("%+v on %s: %+v %v", c.want, c.name, res, err)
			}
			o := <-outcome
			if got, err := o.Result(); err != nil || got != c.res {
				t.Errorf("%+v on %s while holding it: %+v %v, want %+v", c.want, c.name, got, err, c.res)
			}
		}
	})
}
