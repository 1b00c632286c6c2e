package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/testcluster/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	mEcho Method = MinMethod + iota
	mLater
	mFail
	mNever
	mRefuse
)

type testHandler struct {
	mu      sync.Mutex
	later   []func([]byte, error)
	hold    chan struct{}
	holding sync.WaitGroup
}

func (h *testHandler) Serve(_ context.Context, m Method, p []byte, reply func([]byte, error)) {
	switch m {
	case mEcho:
		reply(append([]byte("echo:"), p...), nil)
	case mLater:
		h.mu.Lock()
		h.later = append(h.later, reply)
		h.mu.Unlock()
	case mFail:
		reply(nil, errors.New("no such thing"))
	case mNever:
	case mRefuse:
		reply(nil, failure.Unknown(failure.Unconfirmed, "maybe"))
	}
}

func (h *testHandler) pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.later)
}

func start(t *testing.T, h Handler) (*Mux, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, nil, nil)
	m.Serve(NewServer(h, nil), nil)
	t.Cleanup(func() { m.Close() })
	return m, ln.Addr().String()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestCallReply(t *testing.T) {
	_, addr := start(t, &testHandler{})
	c := NewClient(addr, time.Second)
	defer c.Close()
	got, err := c.Call(ctx(t), mEcho, []byte("hi"))
	if err != nil || string(got) != "echo:hi" {
		t.Fatalf("Call = %q, %v", got, err)
	}
	_, err = c.Call(ctx(t), mFail, nil)
	f, ok := failure.As(err)
	if !ok || f.Text != "no such thing" || f.Class != failure.Retryable || f.Reason != failure.Internal {
		t.Fatalf("failure = %v", err)
	}
	// A failure keeps its class and reason across the connection: callers
	// decide on those, never on the text.
	_, err = c.Call(ctx(t), mRefuse, nil)
	if f, ok := failure.As(err); !ok || f.Class != failure.Indeterminate || f.Reason != failure.Unconfirmed || f.Text != "maybe" {
		t.Fatalf("typed failure = %#v", err)
	}
}

func TestRepliesOutOfOrder(t *testing.T) {
	h := &testHandler{}
	_, addr := start(t, h)
	c := NewClient(addr, time.Second)
	defer c.Close()
	var wg sync.WaitGroup
	got := make([]string, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := c.Call(ctx(t), mLater, nil)
			if err != nil {
				t.Error(err)
			}
			got[i] = string(p)
		}()
	}
	wait.For(t, 5*time.Second, "three requests to arrive", func() bool { return h.pending() >= 3 })
	h.mu.Lock()
	for i := 2; i >= 0; i-- {
		h.later[i]([]byte(fmt.Sprint(i)), nil)
		h.later[i]([]byte("twice"), nil) // a second reply is dropped
	}
	h.mu.Unlock()
	wg.Wait()
	seen := map[string]bool{}
	for _, g := range got {
		seen[g] = true
	}
	if len(seen) != 3 || seen["twice"] {
		t.Fatalf("replies = %q", got)
	}
}

func TestManyConcurrentCalls(t *testing.T) {
	_, addr := start(t, &testHandler{})
	c := NewClient(addr, time.Second)
	defer c.Close()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				msg := []byte(fmt.Sprint(i, "-", j))
				p, err := c.Call(ctx(t), mEcho, msg)
				if err != nil || !bytes.Equal(p, append([]byte("echo:"), msg...)) {
					t.Errorf("call %s = %q, %v", msg, p, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestUnreachableAndLost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := NewClient(addr, time.Second)
	if _, err := c.Call(ctx(t), mEcho, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("call to closed port = %v, want ErrUnreachable", err)
	}
	c.Close()

	m, addr := start(t, &testHandler{})
	c = NewClient(addr, time.Second)
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx(t), mNever, nil)
		errc <- err
	}()
	// Let the request reach the server, then kill it.
	if _, err := c.Call(ctx(t), mEcho, nil); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if err := <-errc; !errors.Is(err, ErrLost) {
		t.Fatalf("pending call after server death = %v, want ErrLost", err)
	}
}

