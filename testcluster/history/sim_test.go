package history

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// The simulation is a correct, sequential lock server driven by clients
// with random think times and latencies. Names "n0".. are locks taken
// exclusively, "r0".. locks taken shared or exclusively, and "s0"..
// semaphores of limit permits; requests of every mode queue in one FIFO
// per name, as the server's lock table does. Replies may be refused (503),
// indeterminate (504) or lost with the connection; an indeterminate
// request takes effect at once, later, or never. A client that lost its
// connection resumes its session or starts a new one, and the server
// expires detached sessions. Everything the clients see is recorded as a
// history, which the checkers must accept.

type simConfig struct {
	clients, names, ops int
	// shared and sems are how many names are taken shared as well, and
	// how many are semaphores of limit permits.
	shared, sems, limit int
	// Per request: refused, indeterminate (504), connection lost.
	pRefuse, p504, pLost float64
	// pResume is the chance that a client whose connection dropped tries
	// to resume its session.
	pResume float64
	// pNoToken is the chance that a client does not learn its token.
	pNoToken float64
	// pVeryLate is the chance that an indeterminate request applied late
	// is applied up to 3 session timeouts later, not within 20 ms.
	pVeryLate float64
	timeout   time.Duration // session timeout
}

const (
	ms       = time.Millisecond
	waitUnit = 20 * ms // one "second" of lock NAME SECS
)

