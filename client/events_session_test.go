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
