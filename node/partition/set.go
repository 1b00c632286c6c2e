// Package partition serves lock partitions on one node: a locktable per
// partition behind its own mutex, the wake-up of blocked requests, and the
// single timer that drives every table's deadlines.
//
// It is the edge around the pure locktable: it reads the clock, owns the
// goroutine that fires deadlines, and turns the table's effects into
// wake-ups. Throughput does not hang on one global mutex: a command takes
// only the mutex of the partition its name (or session id) hashes to.
//
// Alone, a Set serves every partition itself. In a mesh, a Replicator
// decides which partitions this node may serve, and every change is
// acknowledged by the partition's replica before anyone hears of it.
//
// Imports: node/locktable, node/failure, xxhash and the standard library.
//
// Lock order: one partition's mutex at a time, never two; the Replicator's
// Admit and Record are called with it held (and take only their own
// mutexes), as is the guard of UnlockThen and DropThen. Outcomes (Done)
// and the Expired hook are called with no mutex held.
package partition

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
)

// Config configures a Set.
type Config struct {
	// Partitions is how many partitions the lock space is cut into. It
	// fixes where every name and session lives, so it is part of a
	// cluster's identity.
	Partitions int
	Limits     locktable.Limits
	// Epoch is the epoch tokens start in.
	Epoch uint64
	// Clock returns monotonic nanoseconds. Nil means the real clock.
	Clock func() locktable.Time
	// AutoEpoch lets the set move a partition to the next epoch by itself
	// when its tokens run low. Only a node that alone decides its epochs
	// (a single node) may; a mesh's epochs come from its control plane.
	AutoEpoch bool
	// Replicator, if set, makes this Set one node of a mesh.
	Replicator Replicator
	// Expired, if set, is told that a session expired here, with no
	// partition mutex held, and the attach epoch it was last attached at:
	// its locks, in whatever partition and on whatever node, are to be
	// released up to that epoch (ReleaseThen), and Expired must not block
	// while that is done. If nil, the session's locks in this Set are
	// released at once (a single node, where every partition lives here).
	Expired func(id string, epoch uint64)
}

// lowTokens is when AutoEpoch moves a partition on: far enough from the
// end of the epoch that queued waiters never find it exhausted.
const lowTokens = 1 << 24

// DefaultPartitions is the default partition count.
const DefaultPartitions = 128

// DefaultConfig returns the configuration of a single node's set.
func DefaultConfig() Config {
	return Config{Partitions: DefaultPartitions, Limits: locktable.Limits{MaxWaiters: 4096, DefaultTimeout: 30 * time.Second}}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Partitions < 1 || c.Partitions > 1<<16 {
		return fmt.Errorf("partition: partitions %d out of range 1..65536", c.Partitions)
	}
	if c.Limits.DefaultTimeout < 0 {
		return fmt.Errorf("partition: negative default timeout %v", c.Limits.DefaultTimeout)
	}
	return nil
}

// Of returns the partition a key lives in: xxhash64 of the key modulo the
// partition count, the same function buraksezer/consistent applies with
// an xxhash hasher, so the ring and this set always agree.
func Of(key []byte, partitions int) int {
	return int(xxhash.Sum64(key) % uint64(partitions))
}

// Op is the kind of access an operation needs, for Replicator.Admit.
type Op uint8

const (
	// Read looks at state.
	Read Op = iota
	// Write may change state but grants nothing (unlock, release, the
	// session records).
	Write
	// Grant may grant a lock or queue for one.
	Grant
	// Tick expires waiters and sessions: it needs ownership and a lease,
	// not a synced replica.
	Tick
	// Claim raises the epochs a resume lists where no replica can
	// confirm it (ClaimHeldIn): ownership and a lease, as Tick.
	Claim
)

// Replicator connects the partitions to a mesh. Admit and Record are
// called with the partition's mutex held and must not block; Confirm is
// called with no mutex held.
type Replicator interface {
	// Admit says whether this node may serve op on partition p now. It
	// returns the reason it may not: a retryable *failure.Error, of reason
	// failure.Moved when another node serves p.
	Admit(p int, op Op) error
	// Record takes the changes one operation made to p's table, already
	// applied, in order, and returns the position that acknowledges them.
	// With no changes it returns the last position recorded if it is not
	// acknowledged yet, else 0: an answer that rests on changes still
	// unconfirmed (a 409 because of a grant that may yet be lost) waits
	// for them too, so nobody is told of state that may vanish.
	Record(p int, changes []locktable.Change) uint64
	// Confirm calls then once position pos of p has been acknowledged by
	// p's replica (nil), or once it no longer can be (an error: the
	// changes are applied here but may be lost, so whoever asked is told
	// the outcome is unknown). then is called exactly once, with no
	// partition mutex held: before Confirm returns if the answer is known,
	// else later from whichever goroutine learns it. It must not block.
	Confirm(p int, pos uint64, then func(error))
}

