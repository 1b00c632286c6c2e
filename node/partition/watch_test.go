package partition

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
)

// watchLog keeps what a watcher was told, in arrival order.
type watchLog struct {
	mu  sync.Mutex
	evs []WatchEvent
}

func (w *watchLog) tell(e WatchEvent) {
	w.mu.Lock()
	w.evs = append(w.evs, e)
	w.mu.Unlock()
}

// latest is the event with the highest Seq.
func (w *watchLog) latest() WatchEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var best WatchEvent
	for _, e := range w.evs {
		if e.Seq > best.Seq {
			best = e
		}
	}
	return best
}

// last is the latest event, rendered.
func (w *watchLog) last() string { return render(w.latest()) }

func render(e WatchEvent) string {
	st := e.State
	switch {
	case st.Free:
		return fmt.Sprintf("free %d", e.Last)
	case st.Mode == locktable.Exclusive:
		return fmt.Sprintf("held %d %q", st.Token, st.Value)
	}
	return fmt.Sprintf("shared %d %d", st.Holders, st.Token)
}

// A watcher is told the state at once and after every change, by every
// path that changes it: grants, releases, hand-overs, proclaims, a
// waiter's timeout that lets readers in, a session's release; and no
// longer once it stops.
func TestWatchTellsEveryChange(t *testing.T) {
	s := newSet(t, time.Minute)
	for _, id := range []string{"a", "b", "c"} {
		attach(t, s, id)
	}
	var w watchLog
	stop, err := s.Watch([]byte("x"), "", w.tell)
	if err != nil {
		t.Fatal(err)
	}
	step := func(what, want string) {
		t.Helper()
		if got := w.last(); got != want {
			t.Fatalf("after %s: told %s, want %s", what, got, want)
		}
	}
	step("watch", "free 0")
	res, _, err := s.LockAs(Asker{Session: "a"}, []byte("x"), locktable.Want{Value: "host-a"}, 0, nil)
	if err != nil || res.Status != locktable.Granted {
		t.Fatal(res, err)
	}
	t1 := res.Token
	step("campaign", fmt.Sprintf("held %d %q", t1, "host-a"))
	if _, err := s.ProclaimAs(Asker{Session: "a"}, []byte("x"), "host-a2"); err != nil {
		t.Fatal(err)
	}
	step("proclaim", fmt.Sprintf("held %d %q", t1, "host-a2"))
	if _, err := s.Unlock("a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	step("resign", fmt.Sprintf("free %d", t1))
	shared := locktable.Want{Mode: locktable.Shared}
	r1, _, _ := s.LockAs(Asker{Session: "a"}, []byte("x"), shared, 0, nil)
	r2, _, _ := s.LockAs(Asker{Session: "b"}, []byte("x"), shared, 0, nil)
	step("two readers", fmt.Sprintf("shared 2 %d", r2.Token))
	// A writer waits; a reader behind it; the writer times out and the
	// reader joins the others.
	done := make(chan Outcome, 2)
	if _, wt, err := s.LockAs(Asker{Session: "c"}, []byte("x"), locktable.Want{}, 50*time.Millisecond, func(o Outcome) { done <- o }); err != nil || wt == nil {
		t.Fatal("writer not queued", err)
	}
	var r3 locktable.Result
	if _, wt, err := s.LockAs(Asker{Session: "c"}, []byte("x"), shared, time.Minute, func(o Outcome) { done <- o }); err != nil || wt == nil {
		t.Fatal("reader not queued", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		select {
		case o := <-done:
			if o.Granted {
				r3 = locktable.Result{Token: o.Token}
			}
		case <-ctx.Done():
			t.Fatal("no outcome")
		}
	}
	step("the writer's timeout", fmt.Sprintf("shared 3 %d", r3.Token))
	if _, err := s.ReleaseSession("c"); err != nil {
		t.Fatal(err)
	}
	step("a reader's session released", fmt.Sprintf("shared 2 %d", r2.Token))
	if r1.Token >= r2.Token {
		t.Fatalf("reader tokens %d, %d", r1.Token, r2.Token)
	}
	stop()
	w.mu.Lock()
	n := len(w.evs)
	w.mu.Unlock()
	s.Unlock("a", []byte("x"))
	s.Unlock("b", []byte("x"))
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.evs) != n {
		t.Fatalf("told %d events after stop", len(w.evs)-n)
	}
	// Seq only grows in the order events were made.
	for i := 1; i < len(w.evs); i++ {
		if w.evs[i].Seq <= w.evs[i-1].Seq {
			t.Fatalf("events %d and %d: seq %d then %d", i-1, i, w.evs[i-1].Seq, w.evs[i].Seq)
		}
	}
}

// A session's watch tells the token of the session's own grant: it stays
// while other readers come and go, and turns 0 when the session's shared
// grant is released by another path than the watcher's (here, the
// session's release), though the name stays shared.
func TestWatchTellsTheSessionsGrant(t *testing.T) {
	s := newSet(t, time.Minute)
	for _, id := range []string{"a", "b", "c"} {
		attach(t, s, id)
	}
	shared := locktable.Want{Mode: locktable.Shared}
	ra, _, err := s.LockAs(Asker{Session: "a"}, []byte("x"), shared, 0, nil)
	if err != nil || ra.Status != locktable.Granted {
		t.Fatal(ra, err)
	}
	var mine, none watchLog
	stop, err := s.Watch([]byte("x"), "a", mine.tell)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	stop2, err := s.Watch([]byte("x"), "", none.tell)
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	if got := mine.latest().Mine; got != ra.Token {
		t.Fatalf("at once: mine %d, want %d", got, ra.Token)
	}
	for _, id := range []string{"b", "c"} {
		if r, _, err := s.LockAs(Asker{Session: id}, []byte("x"), shared, 0, nil); err != nil || r.Status != locktable.Granted {
			t.Fatal(r, err)
		}
	}
	if _, err := s.Unlock("b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if e := mine.latest(); e.Mine != ra.Token || e.State.Holders != 2 {
		t.Fatalf("after another reader left: %+v", e)
	}
	if _, err := s.ReleaseSession("a"); err != nil {
		t.Fatal(err)
	}
	if e := mine.latest(); e.Mine != 0 || e.State.Holders != 1 || e.State.Free {
		t.Fatalf("after the session's release: %+v", e)
	}
	none.mu.Lock()
	defer none.mu.Unlock()
	for _, e := range none.evs {
		if e.Mine != 0 || e.IsRisk() {
			t.Fatalf("a watch of no session was told %+v", e)
		}
	}
}
