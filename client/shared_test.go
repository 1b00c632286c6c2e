package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/elock/elock/client"
	"github.com/elock/elock/testcluster/wait"
)

// result is what a call that waits in the background returns.
type result struct {
	tok uint64
	err error
}

// async runs call in the background.
func async(call func() (uint64, error)) chan result {
	ch := make(chan result, 1)
	go func() {
		tok, err := call()
		ch <- result{tok, err}
	}()
	return ch
}

// pending fails the test if ch has delivered.
func pending(t *testing.T, ch chan result, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned while it should wait: %+v", what, r)
	default:
	}
}

// queued waits until info of name, asked by c, shows n waiters.
func queued(t *testing.T, ctx context.Context, c *client.Client, name string, n int) {
	t.Helper()
	wait.For(t, 10*time.Second, "the queue to reach its length", func() bool {
		in, err := c.Info(ctx, name)
		return err == nil && in.Waiters == n
	})
}

// TestRLock: readers share a name; a writer waits for all of them and
// holds back the readers that come after it; tokens grow across modes.
func TestRLock(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	r1 := dial(t, []string{srv.addr})
	r2 := dial(t, []string{srv.addr})
	w := dial(t, []string{srv.addr})
	r3 := dial(t, []string{srv.addr})

	t1, err := r1.RLock(ctx, "rw")
	if err != nil {
		t.Fatal(err)
	}
	t2, err := r2.TryRLock(ctx, "rw")
	if err != nil || t2 <= t1 {
		t.Fatalf("second reader's TryRLock = %d, %v; want a token above %d", t2, err, t1)
	}
	if got, err := r1.Token(ctx, "rw"); err != nil || got != t1 {
		t.Fatalf("r1's Token = %d, %v; want %d", got, err, t1)
	}
	if got, err := r1.RLock(ctx, "rw"); err != nil || got != t1 {
		t.Fatalf("re-entrant RLock = %d, %v; want %d", got, err, t1)
	}
	in, err := r1.Info(ctx, "rw")
	if err != nil || !in.Held || !in.Mine || in.Kind != client.KindLock || in.Mode != client.ModeShared || in.Holders != 2 || in.Limit != 0 {
		t.Fatalf("Info of a name held shared = %+v, %v", in, err)
	}
	if _, err := w.TryLock(ctx, "rw"); err != client.ErrUnavailable {
		t.Fatalf("TryLock of a name held shared = %v, want ErrUnavailable", err)
	}
	wc := async(func() (uint64, error) { return w.Lock(ctx, "rw") })
	queued(t, ctx, r1, "rw", 1)
	// FIFO: the waiting writer holds back a later reader.
	if _, err := r3.TryRLock(ctx, "rw"); err != client.ErrUnavailable {
		t.Fatalf("TryRLock behind a waiting writer = %v, want ErrUnavailable", err)
	}
	rc := async(func() (uint64, error) { return r3.RLock(ctx, "rw") })
	queued(t, ctx, r1, "rw", 2)
	if err := r1.Unlock(ctx, "rw"); err != nil {
		t.Fatal(err)
	}
	// Asked by r2: w's calls wait behind its Lock.
	if in, err := r2.Info(ctx, "rw"); err != nil || in.Mode != client.ModeShared || in.Holders != 1 || in.Waiters != 2 {
		t.Fatalf("Info with one reader left = %+v, %v; the writer must still wait", in, err)
	}
	pending(t, wc, "the writer's Lock while r2 reads")
	if err := r2.Unlock(ctx, "rw"); err != nil {
		t.Fatal(err)
	}
	rw := <-wc
	if rw.err != nil || rw.tok <= t2 {
		t.Fatalf("writer's Lock = %+v; want a token above %d", rw, t2)
	}
	if in, err := w.Info(ctx, "rw"); err != nil || in.Mode != client.ModeExclusive || in.Holders != 1 || in.Waiters != 1 {
		t.Fatalf("Info of a name held exclusively = %+v, %v", in, err)
	}
	pending(t, rc, "r3's RLock while the writer holds the lock")
	// An exclusive hold covers a shared request of the same session.
	if got, err := w.RLock(ctx, "rw"); err != nil || got != rw.tok {
		t.Fatalf("RLock under the session's own Lock = %d, %v; want %d", got, err, rw.tok)
	}
	if err := w.Unlock(ctx, "rw"); err != nil {
		t.Fatal(err)
	}
	if r := <-rc; r.err != nil || r.tok <= rw.tok {
		t.Fatalf("r3's RLock = %+v; want a token above %d", r, rw.tok)
	}
	if len(w.Held()) != 0 || len(r1.Held()) != 0 || r3.Held()["rw"] == 0 {
		t.Fatalf("Held: w %v, r1 %v, r3 %v", w.Held(), r1.Held(), r3.Held())
	}
}

