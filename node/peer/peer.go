// Package peer is the internal RPC between the nodes of a mesh: homes
// proxying commands to owners, owners replicating to replicas, sessions'
// heartbeats, and the control plane's requests.
//
// Each pair of nodes shares one TCP connection per direction of calling.
// Frames from many concurrent calls are queued and written together, so a
// busy node sends many operations per message and per syscall. A reply may
// come long after its request (a lock wait), and replies can arrive in any
// order; a request id matches them. A refusal travels as a failure frame:
// its class and reason as codes, so that callers decide on those, never
// on text.
//
// The -peer port is shared with the raft transport: the first byte of a
// connection says which protocol it speaks (see Mux). Every method id is
// declared in methods.go, and a Registry dispatches them.
//
// Imports: node/failure and the standard library.
//
// Lock order: Client.mu, then a clientConn's mu; a sender's mu and a
// Server's mu are leaves. Callbacks (Go's done, a Handler's reply) are
// called with no mutex held.
package peer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elock/elock/node/failure"
)

// Sentinel errors of a call. They sort a failure into the protocol's three
// classes: a call that failed with ErrUnreachable certainly did nothing;
// one that failed with ErrLost may or may not have been carried out.
var (
	// ErrUnreachable: no connection could be made; nothing was sent.
	ErrUnreachable = errors.New("peer: unreachable")
	// ErrLost: the connection broke after the request may have been sent;
	// the outcome is unknown.
	ErrLost = errors.New("peer: connection lost, outcome unknown")
	// ErrClosed: the local end is shutting down.
	ErrClosed = errors.New("peer: closed")
	// ErrTooLarge: a frame exceeded MaxFrame.
	ErrTooLarge = errors.New("peer: frame too large")
	// ErrBacklog: the remote end stopped reading and a connection's
	// queue of frames to send reached MaxQueued; the connection is
	// closed, as if it broke.
	ErrBacklog = errors.New("peer: the remote end is not reading; connection closed")
)

// MaxFrame bounds one frame's payload. Snapshots are sent in chunks below
// it.
const MaxFrame = 16 << 20

// MaxQueued bounds the bytes a connection queues to send while its remote
// end does not read them (a node paused, or a peer that only writes).
// Reaching it breaks the connection: its calls fail as lost, and the
// memory they held is freed, instead of growing for as long as the remote
// end keeps the connection open. It is far above what a healthy peer
// leaves queued, which is one write's worth.
const MaxQueued = 64 << 20

// Protocol bytes: the first byte a dialer writes on a -peer connection.
const (
	ProtoRPC  byte = 'P'
	ProtoRaft byte = 'R'
)

// frame layout: u32 payload length, u8 kind, u64 request id, payload.
const headerLen = 4 + 1 + 8

// Kinds. A request's kind is its method (>= 16); a reply is kindReply.
const (
	kindReply    byte   = 1
	kindFailure  byte   = 2 // reply carrying a failure (see encodeFailure)
	MinMethod    Method = 16
	maxBatchSize        = 256 << 10
)

