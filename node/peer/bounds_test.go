package peer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/wait"
)

// header returns a frame header declaring n payload bytes.
func header(n uint32, kind byte, id uint64) []byte {
	h := make([]byte, headerLen)
	binary.BigEndian.PutUint32(h[0:4], n)
	h[4] = kind
	binary.BigEndian.PutUint64(h[5:13], id)
	return h
}

// A header that declares the largest frame and is followed by a few
// bytes costs a few bytes, not the declared length: thirteen bytes from
// anyone who can reach the -peer port must not cost 16 MiB each.
func TestAFrameIsReadAsItsBytesArrive(t *testing.T) {
	in := append(header(MaxFrame, byte(MinMethod), 1), make([]byte, 100)...)
	var hdr [headerLen]byte
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, _, buf, err := readFrame(bufio.NewReader(bytes.NewReader(in)), nil, &hdr)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a frame cut short: %v, want io.ErrUnexpectedEOF", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("reading 113 bytes of a frame that declares %d allocated %d bytes", MaxFrame, got)
	}
	if cap(buf) > 2*readChunk {
		t.Fatalf("the buffer kept %d bytes for 100 received", cap(buf))
	}
}

// A frame that arrives whole is read whole, across many chunks, and the
// large buffer it needed is not kept for the next one.
func TestABigFrameIsReadWholeAndItsBufferLetGo(t *testing.T) {
	big := make([]byte, 3*keepBuffer+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	var in bytes.Buffer
	in.Write(header(uint32(len(big)), kindReply, 7))
	in.Write(big)
	in.Write(header(3, kindReply, 8))
	in.WriteString("abc")
	r := bufio.NewReader(&in)
	var hdr [headerLen]byte
	kind, id, p, buf, err := readFrame(r, nil, &hdr)
	if err != nil || kind != kindReply || id != 7 || !bytes.Equal(p, big) {
		t.Fatalf("big frame: kind %d id %d len %d err %v", kind, id, len(p), err)
	}
	_, id, p, buf, err = readFrame(r, buf, &hdr)
	if err != nil || id != 8 || string(p) != "abc" {
		t.Fatalf("small frame: id %d %q err %v", id, p, err)
	}
	if cap(buf) > keepBuffer {
		t.Fatalf("the connection kept a %d-byte buffer after a 3-byte frame", cap(buf))
	}
}

// A sender whose remote end never reads stops at its limit: it fails
// the connection instead of queuing without end.
func TestASenderWhoseRemoteDoesNotReadBreaksAtItsLimit(t *testing.T) {
	a, b := net.Pipe() // unbuffered: the writer blocks until the other end reads, which it never does
	broke := make(chan error, 1)
	s := newSender(a, func(err error) {
		select {
		case broke <- err:
		default:
		}
		a.Close()
	})
	s.limit = 64 << 10
	defer s.close()
	defer b.Close() // first: ends a write the sender may be blocked in
	payload := make([]byte, 1024)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = s.send(kindReply, uint64(i), payload)
	}
	if !errors.Is(err, ErrBacklog) {
		t.Fatalf("1000 frames of 1 KiB to a remote that does not read: %v, want ErrBacklog", err)
	}
	select {
	case got := <-broke:
		if !errors.Is(got, ErrBacklog) {
			t.Fatalf("the connection broke with %v, want ErrBacklog", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was not closed")
	}
	if err := s.send(kindReply, 1, payload); err == nil {
		t.Fatal("a send after the backlog broke the connection succeeded")
	}
}

// The -peer port holds at most its cap of connections: one over it is
// closed at once, and a place freed by a closed connection is taken
// again.
func TestTheMuxRefusesConnectionsOverItsCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, nil, nil)
	m.max = 2
	m.Serve(NewServer(NewRegistry(), nil), nil)
	defer m.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{ProtoRPC}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// closed reports whether the server closed c within d.
	closed := func(c net.Conn, d time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
	first, second := dial(), dial()
	defer second.Close()
	wait.For(t, 10*time.Second, "two connections to be counted", func() bool { return m.conns.Load() == 2 })
	third := dial()
	defer third.Close()
	if !closed(third, 10*time.Second) {
		t.Fatal("a third connection over a cap of two was kept")
	}
	if closed(second, 200*time.Millisecond) {
		t.Fatal("a connection within the cap was closed")
	}
	first.Close()
	wait.For(t, 10*time.Second, "the closed connection's place to be freed", func() bool { return m.conns.Load() == 1 })
	fourth := dial()
	defer fourth.Close()
	if closed(fourth, 300*time.Millisecond) {
		t.Fatal("a connection was refused though a place was free")
	}
}

// A count is bounded by how many elements of the given size the bytes
// left can hold.
func TestCountIsBoundedByTheElementSize(t *testing.T) {
	var e Enc
	e.Uint(5)
	e.B = append(e.B, make([]byte, 20)...)
	d := Dec{B: e.B}
	if n := d.Count(4); n != 5 || d.Err() != nil {
		t.Fatalf("5 elements of 4 bytes in 20: %d, %v", n, d.Err())
	}
	d = Dec{B: e.B}
	if n := d.Count(5); n != 0 || !errors.Is(d.Err(), ErrMalformed) {
		t.Fatalf("5 elements of 5 bytes in 20: %d, %v; want ErrMalformed", n, d.Err())
	}
}
