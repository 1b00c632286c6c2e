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
	"fmt"
	"slices"
	"strconv"
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
	// GrantDelay, for a Set alone, refuses grants for this long after New
	// with a retryable failure of reason LockDelay: a single node that
	// restarted after a crash lost its grants, and their holders may not
	// know yet; by the end of the delay every session that held one has
	// timed out. (A mesh's lock-delay comes from its Replicator.)
	GrantDelay time.Duration
	// MaxLocks and MaxSessions, when above zero, bound the locks held
	// and the session records kept in all of this node's tables
	// together (a replica's copies count: they take the same memory). A
	// grant that would add a lock, or an attach that would add a
	// record, is refused beyond them with a retryable failure of reason
	// Full; a replica's copy is never refused, so a node that takes over
	// may hold more than the bound, and refuses new ones until it is
	// under it again.
	MaxLocks, MaxSessions int
	// MaxLocksPerSession, when above zero, bounds the locks one session
	// holds in this node's partitions: a lock that would add one more is
	// refused (definite, reason Limit). The client port checks the same
	// limit first; this is the check where the lock is granted, for a
	// request that did not come through it. It is looked at (a walk over
	// the partitions) only once the node holds that many locks in all,
	// so below that it costs nothing.
	MaxLocksPerSession int
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
	if c.MaxLocks < 0 || c.MaxSessions < 0 || c.MaxLocksPerSession < 0 {
		return fmt.Errorf("partition: negative max locks %d, max sessions %d or max locks per session %d", c.MaxLocks, c.MaxSessions, c.MaxLocksPerSession)
	}
	if c.GrantDelay < 0 || c.GrantDelay > 0 && c.Replicator != nil {
		return fmt.Errorf("partition: a grant delay of %v is for a set alone and not negative", c.GrantDelay)
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
	// Tick expires waiters and sessions, and serves the queues they
	// leave (shared requests behind a timed-out exclusive one may be
	// granted): it needs ownership and a lease, not a synced replica.
	// What it grants is delivered once confirmed, as every grant is.
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
	handoffs   atomic.Uint64 // the grants among them made to a queued waiter
	// grantsFrom is when (on clock) GrantDelay ends; delaying is cleared
	// the first time a grant finds it over, so that grants after the
	// delay do not read the clock for it.
	grantsFrom locktable.Time
	delaying   atomic.Bool
	// locks and sessions total the counts of every part's table (see
	// recount), for MaxLocks and MaxSessions.
	locks, sessions atomic.Int64

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
	// nLocks and nSessions are the table's counts as last added to the
	// set's totals.
	nLocks, nSessions int
	// watches are the watchers of names of this partition (Watch).
	watches map[string]*nameWatch
	// watchSeq numbers the partition's watch events: it only grows, so
	// a name watched again after its last watcher left goes on from
	// where its events were, never back.
	watchSeq uint64
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
	// Refused, when its Status is set, is a definite refusal of the
	// request itself (a kind or limit mismatch, no upgrade), carried as
	// an outcome by a mesh wait whose owner answered so.
	Refused locktable.Result
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
	if cfg.GrantDelay > 0 {
		s.grantsFrom = s.clock() + int64(cfg.GrantDelay)
		s.delaying.Store(true)
	}
	for i := range s.parts {
		s.parts[i] = &part{
			id: i,
			// Changes are recorded for watchers too, not only for a
			// replica.
			table: locktable.New(cfg.Epoch, cfg.Limits, true),
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
	s.recount(p)
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
		// Withdrawn without serving the queue: every waiter here goes,
		// and the table is no longer this node's to grant from.
		p.table.Withdraw(id)
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
	// touched grants and sessions whose state a replica must learn.
	grants   []grantRef
	sessions []string
	// watched names that changed, and what their watchers are told.
	watched []string
	events  []told
}

// grantRef names one session's grant of one name.
type grantRef struct{ name, session string }

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
			s.handoffs.Add(1)
			s.decide(p, e.Waiter, Outcome{Granted: true, Token: e.Token}, pend)
		case locktable.WaiterTimedOut:
			s.decide(p, e.Waiter, Outcome{}, pend)
		case locktable.SessionExpired:
			pend.expired = append(pend.expired, expiry{e.Session, e.Epoch})
			pend.sessions = append(pend.sessions, e.Session)
		case locktable.LockWanted:
			if nw := p.watches[e.Name]; nw != nil && !slices.Contains(pend.watched, e.Name) {
				pend.watched = append(pend.watched, e.Name)
			}
		case locktable.LockHeld, locktable.LockFreed:
			if s.rep != nil {
				pend.grants = append(pend.grants, grantRef{e.Name, e.Session})
			}
			if nw := p.watches[e.Name]; nw != nil {
				nw.last = max(nw.last, e.Token)
				if !slices.Contains(pend.watched, e.Name) {
					pend.watched = append(pend.watched, e.Name)
				}
			}
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
	if len(pend.grants)+len(pend.sessions) == 0 {
		return s.rep.Record(p.id, nil)
	}
	cs := make([]locktable.Change, 0, len(pend.grants)+len(pend.sessions))
	for _, g := range pend.grants {
		cs = append(cs, p.table.GrantChange(now, g.name, g.session))
	}
	for _, id := range pend.sessions {
		cs = append(cs, p.table.SessionChange(now, id))
	}
	pend.grants, pend.sessions = pend.grants[:0], pend.sessions[:0]
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
	if err == nil {
		// Watchers hear of a change once it is confirmed, never of one
		// that may be lost; a takeover tells them the state again.
		for _, e := range pend.events {
			e.tell()
		}
	}
	pend.events = nil
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

// ErrLaterAttachment refuses a lock, unlock, drop, token or info of a
// lock that a later attachment of the session was told of (its epoch,
// raised by a resume's listing, a re-entrant lock or a hand-over, is
// above the request's): the request comes from a home the session has
// left, or from an ended session under the same id, and held back by
// the network, it must not take a lock from the client that now holds
// it, nor claim it as told.
var ErrLaterAttachment = failure.Retry(failure.SessionMoved, "this session was resumed on another connection")

// read runs f on p's table under p's mutex if this node may read p now
// (Admit for Read), and returns the refusal otherwise: a read of state
// as it stands, with no wait for unconfirmed changes (see readConfirmed).
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
	} else if op == Grant && s.delaying.Load() {
		if left := time.Duration(s.grantsFrom - s.clock()); left > 0 {
			p.mu.Unlock()
			return 0, false, failure.Retry(failure.LockDelay, "restarted after a crash; refusing grants until the lock-delay passes ("+
				left.Round(time.Second).String()+" left)")
		}
		s.delaying.Store(false)
	}
	now := s.clock()
	f(p.table, now, pend)
	s.noteWatched(p, pend)
	changed = len(pend.grants)+len(pend.sessions) > 0
	pos = s.record(p, now, pend)
	s.recount(p)
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

// recount carries a change of p's table's counts into the set's totals.
// Called with p.mu held, after anything that may have changed the table.
func (s *Set) recount(p *part) {
	c := p.table.Counts()
	if d := c.Locks - p.nLocks; d != 0 {
		s.locks.Add(int64(d))
		p.nLocks = c.Locks
	}
	if d := c.Sessions - p.nSessions; d != 0 {
		s.sessions.Add(int64(d))
		p.nSessions = c.Sessions
	}
}

// roomFor refuses what would take a node's count past its bound; zero
// is no bound.
func roomFor(total *atomic.Int64, max int, what string) error {
	if max > 0 && total.Load() >= int64(max) {
		return failure.Retry(failure.Full, "too many "+what+" on this node (max "+strconv.Itoa(max)+")")
	}
	return nil
}

// unconfirmed refuses an answer that rested on changes whose
// confirmation failed.
func unconfirmed(p *part) error {
	return failure.Retry(failure.Unconfirmed, failure.Partition(p.id)+" changed hands before what this answer rests on was confirmed; retry")
}
