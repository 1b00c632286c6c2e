package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elock/elock/client"
	"github.com/elock/elock/testcluster/wait"
)

func TestOperations(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	c := dial(t, []string{srv.addr})
	if c.SessionID() == "" {
		t.Fatal("no session id after Dial")
	}

	tok, err := c.Lock(ctx, "a")
	if err != nil || tok == 0 {
		t.Fatalf("Lock a = %d, %v", tok, err)
	}
	if got, err := c.Token(ctx, "a"); err != nil || got != tok {
		t.Fatalf("Token a = %d, %v; want %d", got, err, tok)
	}
	if got, err := c.TryLock(ctx, "a"); err != nil || got != tok {
		t.Fatalf("re-entrant TryLock a = %d, %v; want %d", got, err, tok)
	}
	in, err := c.Info(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if want := (client.Info{Held: true, Mine: true, Token: tok, HeldFor: in.HeldFor, Kind: client.KindLock, Mode: client.ModeExclusive, Holders: 1}); in != want || in.HeldFor < 0 {
		t.Fatalf("Info a = %+v, want %+v", in, want)
	}
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Locks != 1 || st.Clients != 1 || st.Monitoring != st.Clients || st.All["version"] == "" || st.All["locks"] != "1" {
		t.Fatalf("Stats = %+v", st)
	}
	if err := c.Unlock(ctx, "a"); err != nil {
		t.Fatalf("Unlock a: %v", err)
	}
	if in, err := c.Info(ctx, "a"); err != nil || in.Held {
		t.Fatalf("Info a after unlock = %+v, %v", in, err)
	}

	for _, n := range []string{"b", "c", "d\x00\xff"} {
		if _, err := c.TryLock(ctx, n); err != nil {
			t.Fatalf("TryLock %q: %v", n, err)
		}
	}
	if h := c.Held(); len(h) != 3 {
		t.Fatalf("Held = %v, want 3 locks", h)
	}
	if err := c.UnlockAll(ctx); err != nil {
		t.Fatal(err)
	}
	if h := c.Held(); len(h) != 0 {
		t.Fatalf("Held after UnlockAll = %v", h)
	}
	if st, err := c.Stats(ctx); err != nil || st.Locks != 0 {
		t.Fatalf("Stats after UnlockAll = %+v, %v", st, err)
	}
	if err := c.SetTimeout(ctx, 1500*time.Millisecond); err != nil {
		t.Fatalf("SetTimeout: %v", err)
	}
}

func TestErrors(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a := dial(t, []string{srv.addr})
	b := dial(t, []string{srv.addr})
	if _, err := a.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	var se *client.ServerError

	tests := []struct {
		name string
		call func() error
		is   error // want errors.Is(err, is)
		code int   // or a *ServerError with this code
	}{
		{"trylock held by other", func() error { _, err := b.TryLock(ctx, "x"); return err }, client.ErrUnavailable, 0},
		{"unlock other's", func() error { return b.Unlock(ctx, "x") }, client.ErrNotYours, 0},
		{"unlock free", func() error { return b.Unlock(ctx, "y") }, client.ErrNotLocked, 0},
		{"token other's", func() error { _, err := b.Token(ctx, "x"); return err }, client.ErrNotYours, 0},
		{"token free", func() error { _, err := b.Token(ctx, "y"); return err }, client.ErrNotLocked, 0},
		{"empty name", func() error { _, err := b.Lock(ctx, ""); return err }, client.ErrInvalidName, 0},
		{"space in name", func() error { _, err := b.TryLock(ctx, "a b"); return err }, client.ErrInvalidName, 0},
		{"CR in name", func() error { return b.Unlock(ctx, "a\r") }, client.ErrInvalidName, 0},
		{"LF in name", func() error { _, err := b.Info(ctx, "a\n"); return err }, client.ErrInvalidName, 0},
		{"name too long", func() error { _, err := b.TryLock(ctx, strings.Repeat("n", 300)); return err }, nil, 413},
		{"timeout too big", func() error { return b.SetTimeout(ctx, time.Hour) }, nil, 400},
		{"lock with expired ctx", func() error { _, err := b.Lock(expired, "x"); return err }, context.DeadlineExceeded, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			switch {
			case tt.is != nil && !errors.Is(err, tt.is):
				t.Fatalf("err = %v, want %v", err, tt.is)
			case tt.code != 0 && (!errors.As(err, &se) || se.Code != tt.code):
				t.Fatalf("err = %v, want a ServerError %d", err, tt.code)
			case tt.code != 0 && !strings.HasPrefix(err.Error(), "client: "):
				t.Fatalf("err = %q, want the client: prefix", err)
			}
		})
	}
	// Refusals keep the connection and the locks.
	if tok, err := a.Token(ctx, "x"); err != nil || tok != a.Held()["x"] {
		t.Fatalf("Token x after refusals = %d, %v", tok, err)
	}
	if got := srv.ln.count(); got != 2 {
		t.Fatalf("server accepted %d connections, want 2", got)
	}
	if err := b.SetTimeout(ctx, -time.Second); err == nil {
		t.Fatal("SetTimeout(-1s) succeeded")
	}

	b.Close()
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	closed := map[string]func() error{
		"Lock":      func() error { _, err := b.Lock(ctx, "x"); return err },
		"TryLock":   func() error { _, err := b.TryLock(ctx, "x"); return err },
		"Unlock":    func() error { return b.Unlock(ctx, "x") },
		"UnlockAll": func() error { return b.UnlockAll(ctx) },
		"Token":     func() error { _, err := b.Token(ctx, "x"); return err },
		"Info":      func() error { _, err := b.Info(ctx, "x"); return err },
		"Stats":     func() error { _, err := b.Stats(ctx); return err },
		"SetTO":     func() error { return b.SetTimeout(ctx, time.Second) },
	}
	for name, call := range closed {
		if err := call(); !errors.Is(err, client.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestDialErrors(t *testing.T) {
	ctx := testCtx(t)
	dead := deadAddr(t)
	tests := []struct {
		name  string
		addrs []string
		opts  []client.Option
	}{
		{"no addresses", nil, nil},
		{"all dead", []string{dead, dead}, nil},
		{"bad max wait", []string{dead}, []client.Option{client.WithMaxWait(time.Millisecond)}},
		{"bad dial timeout", []string{dead}, []client.Option{client.WithDialTimeout(0)}},
		{"negative session timeout", []string{dead}, []client.Option{client.WithSessionTimeout(-time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.Dial(ctx, tt.addrs, tt.opts...)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !strings.HasPrefix(err.Error(), "client: ") {
				t.Fatalf("err = %q, want the client: prefix", err)
			}
		})
	}
	t.Run("session timeout refused by server", func(t *testing.T) {
		srv := startServer(t)
		c, err := client.Dial(ctx, []string{srv.addr}, client.WithSessionTimeout(time.Hour))
		var se *client.ServerError
		if !errors.As(err, &se) || se.Code != 400 {
			if c != nil {
				c.Close()
			}
			t.Fatalf("Dial = %v, want a ServerError 400", err)
		}
	})
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestLockHandOver(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a := dial(t, []string{srv.addr})
	b := dial(t, []string{srv.addr})
	c := dial(t, []string{srv.addr})
	tokA, err := a.Lock(ctx, "h")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		tok uint64
		err error
	}
	lockAsync := func(cl *client.Client) chan result {
		ch := make(chan result, 1)
		go func() {
			tok, err := cl.Lock(ctx, "h")
			ch <- result{tok, err}
		}()
		return ch
	}
	waiters := func(n int) func() bool {
		return func() bool { in, err := a.Info(ctx, "h"); return err == nil && in.Waiters == n }
	}
	bc := lockAsync(b)
	wait.For(t, 10*time.Second, "b to queue", waiters(1))
	cc := lockAsync(c)
	wait.For(t, 10*time.Second, "c to queue", waiters(2))

	if err := a.Unlock(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	rb := <-bc // FIFO: b queued first
	if rb.err != nil || rb.tok <= tokA {
		t.Fatalf("b's Lock = %d, %v; want a token above %d", rb.tok, rb.err, tokA)
	}
	if b.Held()["h"] != rb.tok {
		t.Fatalf("b.Held = %v", b.Held())
	}
	select {
	case r := <-cc:
		t.Fatalf("c got the lock while b holds it: %+v", r)
	default:
	}
	if err := b.Unlock(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	if rc := <-cc; rc.err != nil || rc.tok <= rb.tok {
		t.Fatalf("c's Lock = %d, %v; want a token above %d", rc.tok, rc.err, rb.tok)
	}
}

// TestMaxWaitRounds: a Lock longer than the max wait waits in rounds.
func TestMaxWaitRounds(t *testing.T) {
	f := startFake(t, map[string][][]string{
		"lock r 1": {{"409 Unavailable"}, {"200 Acquired"}},
		"token r":  {{"403 not_yours"}, {"200 42"}},
	})
	c := dial(t, []string{f.addr()}, client.WithMaxWait(time.Second))
	ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
	defer cancel()
	if tok, err := c.Lock(ctx, "r"); err != nil || tok != 42 {
		t.Fatalf("Lock = %d, %v; want 42", tok, err)
	}
	if n := f.times("lock r 1"); n != 2 {
		t.Fatalf("sent lock r 1 %d times, want 2", n)
	}
}

func TestLockDeadline(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a := dial(t, []string{srv.addr})
	b := dial(t, []string{srv.addr})
	if _, err := a.Lock(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := b.Lock(dctx, "d")
	if err != context.DeadlineExceeded {
		t.Fatalf("Lock = %v, want context.DeadlineExceeded as is", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Lock took %v after a 300ms deadline", d)
	}
	wait.For(t, 10*time.Second, "the waiter to leave the queue", func() bool {
		in, err := a.Info(ctx, "d")
		return err == nil && in.Waiters == 0
	})
	// b still works, in the same session.
	id := b.SessionID()
	if _, err := b.TryLock(ctx, "other"); err != nil || b.SessionID() != id {
		t.Fatalf("TryLock after a timed-out Lock: %v (session %s, was %s)", err, b.SessionID(), id)
	}
	if err := a.Unlock(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if in, err := a.Info(ctx, "d"); err != nil || in.Held {
		t.Fatalf("d after a's unlock = %+v, %v; b must not have got it", in, err)
	}
}

func TestLockCancelLeavesQueue(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a := dial(t, []string{srv.addr})
	b := dial(t, []string{srv.addr})
	c := dial(t, []string{srv.addr})
	if _, err := a.Lock(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := b.Lock(bctx, "q")
		done <- err
	}()
	wait.For(t, 10*time.Second, "b to queue", func() bool {
		in, err := a.Info(ctx, "q")
		return err == nil && in.Waiters == 1
	})
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("b's Lock = %v, want context.Canceled as is", err)
	}
	wait.For(t, 10*time.Second, "b to leave the queue", func() bool {
		in, err := a.Info(ctx, "q")
		return err == nil && in.Waiters == 0
	})
	if err := a.Unlock(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryLock(ctx, "q"); err != nil {
		t.Fatalf("c's TryLock after b cancelled: %v", err)
	}
	if len(b.Held()) != 0 {
		t.Fatalf("b.Held = %v", b.Held())
	}
}

// TestLockCancelGrantWins: the grant reaches the session but not the
// client, which cancels. The lock must be released at once, not after the
// session timeout (30 s here).
func TestLockCancelGrantWins(t *testing.T) {
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	ctx := testCtx(t)
	a := dial(t, []string{srv.addr})
	b := dial(t, []string{px.addr()})
	c := dial(t, []string{srv.addr})
	if _, err := a.Lock(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := b.Lock(bctx, "g")
		done <- err
	}()
	wait.For(t, 10*time.Second, "b to queue", func() bool {
		in, err := c.Info(ctx, "g")
		return err == nil && in.Waiters == 1
	})
	px.freeze()
	if err := a.Unlock(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "the grant to b", func() bool {
		in, err := c.Info(ctx, "g")
		return err == nil && in.Held && !in.Mine && in.Waiters == 0
	})
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("b's Lock = %v, want context.Canceled", err)
	}
	wait.For(t, 10*time.Second, "b's session to release g", func() bool {
		_, err := c.TryLock(ctx, "g")
		return err == nil
	})
	if len(b.Held()) != 0 {
		t.Fatalf("b.Held = %v", b.Held())
	}
}

func TestCloseInterruptsLock(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a := dial(t, []string{srv.addr})
	b := dial(t, []string{srv.addr})
	if _, err := a.Lock(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.Lock(ctx, "z")
		done <- err
	}()
	wait.For(t, 10*time.Second, "b to queue", func() bool {
		in, err := a.Info(ctx, "z")
		return err == nil && in.Waiters == 1
	})
	b.Close()
	if err := <-done; err != client.ErrClosed {
		t.Fatalf("Lock during Close = %v, want ErrClosed", err)
	}
	wait.For(t, 10*time.Second, "b to leave the queue", func() bool {
		in, err := a.Info(ctx, "z")
		return err == nil && in.Waiters == 0
	})
}

// TestConcurrent hammers clients from many goroutines; run with -race.
// Mutual exclusion is checked between sessions: goroutine g of every
// client contends for lock "m<g>".
func TestConcurrent(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	const clients, goroutines, rounds = 3, 4, 25
	var inUse [goroutines]atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, clients*(goroutines+1))
	for k := range clients {
		cl := dial(t, []string{srv.addr})
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("m%d", g)
				for i := 0; i < rounds; {
					// TryLock, not Lock: a blocked Lock would hold back the
					// Unlock of the same client's other goroutines.
					_, err := cl.TryLock(ctx, name)
					if errors.Is(err, client.ErrUnavailable) {
						time.Sleep(time.Millisecond)
						continue
					}
					if err != nil {
						errs <- fmt.Errorf("client %d: TryLock %s: %w", k, name, err)
						return
					}
					if n := inUse[g].Add(1); n != 1 {
						errs <- fmt.Errorf("%s held by %d sessions", name, n)
					}
					inUse[g].Add(-1)
					if err := cl.Unlock(ctx, name); err != nil {
						errs <- fmt.Errorf("client %d: Unlock %s: %w", k, name, err)
						return
					}
					i++
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if _, err := cl.Stats(ctx); err != nil {
					errs <- err
					return
				}
				if _, err := cl.Info(ctx, "m0"); err != nil {
					errs <- err
					return
				}
				cl.Held()
				cl.SessionID()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestConcurrentOneClient: many goroutines on one Client, blocking Locks
// included, on names nobody else wants.
func TestConcurrentOneClient(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	c := dial(t, []string{srv.addr}, client.WithKeepalive(time.Millisecond))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("o%d", g)
			for range 20 {
				tok, err := c.Lock(ctx, name)
				if err == nil {
					var got uint64
					if got, err = c.Token(ctx, name); err == nil && got != tok {
						err = fmt.Errorf("token %d, want %d", got, tok)
					}
				}
				if err == nil {
					err = c.Unlock(ctx, name)
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if h := c.Held(); len(h) != 0 {
		t.Fatalf("Held = %v", h)
	}
}

// TestResumeByKeepalive: the server drops the connection of an idle
// client; the keepalive notices, and the session comes back with its
// locks and no lost report.
func TestResumeByKeepalive(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	var lost lostRecorder
	a := dial(t, []string{srv.addr}, client.WithKeepalive(20*time.Millisecond), client.WithOnLost(lost.record))
	t1, err := a.Lock(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	t2, err := a.Lock(ctx, "r2")
	if err != nil {
		t.Fatal(err)
	}
	id := a.SessionID()
	srv.ln.killAll()
	wait.For(t, 10*time.Second, "a to reconnect by itself", func() bool { return srv.ln.count() >= 2 })
	b := dial(t, []string{srv.addr})
	wait.For(t, 10*time.Second, "a's session to be attached again", func() bool {
		st, err := b.Stats(ctx)
		return err == nil && st.Clients == 2
	})
	if got := a.Held(); got["r1"] != t1 || got["r2"] != t2 || len(got) != 2 {
		t.Fatalf("Held = %v, want r1:%d r2:%d", got, t1, t2)
	}
	if tok, err := a.Token(ctx, "r1"); err != nil || tok != t1 {
		t.Fatalf("Token r1 = %d, %v; want %d", tok, err, t1)
	}
	if a.SessionID() != id {
		t.Fatalf("session id changed from %s to %s", id, a.SessionID())
	}
	if evs := lost.get(); len(evs) != 0 {
		t.Fatalf("lost reports after a resume: %+v", evs)
	}
	if _, err := b.TryLock(ctx, "r2"); err != client.ErrUnavailable {
		t.Fatalf("b's TryLock r2 = %v, want ErrUnavailable", err)
	}
}

// TestResumeInCall: with no keepalive, the next call finds the broken
// connection, resumes, and carries on.
func TestResumeInCall(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	var lost lostRecorder
	a := dial(t, []string{srv.addr}, client.WithKeepalive(-1), client.WithOnLost(lost.record))
	tok, err := a.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	srv.ln.killAll()
	calls := []struct {
		name string
		call func() error
	}{
		{"Token", func() error {
			got, err := a.Token(ctx, "k")
			if err == nil && got != tok {
				err = fmt.Errorf("token %d, want %d", got, tok)
			}
			return err
		}},
		{"TryLock", func() error { _, err := a.TryLock(ctx, "k2"); return err }},
		{"Unlock", func() error { return a.Unlock(ctx, "k2") }},
		{"Stats", func() error { _, err := a.Stats(ctx); return err }},
	}
	for _, tt := range calls {
		if err := tt.call(); err != nil {
			t.Fatalf("%s after the connection was killed: %v", tt.name, err)
		}
		srv.ln.killAll()
	}
	if evs := lost.get(); len(evs) != 0 {
		t.Fatalf("lost reports after resumes: %+v", evs)
	}
	if h := a.Held(); len(h) != 1 || h["k"] != tok {
		t.Fatalf("Held = %v", h)
	}
}

// TestSessionExpired: the connection breaks and the session times out
// before the client is back: the next call returns ErrSessionLost and
// every lock is reported lost.
func TestSessionExpired(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	var lost lostRecorder
	a := dial(t, []string{srv.addr}, client.WithKeepalive(-1), client.WithOnLost(lost.record),
		client.WithSessionTimeout(100*time.Millisecond))
	for _, n := range []string{"e1", "e2"} {
		if _, err := a.Lock(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	srv.ln.killAll()
	b := dial(t, []string{srv.addr})
	wait.For(t, 10*time.Second, "the session to expire", func() bool {
		st, err := b.Stats(ctx)
		return err == nil && st.Locks == 0
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
	// The client goes on, in a fresh session.
	if _, err := a.TryLock(ctx, "e1"); err != nil {
		t.Fatalf("TryLock after the loss: %v", err)
	}
}

// TestLostWhileUnreachable: the client cannot get back within the session
// timeout; it reports its locks lost without any call, then recovers.
func TestLostWhileUnreachable(t *testing.T) {
	srv := startServer(t)
	px := newProxy(t, srv.addr)
	ctx := testCtx(t)
	var lost lostRecorder
	a := dial(t, []string{px.addr()}, client.WithKeepalive(20*time.Millisecond), client.WithOnLost(lost.record),
		client.WithSessionTimeout(300*time.Millisecond))
	if _, err := a.Lock(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	px.refuse.Store(true)
	px.killAll()
	wait.For(t, 10*time.Second, "the lost report", func() bool { return len(lost.get()) == 1 })
	if got := lost.names(t, client.ErrSessionLost); !got["u"] {
		t.Fatalf("lost %v, want u", got)
	}
	px.refuse.Store(false)
	b := dial(t, []string{srv.addr})
	wait.For(t, 10*time.Second, "a to be back", func() bool {
		st, err := b.Stats(ctx)
		return err == nil && st.Clients == 2
	})
	if _, err := b.TryLock(ctx, "u"); err != nil {
		t.Fatalf("b's TryLock u: %v", err)
	}
	if _, err := a.TryLock(ctx, "v"); err != nil {
		t.Fatalf("a's TryLock after recovery: %v", err)
	}
}

// TestFailover: the first address is dead; later the server the client is
// on dies, and the client moves to the next one. Single nodes share no
// state, so the move loses the session.
func TestFailover(t *testing.T) {
	s1 := startServer(t)
	s2 := startServer(t)
	ctx := testCtx(t)
	dead := deadAddr(t)
	var lost lostRecorder
	a := dial(t, []string{dead, s1.addr, s2.addr}, client.WithKeepalive(-1), client.WithOnLost(lost.record))
	if s1.ln.count() != 1 || s2.ln.count() != 0 {
		t.Fatalf("connections: s1 %d, s2 %d; want a on s1", s1.ln.count(), s2.ln.count())
	}
	if _, err := a.Lock(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	s1.close()
	if _, err := a.Token(ctx, "f"); err != client.ErrSessionLost {
		t.Fatalf("Token after failover = %v, want ErrSessionLost", err)
	}
	wait.For(t, 10*time.Second, "the lost report", func() bool { return len(lost.get()) == 1 })
	if got := lost.names(t, client.ErrSessionLost); !got["f"] {
		t.Fatalf("lost %v", got)
	}
	if s2.ln.count() != 1 {
		t.Fatalf("s2 accepted %d connections, want 1", s2.ln.count())
	}
	if _, err := a.Lock(ctx, "f"); err != nil {
		t.Fatalf("Lock on s2: %v", err)
	}
}

func TestReconnectBoundedByContext(t *testing.T) {
	srv, err := newServer()
	if err != nil {
		t.Fatal(err)
	}
	a := dial(t, []string{srv.addr}, client.WithKeepalive(-1))
	srv.close()
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = a.Stats(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stats with the server gone = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Stats took %v", d)
	}
}

// TestFaultReplies drives 503 and 504 answers from a scripted server.
func TestFaultReplies(t *testing.T) {
	tests := []struct {
		name   string
		script map[string][][]string
		call   func(ctx context.Context, c *client.Client) error
		want   error  // errors.Is; nil: success
		line   string // then line must have been sent n times
		n      int
	}{
		{
			name:   "503 retried",
			script: map[string][][]string{"stats": {{"503 busy"}, {"503 busy"}, {"200 STATS", "STAT clients 1", "STAT locks 0", "STAT monitoring 1", "END"}}},
			call:   func(ctx context.Context, c *client.Client) error { _, err := c.Stats(ctx); return err },
			line:   "stats", n: 3,
		},
		{
			name:   "503 until the deadline",
			script: map[string][][]string{"stats": {{"503 busy"}}},
			call: func(ctx context.Context, c *client.Client) error {
				ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
				_, err := c.Stats(ctx)
				return err
			},
			want: context.DeadlineExceeded,
		},
		{
			name:   "trylock 504 then held",
			script: map[string][][]string{"lock t": {{"504 unknown"}}, "token t": {{"200 77"}}},
			call: func(ctx context.Context, c *client.Client) error {
				tok, err := c.TryLock(ctx, "t")
				if err == nil && tok != 77 {
					err = fmt.Errorf("token %d, want 77", tok)
				}
				return err
			},
			line: "lock t", n: 1,
		},
		{
			name:   "trylock 504 then another's",
			script: map[string][][]string{"lock t": {{"504 unknown"}}, "token t": {{"403 not_yours"}}},
			call:   func(ctx context.Context, c *client.Client) error { _, err := c.TryLock(ctx, "t"); return err },
			want:   client.ErrUnavailable,
		},
		{
			name:   "lock 504 then free retried",
			script: map[string][][]string{"lock t 5": {{"504 unknown"}, {"200 Acquired"}}, "token t": {{"403 not_locked"}, {"200 9"}}},
			call: func(ctx context.Context, c *client.Client) error {
				ctx, cancel := context.WithTimeout(ctx, 4500*time.Millisecond)
				defer cancel()
				_, err := c.Lock(ctx, "t")
				return err
			},
			line: "lock t 5", n: 2,
		},
		{
			name:   "unlock 504 then released",
			script: map[string][][]string{"unlock t": {{"504 unknown"}}, "token t": {{"403 not_locked"}}},
			call:   func(ctx context.Context, c *client.Client) error { return c.Unlock(ctx, "t") },
			line:   "unlock t", n: 1,
		},
		{
			name:   "unlock 504 still held",
			script: map[string][][]string{"unlock t": {{"504 unknown"}, {"200 Unlocked"}}, "token t": {{"200 5"}}},
			call:   func(ctx context.Context, c *client.Client) error { return c.Unlock(ctx, "t") },
			line:   "unlock t", n: 2,
		},
		{
			name:   "429 not retried",
			script: map[string][][]string{"lock t": {{"429 too many locks"}}},
			call: func(ctx context.Context, c *client.Client) error {
				_, err := c.TryLock(ctx, "t")
				var se *client.ServerError
				if !errors.As(err, &se) || se.Code != 429 || se.Retryable() || se.Indeterminate() {
					return fmt.Errorf("err %v, want ServerError 429", err)
				}
				return nil
			},
			line: "lock t", n: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, tt.script)
			c := dial(t, []string{f.addr()})
			err := tt.call(testCtx(t), c)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.line != "" && f.times(tt.line) != tt.n {
				t.Fatalf("%q sent %d times, want %d", tt.line, f.times(tt.line), tt.n)
			}
		})
	}
}

// TestRefusedResume: the server keeps refusing the session; after the
// resume retry the client gives it up and starts a new one.
func TestRefusedResume(t *testing.T) {
	f := startFake(t, map[string][][]string{
		"lock s":          {{"200 Acquired"}},
		"token s":         {{"200 3"}},
		"conn_id":         {{"200 OLD"}, {"200 NEW"}},
		"conn_id OLD":     {{"403 cannot set conn id"}},
		"session":         {{"200 SESSION", "STAT id OLD", "STAT resumed 0", "STAT timeout_ms 30000", "STAT held 0", "END"}, {"200 SESSION", "STAT id NEW", "STAT resumed 0", "STAT timeout_ms 30000", "STAT held 0", "END"}},
		"unlock_all":      {{"200 OK"}},
		"set_timeout 100": {{"200 timeout set"}},
	})
	var lost lostRecorder
	c := dial(t, []string{f.addr()}, client.WithKeepalive(-1), client.WithOnLost(lost.record),
		client.WithResumeRetry(100*time.Millisecond))
	ctx := testCtx(t)
	if _, err := c.TryLock(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	f.killConns()
	_, err := c.Stats(ctx)
	if err != client.ErrSessionLost {
		t.Fatalf("Stats = %v, want ErrSessionLost", err)
	}
	wait.For(t, 10*time.Second, "the lost report", func() bool { return len(lost.get()) == 1 })
	ev := lost.get()[0]
	if ev.Name != "s" || ev.Token != 3 || !errors.Is(ev.Err, client.ErrSessionLost) || !errors.Is(ev.Err, client.ErrCannotSetID) {
		t.Fatalf("lost %+v", ev)
	}
	if c.SessionID() != "NEW" {
		t.Fatalf("session %q, want NEW", c.SessionID())
	}
}
