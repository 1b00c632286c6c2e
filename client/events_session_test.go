package client_test

import (
	"testing"
	"time"

	"github.com/elock/elock/client"
)

// A client with WithEvents hears when someone starts waiting for a
// name it holds, on the same connection as its replies.
func TestSessionEventsWanted(t *testing.T) {
	srv := startServer(t)
	ch := make(chan client.SessionEvent, 16)
	h := dial(t, []string{srv.addr}, client.WithEvents(ch))
	w := dial(t, []string{srv.addr})
	ctx := testCtx(t)
	if _, err := h.Lock(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := w.Lock(ctx, "job")
		got <- err
	}()
	select {
	case ev := <-ch:
		if ev != (client.SessionEvent{Kind: client.Wanted, Name: "job", Waiters: 1}) {
			t.Fatalf("event %+v, want wanted job 1", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no wanted event within 10 s")
	}
	// The holder's own calls go on, and it lets go.
	if err := h.Unlock(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the waiter: %v", err)
	}
}

// A server's "EVENT lost" for a grant the client holds reaches the
// WithOnLost handler and forgets the grant; one for a grant it does not
// hold (another token) is passed on only. A jeopardy told on a connection
// that then broke is followed by Safe once a new connection resumed.
func TestSessionEventsLostAndSafeAfterAReconnect(t *testing.T) {
	f := startFake(t, map[string][][]string{
		"events on":   {{"200 events on", "EVENT session jeopardy"}, {"200 events on"}},
		"lock job":    {{"200 Acquired"}},
		"token job":   {{"200 7"}},
		"lock pool":   {{"200 Acquired"}},
		"token pool":  {{"200 9"}},
		"unlock x":    {{"EVENT lost pool 8", "EVENT lost job 7", "403 not_locked"}},
		"token other": {{"403 not_locked"}},
	})
	ch := make(chan client.SessionEvent, 16)
	var lost lostRecorder
	c := dial(t, []string{f.addr()}, client.WithEvents(ch), client.WithOnLost(lost.record))
	ctx := testCtx(t)
	for _, name := range []string{"job", "pool"} {
		if _, err := c.TryLock(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Unlock(ctx, "x"); err == nil {
		t.Fatal("unlock x: want an error")
	}
	next := func(want client.SessionEvent) {
		t.Helper()
		select {
		case ev := <-ch:
			if ev != want {
				t.Fatalf("event %+v, want %+v; the server saw %q", ev, want, f.seenLines())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %+v within 10 s", want)
		}
	}
	next(client.SessionEvent{Kind: client.Jeopardy})
	next(client.SessionEvent{Kind: client.Lost, Name: "pool", Token: 8})
	next(client.SessionEvent{Kind: client.Lost, Name: "job", Token: 7})
	wait := time.Now().Add(10 * time.Second)
	for len(lost.get()) == 0 && time.Now().Before(wait) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := lost.names(t, client.ErrLockLost); len(got) != 1 || !got["job"] {
		t.Fatalf("reported lost %v, want job only", got)
	}
	if held := c.Held(); held["job"] != 0 || held["pool"] != 9 {
		t.Fatalf("held %v after the loss of job", held)
	}
	f.mu.Lock()
	for cn := range f.conns {
		cn.Close()
	}
	f.mu.Unlock()
	if _, err := c.Token(ctx, "other"); err == nil {
		t.Fatal("token other: want an error")
	}
	next(client.SessionEvent{Kind: client.Safe})
}