// Set is the partitions of the lock space hosted by this node.
type Set struct {
	cfg   Config
	clock func() locktable.Time
	rep   Replicator
	parts []*part

	nextWaiter atomic.Uint64
	grants     atomic.Uint64

	poke chan struct{} // wakes the deadline loop early; capacity 1
	stop chan struct{}
	done chan struct{}
}

// part is one partition. mu guards table and slots; the lock order is
// "one part at a time": no code holds two parts' mutexes.
type part struct {
	id    int
	mu    sync.Mutex
	table *locktable.Table
	slots map[locktable.WaiterID]slot // queued requests
	// next is the table's earliest deadline (0: none), for the timer loop.
	next atomic.Int64
}

type slot struct {
	session string
	done    Done
}

// Outcome is how a queued lock request ended.
type Outcome struct {
	Granted bool
	Token   uint64 // the grant's fencing token when Granted
	// Reentrant: granted because the session held the lock already (a
	// request that could be answered at once, carried as an outcome).
	Reentrant bool
	// Full: refused at once because the lock's queue was full.
	Full bool
	// Err, if set, ends the wait without a definite answer: the partition
	// moved away (a retryable *failure.Error), or a grant could not be
	// confirmed by the replica (its outcome is unknown).
	Err error
}

// Done receives the outcome of a queued request. It is called exactly
// once, with no partition mutex held, so it may answer the client itself,
// from the goroutine that decided the outcome or learnt it was confirmed:
// the one releasing the lock, the deadline timer, the one reading the
// replica's acknowledgement, or the one that takes the partition away
// (Evict, a new table). It must not block for long.
type Done func(Outcome)

// Wait is a queued lock request.
type Wait struct {
	p  *part
	id locktable.WaiterID
}

