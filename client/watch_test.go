package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/elock/elock/client"
	"github.com/elock/elock/testcluster/wait"
)

// eventLimit bounds each wait for an event.
const eventLimit = 10 * time.Second

// watchReader reads one watch's channel, checking that tokens never go
// back.
type watchReader struct {
	t    *testing.T
	ch   <-chan client.Event
	last client.Event
	n    int
}

// until reads events until one satisfies ok and returns it; intermediate
// states may have been coalesced away, so it skips what does not match.
func (r *watchReader) until(what string, ok func(client.Event) bool) client.Event {
	r.t.Helper()
	deadline := time.NewTimer(eventLimit)
	defer deadline.Stop()
	for {
		select {
		case ev, open := <-r.ch:
			if !open {
				r.t.Fatalf("watch closed while waiting for %s (last %v)", what, r.last)
			}
			if r.n > 0 && ev.Token < r.last.Token {
				r.t.Fatalf("token went back: %v after %v", ev, r.last)
			}
			r.last, r.n = ev, r.n+1
			if ok(ev) {
				return ev
			}
		case <-deadline.C:
			r.t.Fatalf("no event %s within %v (last %v)", what, eventLimit, r.last)
		}
	}
}

func (r *watchReader) state(s client.State, tok uint64, value string, holders int) {
	r.t.Helper()
	want := client.Event{Name: r.last.Name, State: s, Token: tok, Value: value, Holders: holders}
	r.until(want.String(), func(ev client.Event) bool {
		want.Name = ev.Name
		return ev == want
	})
}

func watch(t *testing.T, ctx context.Context, c *client.Client, name string) *watchReader {
	t.Helper()
	ch, err := c.Watch(ctx, name)
	if err != nil {
		t.Fatalf("Watch %s: %v", name, err)
	}
	return &watchReader{t: t, ch: ch}
}

// TestWatch: the current state at once, then every change made by other
// clients: a lock, an election, shared holders, and free again.
func TestWatch(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	w := dial(t, []string{srv.addr})
	a := dial(t, []string{srv.addr})
	b := dial(t, []string{srv.addr})

	r := watch(t, ctx, w, "svc")
	r.state(client.Free, 0, "", 0)

	ta, err := a.Lock(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	r.state(client.Held, ta, "", 0)
	if err := a.Unlock(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	r.state(client.Free, ta, "", 0)

	tb, err := b.Campaign(ctx, "svc", "host-b")
	if err != nil {
		t.Fatal(err)
	}
	r.state(client.Held, tb, "host-b", 0)
	if err := b.Proclaim(ctx, "svc", "host-b2"); err != nil {
		t.Fatal(err)
	}
	r.state(client.Held, tb, "host-b2", 0)
	if err := b.Resign(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	r.state(client.Free, tb, "", 0)

	if _, err := a.RLock(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	t2, err := b.RLock(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	r.state(client.Shared, t2, "", 2)

	// A second watch of the name by the same client shares the server's
	// watch, and still gets the current state at once.
	r2 := watch(t, ctx, w, "svc")
	r2.state(client.Shared, t2, "", 2)
}

// TestWatchWhileLockWaits: a watch's events arrive while a Lock of the
// same client waits on the server.
func TestWatchWhileLockWaits(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	w := dial(t, []string{srv.addr})
	o := dial(t, []string{srv.addr})
	a := dial(t, []string{srv.addr})

	r := watch(t, ctx, w, "news")
	r.state(client.Free, 0, "", 0)
	if _, err := o.Lock(ctx, "busy"); err != nil {
		t.Fatal(err)
	}
	lc := async(func() (uint64, error) { return w.Lock(ctx, "busy") })
	queued(t, ctx, o, "busy", 1)

	ta, err := a.Campaign(ctx, "news", "v1")
	if err != nil {
		t.Fatal(err)
	}
	r.state(client.Held, ta, "v1", 0)
	pending(t, lc, "Lock of a held name")

	if err := o.Unlock(ctx, "busy"); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-lc:
		if res.err != nil {
			t.Fatal(res.err)
		}
	case <-ctx.Done():
		t.Fatal("the waiting Lock never returned")
	}
}

// TestWatchResume: after the connection breaks, the client watches
// again, and the new connection's events arrive.
func TestWatchResume(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	w := dial(t, []string{srv.addr})
	a := dial(t, []string{srv.addr})

	r := watch(t, ctx, w, "svc")
	r.state(client.Free, 0, "", 0)
	before := srv.ln.count()
	srv.ln.killAll()
	// a was cut too; wait until both are back, so that the lock below is
	// made after w watches again.
	wait.For(t, eventLimit, "both clients to reconnect", func() bool { return srv.ln.count() >= before+2 })
	if _, err := w.Token(ctx, "svc"); err != client.ErrNotLocked {
		t.Fatalf("Token after reconnect = %v, want ErrNotLocked", err)
	}
	ta, err := a.Lock(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	r.state(client.Held, ta, "", 0)
}

// TestWatchCancel: the channel closes when ctx ends and when the Client
// closes; a new watch of the name works after the cancel.
func TestWatchCancel(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	w := dial(t, []string{srv.addr})
	a := dial(t, []string{srv.addr})

	wctx, cancel := context.WithCancel(ctx)
	r := watch(t, wctx, w, "svc")
	r.state(client.Free, 0, "", 0)
	cancel()
	closed(t, r.ch)

	ta, err := a.Lock(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	r = watch(t, ctx, w, "svc")
	r.state(client.Held, ta, "", 0)

	w.Close()
	closed(t, r.ch)
}

func closed(t *testing.T, ch <-chan client.Event) {
	t.Helper()
	deadline := time.NewTimer(eventLimit)
	defer deadline.Stop()
	for {
		select {
		case _, open := <-ch:
			if !open {
				return
			}
		case <-deadline.C:
			t.Fatal("the watch channel was not closed")
		}
	}
}

// TestWatchSlowReader: events for a reader that does not read coalesce
// to the newest; they never hold up the client's calls.
func TestWatchSlowReader(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	w := dial(t, []string{srv.addr})
	a := dial(t, []string{srv.addr})

	ch, err := w.Watch(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := 0; i < 200; i++ {
		if last, err = a.Lock(ctx, "svc"); err != nil {
			t.Fatal(err)
		}
		if err := a.Unlock(ctx, "svc"); err != nil {
			t.Fatal(err)
		}
		// The watching client's own calls go on while nobody reads.
		if i%50 == 0 {
			if _, err := w.Token(ctx, "svc"); err != client.ErrNotLocked {
				t.Fatalf("Token while events pile up = %v", err)
			}
		}
	}
	r := &watchReader{t: t, ch: ch}
	r.until("the newest state", func(ev client.Event) bool {
		return ev.State == client.Free && ev.Token == last
	})
	if r.n > 10 {
		t.Fatalf("%d events reached a reader that read none of 400 changes; want them coalesced", r.n)
	}
}
