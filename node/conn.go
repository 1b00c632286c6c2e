package node

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/elock/elock/node/locktable"
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
// parses, executes and writes; while it blocks in a waiting lock, a
// watcher goroutine reads on its behalf so that a disconnect is noticed.
type conn struct {
	s  *Server
	nc net.Conn

	buf    []byte // bytes buf[r:w] are read and not yet consumed
	r, w   int
	maxBuf int
	out    []byte // replies not yet written, coalesced into one write
	framer wire.Framer
	req    wire.Request

	sess *connSession // nil until a command registers a session

	raw     syscall.RawConn        // for onOutcome's non-blocking write; may be nil
	direct  int                    // bytes of a grant onOutcome wrote
	outcome chan partition.Outcome // a wait's outcome; capacity 1
	done    partition.Done         // c.onOutcome, bound once

	eof  bool // the client will send nothing more (half or full close)
	gone bool // the connection is broken; nothing more can be written
	quit bool
}

// connSession is the connection's view of its session.
type connSession struct {
	ref     SessionRef
	resumed bool // the last conn_id ID took over an existing session
	timeout time.Duration
	// held counts the session's locks, for MaxLocksPerSession. It is exact
	// for the session's own requests; after a resume it is re-read.
	held int
}

func newConn(s *Server, nc net.Conn) *conn {
	if tc, ok := nc.(*net.TCPConn); ok {
		// Replies are coalesced by hand; Nagle would only add latency.
		tc.SetNoDelay(true)
	}
	var raw syscall.RawConn
	if sc, ok := nc.(syscall.Conn); ok {
		raw, _ = sc.SyscallConn()
	}
	c := &conn{
		raw:     raw,
		outcome: make(chan partition.Outcome, 1),
		s:       s,
		nc:      nc,
		buf:     make([]byte, min(initialReadBuf, s.cfg.MaxLine+2)),
		maxBuf:  s.cfg.MaxLine + 2, // a full line plus CRLF
		framer:  wire.Framer{MaxLine: s.cfg.MaxLine},
	}
	c.done = c.onOutcome
	return c
}

// interrupt wakes the goroutine from a blocked read, for Shutdown.
func (c *conn) interrupt() { c.nc.SetReadDeadline(time.Now()) }

func (c *conn) serve() {
	defer c.finish()
	for {
		c.process()
		if c.gone || c.quit || c.eof || c.s.ctx.Err() != nil {
			break
		}
		if !c.flush() {
			break
		}
		c.fill()
	}
	c.flush()
}

// finish detaches the session and releases the connection's resources.
func (c *conn) finish() {
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
		c.s.log.Warn("detach failed", "session", ref.ID, "err", err)
	}
	// Only now: a resume that finds the session still attached keeps
	// waiting for as long as this connection is listed as hung up.
	c.s.unbind(ref.ID, c)
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
		c.out = c.out[:0]
		return !c.gone
	}
	_, err := c.nc.Write(c.out)
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

func (c *conn) handle(line []byte) {
	blank, ok := wire.Parse(line, &c.req)
	if blank {
		return // the original crashed here; a blank line is now a no-op
	}
	c.s.commands.Add(1)
	if c.s.log.Enabled(c.s.ctx, slog.LevelDebug) {
		c.s.log.Debug("command", "remote", c.nc.RemoteAddr().String(), "line", string(line))
	}
	if !ok {
		c.out = wire.AppendUnknown(c.out, c.req.Verb)
		return
	}
	switch c.req.Cmd {
	case wire.Lock:
		c.cmdLock()
	case wire.Unlock:
		c.cmdUnlock()
	case wire.UnlockAll:
		c.cmdUnlockAll()
	case wire.ConnID:
		c.cmdConnID()
	case wire.SetTimeout:
		c.cmdSetTimeout()
	case wire.Quit:
		// Detach before answering, so a client that reconnects as soon as
		// it reads the goodbye can resume at once.
		c.detach()
		c.out = append(c.out, wire.Goodbye...)
		c.quit = true
	case wire.Stats:
		c.cmdStats()
	case wire.Token:
		c.cmdToken()
	case wire.Info:
		c.cmdInfo()
	case wire.Session:
		c.cmdSession()
	case wire.Members:
		c.cmdMembers()
	case wire.Where:
		c.cmdWhere()
	}
}

