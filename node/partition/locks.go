// Writes of a session's locks: lock, unlock, drop, and the release of
// everything a session holds.

package partition

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
)

// LockAsync asks for name for session. If another session holds it and
// wait > 0, the request queues: LockAsync returns Queued with a *Wait, and
// done later receives the outcome (a hand-over, or Unavailable once wait
// has passed), unless Cancel withdraws it first. There is no polling:
// the releasing goroutine or the deadline timer delivers the outcome.
func (s *Set) LockAsync(session string, name []byte, wait time.Duration, done Done) (locktable.Result, *Wait, error) {
	return s.LockAs(Asker{Session: session}, name, locktable.Want{}, wait, done)
}

// LockAs is LockAsync from a, for a request in the mode want gives (see
// LockThen).
func (s *Set) LockAs(a Asker, name []byte, want locktable.Want, wait time.Duration, done Done) (locktable.Result, *Wait, error) {
	p := s.partOf(name)
	var r lockResult
	err := s.run(p, Grant, s.lockStep(p, a, name, want, wait, done, s.sessionFull(a.Session), &r))
	return s.lockEnd(&r, err)
}

// LockThen is LockAsync for a caller that cannot block, from a (see
// locktable.LockAt, and dropLeftovers): then receives what LockAsync
// would return, once the answer is confirmed, with no mutex held, before
// LockThen returns or later from another goroutine. done may be called
// before then: a queued request granted meanwhile.
func (s *Set) LockThen(a Asker, name []byte, want locktable.Want, wait time.Duration, done Done, then func(locktable.Result, *Wait, error)) {
	p := s.partOf(name)
	r := &lockResult{}
	s.runThen(p, Grant, s.lockStep(p, a, name, want, wait, done, s.sessionFull(a.Session), r), func(err error) { then(s.lockEnd(r, err)) })
}

// sessionFull reports whether session holds MaxLocksPerSession locks in
// this node's partitions. The walk over the partitions takes their
// mutexes one at a time, so it runs before the lock's own step; a grant
// in another partition meanwhile may take the session one lock past the
// limit, as with the client port's own count.
func (s *Set) sessionFull(session string) bool {
	max := s.cfg.MaxLocksPerSession
	return max > 0 && s.locks.Load() >= int64(max) && s.HeldBy(session) >= max
}

// lockResult is what a lock's step decided under the mutex.
type lockResult struct {
	res locktable.Result
	w   *Wait
	err error // the table's own refusal
}

// lockStep is the body of a lock under its partition's mutex; full says
// the session holds as many locks as it may (sessionFull).
func (s *Set) lockStep(p *part, a Asker, name []byte, want locktable.Want, wait time.Duration, done Done, full bool, r *lockResult) func(*locktable.Table, locktable.Time, *pending) {
	var wid locktable.WaiterID
	if wait > 0 {
		wid = locktable.WaiterID(s.nextWaiter.Add(1))
	}
	return func(t *locktable.Table, now locktable.Time, pend *pending) {
		if r.err = a.fenced(t, name); r.err != nil {
			return
		}
		s.dropLeftovers(p, t, now, a, pend)
		// A grant the session has already is re-entrant: it adds nothing;
		// nor does an exclusive request for a held name, which can only
		// take a holder's place. Any other, shared or a permit too,
		// counts against the node's bound.
		holds := t.Holds(a.Session, name)
		if !holds && (want.Mode != locktable.Exclusive || !t.Locked(name)) {
			if r.err = roomFor(&s.locks, s.cfg.MaxLocks, "locks"); r.err != nil {
				return
			}
		}
		if full {
			if !holds {
				// Not a re-entrant lock: a grant, now or from the queue,
				// would take the session past its limit.
				r.err = failure.Refuse(failure.Limit, "too many locks held by this session (max "+strconv.Itoa(s.cfg.MaxLocksPerSession)+")")
				return
			}
		}
		var fx []locktable.Effect
		r.res, fx, r.err = t.Acquire(now, a.Session, a.Epoch, name, want, wid, now+int64(wait))
		s.apply(p, fx, pend)
		if s.cfg.AutoEpoch && t.TokensLeft() < lowTokens {
			t.SetEpoch(t.Epoch() + 1)
		}
		switch {
		case r.err != nil:
		case r.res.Status == locktable.Granted && !r.res.Reentrant:
			s.grants.Add(1)
		case r.res.Status == locktable.Queued:
			p.slots[wid] = slot{session: a.Session, done: done}
			r.w = &Wait{p: p, id: wid}
		}
	}
}

