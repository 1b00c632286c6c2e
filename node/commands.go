package node

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/wire"
)

// The commands: handle dispatches one parsed request, and each cmd method
// answers one verb into c.out. A blocking "lock NAME SECS" waits in
// wait.go.

func (c *conn) handle(line []byte) {
	blank, ok := wire.Parse(line, &c.req)
	if blank {
		return // the original crashed here; a blank line is now a no-op
	}
	c.s.commands.Add(1)
	if c.s.log.Enabled(c.s.ctx, slog.LevelDebug) {
		c.s.log.Debug("command", "remote", c.nc.RemoteAddr().String(), "line", logLine(line))
	}
	obs := c.s.cfg.Observer
	if obs == nil {
		c.exec(ok)
		return
	}
	start := time.Now()
	c.mark, c.granted = len(c.out), false
	c.exec(ok)
	obs.Command(c.req.Cmd, c.replyCode(), time.Since(start))
}

// replyCode is the code of the reply the command just gave: the first
// three bytes it appended to c.out (a flush in the middle of the command
// moves mark to where the rest begins), or 200 for a waiting lock's
// grant, which onOutcome may have written in part or whole. 0: no reply.
func (c *conn) replyCode() int {
	if c.granted {
		return wire.CodeOK
	}
	if len(c.out) < c.mark+3 {
		return 0
	}
	b := c.out[c.mark : c.mark+3]
	return int(b[0]-'0')*100 + int(b[1]-'0')*10 + int(b[2]-'0')
}

// exec runs the request parsed into c.req; ok is the parse's verdict.
func (c *conn) exec(ok bool) {
	if !ok {
		c.out = wire.AppendUnknown(c.out, c.req.Verb)
		return
	}
	if c.s.cfg.ACL != nil && !c.allowed() {
		return
	}
	switch c.req.Cmd {
	case wire.Lock:
		c.cmdLock(locktable.Want{}, 1)
	case wire.RLock:
		c.cmdLock(locktable.Want{Mode: locktable.Shared}, 1)
	case wire.Acquire:
		c.cmdAcquire()
	case wire.Campaign:
		c.cmdCampaign()
	case wire.Proclaim:
		c.cmdProclaim()
	case wire.Leader:
		c.cmdLeader()
	case wire.Watch:
		c.cmdWatch()
	case wire.Unwatch:
		c.cmdUnwatch()
	case wire.Events:
		c.cmdEvents()
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
	case wire.Auth:
		c.cmdAuth()
	case wire.Label:
		c.cmdLabel()
	case wire.Locks:
		c.cmdLocks()
	}
}

// fail answers an error from the backend with its own line: the class of
// a failure picks the code (503 nothing happened, 504 outcome unknown),
// and its text is the message.
func (c *conn) fail(err error) {
	f, ok := failure.As(err)
	switch {
	case ok && f.Reason == failure.Limit:
		c.out = wire.AppendError(c.out, wire.CodeLimit, f.Text)
	case ok:
		code := failureCode(f.Class)
		c.refused(code, f.Reason)
		c.out = wire.AppendError(c.out, code, f.Text)
	case c.s.ctx.Err() != nil:
		c.refused(wire.CodeRetry, failure.ShuttingDown)
		c.out = wire.AppendError(c.out, wire.CodeRetry, "shutting down")
	default:
		c.s.log.Warn("backend error", "err", err)
		c.refused(wire.CodeRetry, failure.Internal)
		c.out = wire.AppendError(c.out, wire.CodeRetry, "internal error; retry")
	}
}

// refused tells the observer of a 503 or 504.
func (c *conn) refused(code int, r failure.Reason) {
	if obs := c.s.cfg.Observer; obs != nil && code >= wire.CodeRetry {
		obs.Refused(code, r)
	}
}

