package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"
)

const (
	// quitTimeout bounds the goodbye of Close.
	quitTimeout = time.Second
	// Backoffs: between reconnect rounds, between retries of a 503/504,
	// and between resumes refused with 403 cannot set conn id.
	reconnectMin, reconnectMax = 50 * time.Millisecond, 2 * time.Second
	retryMin, retryMax         = 20 * time.Millisecond, time.Second
	refusedMin, refusedMax     = 10 * time.Millisecond, 200 * time.Millisecond
	// idleRecheck is how soon the background goroutine looks again when
	// it has nothing scheduled or found a call using the connection.
	idleRecheck = time.Second
)

// Client is a session with an elock server: one TCP connection at a time,
// re-established and resumed when it breaks. It is safe for concurrent
// use, but the protocol runs one command at a time per session, so calls
// are serialised: while a Lock waits for its lock on the server, every
// other call on the same Client waits behind it (or until its own context
// ends). Use one Client per independent waiter.
//
// Locks belong to the session, not to a goroutine: all goroutines of one
// Client share them, and a Lock of a name the session already holds
// returns at once with the same token (the server's locks are
// re-entrant, and one Unlock releases them).
type Client struct {
	cfg    config
	addrs  []string
	log    *slog.Logger
	dialer net.Dialer
	events *dispatcher
	// watches are the live watches, told again to every new connection.
	watches *watchHub

	// sem is the right to use the connection: every command, reconnect
	// and keepalive probe holds it. A channel, not a mutex, so that
	// waiting for it obeys a context.
	sem chan struct{}

	// Guarded by sem.
	conn         *conn
	next         int       // index of the address to try first
	refusedSince time.Time // first "cannot set conn id" of the current resume
	selfClosed   bool      // conn was closed by us to cancel a wait, not broken
	kaBackoff    backoff   // the background goroutine's reconnect backoff

	mu sync.Mutex // guards the fields below; never held across I/O
	id string
	// atRisk: the last session event told was a jeopardy (WithEvents).
	atRisk bool
	// timeout is the session timeout as last learned from the server.
	timeout time.Duration
	// wantTimeout, if hasTimeout, is sent with set_timeout after resumes.
	wantTimeout time.Duration
	hasTimeout  bool
	// label, if not empty, is sent with label after every (re)connect:
	// the server keeps a label only with the connection that set it.
	label string
	// held is every grant the client believes the session holds, of any
	// kind (exclusive, shared, a permit): the session holds at most one
	// grant of a name, and all kinds are checked with "token NAME" and
	// released with "unlock NAME", so the token is all it needs.
	held map[string]uint64
	// release names locks the session may hold that the application does
	// not know of (a Lock cancelled as the grant came, an Unlock that did
	// not finish); releaseAll is an unfinished UnlockAll. They are
	// released before the next command of the session.
	release    map[string]struct{}
	releaseAll bool
	// brokenSince is when the lost connection last worked; zero while
	// connected.
	brokenSince time.Time
	// losses counts the session losses that took locks with them.
	losses uint64

	life      context.Context // ends with Close
	kill      context.CancelCauseFunc
	kick      chan struct{} // wakes the background goroutine; capacity 1
	done      chan struct{} // closed when the background goroutine exits
	closeOnce sync.Once
}

// Dial connects to the first reachable address of addrs, trying them in
// order, and registers a new session. It makes one pass over the list;
// each attempt is bounded by the dial timeout and by ctx. Later
// reconnects rotate through the same list.
func Dial(ctx context.Context, addrs []string, opts ...Option) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("client: dial: no addresses")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	life, kill := context.WithCancelCause(context.Background())
	c := &Client{
		cfg:         cfg,
		addrs:       append([]string(nil), addrs...),
		log:         log,
		dialer:      net.Dialer{Timeout: cfg.dialTimeout, KeepAlive: max(cfg.keepalive, 0)},
		events:      newDispatcher(cfg.onLost),
		watches:     newWatchHub(),
		sem:         make(chan struct{}, 1),
		kaBackoff:   backoff{min: reconnectMin, max: reconnectMax},
		held:        make(map[string]uint64),
		release:     make(map[string]struct{}),
		wantTimeout: cfg.sessionTimeout,
		hasTimeout:  cfg.setTimeout,
		life:        life,
		kill:        kill,
		kick:        make(chan struct{}, 1),
		done:        make(chan struct{}),
	}
	c.sem <- struct{}{}
	err := c.connectRound(ctx)
	<-c.sem
	if err != nil {
		kill(ErrClosed)
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	c.events.start()
	go c.maintain()
	return c, nil
}

