package peer

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A peer that stops reading (a partition that drops packets, a paused
// process) fills the socket's buffers. Calls to it must still end with
// their contexts: a caller (the heartbeat, a replication link, a client's
// request) may never wait on the network itself.
func TestCallsToAPeerThatStopsReadingEndWithTheirContexts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn // accepted and never read
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, nc)
		}
	}()
	defer func() {
		ln.Close()
		<-accepted
		for _, nc := range held {
			nc.Close()
		}
	}()
	c := NewClient(ln.Addr().String(), time.Second)
	defer c.Close()

	// Far more than loopback's socket buffers hold, from many callers at
	// once, so that some caller's frames are being written when the
	// buffers fill.
	const callers, size = 32, 1 << 20
	payload := make([]byte, size)
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := c.Call(cx, mEcho, payload)
			errs <- err
		}()
	}
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(5 * time.Second):
		c.Close() // lets a blocked writer go, so that the test ends
		<-all
		t.Fatal("a call to a peer that stopped reading outlived its context by seconds")
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v; want the context's deadline", err)
		}
	}
}

// A call whose connection is still being dialled ends with its context,
// not with the client's (longer) dial timeout: a heartbeat must be able to
// give up on a leader that does not answer and ask the next one.
func TestCallDialEndsWithItsContext(t *testing.T) {
	addr, closeLn := fullBacklog(t)
	defer closeLn()
	c := NewClient(addr, 30*time.Second)
	defer c.Close()
	cx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 2)
	go func() { _, err := c.Call(cx, mEcho, nil); done <- err }()
	go func() { c.Go(cx, mEcho, nil, func(_ []byte, err error) { done <- err }) }()
	for range 2 {
		select {
		case err := <-done:
			// The dialler sees its dial time out; the other caller, the
			// end of its wait for that dial.
			if !errors.Is(err, ErrUnreachable) && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v; want unreachable or the context's deadline", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a call still dials seconds after its context ended")
		}
	}
}

// fullBacklog returns the address of a listener whose accept queue is
// full, so that a connection to it neither succeeds nor fails: the SYN is
// dropped, as on a network that drops packets.
func fullBacklog(t *testing.T) (string, func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// A backlog of 0 queues one connection; fill it.
	filler, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return addr, func() { filler.Close(); syscall.Close(fd) }
}