// fail answers an error from the backend with its own line.
func (c *conn) fail(err error) {
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		c.out = wire.AppendError(c.out, we.Code, we.Reason)
	case c.s.ctx.Err() != nil:
		c.out = wire.AppendError(c.out, wire.CodeRetry, "shutting down")
	default:
		c.s.log.Warn("backend error", "err", err)
		c.out = wire.AppendError(c.out, wire.CodeRetry, "internal error; retry")
	}
}

// name checks a lock name argument and answers when it is unusable.
func (c *conn) name(b []byte) bool {
	if len(b) > c.s.cfg.MaxName {
		c.out = wire.AppendError(c.out, wire.CodeTooLong, "name too long (max "+strconv.Itoa(c.s.cfg.MaxName)+" bytes)")
		return false
	}
	for _, ch := range b {
		if ch == '\r' {
			c.out = wire.AppendError(c.out, wire.CodeBadRequest, "bad name: CR is not allowed in a name")
			return false
		}
	}
	return true
}

// session returns the connection's session, registering a new one on
// first use. It answers and returns nil if the backend fails.
func (c *conn) session() *connSession {
	if c.sess != nil {
		return c.sess
	}
	id := newSessionID()
	ctx, cancel := context.WithTimeout(c.s.ctx, backendTimeout)
	a, err := c.s.backend.Attach(ctx, id)
	cancel()
	if err != nil {
		c.fail(err)
		return nil
	}
	c.bind(id, a)
	return c.sess
}

func (c *conn) bind(id string, a locktable.Attachment) {
	c.sess = &connSession{ref: SessionRef{ID: id, Epoch: a.Epoch}, resumed: a.Resumed, timeout: a.Timeout}
	c.s.bindConn(id, c)
}

// ref returns the session reference for read-only commands, which do not
// register a session: the empty id holds nothing.
func (c *conn) ref() SessionRef {
	if c.sess == nil {
		return SessionRef{}
	}
	return c.sess.ref
}

var sessionEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newSessionID returns 128 random bits as 26 base32 characters: ids must
// be unguessable, because knowing one is enough to resume its session.
func newSessionID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails on Linux; panics rather than return weak bytes
	return sessionEncoding.EncodeToString(b[:])
}

// validID reports whether a client-chosen session id is acceptable:
// 1 to 64 printable ASCII bytes.
func validID(b []byte) bool {
	if len(b) == 0 || len(b) > maxIDLen {
		return false
	}
	for _, ch := range b {
		if ch <= ' ' || ch > '~' {
			return false
		}
	}
	return true
}

func (c *conn) cmdLock() {
	name := c.req.Args[0]
	if !c.name(name) {
		return
	}
	var wait time.Duration
	if c.req.NArgs == 2 {
		secs, ok := wire.ParseUint(c.req.Args[1], uint64(c.s.cfg.MaxWait/time.Second))
		if !ok {
			c.out = wire.AppendError(c.out, wire.CodeBadRequest,
				"bad wait: want whole seconds from 0 to "+strconv.FormatInt(int64(c.s.cfg.MaxWait/time.Second), 10))
			return
		}
		wait = time.Duration(secs) * time.Second
	}
	sess := c.session()
	if sess == nil {
		return
	}
	start := time.Now()
	if sess.held >= c.s.cfg.MaxLocksPerSession && !c.holds(name) {
		c.out = wire.AppendError(c.out, wire.CodeLimit,
			"too many locks held by this session (max "+strconv.Itoa(c.s.cfg.MaxLocksPerSession)+")")
		return
	}
	res, _, err := c.s.backend.Lock(c.s.ctx, sess.ref, name, 0, nil)
	if err == nil && res.Status == locktable.Unavailable && wait > 0 {
		if c.eof {
			// After the client's half-close a disconnect cannot be told
			// apart from a client still reading, and a disconnected waiter
			// must never be handed the lock: no waiting, as with SECS 0.
		} else {
			res, err = c.waitLock(sess.ref, name, wait-time.Since(start))
		}
	}
	if err == errReplied {
		return
	}
	if err != nil {
		if c.eof && errors.Is(err, context.Canceled) && c.s.ctx.Err() == nil {
			c.out = append(c.out, wire.Unavailable...)
			return
		}
		c.fail(err)
		return
	}
	c.lockReply(res)
}