// SessionID returns the session's id. It changes only if a resume was
// refused for good and the client had to start a new session.
func (c *Client) SessionID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// Held returns the names the client believes its session holds, with
// the fencing tokens of their grants: locks, exclusive or shared, and
// semaphore permits alike.
func (c *Client) Held() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]uint64, len(c.held))
	for k, v := range c.held {
		m[k] = v
	}
	return m
}

// Close ends the client: calls in progress return ErrClosed, the
// background goroutines stop, and "quit" is sent best-effort before the
// connection closes. Close does not release the session's locks: as the
// protocol says of any closed connection, the server keeps them for the
// session timeout, so that a crashed client's work is not taken over at
// once. Call UnlockAll first to release them now. Close must not be
// called from the lost-lock handler.
func (c *Client) Close() error {
	first := false
	c.closeOnce.Do(func() { first = true })
	if !first {
		return nil
	}
	c.kill(ErrClosed)
	<-c.done
	// Calls in progress are interrupted by kill; wait for them to leave.
	// The semaphore is never given back, so nothing runs after Close.
	c.sem <- struct{}{}
	if cn := c.conn; cn != nil {
		c.conn = nil
		cn.nc.SetDeadline(time.Now().Add(quitTimeout))
		if cn.send("quit") == nil {
			cn.read()
		}
		cn.close()
	}
	c.events.close()
	c.watches.close()
	return nil
}

// opContext is ctx that also ends, with cause ErrClosed, when the client
// closes.
func (c *Client) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.life, func() { cancel(ErrClosed) })
	return ctx, func() {
		stop()
		cancel(context.Canceled)
	}
}

// ctxErr is the error of an ended ctx: ErrClosed if the client closed,
// else ctx.Err() as it is, for callers that compare with ==.
func ctxErr(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), ErrClosed) {
		return ErrClosed
	}
	return ctx.Err()
}

func (c *Client) acquire(ctx context.Context) error {
	if c.life.Err() != nil {
		return ErrClosed
	}
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx)
	}
}

// releaseSem gives the semaphore back. If the connection is down, the
// background goroutine is woken to repair it, since the call that held
// the semaphore may have given up on that.
func (c *Client) releaseSem() {
	if c.conn == nil && c.life.Err() == nil {
		c.kickMaintainer()
	}
	<-c.sem
}

func (c *Client) kickMaintainer() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// call runs op as one public call: it takes the semaphore, then exec.
func (c *Client) call(ctx context.Context, what string, op func(ctx context.Context, cn *conn) error) error {
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.releaseSem()
	return c.exec(ctx, what, op)
}

// exec runs op on a working connection until it gives an answer: it
// reconnects after a broken connection and backs off and retries after a
// 503 or 504, until ctx ends. Before op, it releases what earlier calls
// left pending, so that no command of the session ever runs before an
// older release. op must be safe to run again after an attempt whose
// outcome is unknown. The caller holds the semaphore.
func (c *Client) exec(ctx context.Context, what string, op func(ctx context.Context, cn *conn) error) error {
	losses := c.lossCount()
	retry := backoff{min: retryMin, max: retryMax}
	var last error
	for {
		if err := c.ensureConn(ctx); err != nil {
			return c.wrap(what, err, last)
		}
		if c.lossCount() != losses {
			return ErrSessionLost
		}
		err := c.run(ctx, func(cn *conn) error {
			if err := c.flushPending(cn); err != nil {
				return err
			}
			return op(ctx, cn)
		})
		switch {
		case err == nil:
			return nil
		case isConnErr(err):
			cancelled := ctx.Err() != nil
			c.dropConn(err, !cancelled)
			if cancelled {
				return c.wrap(what, ctxErr(ctx), last)
			}
			last = err
		case retryable(err):
			c.log.Debug("retrying", "cmd", what, "err", err)
			last = err
			if sleep(ctx, retry.next()) != nil {
				return c.wrap(what, ctxErr(ctx), last)
			}
		default:
			return c.wrap(what, err, nil)
		}
	}
}