// failureCode is the reply code of a failure class.
func failureCode(c failure.Class) int {
	switch c {
	case failure.Retryable:
		return wire.CodeRetry
	case failure.Indeterminate:
		return wire.CodeIndeterminate
	}
	return wire.CodeForbidden
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
	shown := newSessionID()
	id := c.sessionKey(shown)
	ctx, cancel := context.WithTimeout(c.s.ctx, backendTimeout)
	a, err := c.s.backend.Attach(ctx, id)
	cancel()
	if err != nil {
		c.fail(err)
		return nil
	}
	c.bind(id, shown, a)
	return c.sess
}

func (c *conn) bind(id, shown string, a locktable.Attachment) {
	c.sess = &connSession{ref: SessionRef{ID: id, Epoch: a.Epoch, Born: a.Born}, shown: shown, resumed: a.Resumed, timeout: a.Timeout}
	c.s.clients.bind(id, c)
}

// sessionKey is the id the backend knows a session by. With an ACL it
// is the identity, a colon and the id the client knows, so a session
// belongs to the identity that made it: "conn_id ID" from another
// identity names another session, and resumes nothing of this one.
// (Identity names have no colon, so no two pairs give one key.)
func (c *conn) sessionKey(shown string) string {
	if c.s.cfg.ACL == nil {
		return shown
	}
	return c.identity + ":" + shown
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

// cmdAcquire takes a permit of a semaphore: "acquire NAME LIMIT [SECS]".
func (c *conn) cmdAcquire() {
	if !c.name(c.req.Args[0]) {
		return
	}
	limit, ok := wire.ParseUint(c.req.Args[1], uint64(c.s.cfg.MaxPermits))
	if !ok || limit == 0 {
		c.out = wire.AppendError(c.out, wire.CodeBadRequest,
			"bad limit: want whole permits from 1 to "+strconv.Itoa(c.s.cfg.MaxPermits))
		return
	}
	c.cmdLock(locktable.Want{Mode: locktable.Permit, Limit: uint32(limit)}, 2)
}

// value checks a published value (campaign, proclaim): any bytes but
// space, CR and LF (the parser splits at spaces and lines), at most
// MaxName of them.
func (c *conn) value(b []byte) bool {
	if len(b) > c.s.cfg.MaxName {
		c.out = wire.AppendError(c.out, wire.CodeTooLong, "value too long (max "+strconv.Itoa(c.s.cfg.MaxName)+" bytes)")
		return false
	}
	for _, ch := range b {
		if ch == '\r' {
			c.out = wire.AppendError(c.out, wire.CodeBadRequest, "bad value: CR is not allowed in a value")
			return false
		}
	}
	return true
}

// cmdCampaign takes NAME exclusively and publishes VALUE while it leads:
// "campaign NAME VALUE [SECS]".
func (c *conn) cmdCampaign() {
	if !c.name(c.req.Args[0]) || !c.value(c.req.Args[1]) {
		return
	}
	c.grantReply = wire.Elected
	defer func() { c.grantReply = wire.Acquired }()
	c.cmdLock(locktable.Want{Value: string(c.req.Args[1])}, 2)
}

// cmdProclaim changes the value this session publishes while it leads.
func (c *conn) cmdProclaim() {
	name, v := c.req.Args[0], c.req.Args[1]
	if !c.name(name) || !c.value(v) {
		return
	}
	sess := c.session()
	if sess == nil {
		return
	}
	res, err := c.s.backend.Proclaim(c.s.ctx, sess.ref, name, string(v))
	switch {
	case err != nil:
		c.fail(err)
	case res.Status == locktable.Granted:
		c.out = append(c.out, wire.OK...)
	case res.Status == locktable.NotYours:
		c.out = append(c.out, wire.NotYours...)
	default:
		c.out = append(c.out, wire.NotLocked...)
	}
}

// cmdLeader answers who leads NAME: "200 LEADER <token> <value>", or
// "409 no leader" when nobody holds it exclusively.
func (c *conn) cmdLeader() {
	name := c.req.Args[0]
	if !c.name(name) {
		return
	}
	tok, v, ok, err := c.s.backend.Leader(c.s.ctx, name)
	switch {
	case err != nil:
		c.fail(err)
	case ok:
		c.out = wire.AppendLeader(c.out, tok, []byte(v))
	default:
		c.out = append(c.out, wire.NoLeader...)
	}
}

// cmdLock takes name (the first argument) in the mode want gives; the
// wait in seconds, if any, is the argument at waitArg.
func (c *conn) cmdLock(want locktable.Want, waitArg int) {
	name := c.req.Args[0]
	if !c.name(name) {
		return
	}
	var wait time.Duration
	if c.req.NArgs == waitArg+1 {
		secs, ok := wire.ParseUint(c.req.Args[waitArg], uint64(c.s.cfg.MaxWait/time.Second))
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
	if sess.held >= c.s.cfg.MaxLocksPerSession && !c.holds(name) {
		c.out = wire.AppendError(c.out, wire.CodeLimit,
			"too many locks held by this session (max "+strconv.Itoa(c.s.cfg.MaxLocksPerSession)+")")
		return
	}
	var (
		res locktable.Result
		err error
	)
	if wait > 0 && !c.eof {
		// One request: granted at once if it can be, else queued.
		res, err = c.waitLock(sess.ref, name, want, wait)
	} else {
		// After the client's half-close a disconnect cannot be told apart
		// from a client still reading, and a disconnected waiter must
		// never be handed the lock: no waiting, as with SECS 0.
		res, _, err = c.s.backend.Lock(c.s.ctx, sess.ref, name, want, 0, nil)
	}
	if err == errReplied {
		if res.Status == locktable.Granted {
			c.eventsGranted(name, res.Token)
		}
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
	c.lockReply(name, res)
	if res.Status == locktable.Granted {
		c.eventsGranted(name, res.Token)
	}
}

func (c *conn) lockReply(name []byte, res locktable.Result) {
	switch res.Status {
	case locktable.Granted:
		if !res.Reentrant {
			c.sess.held++
		}
		c.out = append(c.out, c.grantReply...)
	case locktable.Unavailable:
		c.out = append(c.out, wire.Unavailable...)
	case locktable.TooManyWaiters:
		c.out = wire.AppendError(c.out, wire.CodeLimit,
			"too many waiters for this lock (max "+strconv.Itoa(c.s.cfg.MaxWaiters)+")")
	case locktable.KindMismatch:
		c.out = wire.AppendError(c.out, wire.CodeBadRequest, "kind mismatch: "+string(name)+" is a "+res.Kind.String())
	case locktable.LimitMismatch:
		c.out = wire.AppendError(c.out, wire.CodeBadRequest,
			"limit mismatch: "+string(name)+" has "+strconv.FormatUint(uint64(res.Limit), 10)+" permits")
	case locktable.NoUpgrade:
		c.out = wire.AppendError(c.out, wire.CodeBadRequest, "no upgrade: "+string(name)+" is held shared by this session")
	default:
		c.fail(errors.New("unexpected lock status " + res.Status.String()))
	}
}

// holds reports whether the session holds name already.
func (c *conn) holds(name []byte) bool {
	_, st, err := c.s.backend.Token(c.s.ctx, c.sess.ref, name)
	return err == nil && st == locktable.Granted
}

func (c *conn) cmdUnlock() {
	name := c.req.Args[0]
	if !c.name(name) {
		return
	}
	sess := c.session()
	if sess == nil {
		return
	}
	// The release's own change must not read as a loss: stop watching
	// the name for session events first.
	c.eventsReleased(name)
	res, err := c.s.backend.Unlock(c.s.ctx, sess.ref, name)
	if err != nil {
		// Maybe still held: watched again, its token learnt afresh.
		c.eventsUnsure(name)
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
	c.eventsReleased(nil)
	if err := c.s.backend.UnlockAll(c.s.ctx, sess.ref); err != nil {
		c.eventsUnsure(nil) // some may still be held
		c.fail(err)
		return
	}
	sess.held = 0
	c.out = append(c.out, wire.OK...)
}

func (c *conn) cmdConnID() {
	if c.req.NArgs == 0 {
		if sess := c.session(); sess != nil {
			c.out = wire.AppendText(c.out, sess.shown)
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
	sid := c.sessionKey(string(id))
	ctx, cancel := context.WithTimeout(c.s.ctx, backendTimeout)
	defer cancel()
	a, err := c.s.backend.Attach(ctx, sid)
	retried := false
	for errors.Is(err, locktable.ErrAttached) && ctx.Err() == nil {
		// Its client has hung up and that connection's goroutine is about
		// to read the EOF and detach: a reconnecting client should not be
		// refused for that moment. Once that connection has let go of the
		// session here it has detached it too (Detach comes before unbind),
		// so one more try finds the session free.
		if !c.s.clients.hungUp(sid) {
			if retried || c.s.clients.get(sid) != nil {
				break
			}
			retried = true
		} else {
			time.Sleep(time.Millisecond)
		}
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
	c.bind(sid, string(id), a)
	if a.Resumed {
		n, err := c.s.backend.HeldBy(ctx, c.sess.ref)
		if err != nil {
			c.s.log.Warn("counting a resumed session's locks failed", "session", LogID(sid), "err", err)
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
	st, err := c.s.backend.Stats(c.s.ctx, c.s.clients.Count())
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
	c.out = wire.AppendStat(c.out, "node_clients", int64(c.s.clients.Count()))
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
	c.out = wire.AppendStatText(c.out, "kind", in.Kind.String())
	mode := "free"
	switch {
	case in.Held && in.Mode == locktable.Exclusive:
		mode = "exclusive"
	case in.Held:
		mode = "shared"
	}
	c.out = wire.AppendStatText(c.out, "mode", mode)
	c.out = wire.AppendStat(c.out, "holders", int64(in.Holders))
	if in.Kind == locktable.KindSemaphore {
		c.out = wire.AppendStat(c.out, "limit", int64(in.Limit))
	}
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
	c.out = wire.AppendStatText(c.out, "id", c.sess.shown)
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

// allowed checks the request against the ACL, and answers it when it is
// denied: lock, unlock and token need the right to lock the name; info
// and where the right to read it; stats and members some right at all.
// The rest concern the client's own session.
func (c *conn) allowed() bool {
	acl := c.s.cfg.ACL
	var ok bool
	var what string
	switch c.req.Cmd {
	case wire.Lock, wire.RLock, wire.Acquire, wire.Unlock, wire.Token, wire.Campaign, wire.Proclaim:
		ok, what = acl.mayLock(c.identity, c.req.Args[0]), "lock this name"
	case wire.Info, wire.Where, wire.Leader, wire.Watch:
		ok, what = acl.mayRead(c.identity, c.req.Args[0]), "read this name"
	case wire.Locks:
		ok, what = acl.mayRead(c.identity, lockPrefix(&c.req)), "read these names"
	case wire.Stats, wire.Members:
		ok, what = acl.mayList(c.identity), "read this node's state"
	default:
		return true
	}
	if !ok {
		c.out = wire.AppendError(c.out, wire.CodeForbidden, "denied: "+c.identity+" may not "+what)
	}
	return ok
}

// cmdAuth takes the identity a token names, for the ACL. It must come
// before the session, which belongs to the identity that makes it, and a
// client certificate's identity is not replaced.
func (c *conn) cmdAuth() {
	acl := c.s.cfg.ACL
	switch {
	case acl == nil:
		c.out = wire.AppendText(c.out, "access control is off")
	case c.certified:
		c.out = wire.AppendError(c.out, wire.CodeForbidden, "denied: identified by a client certificate as "+c.identity)
	case c.sess != nil:
		c.out = wire.AppendError(c.out, wire.CodeForbidden, "denied: auth must come before the session is made")
	default:
		id, ok := acl.identityOf(c.req.Args[0])
		if !ok {
			c.out = wire.AppendError(c.out, wire.CodeForbidden, "denied: unknown token")
			return
		}
		c.identity = id
		c.out = wire.AppendText(c.out, "authenticated as "+id)
	}
}
