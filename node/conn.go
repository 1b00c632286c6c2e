package node

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/wire"
)

const (
	initialReadBuf = 1024
	// flushAt bounds the replies held back for coalescing.
	flushAt = 64 << 10
	// maxIDLen bounds a session id a client may claim with conn_id.
	maxIDLen = 64
	// backendTimeout bounds bookkeeping calls made when no client waits
	// for them, such as the detach of a closed connection.
	backendTimeout = 10 * time.Second
)

// conn is one client connection. Exactly one goroutine (serve) reads,
// parses, executes and writes; while a lock waits, that goroutine goes on
// reading the connection (wait.go), so that a disconnect is noticed.
type conn struct {
	s  *Server
	nc net.Conn
	ip netip.Addr // counted against MaxConnsPerIP; invalid if not

	// wdeadline is the write deadline set on nc: moved forward only once
	// half of WriteTimeout has passed, so that a flush seldom pays for
	// setting it, and a write that blocks fails within WriteTimeout.
	wdeadline time.Time

	buf    []byte // bytes buf[r:w] are read and not yet consumed
	r, w   int
	maxBuf int
	out    []byte // replies not yet written, coalesced into one write
	framer wire.Framer
	req    wire.Request

	sess *connSession // nil until a command registers a session
	// identity is who the client is, with an ACL: its certificate's
	// common name, the identity its token names, or Anonymous.
	identity string
	// certified: the identity came from a client certificate, and no
	// token replaces it.
	certified bool

	raw    syscall.RawConn // for onOutcome's non-blocking write; may be nil
	direct int             // bytes of a grant onOutcome wrote
	// grantReply is the reply a grant of the current request gets:
	// "200 Acquired", or "200 Elected" for a campaign. Set before the
	// request reaches the backend, read by onOutcome.
	grantReply []byte
	// watch holds the connection's watches (watch.go); woken says a
	// watch moved the read deadline to wake the loop.
	watch      watches
	sessEvents sessionEvents
	woken      atomic.Bool
	// wake serialises what moves the read deadline from other
	// goroutines (a grant, an event) with the connection's own reset of
	// it, and a grant's direct write with an event's: a wake-up is never
	// lost, and no event lands inside a half-written grant.
	wake sync.Mutex
	// buffered is set while replies that must precede a waiting lock's
	// grant are not yet written: onOutcome then leaves the grant to the
	// connection's goroutine.
	buffered atomic.Bool
	outcome  chan partition.Outcome // a wait's outcome; capacity 1
	done     partition.Done         // c.onOutcome, bound once

	// mark is where in out the running command's reply begins, and
	// granted says a waiting lock was granted (its reply may be written
	// directly), so that an Observer learns the reply's code.
	mark    int
	granted bool

	eof  bool // the client will send nothing more (half or full close)
	gone bool // the connection is broken; nothing more can be written
	quit bool
}

// connSession is the connection's view of its session.
type connSession struct {
	ref SessionRef
	// shown is the id the client knows: ref.ID without the identity
	// that, with an ACL, makes the session its own (see sessionKey).
	shown   string
	resumed bool // the last conn_id ID took over an existing session
	timeout time.Duration
	// held counts the session's locks, for MaxLocksPerSession. It is exact
	// for the session's own requests; after a resume it is re-read.
	held int
}

func newConn(s *Server, nc net.Conn) *conn {
	under := nc
	if w, ok := nc.(interface{ NetConn() net.Conn }); ok {
		under = w.NetConn() // a TLS connection's TCP connection
	}
	if tc, ok := under.(*net.TCPConn); ok {
		// Replies are coalesced by hand; Nagle would only add latency.
		tc.SetNoDelay(true)
		tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: KeepAlive, Interval: KeepAlive, Count: 3})
	}
	var raw syscall.RawConn
	if sc, ok := nc.(syscall.Conn); ok {
		raw, _ = sc.SyscallConn()
	}
	c := &conn{
		identity:   Anonymous,
		raw:        raw,
		outcome:    make(chan partition.Outcome, 1),
		grantReply: wire.Acquired,
		s:          s,
		nc:         nc,
		buf:        make([]byte, min(initialReadBuf, s.cfg.MaxLine+2)),
		maxBuf:     s.cfg.MaxLine + 2, // a full line plus CRLF
		framer:     wire.Framer{MaxLine: s.cfg.MaxLine},
	}
	c.done = c.onOutcome
	return c
}