// lockEnd finishes a lock once its answer's confirmation is known.
func (s *Set) lockEnd(r *lockResult, err error) (locktable.Result, *Wait, error) {
	if r.err != nil {
		return locktable.Result{}, nil, r.err
	}
	if err != nil {
		// A request left queued behind an error would be granted with
		// nobody to hear of it: withdraw it. If its outcome was decided
		// meanwhile, done carries that outcome instead of the error.
		if r.w != nil && !s.Cancel(r.w) {
			return r.res, r.w, nil
		}
		// Refused, or granted here without the replica's confirmation.
		return locktable.Result{}, nil, err
	}
	return r.res, r.w, nil
}

// Cancel withdraws a queued request and reports true if it did; done will
// not be called. False means the outcome was decided first: done has
// been called or will be (once its changes are confirmed, or by Evict
// when the partition went away), and the caller must take its outcome
// (and release a grant it no longer wants).
//
// The request's leaving may let the requests behind it in (shared ones
// behind a withdrawn exclusive one): their grants are recorded and
// delivered once confirmed, as a tick's are, without the caller waiting.
func (s *Set) Cancel(w *Wait) bool {
	p := w.p
	var pend pending
	p.mu.Lock()
	if s.rep != nil && s.rep.Admit(p.id, Tick) != nil {
		// Not this node's to grant from now (moved, or no lease): the
		// request just leaves; a tick serves the rest once it may, or
		// Evict ends them.
		ok := p.table.CancelWaitLater(w.id)
		if ok {
			delete(p.slots, w.id)
			s.rearm(p)
		}
		p.mu.Unlock()
		return ok
	}
	now := s.clock()
	ok, fx := p.table.CancelWait(now, w.id)
	if !ok {
		p.mu.Unlock()
		return false
	}
	delete(p.slots, w.id)
	s.apply(p, fx, &pend)
	s.noteWatched(p, &pend)
	pos := s.record(p, now, &pend)
	s.recount(p)
	s.rearm(p)
	p.mu.Unlock()
	s.deliver(p, &pend, pos)
	return true
}

// Lock is LockAsync for a caller that can block: it waits for the outcome
// or for ctx to end. When ctx ends first the request leaves the queue at
// once; should the grant have raced the cancellation, it is released
// again, because whoever asked has gone. The error is then ctx.Err().
func (s *Set) Lock(ctx context.Context, session string, name []byte, wait time.Duration) (locktable.Result, error) {
	ch := make(chan Outcome, 1)
	res, w, err := s.LockAsync(session, name, wait, func(o Outcome) { ch <- o })
	if err != nil || w == nil {
		return res, err
	}
	select {
	case o := <-ch:
		return o.Result()
	case <-ctx.Done():
	}
	if !s.Cancel(w) {
		if o := <-ch; o.Granted {
			s.Unlock(session, name)
		}
	}
	return locktable.Result{}, ctx.Err()
}

// Result is the outcome as a lock-side result.
func (o Outcome) Result() (locktable.Result, error) {
	switch {
	case o.Err != nil:
		return locktable.Result{}, o.Err
	case o.Granted:
		return locktable.Result{Status: locktable.Granted, Token: o.Token, Reentrant: o.Reentrant}, nil
	case o.Full:
		return locktable.Result{Status: locktable.TooManyWaiters}, nil
	case o.Refused.Status != 0:
		return o.Refused, nil
	}
	return locktable.Result{Status: locktable.Unavailable}, nil
}

