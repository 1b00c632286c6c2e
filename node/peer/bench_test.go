package peer

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countedListener counts the reads and writes of the connections it
// accepts: one per syscall, since the server reads through one buffer and
// writes each batch once.
type countedListener struct {
	net.Listener
	reads, writes atomic.Int64
}

func (l *countedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l *countedListener
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.l.reads.Add(1)
	}
	return n, err
}

func (c *countedConn) Write(b []byte) (int, error) {
	c.l.writes.Add(1)
	return c.Conn.Write(b)
}

// BenchmarkCallParallel measures concurrent calls over one connection and
// how well their frames are coalesced: requests per server read, replies
// per server write. Compare runs side by side (-count, benchstat).
//
//	go test -run '^$' -bench CallParallel -cpu 2 ./node/peer/
func BenchmarkCallParallel(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cl := &countedListener{Listener: ln}
	m := NewMux(cl, nil, nil)
	m.Serve(NewServer(&testHandler{}, nil), nil)
	defer m.Close()
	c := NewClient(ln.Addr().String(), time.Second)
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Call(ctx, mEcho, []byte("warm")); err != nil {
		b.Fatal(err)
	}
	r0, w0 := cl.reads.Load(), cl.writes.Load()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		payload := []byte("a lock request of a typical size, name and session")
		for pb.Next() {
			if _, err := c.Call(ctx, mEcho, payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/float64(max(cl.reads.Load()-r0, 1)), "requests/read")
	b.ReportMetric(float64(b.N)/float64(max(cl.writes.Load()-w0, 1)), "replies/write")
}