// wrap gives err the call's context. Sentinels and context errors stay
// as they are, unless an earlier failure explains why the call ran out
// of time.
func (c *Client) wrap(what string, err, last error) error {
	switch {
	case err == ErrClosed, err == ErrSessionLost, err == ErrUnavailable,
		err == ErrNotYours, err == ErrNotLocked, err == ErrInvalidName,
		err == ErrNoLeader:
		return err
	case err == context.Canceled || err == context.DeadlineExceeded:
		if last == nil {
			return err
		}
		return fmt.Errorf("client: %s: %w (last failure: %v)", what, err, last)
	}
	return fmt.Errorf("client: %s: %w", what, err)
}

func (c *Client) lossCount() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.losses
}

// run runs fn on the connection with ctx able to interrupt its I/O.
func (c *Client) run(ctx context.Context, fn func(cn *conn) error) error {
	cn := c.conn
	disarm := cn.guard(ctx)
	err := fn(cn)
	if disarm() && !isConnErr(err) {
		// ctx ended after the last reply was read: the stream is intact.
		cn.nc.SetDeadline(time.Time{})
	}
	return err
}

// dropConn closes a connection that broke (or that we closed to cancel
// a wait) and sets the background goroutine to resume the session.
func (c *Client) dropConn(cause error, rotate bool) {
	cn := c.conn
	if cn == nil {
		return
	}
	c.conn = nil
	cn.close()
	c.selfClosed = !rotate
	if rotate {
		// The address may be the problem; the next round starts past it.
		c.next = (cn.idx + 1) % len(c.addrs)
		c.log.Info("connection lost", "addr", cn.addr, "err", cause)
	}
	c.mu.Lock()
	c.brokenSince = cn.lastRead
	c.mu.Unlock()
	c.kickMaintainer()
}

// ensureConn reconnects, with backoff, until there is a connection with
// the session attached or ctx ends. The caller holds the semaphore.
func (c *Client) ensureConn(ctx context.Context) error {
	bo := backoff{min: reconnectMin, max: reconnectMax}
	var last error
	for c.conn == nil {
		if ctx.Err() != nil {
			return reconnectErr(ctx, last)
		}
		err := c.connectRound(ctx)
		if err == nil {
			return nil
		}
		last = err
		c.expireIfOverdue()
		c.log.Warn("reconnect failed", "err", err)
		if sleep(ctx, bo.next()) != nil {
			return reconnectErr(ctx, last)
		}
	}
	return nil
}

// reconnectErr is the error of a reconnect cut short by ctx: the context
// error, with the last failure if there was one, so that a caller can
// both test for the deadline and see why the server was out of reach.
func reconnectErr(ctx context.Context, last error) error {
	err := ctxErr(ctx)
	if last == nil || err == ErrClosed {
		return err
	}
	return fmt.Errorf("%w (reconnecting: %v)", err, last)
}

// connectRound tries every address once, starting at c.next, and keeps
// the first connection whose handshake succeeds.
func (c *Client) connectRound(ctx context.Context) error {
	var errs []error
	for i := range c.addrs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, ctxErr(ctx))
			break
		}
		idx := (c.next + i) % len(c.addrs)
		cn, err := c.connectTo(ctx, idx)
		if err != nil {
			c.log.Debug("connect failed", "addr", c.addrs[idx], "err", err)
			errs = append(errs, err)
			continue
		}
		c.conn, c.next, c.selfClosed = cn, idx, false
		c.kaBackoff.reset()
		c.mu.Lock()
		c.brokenSince = time.Time{}
		c.mu.Unlock()
		c.log.Debug("connected", "addr", cn.addr, "session", c.SessionID())
		return nil
	}
	return errors.Join(errs...)
}