// TestRLockNoUpgrade: a session that holds a name shared cannot take it
// exclusively; it keeps its shared grant.
func TestRLockNoUpgrade(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	c := dial(t, []string{srv.addr})
	tok, err := c.RLock(ctx, "up")
	if err != nil {
		t.Fatal(err)
	}
	var se *client.ServerError
	for what, call := range map[string]func() error{
		"Lock":    func() error { _, err := c.Lock(ctx, "up"); return err },
		"TryLock": func() error { _, err := c.TryLock(ctx, "up"); return err },
	} {
		if err := call(); !errors.Is(err, client.ErrNoUpgrade) || !errors.As(err, &se) || se.Code != 400 {
			t.Fatalf("%s of a name held shared = %v, want ErrNoUpgrade in a ServerError 400", what, err)
		}
	}
	if got, err := c.Token(ctx, "up"); err != nil || got != tok || c.Held()["up"] != tok {
		t.Fatalf("after the refusals: Token %d, %v, Held %v; want %d", got, err, c.Held(), tok)
	}
}

// TestSemaphore: at most LIMIT sessions hold permits; a waiter gets the
// first permit given back; the limit and the kind are the semaphore's.
func TestSemaphore(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a := dial(t, []string{srv.addr})
	b := dial(t, []string{srv.addr})
	c := dial(t, []string{srv.addr})
	d := dial(t, []string{srv.addr})

	ta, err := a.Acquire(ctx, "pool", 2)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.TryAcquire(ctx, "pool", 2)
	if err != nil || tb <= ta {
		t.Fatalf("b's TryAcquire = %d, %v; want a token above %d", tb, err, ta)
	}
	if got, err := a.Acquire(ctx, "pool", 2); err != nil || got != ta {
		t.Fatalf("re-entrant Acquire = %d, %v; want %d", got, err, ta)
	}
	if got, err := b.Token(ctx, "pool"); err != nil || got != tb {
		t.Fatalf("b's Token = %d, %v; want %d", got, err, tb)
	}
	in, err := d.Info(ctx, "pool")
	if err != nil || !in.Held || in.Mine || in.Kind != client.KindSemaphore || in.Mode != client.ModeShared || in.Holders != 2 || in.Limit != 2 {
		t.Fatalf("Info of a full semaphore = %+v, %v", in, err)
	}
	if _, err := c.TryAcquire(ctx, "pool", 2); err != client.ErrUnavailable {
		t.Fatalf("TryAcquire of a full semaphore = %v, want ErrUnavailable", err)
	}
	cc := async(func() (uint64, error) { return c.Acquire(ctx, "pool", 2) })
	queued(t, ctx, d, "pool", 1)

	var se *client.ServerError
	refusals := []struct {
		what string
		call func() error
		is   error
	}{
		{"Acquire with another limit", func() error { _, err := d.TryAcquire(ctx, "pool", 3); return err }, client.ErrLimitMismatch},
		{"Lock of a semaphore", func() error { _, err := d.TryLock(ctx, "pool"); return err }, client.ErrKindMismatch},
		{"RLock of a semaphore", func() error { _, err := d.TryRLock(ctx, "pool"); return err }, client.ErrKindMismatch},
	}
	for _, r := range refusals {
		if err := r.call(); !errors.Is(err, r.is) || !errors.As(err, &se) || se.Code != 400 {
			t.Fatalf("%s = %v, want %v in a ServerError 400", r.what, err, r.is)
		}
	}
	if _, err := d.Lock(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.TryAcquire(ctx, "plain", 2); !errors.Is(err, client.ErrKindMismatch) {
		t.Fatalf("Acquire of a lock = %v, want ErrKindMismatch", err)
	}

	pending(t, cc, "c's Acquire of a full semaphore")
	if err := a.Unlock(ctx, "pool"); err != nil {
		t.Fatal(err)
	}
	if r := <-cc; r.err != nil || r.tok <= tb {
		t.Fatalf("c's Acquire = %+v; want a token above %d", r, tb)
	}
	if len(a.Held()) != 0 {
		t.Fatalf("a.Held = %v", a.Held())
	}
	// Once nobody holds or awaits it, the name takes any kind and limit.
	if err := b.Unlock(ctx, "pool"); err != nil {
		t.Fatal(err)
	}
	if err := c.Unlock(ctx, "pool"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.TryAcquire(ctx, "pool", 5); err != nil {
		t.Fatalf("Acquire with a new limit of a drained semaphore: %v", err)
	}
	if err := d.Unlock(ctx, "pool"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.TryLock(ctx, "pool"); err != nil {
		t.Fatalf("Lock of a drained semaphore: %v", err)
	}
}

// TestSharedCancelLeavesQueue: an RLock or Acquire given up while queued
// leaves the queue, and the session holds nothing.
func TestSharedCancelLeavesQueue(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a := dial(t, []string{srv.addr})
	b := dial(t, []string{srv.addr})
	if _, err := a.Lock(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Acquire(ctx, "s", 1); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func(ctx context.Context) (uint64, error){
		"q": func(ctx context.Context) (uint64, error) { return b.RLock(ctx, "q") },
		"s": func(ctx context.Context) (uint64, error) { return b.Acquire(ctx, "s", 1) },
	} {
		bctx, cancel := context.WithCancel(ctx)
		ch := async(func() (uint64, error) { return call(bctx) })
		queued(t, ctx, a, name, 1)
		cancel()
		if r := <-ch; r.err != context.Canceled {
			t.Fatalf("%s: the cancelled call = %+v, want context.Canceled as is", name, r)
		}
		queued(t, ctx, a, name, 0)
	}
	if len(b.Held()) != 0 {
		t.Fatalf("b.Held = %v", b.Held())
	}
	if err := a.UnlockAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"q", "s"} {
		if in, err := a.Info(ctx, name); err != nil || in.Held {
			t.Fatalf("%s after a's release = %+v, %v; b must not have got it", name, in, err)
		}
	}
}

// TestSharedSessionExpired: shared grants and permits are lost with the
// session, and reported, like exclusive locks.
func TestSharedSessionExpired(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	var lost lostRecorder
	a := dial(t, []string{srv.addr}, client.WithKeepalive(-1), client.WithOnLost(lost.record),
		client.WithSessionTimeout(100*time.Millisecond))
	if _, err := a.RLock(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Acquire(ctx, "e2", 3); err != nil {
		t.Fatal(err)
	}
	srv.ln.killAll()
	b := dial(t, []string{srv.addr})
	wait.For(t, 10*time.Second, "the session to expire", func() bool {
		in1, err1 := b.Info(ctx, "e1")
		in2, err2 := b.Info(ctx, "e2")
		return err1 == nil && err2 == nil && !in1.Held && !in2.Held
	})
	if _, err := a.Token(ctx, "e1"); err != client.ErrSessionLost {
		t.Fatalf("Token after expiry = %v, want ErrSessionLost", err)
	}
	wait.For(t, 10*time.Second, "two lost reports", func() bool { return len(lost.get()) == 2 })
	if got := lost.names(t, client.ErrSessionLost); !got["e1"] || !got["e2"] {
		t.Fatalf("lost %v, want e1 and e2", got)
	}
	if h := a.Held(); len(h) != 0 {
		t.Fatalf("Held = %v", h)
	}
}

// TestSharedResume: shared grants and permits survive a resume, checked
// by their tokens, without a lost report.
func TestSharedResume(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	var lost lostRecorder
	a := dial(t, []string{srv.addr}, client.WithKeepalive(-1), client.WithOnLost(lost.record))
	tr, err := a.RLock(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	ts, err := a.Acquire(ctx, "s", 2)
	if err != nil {
		t.Fatal(err)
	}
	srv.ln.killAll()
	if got, err := a.Token(ctx, "s"); err != nil || got != ts {
		t.Fatalf("Token s after the resume = %d, %v; want %d", got, err, ts)
	}
	if h := a.Held(); len(h) != 2 || h["r"] != tr || h["s"] != ts {
		t.Fatalf("Held = %v", h)
	}
	if evs := lost.get(); len(evs) != 0 {
		t.Fatalf("lost reports after a resume: %+v", evs)
	}
}

// TestSharedLocksListing: a shared name and a semaphore are listed once
// per grant, each with its own token.
func TestSharedLocksListing(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a := dial(t, []string{srv.addr})
	b := dial(t, []string{srv.addr})
	// Tokens are per name: a grant is its name and token.
	type grant struct {
		name string
		tok  uint64
	}
	grants := map[grant]bool{}
	for _, c := range []*client.Client{a, b} {
		t1, err := c.RLock(ctx, "l/rw")
		if err != nil {
			t.Fatal(err)
		}
		t2, err := c.Acquire(ctx, "l/sem", 4)
		if err != nil {
			t.Fatal(err)
		}
		grants[grant{"l/rw", t1}], grants[grant{"l/sem", t2}] = true, true
	}
	l, err := a.Locks(ctx, "l/", 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, h := range l.Locks {
		names[h.Name]++
		g := grant{h.Name, h.Token}
		if !grants[g] {
			t.Errorf("listed %+v, not one of the grants left %v", g, grants)
		}
		delete(grants, g)
	}
	if names["l/rw"] != 2 || names["l/sem"] != 2 || len(l.Locks) != 4 {
		t.Fatalf("Locks = %+v", l)
	}
}
