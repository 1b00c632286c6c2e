package node

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/testcluster/wait"
)

// countingBackend counts the lock requests a connection makes.
type countingBackend struct {
	*Local
	locks atomic.Int64
}

func (b *countingBackend) Lock(ctx context.Context, s SessionRef, name []byte, want locktable.Want, wait time.Duration, done partition.Done) (locktable.Result, Wait, error) {
	b.locks.Add(1)
	return b.Local.Lock(ctx, s, name, want, wait, done)
}

func startCounting(t *testing.T) (*countingBackend, *testServer) {
	t.Helper()
	set, err := partition.New(partition.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close)
	b := &countingBackend{Local: &Local{Set: set, Home: "t"}}
	srv, err := NewServer(DefaultConfig(), b)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(cl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
	})
	return b, &testServer{srv: srv, addr: l.Addr().String(), ln: cl}
}

// A waiting lock is one request to the backend, granted at once or
// queued, not a try followed by a wait: in a mesh each is a round trip to
// the owner. Re-entry through a waiting lock counts once.
func TestWaitingLockIsOneRequest(t *testing.T) {
	b, ts := startCounting(t)
	c := ts.dial(t)
	for _, tt := range []struct{ cmd, want string }{
		{"lock x 5", "200 Acquired"}, // free: granted at once
		{"lock x 5", "200 Acquired"}, // re-entrant
	} {
		before := b.locks.Load()
		if got := c.do(tt.cmd); got != tt.want {
			t.Fatalf("%s: %q, want %q", tt.cmd, got, tt.want)
		}
		if n := b.locks.Load() - before; n != 1 {
			t.Fatalf("%s made %d lock requests, want 1", tt.cmd, n)
		}
	}
	if s := c.block("session"); s["held"] != "1" {
		t.Fatalf("session after a lock and its re-entry: %v", s)
	}
	// Held by another: queued by the same single request, granted at the
	// unlock.
	other := ts.dial(t)
	before := b.locks.Load()
	other.send("lock x 5\r\n")
	wait.For(t, 5*time.Second, "the waiter to queue", func() bool { return c.block("info x")["waiters"] == "1" })
	if n := b.locks.Load() - before; n != 1 {
		t.Fatalf("a queued lock made %d lock requests, want 1", n)
	}
	c.expect("unlock x", "200 Unlocked")
	if got := other.line(); got != "200 Acquired" {
		t.Fatalf("the waiter: %q", got)
	}
}

// Waiting locks that are granted at once, pipelined, still answer in
// order and in one write.
func TestPipelinedWaitingLocksAreCoalesced(t *testing.T) {
	_, ts := startCounting(t)
	c := ts.dial(t)
	c.expect("set_timeout 1000", "200 timeout set") // the session exists
	before := ts.ln.writes.Load()
	var b strings.Builder
	for i := range 50 {
		b.WriteString("lock w" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + " 5\r\n")
	}
	c.send(b.String())
	for i := range 50 {
		if got := c.line(); got != "200 Acquired" {
			t.Fatalf("reply %d: %q", i, got)
		}
	}
	if n := ts.ln.writes.Load() - before; n > 2 {
		t.Fatalf("%d writes for 50 pipelined waiting locks granted at once", n)
	}
}