func TestCallContextEnds(t *testing.T) {
	_, addr := start(t, &testHandler{})
	c := NewClient(addr, time.Second)
	defer c.Close()
	cx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// The request went out, so the outcome is unknown: ErrLost, and the
	// context's own error too.
	if _, err := c.Call(cx, mNever, nil); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrLost) {
		t.Fatalf("err = %v; want ErrLost and the deadline", err)
	}
	// The client is still usable.
	if _, err := c.Call(ctx(t), mEcho, nil); err != nil {
		t.Fatal(err)
	}
}

// A call on a context that has already ended sends nothing: a caller
// that retries in a loop on a dead context must not flood the peer.
func TestCallOnEndedContextSendsNothing(t *testing.T) {
	h := &testHandler{}
	_, addr := start(t, h)
	c := NewClient(addr, time.Second)
	defer c.Close()
	if _, err := c.Call(ctx(t), mEcho, nil); err != nil { // connected
		t.Fatal(err)
	}
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	for range 100 {
		if _, err := c.Call(dead, mLater, nil); !errors.Is(err, context.Canceled) || errors.Is(err, ErrLost) {
			t.Fatalf("err = %v; want the context's error alone", err)
		}
	}
	done := make(chan error, 1)
	c.Go(dead, mLater, nil, func(_ []byte, err error) { done <- err })
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Go: err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Go on an ended context sent its request and waits for a reply")
	}
	// A request sent after them is the first the server sees.
	if _, err := c.Call(ctx(t), mEcho, nil); err != nil {
		t.Fatal(err)
	}
	if n := h.pending(); n != 0 {
		t.Fatalf("the server received %d requests made on an ended context", n)
	}
}

// A request sent with Go whose reply never comes ends when its context
// does: a connection that goes silent without breaking must not hold the
// caller (a replication link's batch slot) until TCP gives up.
func TestGoEndsWithItsContext(t *testing.T) {
	_, addr := start(t, &testHandler{})
	c := NewClient(addr, time.Second)
	defer c.Close()
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 2)
	c.Go(short, mNever, nil, func(_ []byte, err error) { done <- err })
	select {
	case err := <-done:
		if !errors.Is(err, ErrLost) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v; want ErrLost for the deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Go still waits for a reply after its context ended")
	}
	// The connection stays usable.
	c.Go(ctx(t), mEcho, []byte("x"), func(b []byte, err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatalf("Go after a timed-out one: %v", err)
	}
}

func TestRaftTrafficIsSplitOff(t *testing.T) {
	m, addr := start(t, &testHandler{})
	rl := m.RaftListener()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := rl.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	nc, err := m.DialRaft(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("raft bytes"))
	var sc net.Conn
	select {
	case sc = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("raft connection not routed")
	}
	defer sc.Close()
	buf := make([]byte, 10)
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := readFull(sc, buf); err != nil || string(buf) != "raft bytes" {
		t.Fatalf("raft side read %q, %v", buf, err)
	}
	// RPC still works beside it.
	c := NewClient(addr, time.Second)
	defer c.Close()
	if _, err := c.Call(ctx(t), mEcho, nil); err != nil {
		t.Fatal(err)
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Every declared method has a name, and a registry takes one handler per
// method: a second one for the same id is a wiring bug, refused at once
// instead of silently replacing the first.
func TestRegistry(t *testing.T) {
	names := map[string]Method{}
	for _, m := range Methods() {
		n := m.String()
		if strings.HasPrefix(n, "method(") {
			t.Errorf("method %d has no name", m)
		}
		if o, dup := names[n]; dup {
			t.Errorf("methods %d and %d are both named %q", o, m, n)
		}
		names[n] = m
	}
	if len(methodNames) != len(Methods()) {
		t.Errorf("%d names for %d methods", len(methodNames), len(Methods()))
	}
	r := NewRegistry()
	h := func(context.Context, Method, []byte, func([]byte, error)) {}
	if err := r.Handle(Lock, h); err != nil {
		t.Fatal(err)
	}
	if err := r.Handle(Lock, h); err == nil {
		t.Error("a second handler for one method was accepted")
	}
	if err := r.Handle(endMethods, h); err == nil {
		t.Error("a handler for an undeclared method was accepted")
	}
	if err := r.Handle(MinMethod-1, h); err == nil {
		t.Error("a handler for a reserved id was accepted")
	}
}
