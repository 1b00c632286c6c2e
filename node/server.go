// Package node is the client-facing server of elockd: it accepts client
// connections, keeps each connection's session, parses requests, and
// dispatches them to a Backend, which holds the lock state in this process
// (Local, a single node) or across a mesh (package node/mesh). It is the
// only layer that turns outcomes into reply lines: a locktable status, or
// a failure's class (503 retryable, 504 indeterminate).
//
// Files: server.go (listener, shutdown), conn.go (one connection's read,
// parse and write loop), commands.go (one method per verb), wait.go (a
// blocking lock that keeps reading its connection), clients.go (sessions
// attached here, shared with a mesh), backend.go (the Backend seam and
// Local, the single node's backend), topology.go (the members, placement
// and stats views a backend may offer), config.go, and hangup_*.go (whether a
// client has hung up, asked at the moment of a grant, per platform).
//
// Imports: node/wire, node/locktable, node/partition, node/failure,
// golang.org/x/sys and the standard library. Never node/mesh, replication or ring: the mesh
// depends on this package, not the other way round.
//
// Lock order: Server.mu and Clients.mu are leaves; a conn has no mutex
// (one goroutine owns it). No mutex is held while calling the Backend.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("node: server closed")

// Server serves the elock protocol. Create it with NewServer, run it with
// Serve and stop it with Shutdown.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	started time.Time

	// ctx is cancelled by Shutdown; every blocked request hangs off it.
	ctx    context.Context
	cancel context.CancelFunc

	clients *Clients // the connections with a session, by session id

	// listings admits MaxListings locks commands at once (see cmdLocks).
	listings chan struct{}

	mu        sync.Mutex // guards listeners, conns and closed
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool
	wg        sync.WaitGroup // one count per running connection goroutine

	nconns atomic.Int64 // open client connections
	// perIP counts open connections by remote IP, when MaxConnsPerIP is
	// set; an address's entry goes when its last connection does.
	perIPMu  sync.Mutex
	perIP    map[netip.Addr]int
	accepted atomic.Uint64
	refused  atomic.Uint64
	commands atomic.Uint64
}

// NewServer checks cfg and returns a server that dispatches to backend.
func NewServer(cfg Config, backend Backend) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if backend == nil {
		return nil, errors.New("node: nil backend")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clients := cfg.Clients
	if clients == nil {
		clients = NewClients()
	}
	if l, ok := backend.(*Local); ok && l.Clients == nil {
		l.Clients = clients // the labels its locks listing shows
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		clients:   clients,
		cfg:       cfg,
		backend:   backend,
		log:       log,
		started:   time.Now(),
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		perIP:     make(map[netip.Addr]int),
		listings:  make(chan struct{}, MaxListings),
	}, nil
}

// Serve accepts connections on l until Shutdown, and then returns
// ErrServerClosed. Any other error is the listener's.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of descriptors and the like: back off as net/http does,
				// rather than spin or give up the port.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("node: accept: %w", err)
		}
		backoff = 0
		s.accepted.Add(1)
		if !s.admit(nc) {
			continue
		}
	}
}

// isTemporary reports accept errors that pass, such as EMFILE.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// admit registers nc and starts its goroutine, or refuses it when the
// server is full or closing.
func (s *Server) admit(nc net.Conn) bool {
	if n := s.nconns.Add(1); n > int64(s.cfg.MaxConns) {
		s.nconns.Add(-1)
		s.refused.Add(1)
		s.log.Warn("connection refused: limit reached", "remote", nc.RemoteAddr(), "max_conns", s.cfg.MaxConns)
		go refuse(nc, fmt.Sprintf("too many connections (max %d)", s.cfg.MaxConns))
		return false
	}
	ip, counted := s.countIP(nc)
	if counted && !ip.IsValid() {
		s.nconns.Add(-1)
		s.refused.Add(1)
		s.log.Warn("connection refused: limit per address reached", "remote", nc.RemoteAddr(), "max_conns_per_ip", s.cfg.MaxConnsPerIP)
		go refuse(nc, fmt.Sprintf("too many connections from this address (max %d)", s.cfg.MaxConnsPerIP))
		return false
	}
	c := newConn(s, nc)
	c.ip = ip
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.nconns.Add(-1)
		s.uncountIP(ip)
		go refuse(nc, "shutting down")
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go c.serve()
	return true
}

// countIP takes a place for nc's remote IP when MaxConnsPerIP is set. It
// returns the address counted, or, with counted true and no address, that
// the address is at its cap. Without a cap, or for a remote end that is
// not an IP address, nothing is counted.
func (s *Server) countIP(nc net.Conn) (ip netip.Addr, counted bool) {
	if s.cfg.MaxConnsPerIP == 0 {
		return netip.Addr{}, false
	}
	ta, ok := nc.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip = ta.AddrPort().Addr().Unmap()
	s.perIPMu.Lock()
	defer s.perIPMu.Unlock()
	if s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		return netip.Addr{}, true
	}
	s.perIP[ip]++
	return ip, true
}

// uncountIP gives back a place countIP took.
func (s *Server) uncountIP(ip netip.Addr) {
	if !ip.IsValid() {
		return
	}
	s.perIPMu.Lock()
	defer s.perIPMu.Unlock()
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

// refuse answers a connection that will not be served, then closes it.
// The write is bounded so a client that never reads cannot pin it.
func refuse(nc net.Conn, reason string) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write([]byte("503 " + reason + "\r\n"))
	nc.Close()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.nconns.Add(-1)
	s.uncountIP(c.ip)
	s.wg.Done()
}

// Shutdown stops accepting, ends every connection after the command it is
// running (a blocked lock is answered "503 shutting down"), and waits for
// their goroutines until ctx ends; then it closes what is left. Sessions
// are detached, not ended: their locks stay for their timeouts, so a mesh
// client can resume elsewhere.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for l := range s.listeners {
			l.Close()
		}
		s.cancel()
		for c := range s.conns {
			c.interrupt()
		}
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		// A connection stuck in a backend call that ignores the closing
		// gets a moment more, not forever: the process is going away.
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		return ctx.Err()
	}
}

// Accepted and Refused count the client connections accepted since the
// server started, and those of them refused (too many connections, in
// all or from one address, or the server closing).
func (s *Server) Accepted() uint64 { return s.accepted.Load() }
func (s *Server) Refused() uint64  { return s.refused.Load() }

// Connections returns the number of open client connections.
func (s *Server) Connections() int { return int(s.nconns.Load()) }

// Uptime returns how long the server has run.
func (s *Server) Uptime() time.Duration { return time.Since(s.started) }