func (c *Client) connectTo(ctx context.Context, idx int) (*conn, error) {
	addr := c.addrs[idx]
	ctx, cancel := context.WithTimeout(ctx, c.cfg.dialTimeout+c.cfg.resumeRetry)
	defer cancel()
	cn, err := dialConn(ctx, addr, idx, &c.dialer, c.cfg.tls, c.onEvent)
	if err != nil {
		return nil, err // a *net.OpError names the address
	}
	disarm := cn.guard(ctx)
	err = c.handshake(ctx, cn)
	if err == nil {
		err = c.rewatch(cn)
	}
	if err == nil {
		err = c.eventsOn(cn)
	}
	if disarm() && err == nil {
		cn.nc.SetDeadline(time.Time{})
	}
	if err != nil {
		cn.close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return cn, nil
}

// handshake attaches the session to a new connection: a new session on
// first connect, a resume after that.
func (c *Client) handshake(ctx context.Context, cn *conn) error {
	if c.cfg.token != "" {
		if err := cn.send("auth " + c.cfg.token); err != nil {
			return err
		}
		r, err := cn.read()
		if err != nil {
			return err
		}
		if !r.ok() {
			return fmt.Errorf("auth: %w", replyOrProtocol(r))
		}
	}
	if id := c.SessionID(); id != "" {
		return c.resume(ctx, cn, id)
	}
	return c.register(ctx, cn)
}

// register starts a new session on cn.
func (c *Client) register(ctx context.Context, cn *conn) error {
	c.mu.Lock()
	setTO, want, label := c.hasTimeout, c.wantTimeout, c.label
	c.mu.Unlock()
	lines := []string{"conn_id"}
	if setTO {
		lines = append(lines, "set_timeout "+millis(want))
	}
	if label != "" {
		lines = append(lines, "label "+label)
	}
	lines = append(lines, "session")
	if err := cn.send(lines...); err != nil {
		return err
	}
	rs, err := cn.readN(len(lines))
	if err != nil {
		return err
	}
	if !rs[0].ok() || rs[0].text == "" {
		return fmt.Errorf("register session: %w", replyOrProtocol(rs[0]))
	}
	if setTO && !rs[1].ok() {
		return fmt.Errorf("set session timeout: %w", rs[1].err())
	}
	if r := rs[len(rs)-2]; label != "" && !r.ok() {
		c.log.Warn("label refused", "err", r.err())
	}
	timeout, err := sessionTimeout(rs[len(rs)-1])
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.id, c.timeout = rs[0].text, timeout
	c.mu.Unlock()
	return nil
}

// resume takes session id back on cn and checks what survived.
func (c *Client) resume(ctx context.Context, cn *conn, id string) error {
	bo := backoff{min: refusedMin, max: refusedMax}
	for {
		if err := cn.send("conn_id "+id, "session"); err != nil {
			return err
		}
		rs, err := cn.readN(2)
		if err != nil {
			return err
		}
		if rs[0].ok() {
			c.refusedSince = time.Time{}
			c.log.Debug("session attached again", "addr", cn.addr, "session", id)
			return c.verify(cn, rs[1])
		}
		rerr := rs[0].err()
		switch {
		case errors.Is(rerr, ErrCannotSetID):
			now := time.Now()
			if c.refusedSince.IsZero() {
				c.refusedSince = now
			}
			if now.Sub(c.refusedSince) < c.cfg.resumeRetry {
				c.log.Debug("resume refused; retrying", "addr", cn.addr)
				if err := sleep(ctx, bo.next()); err != nil {
					return ctxErr(ctx)
				}
				continue
			}
			c.refusedSince = time.Time{}
			c.abandonSession(fmt.Errorf("%w: resume refused for %v: %w", ErrSessionLost, c.cfg.resumeRetry, ErrCannotSetID))
			return c.register(ctx, cn)
		case rs[0].code == 400:
			// The server will never take this id back.
			c.abandonSession(fmt.Errorf("%w: resume refused: %w", ErrSessionLost, rerr))
			return c.register(ctx, cn)
		default:
			return fmt.Errorf("resume session: %w", rerr)
		}
	}
}

// abandonSession gives up a session that cannot be resumed: its locks
// are lost, and the next handshake registers a new session.
func (c *Client) abandonSession(reason error) {
	c.mu.Lock()
	evs := c.loseAllLocked(reason)
	c.id = ""
	clear(c.release)
	c.releaseAll = false
	c.mu.Unlock()
	c.report(evs)
}

// verify reads the session block of a resume and checks, with one
// pipelined "token" per lock, that each lock believed held survived.
func (c *Client) verify(cn *conn, sess resp) error {
	if !sess.ok() {
		return fmt.Errorf("session after resume: %w", replyOrProtocol(sess))
	}
	v, _ := sess.stat("resumed")
	resumed := v == "1"
	timeout, err := sessionTimeout(sess)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.timeout = timeout
	var evs []LostLock
	if !resumed {
		// The server began a new, empty session under our id: the old
		// one expired, and with it every lock.
		evs = c.loseAllLocked(fmt.Errorf("%w: the session expired before it was resumed", ErrSessionLost))
		clear(c.release)
		c.releaseAll = false
	}
	names := make([]string, 0, len(c.held))
	toks := make([]uint64, 0, len(c.held))
	for n, t := range c.held {
		names = append(names, n)
		toks = append(toks, t)
	}
	setTO, want, label := c.hasTimeout, c.wantTimeout, c.label
	c.mu.Unlock()
	c.report(evs)

	var lines []string
	if setTO {
		lines = append(lines, "set_timeout "+millis(want))
	}
	if label != "" {
		lines = append(lines, "label "+label)
	}
	for _, n := range names {
		lines = append(lines, "token "+n)
	}
	if len(lines) == 0 {
		return nil
	}
	if err := cn.send(lines...); err != nil {
		return err
	}
	rs, err := cn.readN(len(lines))
	if err != nil {
		return err
	}
	if setTO {
		if rs[0].ok() {
			c.mu.Lock()
			c.timeout = want
			c.mu.Unlock()
		} else {
			c.log.Warn("set_timeout after resume refused", "err", rs[0].err())
		}
		rs = rs[1:]
	}
	if label != "" {
		if !rs[0].ok() {
			c.log.Warn("label after resume refused", "err", rs[0].err())
		}
		rs = rs[1:]
	}
	evs = nil
	c.mu.Lock()
	for i, n := range names {
		tok, err := parseToken(rs[i])
		switch {
		case err == nil && tok == toks[i]:
		case err == nil, errors.Is(err, ErrNotYours), errors.Is(err, ErrNotLocked):
			delete(c.held, n)
			evs = append(evs, LostLock{Name: n, Token: toks[i], Err: ErrLockLost})
		default:
			// 503/504: not known either way; keep it until told.
			c.log.Warn("cannot verify lock after resume", "name", n, "err", err)
		}
	}
	c.mu.Unlock()
	c.report(evs)
	return nil
}

// loseAllLocked forgets every held lock and returns the reports. The
// caller holds c.mu.
func (c *Client) loseAllLocked(reason error) []LostLock {
	if len(c.held) == 0 {
		return nil
	}
	evs := make([]LostLock, 0, len(c.held))
	for n, t := range c.held {
		evs = append(evs, LostLock{Name: n, Token: t, Err: reason})
	}
	clear(c.held)
	c.losses++
	return evs
}

// expireIfOverdue reports every held lock lost once the connection has
// been broken for the session timeout: the server may have released them
// by now. Counting from the last reply that arrived is conservative,
// because the server detaches the session no earlier than that. The
// names are kept for release, should the session turn out to be alive.
func (c *Client) expireIfOverdue() {
	c.mu.Lock()
	if c.brokenSince.IsZero() || len(c.held) == 0 || time.Since(c.brokenSince) < c.timeout {
		c.mu.Unlock()
		return
	}
	for n := range c.held {
		c.release[n] = struct{}{}
	}
	evs := c.loseAllLocked(fmt.Errorf("%w: not resumed within the session timeout %v", ErrSessionLost, c.timeout))
	c.mu.Unlock()
	c.report(evs)
}

func (c *Client) report(evs []LostLock) {
	for _, ev := range evs {
		c.log.Warn("lock lost", "name", ev.Name, "token", ev.Token, "reason", ev.Err)
	}
	c.events.push(evs)
}

// flushPending releases the locks earlier calls left pending (see
// Client.release). A 503 or 504 leaves them pending and is returned, so
// that exec retries before running anything else.
func (c *Client) flushPending(cn *conn) error {
	c.mu.Lock()
	all := c.releaseAll
	var names []string
	if !all {
		for n := range c.release {
			names = append(names, n)
		}
	}
	c.mu.Unlock()
	var lines []string
	if all {
		lines = []string{"unlock_all"}
	} else {
		if len(names) == 0 {
			return nil
		}
		for _, n := range names {
			lines = append(lines, "unlock "+n)
		}
	}
	if err := cn.send(lines...); err != nil {
		return err
	}
	rs, err := cn.readN(len(lines))
	if err != nil {
		return err
	}
	var retry error
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range rs {
		if e := r.err(); retryable(e) {
			retry = e
			continue
		}
		if all {
			c.releaseAll = false
			clear(c.release)
		} else {
			delete(c.release, names[i])
			c.log.Debug("released pending lock", "name", names[i], "reply", r.code)
		}
	}
	return retry
}

// addRelease marks name for release before the next command, after a
// call that may have left the session holding it unknown to the caller.
func (c *Client) addRelease(name string) {
	c.mu.Lock()
	c.release[name] = struct{}{}
	c.mu.Unlock()
}

// settle is the clean-up after a call closed a live connection to cancel
// a command: resume at once and make the pending releases, so that the
// session does not keep a lock its caller gave up. It is bounded by the
// dial timeout; what it cannot finish, the background goroutine does.
// The caller holds the semaphore.
func (c *Client) settle(parent context.Context) {
	if c.conn != nil || !c.selfClosed || c.life.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), c.cfg.dialTimeout)
	defer cancel()
	stop := context.AfterFunc(c.life, cancel)
	defer stop()
	if err := c.ensureConn(ctx); err != nil {
		c.log.Warn("clean-up after cancel: reconnect failed", "err", err)
		return
	}
	if err := c.run(ctx, c.flushPending); isConnErr(err) {
		c.dropConn(err, true)
	}
}

