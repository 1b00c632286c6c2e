package peer

import (
	"bufio"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// Frames sent from many goroutines at once, far more than the socket
// buffers hold while nobody reads, are queued without blocking a sender,
// and arrive whole and, per goroutine, in the order sent.
func TestSenderKeepsFramesWholeAndInOrder(t *testing.T) {
	a, b := tcpPair(t)
	s := newSender(a, nil)
	const senders, frames = 8, 400
	payload := make([]byte, 3000) // 8*400*3000 bytes: far more than the socket buffers hold
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range frames {
				p := append([]byte(nil), payload...)
				binary.BigEndian.PutUint32(p, uint32(i))
				if err := s.send(kindReply, uint64(g), p); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait() // send never blocks, though nobody has read yet

	b.SetReadDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(b)
	next := make([]int, senders)
	var hdr [headerLen]byte
	var buf []byte
	for n := 0; n < senders*frames; n++ {
		kind, id, p, nbuf, err := readFrame(r, buf, &hdr)
		buf = nbuf
		if err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		if kind != kindReply || id >= senders || len(p) != len(payload) {
			t.Fatalf("frame %d garbled: kind %d id %d length %d", n, kind, id, len(p))
		}
		if got := int(binary.BigEndian.Uint32(p)); got != next[id] {
			t.Fatalf("sender %d: frame %d arrived when %d was due", id, got, next[id])
		}
		next[id]++
	}
	s.close()
}
