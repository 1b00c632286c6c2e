// Package node is a running elockd: it accepts client connections, keeps
// each connection's session, parses requests and dispatches them to a
// Backend, which holds the lock state here or across a mesh.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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

	mu        sync.Mutex // guards listeners, conns, attached and closed
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	attached  map[string]*conn // session id -> the local connection it is attached to
	closed    bool
	wg        sync.WaitGroup // one count per running connection goroutine

	nconns   atomic.Int64 // open client connections
	nclients atomic.Int64 // open connections that have a session
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
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:       cfg,
		backend:   backend,
		log:       log,
		started:   time.Now(),
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		attached:  make(map[string]*conn),
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
	c := newConn(s, nc)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.nconns.Add(-1)
		go refuse(nc, "shutting down")
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go c.serve()
	return true
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

func (s *Server) bindConn(id string, c *conn) {
	s.mu.Lock()
	s.attached[id] = c
	s.mu.Unlock()
	s.nclients.Add(1)
}

func (s *Server) unbind(id string, c *conn) {
	s.mu.Lock()
	if s.attached[id] == c {
		delete(s.attached, id)
	}
	s.mu.Unlock()
	s.nclients.Add(-1)
}

// heldByHungUp reports whether session id is attached to a connection of
// this node whose client has already hung up.
func (s *Server) heldByHungUp(id string) bool {
	s.mu.Lock()
	c := s.attached[id]
	s.mu.Unlock()
	return c != nil && peerHungUp(c.raw)
}

// Kick closes the connection a session is attached to here, if any: the
// mesh could not keep the session safe, and the client should resume it.
func (s *Server) Kick(id string) {
	s.mu.Lock()
	c := s.attached[id]
	s.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

// Live reports whether session id is attached to a connection of this
// node whose client has not hung up.
func (s *Server) Live(id string) bool {
	s.mu.Lock()
	c := s.attached[id]
	s.mu.Unlock()
	return c != nil && !peerHungUp(c.raw)
}

// LocalClients returns this node's count of connections with a session.
func (s *Server) LocalClients() int { return int(s.nclients.Load()) }

// Uptime returns how long the server has run.
func (s *Server) Uptime() time.Duration { return time.Since(s.started) }