type event struct {
	at  time.Duration
	seq int
	fn  func()
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type simLock struct {
	limit   int                 // a semaphore's permits; 0 for a lock
	holders map[string]simGrant // by session
	waiters []*simWaiter
}

type simGrant struct {
	mode  Mode
	token uint64
}

// admits reports whether the holders admit a new grant in mode m.
func (l *simLock) admits(m Mode) bool {
	switch {
	case l.limit > 0:
		return len(l.holders) < l.limit
	case m == Exclusive:
		return len(l.holders) == 0
	}
	for _, g := range l.holders {
		if g.mode == Exclusive {
			return false
		}
	}
	return true
}

// covers reports whether a grant in mode held answers a request of its
// session in mode m: the same mode, or shared under exclusive.
func covers(held, m Mode) bool { return held == m || held == Exclusive && m == Shared }

type simWaiter struct {
	session string
	mode    Mode
	c       *simClient
	op      int
	conn    int // -1: its reply is lost
	done    bool
}

type simSession struct {
	expired, attached bool
	conn              int // the client connection it is attached to
	expiryGen         int
	held              map[string]bool
}

type simClient struct {
	id      int
	session string
	conn    int               // current connection; a reply on another is lost
	held    map[string]uint64 // what the client believes it holds
	lastOK  time.Duration     // Call of the last request answered on conn
}

type sim struct {
	cfg      simConfig
	rng      *rand.Rand
	now      time.Duration
	seq      int
	queue    eventQueue
	h        []Operation
	locks    map[string]*simLock
	sessions map[string]*simSession
	token    uint64
	nSess    int
	nConn    int
	issued   int
}

func simulate(cfg simConfig, seed uint64) []Operation {
	s := &sim{
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		locks:    map[string]*simLock{},
		sessions: map[string]*simSession{},
	}
	for i := range cfg.clients {
		c := &simClient{id: i}
		s.newSession(c)
		s.next(c)
	}
	for s.queue.Len() > 0 {
		e := heap.Pop(&s.queue).(event)
		s.now = e.at
		e.fn()
	}
	return s.h
}

func (s *sim) after(d time.Duration, fn func()) {
	s.seq++
	heap.Push(&s.queue, event{at: s.now + d, seq: s.seq, fn: fn})
}

func (s *sim) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

func (s *sim) latency() time.Duration { return s.between(ms/2, 4*ms) }

func (s *sim) newSession(c *simClient) {
	s.nSess++
	s.nConn++
	c.session = fmt.Sprintf("s%d", s.nSess)
	c.conn = s.nConn
	c.held = map[string]uint64{}
	c.lastOK = s.now
	s.sessions[c.session] = &simSession{attached: true, conn: c.conn, held: map[string]bool{}}
}

func (s *sim) lock(name string) *simLock {
	l := s.locks[name]
	if l == nil {
		l = &simLock{holders: map[string]simGrant{}}
		if name[0] == 's' {
			l.limit = s.cfg.limit
		}
		s.locks[name] = l
	}
	return l
}

// next schedules the client's next request.
func (s *sim) next(c *simClient) {
	if s.issued >= s.cfg.ops {
		return
	}
	s.issued++
	s.after(s.between(0, 5*ms), func() { s.act(c) })
}

func (s *sim) act(c *simClient) {
	name := ""
	// Configurations of exclusive names only draw as they always did, so
	// that their seeds keep their histories.
	if extra := s.cfg.shared + s.cfg.sems; extra == 0 {
		name = fmt.Sprintf("n%d", s.rng.IntN(s.cfg.names))
	} else {
		switch i := s.rng.IntN(s.cfg.names + extra); {
		case i < s.cfg.names:
			name = fmt.Sprintf("n%d", i)
		case i < s.cfg.names+s.cfg.shared:
			name = fmt.Sprintf("r%d", i-s.cfg.names)
		default:
			name = fmt.Sprintf("s%d", i-s.cfg.names-s.cfg.shared)
		}
	}
	op := Op{Client: c.id, Session: c.session, Name: name}
	held := slices.Sorted(func(yield func(string) bool) {
		for n := range c.held {
			if !yield(n) {
				return
			}
		}
	})
	r, r2 := s.rng.Float64(), s.rng.Float64()
	switch {
	case len(held) > 0 && r < 0.45:
		op.Kind, op.Name = Unlock, held[s.rng.IntN(len(held))]
	case len(held) > 0 && r < 0.5:
		op.Kind, op.Name = UnlockAll, ""
	case r2 < 0.08:
		op.Kind = Unlock
	case r2 < 0.6:
		op.Kind = Lock
	default:
		op.Kind, op.Wait = LockWait, s.rng.IntN(4)
	}
	switch {
	case !op.Kind.Takes():
	case op.Name[0] == 'r' && s.rng.IntN(3) > 0:
		op.Kind = map[Kind]Kind{Lock: RLock, LockWait: RLockWait}[op.Kind]
	case op.Name[0] == 's':
		op.Kind = map[Kind]Kind{Lock: Acquire, LockWait: AcquireWait}[op.Kind]
		op.Limit = s.cfg.limit
	}
	i := len(s.h)
	s.h = append(s.h, Operation{Op: op, Call: s.now, Return: Never, Result: Result{Status: Unknown}})

	d1 := s.latency()
	switch r := s.rng.Float64(); {
	case r < s.cfg.pRefuse:
		s.after(d1+s.latency(), func() { s.reply(c, i, c.conn, Result{Status: Refused}) })
	case r < s.cfg.pRefuse+s.cfg.p504 && !op.Kind.Waits():
		s.maybeApply(c, i, d1)
		conn := c.conn
		s.after(d1+s.latency(), func() { s.reply(c, i, conn, Result{Status: Unknown}) })
	case r < s.cfg.pRefuse+s.cfg.p504+s.cfg.pLost:
		s.maybeApply(c, i, d1)
		s.after(s.between(10*ms, 60*ms), func() { s.lose(c) })
	default:
		conn := c.conn
		s.after(d1, func() { s.apply(c, i, conn) })
	}
}

// maybeApply applies request i, whose reply is lost, at once, later, or
// never.
func (s *sim) maybeApply(c *simClient, i int, d1 time.Duration) {
	switch r := s.rng.Float64(); {
	case r < 0.4:
		s.after(d1, func() { s.apply(c, i, -1) })
	case r < 0.7:
		late := s.between(0, 20*ms)
		if s.rng.Float64() < s.cfg.pVeryLate {
			late = s.between(0, 3*s.cfg.timeout)
		}
		s.after(d1+late, func() { s.apply(c, i, -1) })
	}
}

// lose: the client notices its connection is gone.
func (s *sim) lose(c *simClient) {
	sessID, conn, lastOK := c.session, c.conn, c.lastOK
	s.nConn++
	c.conn = s.nConn // replies on the old connection are lost
	// The server notices at some time after the connection was last
	// known good, maybe even after the client did.
	detach := s.between(lastOK, s.now+20*ms)
	s.h = append(s.h, Operation{
		Op:       Op{Client: c.id, Session: sessID, Kind: Expire},
		Result:   Result{Status: Unknown},
		Call:     lastOK + s.cfg.timeout,
		Return:   Never,
		Detached: lastOK,
	})
	// The event queue cannot go back: a detach in the past happens now,
	// but its expiry counts from the past.
	s.after(max(detach, s.now)-s.now, func() { s.detach(sessID, conn, detach) })

	s.after(s.between(0, 2*s.cfg.timeout), func() {
		if s.rng.Float64() >= s.cfg.pResume {
			s.newSession(c)
			s.next(c)
			return
		}
		i := len(s.h)
		s.h = append(s.h, Operation{Op: Op{Client: c.id, Session: sessID, Kind: Resume}, Call: s.now, Return: Never, Result: Result{Status: Unknown}})
		s.after(s.latency(), func() {
			sess := s.sessions[sessID]
			ok := !sess.expired && !sess.attached
			if ok {
				sess.attached, sess.conn = true, c.conn
				sess.expiryGen++
			}
			s.after(s.latency(), func() {
				s.h[i].Return = s.now
				if ok {
					s.h[i].Status = OK
					c.lastOK = s.h[i].Call
				} else {
					s.h[i].Status = NotYours
					s.newSession(c)
				}
				s.next(c)
			})
		})
	})
}

// detach: the server notices that session's connection conn is gone; it
// expires the session at timeout after since, unless it is resumed.
func (s *sim) detach(sessID string, conn int, since time.Duration) {
	sess := s.sessions[sessID]
	if !sess.attached || sess.conn != conn {
		return
	}
	sess.attached = false
	sess.expiryGen++
	gen := sess.expiryGen
	s.dropWaiters(func(w *simWaiter) bool { return w.session == sessID })
	s.after(max(0, since+s.cfg.timeout+s.between(0, 5*ms)-s.now), func() {
		if sess.expiryGen != gen || sess.attached || sess.expired {
			return
		}
		sess.expired = true
		for _, n := range slices.Sorted(mapKeys(sess.held)) {
			s.release(n, sessID)
		}
	})
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (s *sim) dropWaiters(drop func(*simWaiter) bool) {
	for _, n := range slices.Sorted(mapKeys(s.locks)) {
		l := s.locks[n]
		before := len(l.waiters)
		l.waiters = slices.DeleteFunc(l.waiters, func(w *simWaiter) bool {
			if drop(w) {
				w.done = true
				return true
			}
			return false
		})
		if len(l.waiters) != before {
			// Those behind a dropped waiter may get in now.
			s.promote(n)
		}
	}
}

// apply executes request i in the server; conn -1 means its reply is
// lost.
func (s *sim) apply(c *simClient, i int, conn int) {
	o := s.h[i].Op
	sess := s.sessions[o.Session]
	if sess.expired {
		if conn != -1 {
			panic("sim: request on an expired session")
		}
		return // a late request of an expired session finds no session
	}
	answer := func(res Result) {
		s.after(s.latency(), func() { s.reply(c, i, conn, res) })
	}
	switch {
	case o.Kind.Takes():
		l := s.lock(o.Name)
		mode := o.Kind.Mode()
		if g, ok := l.holders[o.Session]; ok {
			if covers(g.mode, mode) {
				answer(Result{Status: Acquired, Token: g.token})
			} else {
				answer(Result{Status: NoUpgrade})
			}
			return
		}
		switch {
		case len(l.waiters) == 0 && l.admits(mode):
			answer(Result{Status: Acquired, Token: s.grant(o.Session, o.Name, mode)})
		case o.Kind.Waits() && o.Wait > 0:
			w := &simWaiter{session: o.Session, mode: mode, c: c, op: i, conn: conn}
			l.waiters = append(l.waiters, w)
			s.after(time.Duration(o.Wait)*waitUnit, func() {
				if w.done {
					return
				}
				w.done = true
				l.waiters = slices.DeleteFunc(l.waiters, func(x *simWaiter) bool { return x == w })
				answer(Result{Status: Unavailable})
				s.promote(o.Name)
			})
		default:
			answer(Result{Status: Unavailable})
		}
	case o.Kind == Unlock:
		l := s.lock(o.Name)
		switch _, ok := l.holders[o.Session]; {
		case ok:
			s.release(o.Name, o.Session)
			answer(Result{Status: Unlocked})
		case len(l.holders) == 0:
			answer(Result{Status: NotLocked})
		default:
			answer(Result{Status: NotYours})
		}
	case o.Kind == UnlockAll:
		for _, n := range slices.Sorted(mapKeys(sess.held)) {
			s.release(n, o.Session)
		}
		answer(Result{Status: OK})
	}
}

func (s *sim) grant(session, name string, mode Mode) uint64 {
	s.token++
	s.lock(name).holders[session] = simGrant{mode: mode, token: s.token}
	s.sessions[session].held[name] = true
	return s.token
}

// release ends session's grant of name and serves the queue.
func (s *sim) release(name, session string) {
	delete(s.lock(name).holders, session)
	delete(s.sessions[session].held, name)
	s.promote(name)
}

// promote grants the head of name's queue while the holders admit it,
// and answers the later waits of the session it went to as the server
// does: with the same grant if it covers them, else 409.
func (s *sim) promote(name string) {
	l := s.lock(name)
	for len(l.waiters) > 0 {
		w := l.waiters[0]
		if w.done || s.sessions[w.session].expired {
			l.waiters = l.waiters[1:]
			continue
		}
		if !l.admits(w.mode) {
			return
		}
		l.waiters = l.waiters[1:]
		w.done = true
		tok := s.grant(w.session, name, w.mode)
		s.after(s.latency(), func() { s.reply(w.c, w.op, w.conn, Result{Status: Acquired, Token: tok}) })
		l.waiters = slices.DeleteFunc(l.waiters, func(x *simWaiter) bool {
			if x.session != w.session {
				return false
			}
			x.done = true
			res := Result{Status: Unavailable}
			if covers(w.mode, x.mode) {
				res = Result{Status: Acquired, Token: tok}
			}
			s.after(s.latency(), func() { s.reply(x.c, x.op, x.conn, res) })
			return true
		})
	}
}

// reply delivers an answer to the client, unless its connection is gone.
func (s *sim) reply(c *simClient, i int, conn int, res Result) {
	if conn == -1 || conn != c.conn {
		return
	}
	o := &s.h[i]
	if res.Status == Acquired && s.rng.Float64() < s.cfg.pNoToken {
		c.held[o.Name] = 0
		res.Token = 0
	}
	o.Result = res
	o.Return = s.now
	if res.Status == Unknown {
		o.Return = Never
	}
	if res.Status != Refused {
		c.lastOK = o.Call
	}
	switch {
	case res.Status == Acquired:
		c.held[o.Name] = res.Token
	case res.Status == NoUpgrade:
		c.held[o.Name] = 0 // held shared: release it
	case o.Kind == Unlock && res.Status != Refused:
		delete(c.held, o.Name)
	case o.Kind == UnlockAll && res.Status != Refused:
		clear(c.held)
	}
	s.next(c)
}