func (c *conn) lockReply(res locktable.Result) {
	switch res.Status {
	case locktable.Granted:
		if !res.Reentrant {
			c.sess.held++
		}
		c.out = append(c.out, wire.Acquired...)
	case locktable.Unavailable:
		c.out = append(c.out, wire.Unavailable...)
	case locktable.TooManyWaiters:
		c.out = wire.AppendError(c.out, wire.CodeLimit,
			"too many waiters for this lock (max "+strconv.Itoa(c.s.cfg.MaxWaiters)+")")
	default:
		c.fail(errors.New("unexpected lock status " + res.Status.String()))
	}
}

// holds reports whether the session holds name already.
func (c *conn) holds(name []byte) bool {
	_, st, err := c.s.backend.Token(c.s.ctx, c.sess.ref, name)
	return err == nil && st == locktable.Granted
}

// waitLock queues a lock request and waits for its outcome while still
// reading the connection, so a client that goes away leaves the queue at
// once. Requests pipelined behind it are buffered, not run.
func (c *conn) waitLock(ref SessionRef, name []byte, wait time.Duration) (locktable.Result, error) {
	if wait <= 0 {
		return locktable.Result{Status: locktable.Unavailable}, nil
	}
	// Replies to the requests before this one go out before it blocks.
	if !c.flush() {
		return locktable.Result{}, context.Canceled
	}
	c.direct = 0
	res, w, err := c.s.backend.Lock(c.s.ctx, ref, name, wait, c.done)
	if err != nil || w == nil {
		return res, err
	}
	o, ok := c.awaitOutcome()
	if !ok {
		// The client went away (or half-closed), or the server is
		// shutting down.
		if w.Cancel() {
			return locktable.Result{}, context.Canceled
		}
		o = <-c.outcome
		if o.Granted && c.direct == 0 {
			// Granted as the client went away: the grant never reaches
			// anyone able to use it, so it goes on to the next waiter.
			return c.unwanted(ref, name, o.Token)
		}
	}
	if o.Err != nil || !o.Granted {
		return o.Result()
	}
	if c.direct == 0 && peerHungUp(c.raw) {
		// The client closed while the grant was on its way: it must not
		// keep a lock it will never hear of.
		c.eof = true
		return c.unwanted(ref, name, o.Token)
	}
	// onOutcome wrote c.direct bytes of the reply already; finish it.
	c.sess.held++
	c.out = append(c.out, wire.Acquired[c.direct:]...)
	return res, errReplied
}

// unwanted releases a grant that no client will hear of.
func (c *conn) unwanted(ref SessionRef, name []byte, token uint64) (locktable.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
	defer cancel()
	if err := releaseUnwanted(ctx, c.s.backend, ref, name, token); err != nil {
		c.s.log.Warn("releasing an unwanted grant failed", "session", ref.ID, "err", err)
	}
	return locktable.Result{}, context.Canceled
}

// releaseUnwanted takes back a grant that no client will hear of, by its
// token. The owner keeps it if a client of the session may have heard of
// it since through another request (a resumed connection's re-entrant
// lock or wait): taking it then would leave two holders. Left in place,
// a grant nobody heard of refuses everyone else until its session ends.
// Drop, unlike unlock, works after the session moved to another home,
// where a grant that reached the old one is most often unwanted (found by
// the fault suite). An owner that took the partition over since the
// grant cannot tell who heard of it; then only the session's current
// home may release it, by unlock.
func releaseUnwanted(ctx context.Context, b Backend, ref SessionRef, name []byte, token uint64) error {
	if token != 0 {
		res, err := b.Drop(ctx, ref, name, token)
		if err != nil || res.Status != locktable.Granted {
			return err
		}
	}
	_, err := b.Unlock(ctx, ref, name)
	return err
}

// onOutcome is the Done of this connection's waits. It runs on the
// goroutine that decided the outcome. A hand-over is on the critical path
// of every contended client, so it answers the client right here with one
// non-blocking write instead of waiting for this connection's goroutine
// to be scheduled. Then it wakes that goroutine out of its read: the
// deadline first, so that the wake-up can never outlive the wait.
func (c *conn) onOutcome(o partition.Outcome) {
	if o.Granted && o.Err == nil && c.raw != nil && !peerHungUp(c.raw) {
		c.raw.Write(func(fd uintptr) bool {
			k, _ := syscall.Write(int(fd), wire.Acquired)
			c.direct = max(k, 0)
			return true // one attempt; never wait for room
		})
	}
	c.nc.SetReadDeadline(time.Unix(1, 0))
	c.outcome <- o
}