// Unlock releases name if session holds it, handing it to the next waiter.
func (s *Set) Unlock(session string, name []byte) (locktable.Result, error) {
	return s.UnlockAs(Asker{Session: session}, name)
}

// UnlockAs is Unlock from a (see UnlockThen).
func (s *Set) UnlockAs(a Asker, name []byte) (locktable.Result, error) {
	p := s.partOf(name)
	var g guarded
	err := s.run(p, Write, s.unlockStep(p, a, name, nil, &g))
	return g.res, g.or(err)
}

// UnlockThen is Unlock for a caller that cannot block (see LockThen),
// from a. guard, if set, is asked under the partition's mutex, just
// before the unlock: an error it returns refuses the unlock with that
// error. So is a lock told to a later attachment of the session (see
// ErrLaterAttachment).
func (s *Set) UnlockThen(a Asker, name []byte, guard func() error, then func(locktable.Result, error)) {
	p := s.partOf(name)
	g := new(guarded)
	s.runThen(p, Write, s.unlockStep(p, a, name, guard, g), func(err error) { then(g.res, g.or(err)) })
}

// guarded is the result of a step that a guard may refuse.
type guarded struct {
	res     locktable.Result
	refused error
}

func (g *guarded) or(err error) error {
	if g.refused != nil {
		return g.refused
	}
	return err
}

// ProclaimAs changes the value a's session publishes as the exclusive
// holder of name (locktable.Table.Proclaim), refused as UnlockAs is.
func (s *Set) ProclaimAs(a Asker, name []byte, value string) (locktable.Result, error) {
	p := s.partOf(name)
	var g guarded
	err := s.run(p, Write, s.proclaimStep(p, a, name, value, nil, &g))
	return g.res, g.or(err)
}

// ProclaimThen is ProclaimAs for a caller that cannot block (see
// LockThen), refused by guard as UnlockThen is.
func (s *Set) ProclaimThen(a Asker, name []byte, value string, guard func() error, then func(locktable.Result, error)) {
	p := s.partOf(name)
	g := new(guarded)
	s.runThen(p, Write, s.proclaimStep(p, a, name, value, guard, g), func(err error) { then(g.res, g.or(err)) })
}

func (s *Set) proclaimStep(p *part, a Asker, name []byte, value string, guard func() error, g *guarded) func(*locktable.Table, locktable.Time, *pending) {
	return s.releaseOneStep(p, a, name, guard, g, func(t *locktable.Table, _ locktable.Time) (locktable.Result, []locktable.Effect) {
		return t.Proclaim(a.Session, name, value)
	})
}

func (s *Set) unlockStep(p *part, a Asker, name []byte, guard func() error, g *guarded) func(*locktable.Table, locktable.Time, *pending) {
	return s.releaseOneStep(p, a, name, guard, g, func(t *locktable.Table, now locktable.Time) (locktable.Result, []locktable.Effect) {
		return t.Unlock(now, a.Session, name)
	})
}

// Drop takes back session's grant of name made under token, if the
// session has not been told of it since (locktable.Table.Drop).
func (s *Set) Drop(session string, name []byte, token uint64) (locktable.Result, error) {
	return s.DropAs(Asker{Session: session}, name, token)
}

// DropAs is Drop from a (see DropThen).
func (s *Set) DropAs(a Asker, name []byte, token uint64) (locktable.Result, error) {
	p := s.partOf(name)
	var g guarded
	err := s.run(p, Write, s.dropStep(p, a, name, token, nil, &g))
	return g.res, g.or(err)
}