// maintain is the background goroutine: it probes an idle connection,
// repairs a broken one, and makes pending releases, so that lost locks
// are found and reported while the application is idle.
func (c *Client) maintain() {
	defer close(c.done)
	t := time.NewTimer(c.idleWait())
	defer t.Stop()
	for {
		select {
		case <-c.life.Done():
			return
		case <-c.kick:
		case <-t.C:
		}
		t.Reset(c.tick())
	}
}

// tick does one round of upkeep and returns when the next is due.
func (c *Client) tick() time.Duration {
	select {
	case c.sem <- struct{}{}:
	default:
		// A call is using the connection, and repairs it if need be.
		return c.idleWait()
	}
	// Not releaseSem: its kick would wake this goroutine past its backoff.
	defer func() { <-c.sem }()
	if c.life.Err() != nil {
		return idleRecheck
	}
	if c.conn == nil {
		if err := c.connectRound(c.life); err != nil {
			c.expireIfOverdue()
			c.log.Warn("reconnect failed", "err", err)
			return c.untilOverdue(c.kaBackoff.next())
		}
	}
	idle := time.Since(c.conn.lastRead)
	probe := c.cfg.keepalive > 0 && idle >= c.cfg.keepalive
	if !probe && !c.hasPending() {
		if c.cfg.keepalive > 0 {
			// Probe when the connection will have been idle long enough.
			return c.cfg.keepalive - idle
		}
		return idleRecheck
	}
	ctx, cancel := context.WithTimeout(c.life, c.cfg.dialTimeout)
	defer cancel()
	err := c.run(ctx, func(cn *conn) error {
		if err := c.flushPending(cn); err != nil {
			return err
		}
		if !probe {
			return nil
		}
		return cn.ask("conn_id")
	})
	switch {
	case err == nil:
		return c.idleWait()
	case isConnErr(err):
		c.dropConn(err, true)
		return 0
	default:
		c.log.Warn("keepalive", "err", err)
		return c.untilOverdue(retryMax)
	}
}

