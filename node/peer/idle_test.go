package peer

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/wait"
)

// startIdle serves h with a server idle deadline of idle.
func startIdle(t *testing.T, h Handler, idle time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, nil, nil)
	srv := NewServer(h, nil)
	srv.Idle = idle
	m.Serve(srv, nil)
	t.Cleanup(func() { m.Close() })
	return ln.Addr().String()
}

// A server closes a connection that sends nothing for its idle
// deadline, but not one with a request in progress, however quiet.
func TestServerClosesIdleConnections(t *testing.T) {
	h := &testHandler{}
	addr := startIdle(t, h, 50*time.Millisecond)

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.Write([]byte{ProtoRPC})
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if _, err := silent.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a silent connection: read %v, want it closed within 5 s", err)
	}

	c := NewClient(addr, time.Second)
	c.Idle = time.Hour
	defer c.Close()
	got := make(chan error, 1)
	c.Go(ctx(t), mLater, nil, func(_ []byte, err error) { got <- err })
	wait.For(t, 5*time.Second, "the request to be held", func() bool { return h.pending() == 1 })
	// Ten idle periods with the request in progress: still open.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		select {
		case err := <-got:
			t.Fatalf("the held request ended: %v; the server closed a busy connection", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	h.mu.Lock()
	h.later[0]([]byte("late"), nil)
	h.mu.Unlock()
	if err := <-got; err != nil {
		t.Fatalf("the held request: %v", err)
	}
}

// A client closes its own connection once idle, and the next call dials
// again and goes through.
func TestClientClosesIdleConnectionsAndRedials(t *testing.T) {
	h := &testHandler{}
	addr := startIdle(t, h, time.Hour)
	c := NewClient(addr, time.Second)
	c.Idle = 20 * time.Millisecond
	defer c.Close()
	if _, err := c.Call(ctx(t), mEcho, []byte("a")); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	first := c.cur
	c.mu.Unlock()
	wait.For(t, 5*time.Second, "the idle connection to close", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cur == nil
	})
	<-first.done
	for i := range 20 { // calls racing the next idle close still go through
		if got, err := c.Call(ctx(t), mEcho, []byte("b")); err != nil || string(got) != "echo:b" {
			t.Fatalf("call %d after an idle close: %q %v", i, got, err)
		}
		time.Sleep(time.Duration(i) * 2 * time.Millisecond)
	}
}