// interrupt wakes the goroutine from a blocked read, for Shutdown.
func (c *conn) interrupt() { c.nc.SetReadDeadline(time.Now()) }

func (c *conn) serve() {
	defer c.finish()
	if hs, ok := c.nc.(interface {
		HandshakeContext(context.Context) error
	}); ok {
		ctx, cancel := context.WithTimeout(c.s.ctx, c.s.cfg.HandshakeTimeout)
		err := hs.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.s.log.Debug("TLS handshake failed", "remote", c.nc.RemoteAddr().String(), "err", err)
			return
		}
		if cs, ok := c.nc.(interface{ ConnectionState() tls.ConnectionState }); ok && c.s.cfg.ACL != nil {
			// Only a name an ACL can give rules to: one with a colon or a
			// space could make the session key of another identity's
			// session (see sessionKey), so it stays anonymous.
			if certs := cs.ConnectionState().PeerCertificates; len(certs) > 0 && identityName.MatchString(certs[0].Subject.CommonName) {
				c.identity, c.certified = certs[0].Subject.CommonName, true
			}
		}
	}
	for {
		c.process()
		if c.gone || c.quit || c.eof || c.s.ctx.Err() != nil {
			break
		}
		c.drainEvents()
		if !c.flush() {
			break
		}
		c.fill()
	}
	c.flush()
}

// finish detaches the session and releases the connection's resources.
func (c *conn) finish() {
	c.stopWatches()
	c.eventsReleased(nil)
	c.detach()
	c.nc.Close()
	c.s.forget(c)
}

// detach hands the session back: its locks now live for its timeout, and
// another connection may resume it.
func (c *conn) detach() {
	if c.sess == nil {
		return
	}
	ref := c.sess.ref
	c.sess = nil
	// While the server shuts down the nodes around it may be going too:
	// try briefly. A session whose detach is lost is detached anyway by its
	// session owner once this node stops renewing it.
	timeout := backendTimeout
	if c.s.ctx.Err() != nil {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.s.backend.Detach(ctx, ref); err != nil {
		c.s.log.Warn("detach failed", "session", LogID(ref.ID), "err", err)
	}
	// Only now: a resume that finds the session still attached keeps
	// waiting for as long as this connection is listed as hung up.
	c.s.clients.unbind(ref.ID, c)
}

// process runs every complete request buffered, in order.
func (c *conn) process() {
	for !c.gone && !c.quit {
		fr, line, n := c.framer.Next(c.buf[c.r:c.w])
		c.r += n
		switch fr {
		case wire.NeedMore:
			if n == 0 {
				return
			}
			continue
		case wire.TooLong:
			c.out = wire.AppendError(c.out, wire.CodeTooLong, "line too long (max "+strconv.Itoa(c.s.cfg.MaxLine)+" bytes)")
		case wire.Line:
			c.handle(line)
		}
		if len(c.out) >= flushAt && !c.flush() {
			return
		}
	}
}

// fill reads once into the buffer, making room first.
func (c *conn) fill() {
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
	if c.w == len(c.buf) {
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if c.w == len(c.buf) && len(c.buf) < c.maxBuf {
			nb := make([]byte, min(2*len(c.buf), c.maxBuf))
			copy(nb, c.buf[:c.w])
			c.buf = nb
		}
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.w += n
	c.readError(err)
}

// readError classifies a read error.
func (c *conn) readError(err error) {
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		c.eof = true
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Our own interrupt: the loop checks why.
	default:
		c.eof, c.gone = true, true
	}
}

// flush writes the coalesced replies in one write.
func (c *conn) flush() bool {
	if len(c.out) == 0 || c.gone {
		c.out, c.mark = c.out[:0], 0
		return !c.gone
	}
	if now := time.Now(); c.wdeadline.Sub(now) < c.s.cfg.WriteTimeout/2 {
		c.wdeadline = now.Add(c.s.cfg.WriteTimeout)
		c.nc.SetWriteDeadline(c.wdeadline)
	}
	_, err := c.nc.Write(c.out)
	c.mark = 0
	if cap(c.out) > flushAt {
		c.out = nil
	} else {
		c.out = c.out[:0]
	}
	if err != nil {
		c.gone = true
		return false
	}
	return true
}