func (c *Client) hasPending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.releaseAll || len(c.release) > 0
}

// idleWait is how long the background goroutine may sleep while
// connected.
func (c *Client) idleWait() time.Duration {
	if c.cfg.keepalive <= 0 {
		return idleRecheck
	}
	return c.cfg.keepalive
}

// untilOverdue shortens d so that the background goroutine wakes when the
// held locks of a broken connection are due to be declared lost.
func (c *Client) untilOverdue(d time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.brokenSince.IsZero() || len(c.held) == 0 {
		return d
	}
	return max(min(d, time.Until(c.brokenSince.Add(c.timeout))), 0)
}

// backoff is exponential with jitter: each delay is drawn from the upper
// half of a doubling window, so that clients that failed together do not
// retry together.
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	d := b.min << min(b.n, 20)
	if d > b.max || d <= 0 {
		d = b.max
	} else {
		b.n++
	}
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.n = 0 }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func millis(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10)
}

func sessionTimeout(r resp) (time.Duration, error) {
	if !r.ok() {
		return 0, fmt.Errorf("session: %w", replyOrProtocol(r))
	}
	v, _ := r.stat("timeout_ms")
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 0 {
		return 0, &connError{fmt.Errorf("%w: bad timeout_ms %q", errProtocol, v)}
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// replyOrProtocol is r's error, or a protocol error for a 2xx reply that
// was not the one expected.
func replyOrProtocol(r resp) error {
	if err := r.err(); err != nil {
		return err
	}
	return &connError{fmt.Errorf("%w: unexpected reply %d %q", errProtocol, r.code, r.text)}
}
