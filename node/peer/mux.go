package peer

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mux splits the -peer listener by the first byte of each connection:
// ProtoRPC goes to the peer Server, ProtoRaft to the raft transport, which
// sees the mux as a net.Listener (RaftListener) and dials with Mux.DialRaft.
//
// A node builds the mux first, so that its raft transport can be built on
// it, and starts it with Serve once every peer method has a handler:
// until then connections wait in the listener's backlog.
type Mux struct {
	ln  net.Listener
	log *slog.Logger
	sec *TLS // nil: plain TCP

	// conns counts the connections accepted and not yet closed, RPC and
	// raft alike, up to max (MaxConns): a peer, or anyone who can reach
	// the port, that opens connections without end is refused beyond it
	// instead of costing a goroutine and buffers each.
	conns atomic.Int64
	max   int64
	// refused counts the connections closed at once for being over max,
	// so that the warning is logged once per burst, not per connection.
	refused atomic.Int64

	admit func(names []string) bool // set by Serve, before the first accept

	raft     chan net.Conn
	closing  chan struct{}
	closeOne sync.Once
	serving  chan *Server // receives the server once Serve starts; capacity 1
	done     chan struct{}
	wg       sync.WaitGroup
}

// NewMux returns a mux on ln that routes nothing until Serve. Close
// stops it. With sec, every connection it accepts or dials for raft is
// TLS with a certificate from the mesh's CA at both ends.
func NewMux(ln net.Listener, sec *TLS, log *slog.Logger) *Mux {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mux{ln: ln, log: log, sec: sec, raft: make(chan net.Conn), closing: make(chan struct{}),
		serving: make(chan *Server, 1), done: make(chan struct{}), max: MaxConns}
}

// Serve starts routing ln's connections, RPC ones to rpc. It is called
// once.
//
// With TLS, admit (if not nil) is asked about every connection once its
// handshake is done, RPC and raft alike, with the DNS names of the
// caller's certificate: a connection it refuses is closed before its
// first request is read. A mesh admits only the nodes its table
// registered, so that a certificate of the mesh's CA alone (a node
// never admitted, or one removed) does not let its holder call every
// method and take part in raft.
func (m *Mux) Serve(rpc *Server, admit func(names []string) bool) {
	m.admit = admit
	m.serving <- rpc
	go m.accept(rpc)
}

func (m *Mux) accept(rpc *Server) {
	defer close(m.done)
	for {
		nc, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closing:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			m.log.Error("peer listener failed", "err", err)
			return
		}
		if m.conns.Add(1) > m.max {
			m.conns.Add(-1)
			nc.Close()
			if m.refused.Add(1) == 1 {
				m.log.Warn("peer: too many connections; refusing new ones", "max", m.max, "remote", nc.RemoteAddr())
			}
			continue
		}
		m.refused.Store(0)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(slotConn{Conn: nc, m: m, once: new(sync.Once)}, rpc)
		}()
	}
}

func (m *Mux) route(sc slotConn, rpc *Server) {
	if tc, ok := sc.Conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAliveConfig(keepAlive)
	}
	var nc net.Conn = sc
	if m.sec != nil {
		// The handshake happens in the first read, under its deadline:
		// a connection that never completes one is closed with it.
		nc = tlsServer{Conn: tls.Server(sc.Conn, m.sec.server()), slot: sc}
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReaderSize(nc, 64<<10)
	b, err := r.ReadByte()
	nc.SetReadDeadline(time.Time{})
	if err != nil {
		if m.sec != nil {
			m.log.Debug("peer: TLS handshake failed", "remote", sc.RemoteAddr(), "err", err)
		}
		nc.Close()
		return
	}
	if m.admit != nil {
		if names, ok := callerNames(nc); ok && !m.admit(names) {
			m.log.Debug("peer: caller not admitted", "remote", sc.RemoteAddr(), "names", names)
			nc.Close()
			return
		}
	}
	switch b {
	case ProtoRPC:
		rpc.ServeConn(nc, r)
	case ProtoRaft:
		bc := &bufferedConn{Conn: nc, r: r}
		select {
		case m.raft <- bc:
		case <-m.closing:
			nc.Close()
		}
	default:
		m.log.Warn("peer: unknown protocol byte", "byte", b, "remote", nc.RemoteAddr())
		nc.Close()
	}
}

// Close stops accepting and closes the RPC server's connections.
func (m *Mux) Close() error {
	m.closeOne.Do(func() { close(m.closing) })
	err := m.ln.Close()
	select {
	case rpc := <-m.serving:
		<-m.done
		rpc.Close()
		m.serving <- rpc // a second Close finds it again
	default:
	}
	m.wg.Wait()
	return err
}

// Addr is the -peer address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// RaftListener returns the net.Listener half of a raft StreamLayer.
func (m *Mux) RaftListener() net.Listener { return raftListener{m} }

type raftListener struct{ m *Mux }

func (l raftListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raft:
		return c, nil
	case <-l.m.closing:
		return nil, net.ErrClosed
	}
}

func (l raftListener) Close() error   { return nil } // the Mux owns the listener
func (l raftListener) Addr() net.Addr { return l.m.ln.Addr() }

// DialRaft dials a raft connection to a -peer address, from the IP the
// mux listens on (see Source).
func (m *Mux) DialRaft(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: Source(m.ln.Addr()), KeepAliveConfig: keepAlive}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if nc, err = m.sec.wrap(nc, timeout, ""); err != nil {
		return nil, fmt.Errorf("peer: raft dial %s: %w", addr, err)
	}
	nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := nc.Write([]byte{ProtoRaft}); err != nil {
		nc.Close()
		return nil, fmt.Errorf("peer: raft dial %s: %w", addr, err)
	}
	nc.SetWriteDeadline(time.Time{})
	return nc, nil
}

// MaxConns bounds the connections a node's -peer port holds at once.
// Each pair of nodes uses two RPC connections and a few raft ones, so
// this leaves room for meshes of hundreds of nodes.
const MaxConns = 1024

// KeepAlive is the TCP keepalive period of peer connections: a peer that
// vanishes without closing (a machine powered off, a cable pulled) is
// found in about three periods, not the kernel's default two hours, and
// what waited on its connection fails as lost.
const KeepAlive = 15 * time.Second

// keepAlive probes every KeepAlive once a connection has been silent for
// as long, three times, in both directions of a peer connection.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: KeepAlive, Interval: KeepAlive, Count: 3}

// slotConn gives back its place among the Mux's connections when it is
// first closed.
type slotConn struct {
	net.Conn
	m    *Mux
	once *sync.Once
}

func (c slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.m.conns.Add(-1) })
	return err
}

// tlsServer is an accepted TLS connection whose Close also gives back
// its place among the Mux's connections.
type tlsServer struct {
	*tls.Conn
	slot slotConn
}

func (c tlsServer) Close() error {
	err := c.Conn.Close()
	c.slot.Close()
	return err
}

// bufferedConn reads through the bufio.Reader that consumed the protocol
// byte, so nothing it buffered is lost.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