// awaitOutcome reads the connection until the wait's outcome arrives. It
// returns false if the client sends EOF or breaks the connection, or the
// server shuts down, before that.
func (c *conn) awaitOutcome() (partition.Outcome, bool) {
	defer c.nc.SetReadDeadline(time.Time{})
	for {
		select {
		case o := <-c.outcome:
			return o, true
		default:
		}
		if c.s.ctx.Err() != nil {
			return partition.Outcome{}, false
		}
		if c.w-c.r >= c.watchLimit() {
			// Enough is buffered behind the wait: stop reading
			// (back-pressure) and wait for the outcome alone.
			select {
			case o := <-c.outcome:
				return o, true
			case <-c.s.ctx.Done():
				return partition.Outcome{}, false
			}
		}
		if c.w == len(c.buf) {
			// Grow into a new array: the request being served still points
			// into the old one, so compacting in place is not allowed here.
			nb := make([]byte, max(2*len(c.buf), c.w-c.r+4096))
			c.w = copy(nb, c.buf[c.r:c.w])
			c.r = 0
			c.buf = nb
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Woken: the outcome is on its way, or the server is closing.
			select {
			case o := <-c.outcome:
				return o, true
			case <-c.s.ctx.Done():
				return partition.Outcome{}, false
			}
		default:
			c.readError(err)
			return partition.Outcome{}, false
		}
	}
}

// errReplied tells cmdLock that waitLock has answered already.
var errReplied = errors.New("node: replied")

// watchLimit bounds what is buffered of the requests pipelined behind a
// blocked lock; past it, the connection is not read (back-pressure).
func (c *conn) watchLimit() int { return 16 * c.s.cfg.MaxLine }

func (c *conn) cmdUnlock() {
	name := c.req.Args[0]
	if !c.name(name) {
		return
	}
	sess := c.session()
	if sess == nil {
		return
	}
	res, err := c.s.backend.Unlock(c.s.ctx, sess.ref, name)
	if err != nil {
		c.fail(err)
		return
	}
	switch res.Status {
	case locktable.Unlocked:
		sess.held = max(sess.held-1, 0)
		c.out = append(c.out, wire.Unlocked...)
	case locktable.NotYours:
		c.out = append(c.out, wire.NotYours...)
	default:
		c.out = append(c.out, wire.NotLocked...)
	}
}

func (c *conn) cmdUnlockAll() {
	sess := c.session()
	if sess == nil {
		return
	}
	if err := c.s.backend.UnlockAll(c.s.ctx, sess.ref); err != nil {
		c.fail(err)
		return
	}
	sess.held = 0
	c.out = append(c.out, wire.OK...)
}

func (c *conn) cmdConnID() {
	if c.req.NArgs == 0 {
		if sess := c.session(); sess != nil {
			c.out = wire.AppendText(c.out, sess.ref.ID)
		}
		return
	}
	id := c.req.Args[0]
	if c.sess != nil {
		c.out = append(c.out, wire.CannotSetID...)
		return
	}
	if !validID(id) {
		c.out = wire.AppendError(c.out, wire.CodeBadRequest,
			"bad session id: want 1 to "+strconv.Itoa(maxIDLen)+" printable ASCII bytes")
		return
	}
	sid := string(id)
	ctx, cancel := context.WithTimeout(c.s.ctx, backendTimeout)
	defer cancel()
	a, err := c.s.backend.Attach(ctx, sid)
	for errors.Is(err, locktable.ErrAttached) && c.s.heldByHungUp(sid) && ctx.Err() == nil {
		// Its client has hung up and that connection's goroutine is about
		// to read the EOF and detach: a reconnecting client should not be
		// refused for that moment.
		time.Sleep(time.Millisecond)
		a, err = c.s.backend.Attach(ctx, sid)
	}
	if errors.Is(err, locktable.ErrAttached) {
		c.out = append(c.out, wire.CannotSetID...)
		return
	}
	if err != nil {
		c.fail(err)
		return
	}
	c.bind(sid, a)
	if a.Resumed {
		n, err := c.s.backend.HeldBy(ctx, c.sess.ref)
		if err != nil {
			c.s.log.Warn("counting a resumed session's locks failed", "session", sid, "err", err)
		}
		c.sess.held = n
	}
	c.out = append(c.out, wire.ConnIDSet...)
}