// DropThen is Drop for a caller that cannot block (see LockThen), from
// a, refused as UnlockThen is.
func (s *Set) DropThen(a Asker, name []byte, token uint64, guard func() error, then func(locktable.Result, error)) {
	p := s.partOf(name)
	g := new(guarded)
	s.runThen(p, Write, s.dropStep(p, a, name, token, guard, g), func(err error) { then(g.res, g.or(err)) })
}

func (s *Set) dropStep(p *part, a Asker, name []byte, token uint64, guard func() error, g *guarded) func(*locktable.Table, locktable.Time, *pending) {
	return s.releaseOneStep(p, a, name, guard, g, func(t *locktable.Table, now locktable.Time) (locktable.Result, []locktable.Effect) {
		return t.Drop(now, a.Session, name, token)
	})
}

// releaseOneStep is the body of an unlock or a drop (act) under the
// partition's mutex: refused by guard or by a later attachment's claim,
// after an earlier session's leftovers are released.
func (s *Set) releaseOneStep(p *part, a Asker, name []byte, guard func() error, g *guarded, act func(*locktable.Table, locktable.Time) (locktable.Result, []locktable.Effect)) func(*locktable.Table, locktable.Time, *pending) {
	return func(t *locktable.Table, now locktable.Time, pend *pending) {
		if guard != nil {
			if g.refused = guard(); g.refused != nil {
				return
			}
		}
		if g.refused = a.fenced(t, name); g.refused != nil {
			return
		}
		s.dropLeftovers(p, t, now, a, pend)
		var fx []locktable.Effect
		g.res, fx = act(t, now)
		s.apply(p, fx, pend)
	}
}

// dropLeftovers releases, before a write of a session, the locks and
// waits an earlier session under the same id left in this table
// (locktable.Leftover), in the same write: the new session never took
// them, and must not find them its own (a re-entrant grant under the old
// token, an unlock of a lock it never had). Born 0 (the single node,
// whose expiries release at once) skips it.
func (s *Set) dropLeftovers(p *part, t *locktable.Table, now locktable.Time, a Asker, pend *pending) {
	if a.Born == 0 {
		return
	}
	_, fx := t.ReleaseSessionUpTo(now, a.Session, a.Born-1)
	s.apply(p, fx, pend)
}

// ReleaseSession releases every lock session holds and drops its waiters,
// in every partition this node serves, and returns how many locks it
// released. Partitions it may not write are skipped and reported.
func (s *Set) ReleaseSession(session string) (int, error) {
	return s.releaseIn(session, s.all(), math.MaxUint64)
}

// ReleaseSessionIn is ReleaseSession limited to some partitions, and to
// the locks and waits of the session's attach epochs up to upTo (see
// locktable.ReleaseSessionUpTo).
func (s *Set) ReleaseSessionIn(session string, parts []int, upTo uint64) (int, error) {
	return s.releaseIn(session, parts, upTo)
}

func (s *Set) all() []int {
	ids := make([]int, len(s.parts))
	for i := range ids {
		ids[i] = i
	}
	return ids
}

func (s *Set) releaseIn(session string, parts []int, upTo uint64) (int, error) {
	total := 0
	var firstErr error
	for _, i := range parts {
		p := s.parts[i]
		err := s.run(p, Write, s.releaseStep(p, session, upTo, &total))
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return total, firstErr
}

// ReleaseThen releases session's locks and waits of attach epochs up to
// upTo in partition i, for a caller that cannot block (see LockThen):
// then receives how many locks it released.
func (s *Set) ReleaseThen(session string, i int, upTo uint64, then func(int, error)) {
	p := s.parts[i]
	n := new(int)
	s.runThen(p, Write, s.releaseStep(p, session, upTo, n), func(err error) { then(*n, err) })
}

func (s *Set) releaseStep(p *part, session string, upTo uint64, total *int) func(*locktable.Table, locktable.Time, *pending) {
	return func(t *locktable.Table, now locktable.Time, pend *pending) {
		n, fx := t.ReleaseSessionUpTo(now, session, upTo)
		*total += n
		s.apply(p, fx, pend)
	}
}