// New builds a Set and starts its deadline loop. Close stops it.
func New(cfg Config) (*Set, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Set{
		cfg:   cfg,
		clock: cfg.Clock,
		rep:   cfg.Replicator,
		parts: make([]*part, cfg.Partitions),
		poke:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if s.clock == nil {
		base := time.Now()
		s.clock = func() locktable.Time { return int64(time.Since(base)) }
	}
	for i := range s.parts {
		s.parts[i] = &part{
			id:    i,
			table: locktable.New(cfg.Epoch, cfg.Limits, s.rep != nil),
			slots: make(map[locktable.WaiterID]slot),
		}
	}
	go s.deadlines()
	return s, nil
}

// Close stops the deadline loop. Queued requests are not woken; their
// callers cancel them.
func (s *Set) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// Now reads the set's clock.
func (s *Set) Now() locktable.Time { return s.clock() }

// Limits are the tables' limits.
func (s *Set) Limits() locktable.Limits { return s.cfg.Limits }

// Epoch returns the epoch partition i issues tokens in.
func (s *Set) Epoch(i int) uint64 {
	p := s.parts[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.table.Epoch()
}

// Partitions returns the partition count.
func (s *Set) Partitions() int { return len(s.parts) }

// PartitionOf returns the partition of a key.
func (s *Set) PartitionOf(key []byte) int { return Of(key, len(s.parts)) }

func (s *Set) partOf(key []byte) *part { return s.parts[Of(key, len(s.parts))] }

// With runs f on partition i's table with the partition's mutex held, so
// that the mesh can install, promote, replace or snapshot it consistently
// with the operations around it. f returns the table to keep (its
// argument, or a replacement).
func (s *Set) With(i int, f func(t *locktable.Table, now locktable.Time) *locktable.Table) {
	p := s.parts[i]
	p.mu.Lock()
	p.table = f(p.table, s.clock())
	s.rearm(p)
	p.mu.Unlock()
}

// Evict ends every request queued on partition i with err: the partition
// is no longer served here, and whoever waits asks its new owner. Every
// slot still here is undecided (a decision removes its slot), so each is
// answered, whether or not the table still has its waiter: the table may
// have been replaced (With) when this node stopped owning the partition,
// and a slot left unanswered would keep its caller waiting forever.
func (s *Set) Evict(i int, err error) {
	p := s.parts[i]
	var pend pending
	p.mu.Lock()
	for id, sl := range p.slots {
		p.table.CancelWait(id)
		delete(p.slots, id)
		pend.outcome = append(pend.outcome, decided{sl.done, Outcome{Err: err}})
	}
	s.rearm(p)
	p.mu.Unlock()
	s.settle(&pend, nil)
}

// pending collects what one operation's effects ask for beyond its own
// reply. It is filled under one part's mutex and carried out after that
// mutex is released, keeping the one-mutex-at-a-time rule.
type pending struct {
	expired []expiry
	outcome []decided
	// touched names and sessions whose state a replica must learn.
	names    []string
	sessions []string
}

// expiry is a session that expired, and the attach epoch it ended at.
type expiry struct {
	id    string
	epoch uint64
}

// decided is an outcome still to be delivered.
type decided struct {
	done Done
	o    Outcome
}

// apply turns effects into wake-ups, notes sessions to release and the
// state a replica must learn. Called with p.mu held.
func (s *Set) apply(p *part, fx []locktable.Effect, pend *pending) {
	for _, e := range fx {
		switch e.Kind {
		case locktable.WaiterGranted:
			s.grants.Add(1)
			s.decide(p, e.Waiter, Outcome{Granted: true, Token: e.Token}, pend)
		case locktable.WaiterTimedOut:
			s.decide(p, e.Waiter, Outcome{}, pend)
		case locktable.SessionExpired:
			pend.expired = append(pend.expired, expiry{e.Session, e.Epoch})
			pend.sessions = append(pend.sessions, e.Session)
		case locktable.LockHeld, locktable.LockFreed:
			pend.names = append(pend.names, e.Name)
		}
	}
}

// decide removes a waiter's callback and queues its outcome.
func (s *Set) decide(p *part, w locktable.WaiterID, o Outcome, pend *pending) {
	if sl, ok := p.slots[w]; ok {
		delete(p.slots, w)
		pend.outcome = append(pend.outcome, decided{sl.done, o})
	}
}

// record hands the touched state to the replicator. Called with p.mu
// held; returns the position to await (0: nothing). With nothing
// touched, that is the position of changes the answer rests on that are
// not acknowledged yet.
func (s *Set) record(p *part, now locktable.Time, pend *pending) uint64 {
	if s.rep == nil {
		return 0
	}
	if len(pend.names)+len(pend.sessions) == 0 {
		return s.rep.Record(p.id, nil)
	}
	cs := make([]locktable.Change, 0, len(pend.names)+len(pend.sessions))
	for _, n := range pend.names {
		cs = append(cs, p.table.HeldChange(now, n))
	}
	for _, id := range pend.sessions {
		cs = append(cs, p.table.SessionChange(now, id))
	}
	pend.names, pend.sessions = pend.names[:0], pend.sessions[:0]
	return s.rep.Record(p.id, cs)
}

// await waits for a recorded position with no mutex held.
func (s *Set) await(p *part, pos uint64) error {
	if pos == 0 || s.rep == nil {
		return nil
	}
	ch := make(chan error, 1)
	s.rep.Confirm(p.id, pos, func(err error) { ch <- err })
	return <-ch
}

// settle finishes what effects started once no part mutex is held and
// the changes are acknowledged (unconfirmed, if err is set: grants are
// then delivered as unknown outcomes). Releasing an expired session's
// locks decides more outcomes, so it runs until both lists are empty.
func (s *Set) settle(pend *pending, err error) {
	for len(pend.outcome) > 0 || len(pend.expired) > 0 {
		for len(pend.outcome) > 0 {
			d := pend.outcome[0]
			pend.outcome = pend.outcome[1:]
			if err != nil && d.o.Granted {
				d.o.Err = err
			}
			d.done(d.o)
		}
		if len(pend.expired) > 0 {
			x := pend.expired[0]
			pend.expired = pend.expired[1:]
			if s.cfg.Expired != nil {
				s.cfg.Expired(x.id, x.epoch)
			} else {
				// Bounded by the epoch it ended at: a new session under
				// the id may have attached, and locked, since the expiry
				// let go of the mutex (found by review).
				s.releaseIn(x.id, s.all(), x.epoch)
			}
		}
	}
}

// rearm publishes p's earliest deadline and wakes the timer loop if it is
// earlier than anything the loop knew. Called with p.mu held.
func (s *Set) rearm(p *part) {
	d, ok := p.table.NextDeadline()
	if !ok {
		p.next.Store(0)
		return
	}
	if d == 0 {
		d = 1 // 0 means "none"
	}
	old := p.next.Swap(d)
	if old == 0 || d < old {
		select {
		case s.poke <- struct{}{}:
		default:
		}
	}
}

// deadlines is the one timer of the set: it sleeps until the earliest
// deadline of any partition and ticks the partitions that are due.
func (s *Set) deadlines() {
	defer close(s.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := s.clock()
		earliest := int64(0)
		for _, p := range s.parts {
			d := p.next.Load()
			if d == 0 {
				continue
			}
			if d <= now {
				s.tick(p, now)
				d = p.next.Load()
				if d == 0 || d <= now {
					continue
				}
			}
			if earliest == 0 || d < earliest {
				earliest = d
			}
		}
		wait := time.Hour
		if earliest != 0 {
			wait = time.Duration(earliest - now)
		}
		t.Reset(wait)
		select {
		case <-s.stop:
			return
		case <-s.poke:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
	}
}

// tick expires what is due, on partitions this node owns (a replica's
// records expire when its owner says so). A waiter's timeout changes no
// replicated state, so it is delivered at once even while the partition
// waits for a synced replica; a session's expiry is replicated, and its
// acknowledgement is awaited off this, the one timer goroutine.
func (s *Set) tick(p *part, now locktable.Time) {
	var pend pending
	p.mu.Lock()
	if s.rep != nil {
		if err := s.rep.Admit(p.id, Tick); err != nil {
			// A partition owned elsewhere is ticked by its owner; when it
			// becomes this node's, With re-arms it. One owned here but
			// not servable now (no lease yet) is looked at again soon.
			if failure.Is(err, failure.Moved) {
				p.next.Store(0)
			} else {
				p.next.Store(now + int64(retryTick))
			}
			p.mu.Unlock()
			return
		}
	}
	s.apply(p, p.table.Tick(now), &pend)
	pos := s.record(p, now, &pend)
	s.rearm(p)
	p.mu.Unlock()
	if pos == 0 {
		s.settle(&pend, nil)
		return
	}
	// A waiter's timeout also rests on the grant that kept it waiting: it
	// is told once that is confirmed, or asked to retry. The timer goroutine
	// does not wait for that.
	s.rep.Confirm(p.id, pos, func(err error) {
		if err != nil {
			for i, d := range pend.outcome {
				if !d.o.Granted {
					pend.outcome[i].o.Err = unconfirmed(p)
				}
			}
		}
		s.settle(&pend, err)
	})
}

// retryTick is how soon a partition whose deadlines could not be served
// is looked at again.
const retryTick = 100 * time.Millisecond

// begin executes f on p's table under p's mutex once admitted, and
// records the changes it made: it returns the position the answer waits
// for, and whether the operation changed replicated state of its own.
func (s *Set) begin(p *part, op Op, f func(t *locktable.Table, now locktable.Time, pend *pending), pend *pending) (pos uint64, changed bool, err error) {
	p.mu.Lock()
	if s.rep != nil {
		if err := s.rep.Admit(p.id, op); err != nil {
			// The partition keeps its deadlines: a refused grant (no synced
			// replica yet) must not stop its waiters' timeouts and its
			// sessions' expiries, which tick serves without a replica. Tick
			// itself stops the timer of a partition owned elsewhere.
			p.mu.Unlock()
			return 0, false, err
		}
	}
	now := s.clock()
	f(p.table, now, pend)
	changed = len(pend.names)+len(pend.sessions) > 0
	pos = s.record(p, now, pend)
	s.rearm(p)
	p.mu.Unlock()
	return pos, changed, nil
}

// end delivers the outcomes an operation decided, once its changes are
// confirmed (err nil) or known to be at risk, and returns the operation's
// own error.
func (s *Set) end(p *part, pend *pending, changed bool, err error) error {
	if err != nil && !changed {
		// Nothing of this request's own is at risk, only what it read:
		// it did nothing, and may be asked again.
		err = unconfirmed(p)
	}
	s.settle(pend, err)
	return err
}

// run executes f on p's table under p's mutex once admitted, records the
// changes it made, waits for their acknowledgement with the mutex
// released, and then delivers the outcomes it decided.
func (s *Set) run(p *part, op Op, f func(t *locktable.Table, now locktable.Time, pend *pending)) error {
	var pend pending
	pos, changed, err := s.begin(p, op, f, &pend)
	if err != nil {
		return err
	}
	return s.end(p, &pend, changed, s.await(p, pos))
}

// runThen is run for a caller that cannot block: then receives run's
// error, before runThen returns if nothing is to be confirmed, else from
// whichever goroutine learns of the confirmation.
func (s *Set) runThen(p *part, op Op, f func(t *locktable.Table, now locktable.Time, pend *pending), then func(error)) {
	pend := &pending{}
	pos, changed, err := s.begin(p, op, f, pend)
	switch {
	case err != nil:
		then(err)
	case pos == 0:
		then(s.end(p, pend, changed, nil))
	default:
		s.rep.Confirm(p.id, pos, func(err error) { then(s.end(p, pend, changed, err)) })
	}
}

// unconfirmed refuses an answer that rested on changes whose
// confirmation failed.
func unconfirmed(p *part) error {
	return failure.Retry(failure.Unconfirmed, failure.Partition(p.id)+" changed hands before what this answer rests on was confirmed; retry")
}

// LockAsync asks for name for session. If another session holds it and
// wait > 0, the request queues: LockAsync returns Queued with a *Wait, and
// done later receives the outcome (a hand-over, or Unavailable once wait
// has passed), unless Cancel withdraws it first. There is no polling:
// the releasing goroutine or the deadline timer delivers the outcome.
func (s *Set) LockAsync(session string, name []byte, wait time.Duration, done Done) (locktable.Result, *Wait, error) {
	return s.LockAs(Asker{Session: session}, name, wait, done)
}

// LockAs is LockAsync from a (see LockThen).
func (s *Set) LockAs(a Asker, name []byte, wait time.Duration, done Done) (locktable.Result, *Wait, error) {
	p := s.partOf(name)
	var r lockResult
	err := s.run(p, Grant, s.lockStep(p, a, name, wait, done, &r))
	return s.lockEnd(&r, err)
}

// Asker is the session a request speaks for: its id, the attach epoch
// the request was sent at (a grant keeps the highest epoch told of it, a
// release of an ended session is bounded by the epoch it ended at, and a
// resume's listing raises the session's grants to its epoch, so that
// requests from an older attachment no longer act on them), and the
// epoch the session was born at (which tells its grants from those an
// earlier session under the id left; see dropLeftovers). Zero epochs
// fence nothing (tests, and callers with no session record).
type Asker struct {
	Session string
	Epoch   uint64
	Born    uint64
}

// fenced refuses a's request on name when a later attachment of a's
// session was told of the lock (ErrLaterAttachment): the request comes
// from a home the session has left, and acting on it would grant
// re-entrantly, release, or report a lock that later attachment counts
// as told.
func (a Asker) fenced(t *locktable.Table, name []byte) error {
	if a.Epoch > 0 && t.HeldAfter(a.Session, name, a.Epoch) {
		return ErrLaterAttachment
	}
	return nil
}

// LockThen is LockAsync for a caller that cannot block, from a (see
// locktable.LockAt, and dropLeftovers): then receives what LockAsync
// would return, once the answer is confirmed, with no mutex held, before
// LockThen returns or later from another goroutine. done may be called
// before then: a queued request granted meanwhile.
func (s *Set) LockThen(a Asker, name []byte, wait time.Duration, done Done, then func(locktable.Result, *Wait, error)) {
	p := s.partOf(name)
	r := &lockResult{}
	s.runThen(p, Grant, s.lockStep(p, a, name, wait, done, r), func(err error) { then(s.lockEnd(r, err)) })
}

// lockResult is what a lock's step decided under the mutex.
type lockResult struct {
	res locktable.Result
	w   *Wait
	err error // the table's own refusal
}

// lockStep is the body of a lock under its partition's mutex.
func (s *Set) lockStep(p *part, a Asker, name []byte, wait time.Duration, done Done, r *lockResult) func(*locktable.Table, locktable.Time, *pending) {
	var wid locktable.WaiterID
	if wait > 0 {
		wid = locktable.WaiterID(s.nextWaiter.Add(1))
	}
	return func(t *locktable.Table, now locktable.Time, pend *pending) {
		if r.err = a.fenced(t, name); r.err != nil {
			return
		}
		s.dropLeftovers(p, t, now, a, pend)
		var fx []locktable.Effect
		r.res, fx, r.err = t.LockAt(now, a.Session, a.Epoch, name, wid, now+int64(wait))
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
func (s *Set) Cancel(w *Wait) bool {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.table.CancelWait(w.id) {
		return false
	}
	delete(p.slots, w.id)
	s.rearm(p)
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

// ErrLaterAttachment refuses a lock, an unlock or a drop of a lock that a
// later attachment of the session was told of (its epoch, raised by a
// resume's listing, a re-entrant lock or a hand-over, is above the
// request's): the request comes from a home the session has left, or
// from an ended session under the same id, and held back by the network,
// it must not take a lock from the client that now holds it, nor claim
// it as told.
var ErrLaterAttachment = failure.Retry(failure.SessionMoved, "this session was resumed on another connection")

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

// Token returns session's fencing token for name.
func (s *Set) Token(session string, name []byte) (uint64, locktable.Status, error) {
	return s.TokenAs(Asker{Session: session}, name)
}

// TokenAs is Token from a (see tokenOf).
func (s *Set) TokenAs(a Asker, name []byte) (uint64, locktable.Status, error) {
	var (
		tok     uint64
		st      locktable.Status
		refused error
	)
	err := s.readConfirmed(s.partOf(name), func(t *locktable.Table, _ locktable.Time) {
		tok, st, refused = tokenOf(t, a, name)
	})
	return tok, st, cmp.Or(refused, err)
}

// TokenThen is Token for a caller that cannot block (see LockThen), from
// a.
func (s *Set) TokenThen(a Asker, name []byte, then func(uint64, locktable.Status, error)) {
	var (
		tok     uint64
		st      locktable.Status
		refused error
	)
	s.readConfirmedThen(s.partOf(name), func(t *locktable.Table, _ locktable.Time) {
		tok, st, refused = tokenOf(t, a, name)
	}, func(err error) { then(tok, st, cmp.Or(refused, err)) })
}

// tokenOf is a's token of name. A lock a later attachment of the session
// was told of is refused (ErrLaterAttachment): a home the session has
// left must neither claim it as told nor take it for another's, which
// would turn a late outcome into a wrong definite one; its client hears
// that the session moved.
func tokenOf(t *locktable.Table, a Asker, name []byte) (uint64, locktable.Status, error) {
	if err := a.fenced(t, name); err != nil {
		return 0, 0, err
	}
	tok, st := t.Token(seenBy(t, a, name), name)
	return tok, st, nil
}

// seenBy is the session as whom a read from a sees name: itself, or
// nobody where name is an earlier session's leftover under the same id
// (locktable.Leftover), which it must not be told it holds (the sweep
// releases that grant, and a write of a's session releases it first:
// dropLeftovers).
func seenBy(t *locktable.Table, a Asker, name []byte) string {
	if t.Leftover(a.Session, a.Born, name) {
		return ""
	}
	return a.Session
}

// Info reports on name as session sees it.
func (s *Set) Info(session string, name []byte) (locktable.Info, error) {
	return s.InfoAs(Asker{Session: session}, name)
}

// InfoAs is Info from a (see infoOf).
func (s *Set) InfoAs(a Asker, name []byte) (locktable.Info, error) {
	var (
		in      locktable.Info
		refused error
	)
	err := s.readConfirmed(s.partOf(name), func(t *locktable.Table, now locktable.Time) {
		in, refused = infoOf(t, now, a, name)
	})
	return in, cmp.Or(refused, err)
}

// InfoThen is Info for a caller that cannot block (see LockThen), from
// a.
func (s *Set) InfoThen(a Asker, name []byte, then func(locktable.Info, error)) {
	var (
		in      locktable.Info
		refused error
	)
	s.readConfirmedThen(s.partOf(name), func(t *locktable.Table, now locktable.Time) {
		in, refused = infoOf(t, now, a, name)
	}, func(err error) { then(in, cmp.Or(refused, err)) })
}

// infoOf is name as a sees it, refused as tokenOf is.
func infoOf(t *locktable.Table, now locktable.Time, a Asker, name []byte) (locktable.Info, error) {
	if err := a.fenced(t, name); err != nil {
		return locktable.Info{}, err
	}
	return t.Info(now, seenBy(t, a, name), name), nil
}

// readConfirmed is read for an answer a client acts on (token after a
// 504 says whether the lock is held): it returns once the changes the
// answer rests on are acknowledged, or refuses it as retryable.
func (s *Set) readConfirmed(p *part, f func(t *locktable.Table, now locktable.Time)) error {
	var pos uint64
	err := s.read(p, func(t *locktable.Table, now locktable.Time) {
		f(t, now)
		if s.rep != nil {
			pos = s.rep.Record(p.id, nil)
		}
	})
	if err != nil {
		return err
	}
	if s.await(p, pos) != nil {
		return unconfirmed(p)
	}
	return nil
}

// readConfirmedThen is readConfirmed for a caller that cannot block.
func (s *Set) readConfirmedThen(p *part, f func(t *locktable.Table, now locktable.Time), then func(error)) {
	var pos uint64
	err := s.read(p, func(t *locktable.Table, now locktable.Time) {
		f(t, now)
		if s.rep != nil {
			pos = s.rep.Record(p.id, nil)
		}
	})
	if err != nil || pos == 0 {
		then(err)
		return
	}
	s.rep.Confirm(p.id, pos, func(err error) {
		if err != nil {
			err = unconfirmed(p)
		}
		then(err)
	})
}

func (s *Set) read(p *part, f func(t *locktable.Table, now locktable.Time)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.rep != nil {
		if err := s.rep.Admit(p.id, Read); err != nil {
			return err
		}
	}
	f(p.table, s.clock())
	return nil
}

// HeldBy counts the locks session holds in the partitions this node
// serves.
func (s *Set) HeldBy(session string) int {
	n := 0
	for _, p := range s.parts {
		s.read(p, func(t *locktable.Table, _ locktable.Time) { n += t.HeldBy(session) })
	}
	return n
}

// HeldNames lists the names session holds in the partitions this node
// serves.
func (s *Set) HeldNames(session string) []string {
	var names []string
	for _, p := range s.parts {
		s.read(p, func(t *locktable.Table, _ locktable.Time) { names = append(names, t.HeldNames(session)...) })
	}
	return names
}

// ClaimHeldIn lists the names a's session holds in partition i, for a
// client attached at a.Epoch that is told them (locktable.ClaimHeld: an
// earlier session's leftovers are left out, for the sweep), or says the
// partition is not served here. Epochs it raises are replicated before
// the list is returned: a write. Where nothing needs raising, a confirmed
// read answers. Where the partition has no synced replica to confirm a
// write, the epochs are raised here and the list answered at once: a
// resume should not wait for a replica. A copy that takes over before it
// learns them keeps the old epochs, and a late release bounded below the
// resume's can then take those locks there.
func (s *Set) ClaimHeldIn(a Asker, i int) ([]string, error) {
	p := s.parts[i]
	var (
		names []string
		below int
	)
	// Nothing to raise (nothing held here, or an earlier claim raised it):
	// a read, confirmed like any answer a client acts on, so that a claim
	// whose write timed out is not listed before its replica has it.
	err := s.readConfirmed(p, func(t *locktable.Table, _ locktable.Time) {
		if below = t.HeldBelow(a.Session, a.Born, a.Epoch); below == 0 {
			names, _ = t.ClaimHeld(a.Session, a.Born, a.Epoch) // raises nothing
		}
	})
	if err != nil || below == 0 {
		return names, err
	}
	claim := func(t *locktable.Table, _ locktable.Time, pend *pending) {
		var fx []locktable.Effect
		names, fx = t.ClaimHeld(a.Session, a.Born, a.Epoch)
		s.apply(p, fx, pend)
	}
	err = s.run(p, Write, claim)
	if failure.Is(err, failure.NoReplica) {
		// No replica to confirm it: raised here at once, and recorded for
		// the copy the next replica gets.
		var pend pending
		var changed bool
		if _, changed, err = s.begin(p, Claim, claim, &pend); err == nil {
			err = s.end(p, &pend, changed, nil)
		}
	}
	return names, err
}

// Attach binds session id to a connection on home; see locktable.Attach.
// If an expired incarnation of id is found, its locks are released before
// Attach returns, so the new session starts empty.
func (s *Set) Attach(id, home string) (locktable.Attachment, error) {
	var (
		a    locktable.Attachment
		aerr error
	)
	err := s.session(id, func(p *part, t *locktable.Table, now locktable.Time, pend *pending) {
		var fx []locktable.Effect
		a, fx, aerr = t.Attach(now, id, home)
		s.apply(p, fx, pend)
	})
	if err != nil {
		return a, err
	}
	return a, aerr
}

// session runs f on the partition of session id as a write that changes
// the session's record.
func (s *Set) session(id string, f func(p *part, t *locktable.Table, now locktable.Time, pend *pending)) error {
	p := s.partOf([]byte(id))
	return s.run(p, Write, func(t *locktable.Table, now locktable.Time, pend *pending) {
		f(p, t, now, pend)
		pend.sessions = append(pend.sessions, id)
	})
}

// Detach records that the connection of attach epoch has gone; the
// session's locks are released once its timeout passes unresumed.
func (s *Set) Detach(id string, epoch uint64) error {
	return s.session(id, func(p *part, t *locktable.Table, now locktable.Time, pend *pending) {
		s.apply(p, t.Detach(now, id, epoch), pend)
	})
}

// SetTimeout sets how long session id survives detached.
func (s *Set) SetTimeout(id string, d time.Duration) error {
	var serr error
	err := s.session(id, func(_ *part, t *locktable.Table, _ locktable.Time, _ *pending) {
		serr = t.SetTimeout(id, d)
	})
	if err != nil {
		return err
	}
	return serr
}

// Session returns session id's record.
func (s *Set) Session(id string) (locktable.Session, bool, error) {
	rec, ok, _, err := s.SessionBound(id)
	return rec, ok, err
}

// SessionBound is Session, and when id has no record, the highest attach
// epoch its partition has given out (locktable.SessionEpochBound): a
// later session under id attaches above it, so releasing id's locks up
// to it cannot take one of that session's.
func (s *Set) SessionBound(id string) (rec locktable.Session, ok bool, bound uint64, err error) {
	err = s.read(s.partOf([]byte(id)), func(t *locktable.Table, _ locktable.Time) {
		rec, ok = t.Session(id)
		bound = t.SessionEpochBound()
	})
	return rec, ok, bound, err
}

// Counts sums the tables' counts.
type Counts struct {
	locktable.Counts
	Grants uint64 // grants issued since start, hand-overs included
}

// Counts returns the sizes of the partitions this node serves.
func (s *Set) Counts() Counts {
	var c Counts
	for _, p := range s.parts {
		s.read(p, func(t *locktable.Table, _ locktable.Time) {
			x := t.Counts()
			c.Locks += x.Locks
			c.Waiters += x.Waiters
			c.Sessions += x.Sessions
		})
	}
	c.Grants = s.grants.Load()
	return c
}

// Sessions lists the session records of the partitions this node serves.
func (s *Set) Sessions() []locktable.Session {
	var out []locktable.Session
	for _, p := range s.parts {
		s.read(p, func(t *locktable.Table, _ locktable.Time) { out = append(out, t.Sessions()...) })
	}
	return out
}

// Holder is a session that holds or awaits locks in served partitions:
// which partitions, and the oldest attach epoch among those locks and
// waits.
type Holder struct {
	Parts  []int
	Oldest uint64
}

// Holders lists the sessions that hold or await a lock in a served
// partition.
func (s *Set) Holders() map[string]Holder {
	out := make(map[string]Holder)
	for _, p := range s.parts {
		s.read(p, func(t *locktable.Table, _ locktable.Time) {
			for _, h := range t.Holders() {
				cur, seen := out[h.Session]
				if !seen {
					cur.Oldest = h.Oldest
				}
				cur.Parts = append(cur.Parts, p.id)
				cur.Oldest = min(cur.Oldest, h.Oldest)
				out[h.Session] = cur
			}
		})
	}
	return out
}

// Served lists the partitions this node serves now.
func (s *Set) Served() []int {
	var out []int
	for _, p := range s.parts {
		if s.read(p, func(*locktable.Table, locktable.Time) {}) == nil {
			out = append(out, p.id)
		}
	}
	return out
}