func (c *conn) cmdSetTimeout() {
	ms, ok := wire.ParseUint(c.req.Args[0], uint64(c.s.cfg.MaxTimeout/time.Millisecond))
	if !ok {
		c.out = wire.AppendError(c.out, wire.CodeBadRequest,
			"bad timeout: want whole milliseconds from 0 to "+strconv.FormatInt(int64(c.s.cfg.MaxTimeout/time.Millisecond), 10))
		return
	}
	sess := c.session()
	if sess == nil {
		return
	}
	d := time.Duration(ms) * time.Millisecond
	if err := c.s.backend.SetTimeout(c.s.ctx, sess.ref, d); err != nil {
		c.fail(err)
		return
	}
	sess.timeout = d
	c.out = append(c.out, wire.TimeoutSet...)
}

func (c *conn) cmdStats() {
	st, err := c.s.backend.Stats(c.s.ctx, c.s.LocalClients())
	if err != nil {
		c.fail(err)
		return
	}
	c.out = append(c.out, wire.StatsHeader...)
	// The first three lines are the original's, in its order.
	c.out = wire.AppendStat(c.out, "clients", int64(st.Clients))
	c.out = wire.AppendStat(c.out, "locks", int64(st.Locks))
	c.out = wire.AppendStat(c.out, "monitoring", int64(st.Clients))
	c.out = wire.AppendStat(c.out, "waiters", int64(st.Waiters))
	c.out = wire.AppendStat(c.out, "sessions", int64(st.Sessions))
	c.out = wire.AppendStat(c.out, "grants", int64(st.Grants))
	c.out = wire.AppendStat(c.out, "node_clients", c.s.nclients.Load())
	c.out = wire.AppendStat(c.out, "node_connections", c.s.nconns.Load())
	c.out = wire.AppendStat(c.out, "node_commands", int64(c.s.commands.Load()))
	c.out = wire.AppendStat(c.out, "uptime", int64(c.s.Uptime()/time.Second))
	c.out = wire.AppendStatText(c.out, "version", Version)
	for _, l := range st.Extra {
		c.out = wire.AppendStatText(c.out, l.Key, l.Value)
	}
	c.out = append(c.out, wire.End...)
}

func (c *conn) cmdToken() {
	name := c.req.Args[0]
	if !c.name(name) {
		return
	}
	tok, st, err := c.s.backend.Token(c.s.ctx, c.ref(), name)
	switch {
	case err != nil:
		c.fail(err)
	case st == locktable.Granted:
		c.out = wire.AppendUint(c.out, tok)
	case st == locktable.NotYours:
		c.out = append(c.out, wire.NotYours...)
	default:
		c.out = append(c.out, wire.NotLocked...)
	}
}

func (c *conn) cmdInfo() {
	name := c.req.Args[0]
	if !c.name(name) {
		return
	}
	in, err := c.s.backend.Info(c.s.ctx, c.ref(), name)
	if err != nil {
		c.fail(err)
		return
	}
	c.out = append(c.out, wire.InfoHeader...)
	c.out = wire.AppendStat(c.out, "held", b2i(in.Held))
	c.out = wire.AppendStat(c.out, "mine", b2i(in.Mine))
	c.out = wire.AppendStat(c.out, "token", int64(in.Token))
	c.out = wire.AppendStat(c.out, "held_ms", int64(in.HeldFor/time.Millisecond))
	c.out = wire.AppendStat(c.out, "waiters", int64(in.Waiters))
	c.out = append(c.out, wire.End...)
}

func (c *conn) cmdSession() {
	if c.sess == nil {
		c.out = wire.AppendError(c.out, wire.CodeForbidden, "no session")
		return
	}
	n, err := c.s.backend.HeldBy(c.s.ctx, c.sess.ref)
	if err != nil {
		c.fail(err)
		return
	}
	c.sess.held = n
	c.out = append(c.out, wire.SessHeader...)
	c.out = wire.AppendStatText(c.out, "id", c.sess.ref.ID)
	c.out = wire.AppendStat(c.out, "resumed", b2i(c.sess.resumed))
	c.out = wire.AppendStat(c.out, "timeout_ms", int64(c.sess.timeout/time.Millisecond))
	c.out = wire.AppendStat(c.out, "held", int64(n))
	c.out = append(c.out, wire.End...)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