// Handler serves requests. Serve is called on the connection's reader
// goroutine, so it must not block: work that waits (a lock wait, a
// replication round trip) continues on its own goroutine and calls reply
// later, exactly once. reply may be called from any goroutine. conn ends
// when the connection closes, so that work done for a caller that has
// gone (a queued lock) can be withdrawn. payload is reused after Serve
// returns; keep a copy if needed.
//
// An error given to reply reaches the caller as a *failure.Error: a
// failure keeps its class and reason, any other error becomes a
// retryable failure of reason Internal.
type Handler interface {
	Serve(conn context.Context, method Method, payload []byte, reply func(payload []byte, err error))
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(conn context.Context, method Method, payload []byte, reply func([]byte, error))

func (f HandlerFunc) Serve(c context.Context, m Method, p []byte, reply func([]byte, error)) {
	f(c, m, p, reply)
}

// encodeFailure turns a handler's error into a failure frame's payload:
// class, reason and text, as codes a caller decides on.
func encodeFailure(err error) []byte {
	f, ok := failure.As(err)
	if !ok {
		f = failure.Retry(failure.Internal, err.Error())
	}
	var e Enc
	e.Uint(uint64(f.Class))
	e.Uint(uint64(f.Reason))
	e.Str(f.Text)
	return e.B
}

// decodeFailure reads a failure frame's payload.
func decodeFailure(b []byte) error {
	d := Dec{B: b}
	f := &failure.Error{Class: failure.Class(d.Uint()), Reason: failure.Reason(d.Uint()), Text: d.Str()}
	if d.End() != nil || f.Class < failure.Definite || f.Class > failure.Indeterminate {
		return fmt.Errorf("%w: bad failure frame", ErrMalformed)
	}
	return f
}

// sender queues frames and writes them in batches from one goroutine.
type sender struct {
	mu      sync.Mutex // guards buf and err
	buf     []byte
	err     error         // set once the sender stops; later sends fail with it
	wake    chan struct{} // capacity 1
	quit    chan struct{}
	stop    sync.Once
	done    chan struct{}
	nc      net.Conn
	onError func(error) // called once the sender fails; closes the connection
	limit   int         // MaxQueued, or less in tests
}

func newSender(nc net.Conn, onError func(error)) *sender {
	s := &sender{
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		nc: nc, onError: onError, limit: MaxQueued,
	}
	go s.loop()
	return s
}

// send queues one frame. It never blocks on the network.
func (s *sender) send(kind byte, id uint64, payload []byte) error {
	if len(payload) > MaxFrame {
		return ErrTooLarge
	}
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	if len(s.buf)+headerLen+len(payload) > s.limit {
		s.err = ErrBacklog
		s.mu.Unlock()
		if s.onError != nil {
			s.onError(ErrBacklog)
		}
		return ErrBacklog
	}
	var h [headerLen]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(len(payload)))
	h[4] = kind
	binary.BigEndian.PutUint64(h[5:13], id)
	s.buf = append(s.buf, h[:]...)
	s.buf = append(s.buf, payload...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

func (s *sender) loop() {
	defer close(s.done)
	var out []byte
	for {
		quitting := false
		select {
		case <-s.wake:
		case <-s.quit:
			quitting = true
		}
		// Let the goroutines that are ready to run add their frames first:
		// a request that woke this loop is rarely alone (the replies of
		// one replica acknowledgement, the requests of many clients read
		// in one poll), and one write for all of them costs one syscall
		// here and one read and wake-up at the other end, instead of one
		// per frame. When nothing else is ready this returns at once.
		runtime.Gosched()
		s.mu.Lock()
		out, s.buf = s.buf, out[:0]
		if quitting {
			s.err = ErrClosed
		}
		s.mu.Unlock()
		if len(out) > 0 {
			if _, err := s.nc.Write(out); err != nil {
				s.mu.Lock()
				if s.err == nil || s.err == ErrClosed {
					s.err = err
				}
				s.mu.Unlock()
				if s.onError != nil {
					s.onError(err)
				}
				return
			}
			if cap(out) > maxBatchSize {
				out = nil
			}
		}
		if quitting {
			return
		}
	}
}

// close writes what is queued and stops the writer.
func (s *sender) close() {
	s.stop.Do(func() { close(s.quit) })
	<-s.done
}

// readChunk is how much of a frame's payload readFrame makes room for
// before the bytes arrive.
const readChunk = 64 << 10

// keepBuffer is the largest read buffer a connection keeps between
// frames; a larger one, left by a rare big frame (a snapshot chunk), is
// dropped rather than held for the connection's life.
const keepBuffer = 1 << 20

// readFrame reads one frame into buf (grown as needed). h is the
// caller's, so that the header does not escape to the heap per frame.
//
// The payload is read as its bytes arrive: buf grows by at most
// readChunk beyond what has been received, so a header that declares
// MaxFrame bytes and sends a few costs a few, not MaxFrame.
func readFrame(r *bufio.Reader, buf []byte, h *[headerLen]byte) (kind byte, id uint64, payload, nbuf []byte, err error) {
	if cap(buf) > keepBuffer {
		buf = nil
	}
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, 0, nil, buf, err
	}
	n := int(binary.BigEndian.Uint32(h[0:4]))
	if n > MaxFrame {
		return 0, 0, nil, buf, ErrTooLarge
	}
	buf = buf[:0]
	for len(buf) < n {
		want := min(n-len(buf), readChunk)
		buf = slices.Grow(buf, want)
		got, rerr := io.ReadFull(r, buf[len(buf):len(buf)+want])
		buf = buf[:len(buf)+got]
		if rerr != nil {
			return 0, 0, nil, buf, rerr
		}
	}
	return h[4], binary.BigEndian.Uint64(h[5:13]), buf, buf, nil
}

// The idle deadlines of peer RPC connections. A server closes a
// connection that has sent no request for between ServerIdle and twice
// that while none of its requests is in progress: something that holds
// a connection open and says nothing (a peer gone quiet without a TCP
// reset, anyone who reached the port) costs a slot of MaxConns and a
// goroutine only so long. A client closes its own connection after
// ClientIdle to twice that without a request in progress, well before
// the server would: so a node's request never meets a close the server
// began, which would leave its outcome unknown.
const (
	ServerIdle = 5 * time.Minute
	ClientIdle = time.Minute
)

// Server serves peer RPC connections handed to it by a Mux.
type Server struct {
	handler Handler
	log     *slog.Logger
	// Idle is the server's idle deadline (ServerIdle unless a test sets
	// it before the Mux serves).
	Idle time.Duration

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewServer returns a server that dispatches requests to h.
func NewServer(h Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{handler: h, log: log, Idle: ServerIdle, conns: make(map[net.Conn]struct{})}
}

// ServeConn serves one accepted connection (its protocol byte already
// consumed) until it breaks or the server closes.
func (s *Server) ServeConn(nc net.Conn, r *bufio.Reader) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[nc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		nc.Close()
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
		s.wg.Done()
	}()
	out := newSender(nc, func(error) { nc.Close() })
	defer out.close()
	connCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if names, ok := callerNames(nc); ok {
		connCtx = WithCaller(connCtx, names...)
	}
	// frames counts the requests read, inflight those not answered yet;
	// the idle check needs no clock read per request.
	var frames, inflight atomic.Int64
	stopIdle := watchIdle(s.Idle, func(seen int64) (int64, bool) {
		n := frames.Load()
		return n, n == seen && inflight.Load() == 0
	}, func() {
		// Not Close: a reply queued as the last request ended would be
		// lost, and its caller told the outcome is unknown. Ending the
		// read ends the loop below, whose exit writes what is queued
		// before it closes.
		s.log.Debug("peer: closing an idle connection", "remote", nc.RemoteAddr())
		nc.SetReadDeadline(time.Now())
	})
	defer stopIdle()
	var buf []byte
	var hdr [headerLen]byte
	for {
		kind, id, payload, nbuf, err := readFrame(r, buf, &hdr)
		buf = nbuf
		if err != nil {
			return
		}
		frames.Add(1)
		inflight.Add(1)
		if Method(kind) < MinMethod {
			s.log.Warn("peer: unexpected frame kind from client", "kind", kind, "remote", nc.RemoteAddr())
			return
		}
		// The handler may keep payload past this call only by copying it:
		// the buffer is reused for the next frame.
		var once sync.Once
		s.handler.Serve(connCtx, Method(kind), payload, func(p []byte, err error) {
			once.Do(func() {
				inflight.Add(-1)
				if err != nil {
					out.send(kindFailure, id, encodeFailure(err))
					return
				}
				out.send(kindReply, id, p)
			})
		})
	}
}

// Close closes every connection and waits for their goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// watchIdle calls check every period with what it returned the time
// before (0 the first time), and close once check reports the connection
// idle. The function it returns stops the watch; after it returns,
// neither check nor close runs again. A period of 0 or less watches
// nothing.
func watchIdle(period time.Duration, check func(seen int64) (now int64, idle bool), close func()) (stop func()) {
	if period <= 0 {
		return func() {}
	}
	var (
		mu      sync.Mutex // guards seen and stopped, and orders a tick before or after stop
		seen    int64
		stopped bool
		t       *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(period, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		now, idle := check(seen)
		if idle {
			close()
			return
		}
		seen = now
		t.Reset(period)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// Client calls one remote node. It dials lazily and redials after a
// failure; calls made while the connection is down fail fast with
// ErrUnreachable, so callers decide about retrying.
type Client struct {
	addr    string
	timeout time.Duration
	source  net.Addr // the local address dials come from; nil for the kernel's choice
	sec     *TLS     // nil: plain TCP
	want    string   // with sec, the node id the other end must prove (Pool.To)
	// Idle is the client's idle deadline (ClientIdle unless a test sets
	// it before the first call).
	Idle    time.Duration
	observe func(Method, time.Duration) // Pool.Observe

	mu      sync.Mutex // guards cur, nextID, closed
	cur     *clientConn
	nextID  uint64
	closed  bool
	dialing chan struct{} // non-nil while a dial is in progress
}

type clientConn struct {
	nc      net.Conn
	out     *sender
	mu      sync.Mutex // guards pending, dead and idled; taken before the Client's mu, never after
	pending map[uint64]func([]byte, error)
	dead    bool
	idled   bool         // closed by the client for being idle: a new call dials again
	sent    atomic.Int64 // requests sent, for the idle check
	stop    func()       // ends the idle watch
	done    chan struct{}
}

type result struct {
	payload []byte
	err     error
}

// NewClient returns a client of the node whose -peer address is addr.
func NewClient(addr string, dialTimeout time.Duration) *Client {
	return &Client{addr: addr, timeout: dialTimeout, Idle: ClientIdle}
}

// Addr is the remote -peer address.
func (c *Client) Addr() string { return c.addr }

func (c *Client) conn(ctx context.Context) (*clientConn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if c.cur != nil {
			cc := c.cur
			c.mu.Unlock()
			return cc, nil
		}
		if wait := c.dialing; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		wait := make(chan struct{})
		c.dialing = wait
		c.mu.Unlock()

		cc, err := c.dial(ctx)
		c.mu.Lock()
		c.dialing = nil
		if err == nil {
			if c.closed {
				cc.shut()
				c.mu.Unlock()
				close(wait)
				return nil, ErrClosed
			}
			c.cur = cc
		}
		c.mu.Unlock()
		close(wait)
		if err != nil {
			if errors.Is(err, ErrNotProved) {
				return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
			}
			return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, c.addr, err)
		}
		return cc, nil
	}
}

func (c *Client) dial(ctx context.Context) (*clientConn, error) {
	d := net.Dialer{Timeout: c.timeout, LocalAddr: c.source, KeepAliveConfig: keepAlive}
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if nc, err = c.sec.wrap(nc, c.timeout, c.want); err != nil {
		return nil, err
	}
	nc.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := nc.Write([]byte{ProtoRPC}); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetWriteDeadline(time.Time{})
	cc := &clientConn{nc: nc, pending: make(map[uint64]func([]byte, error)), done: make(chan struct{})}
	cc.out = newSender(nc, func(error) { nc.Close() })
	cc.stop = watchIdle(c.Idle, func(seen int64) (int64, bool) {
		n := cc.sent.Load()
		cc.mu.Lock()
		defer cc.mu.Unlock()
		if n != seen || len(cc.pending) > 0 || cc.dead {
			return n, false
		}
		// Idle: no call may use it from here on, and the next one dials.
		cc.dead, cc.idled = true, true
		c.mu.Lock()
		if c.cur == cc {
			c.cur = nil
		}
		c.mu.Unlock()
		return n, true
	}, func() { nc.Close() })
	go c.read(cc)
	return cc, nil
}

// read delivers replies until the connection breaks, then fails every
// pending call with ErrLost.
func (c *Client) read(cc *clientConn) {
	defer close(cc.done)
	r := bufio.NewReaderSize(cc.nc, 64<<10)
	var buf []byte
	var hdr [headerLen]byte
	for {
		kind, id, payload, nbuf, err := readFrame(r, buf, &hdr)
		buf = nbuf
		if err != nil {
			break
		}
		cc.mu.Lock()
		cb := cc.pending[id]
		delete(cc.pending, id)
		cc.mu.Unlock()
		if cb == nil {
			continue // the caller gave up on it
		}
		p := append([]byte(nil), payload...)
		if kind == kindFailure {
			cb(nil, decodeFailure(p))
		} else {
			cb(p, nil)
		}
	}
	cc.stop()
	cc.shut()
	c.mu.Lock()
	if c.cur == cc {
		c.cur = nil
	}
	c.mu.Unlock()
	cc.mu.Lock()
	cc.dead = true
	pending := cc.pending
	cc.pending = map[uint64]func([]byte, error){}
	cc.mu.Unlock()
	lost := fmt.Errorf("%w: %s", ErrLost, c.addr)
	for _, cb := range pending {
		cb(nil, lost)
	}
}

func (cc *clientConn) shut() {
	cc.nc.Close()
	cc.out.close()
}

// Pending is a request sent and not answered yet.
type Pending struct {
	c    *Client
	cc   *clientConn
	id   uint64
	done func([]byte, error)
}

// Start sends a request and returns at once. done is called exactly once,
// with the reply or the error: on the connection's reader goroutine (so it
// must not block), on the goroutine that abandons the request, or, when
// the request could not be sent, on the caller's before Start returns
// nil. Requests from one goroutine are sent in the order of its calls,
// and the remote server reads them in that order. Start takes no context:
// a caller that needs one abandons the request when it ends, and so pays
// for no context or timer per request. A dial, when there is no
// connection, is bounded by the Client's dial timeout.
func (c *Client) Start(method Method, payload []byte, done func([]byte, error)) *Pending {
	return c.start(context.Background(), method, payload, done)
}

// start is Start whose dial, or wait for another caller's dial, also ends
// with ctx.
func (c *Client) start(ctx context.Context, method Method, payload []byte, done func([]byte, error)) *Pending {
	if method < MinMethod {
		done(nil, fmt.Errorf("peer: method %d is reserved", method))
		return nil
	}
	if obs := c.observe; obs != nil {
		// One closure more per call, only when observed.
		start, inner := time.Now(), done
		done = func(b []byte, err error) {
			obs(method, time.Since(start))
			inner(b, err)
		}
	}
	var (
		cc *clientConn
		id uint64
	)
	for {
		var err error
		if cc, err = c.conn(ctx); err != nil {
			done(nil, err)
			return nil
		}
		c.mu.Lock()
		c.nextID++
		id = c.nextID
		c.mu.Unlock()
		cc.mu.Lock()
		if cc.dead {
			idled := cc.idled
			cc.mu.Unlock()
			if idled {
				continue // closed for idleness before anything was sent: dial again
			}
			done(nil, fmt.Errorf("%w: %s: connection closed", ErrUnreachable, c.addr))
			return nil
		}
		cc.pending[id] = done
		cc.sent.Add(1)
		cc.mu.Unlock()
		break
	}
	p := &Pending{c: c, cc: cc, id: id, done: done}
	if err := cc.out.send(byte(method), id, payload); err != nil && p.take() {
		if !errors.Is(err, ErrTooLarge) {
			err = fmt.Errorf("%w: %s: %v", ErrUnreachable, c.addr, err)
		}
		done(nil, err)
		return nil
	}
	return p
}

// take removes the request from those waiting for a reply; true means
// the caller now owns calling done.
func (p *Pending) take() bool {
	p.cc.mu.Lock()
	defer p.cc.mu.Unlock()
	if _, ok := p.cc.pending[p.id]; !ok {
		return false
	}
	delete(p.cc.pending, p.id)
	return true
}

// Abandon stops waiting for the reply: unless it came first, done receives
// ErrLost, wrapping why, on this goroutine. The request went out, so the
// remote node may still carry it out. Abandon reports whether it did.
func (p *Pending) Abandon(why error) bool {
	if p == nil || !p.take() {
		return false
	}
	p.done(nil, fmt.Errorf("%w: %s: no reply: %w", ErrLost, p.c.addr, why))
	return true
}

// Call sends a request and waits for its reply. If ctx ends first, the
// call fails with ErrLost wrapping ctx.Err() and any late reply is
// dropped; the remote side may still carry the request out.
func (c *Client) Call(ctx context.Context, method Method, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // nothing sent: a caller looping on a dead context must not flood the peer
	}
	ch := make(chan result, 1)
	p := c.start(ctx, method, payload, func(b []byte, err error) { ch <- result{b, err} })
	if p != nil {
		select {
		case r := <-ch:
			return r.payload, r.err
		case <-ctx.Done():
			p.Abandon(ctx.Err())
		}
	}
	r := <-ch
	return r.payload, r.err
}

// Go is Start for a caller with a context: if ctx ends before the reply,
// the request is abandoned. A connection that goes silent without
// breaking (a partition that drops packets) would otherwise keep the
// caller waiting until TCP gives up, many minutes later.
func (c *Client) Go(ctx context.Context, method Method, payload []byte, done func([]byte, error)) {
	if err := ctx.Err(); err != nil {
		done(nil, err)
		return
	}
	var (
		mu       sync.Mutex // guards stop and answered
		stop     func() bool
		answered bool
	)
	p := c.start(ctx, method, payload, func(b []byte, err error) {
		mu.Lock()
		answered = true
		st := stop
		mu.Unlock()
		if st != nil {
			st()
		}
		done(b, err)
	})
	if p == nil {
		return
	}
	st := context.AfterFunc(ctx, func() { p.Abandon(ctx.Err()) })
	mu.Lock()
	if answered {
		mu.Unlock()
		st()
		return
	}
	stop = st
	mu.Unlock()
}

// Close closes the connection; pending calls fail with ErrLost.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	cc := c.cur
	c.cur = nil
	c.mu.Unlock()
	if cc != nil {
		cc.shut()
		<-cc.done
	}
}
