// Package partition serves lock partitions on one node: a locktable per
// partition behind its own mutex, the wake-up of blocked requests, and the
// single timer that drives every table's deadlines.
//
// It is the edge around the pure locktable: it reads the clock, owns the
// goroutine that fires deadlines, and turns the table's effects into
// wake-ups. Throughput does not hang on one global mutex: a command takes
// only the mutex of the partition its name (or session id) hashes to.
package partition

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/elock/elock/node/locktable"
)

// ErrClosed: the set is shutting down and serves nothing more.
var ErrClosed = errors.New("partition: closed")

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
}

// lowTokens is when AutoEpoch moves a partition on: far enough from the
// end of the epoch that queued waiters never find it exhausted.
const lowTokens = 1 << 24

// DefaultPartitions is the default partition count.
const DefaultPartitions = 128

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

// Set is the partitions of the lock space hosted by this node.
type Set struct {
	cfg   Config
	clock func() locktable.Time
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
	slots map[locktable.WaiterID]Done // queued requests
	// next is the table's earliest deadline (0: none), for the timer loop.
	next atomic.Int64
}

// Outcome is how a queued lock request ended.
type Outcome struct {
	Granted bool
	Token   uint64 // the grant's fencing token when Granted
}

// Done receives the outcome of a queued request. It is called exactly
// once, from the goroutine that decided the outcome (the one releasing
// the lock, or the deadline timer), with no partition mutex held, so it
// may answer the client itself. It must not block for long.
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
			table: locktable.New(cfg.Epoch, cfg.Limits, false),
			slots: make(map[locktable.WaiterID]Done),
		}
	}
	go s.deadlines()
	return s, nil
}

// Close stops the deadline loop. Blocked Lock calls are not woken; their
// callers cancel their contexts.
func (s *Set) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// Epoch returns the epoch partition i issues tokens in.
func (s *Set) Epoch(i int) uint64 {
	p := s.parts[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.table.Epoch()
}

// Partitions returns the partition count.
func (s *Set) Partitions() int { return len(s.parts) }

func (s *Set) partOf(key []byte) *part { return s.parts[Of(key, len(s.parts))] }

// pending collects the cross-partition work a table's effects ask for.
// It is filled under one part's mutex and carried out after it is
// released, keeping the one-mutex-at-a-time rule.
type pending struct {
	expired []string
	outcome []decided
}

// decided is an outcome still to be delivered.
type decided struct {
	done Done
	o    Outcome
}

// apply turns effects into wake-ups and notes sessions to release. Called
// with p.mu held.
func (s *Set) apply(p *part, fx []locktable.Effect, pend *pending) {
	for _, e := range fx {
		switch e.Kind {
		case locktable.WaiterGranted:
			s.grants.Add(1)
			s.decide(p, e.Waiter, Outcome{Granted: true, Token: e.Token}, pend)
		case locktable.WaiterTimedOut:
			s.decide(p, e.Waiter, Outcome{}, pend)
		case locktable.SessionExpired:
			pend.expired = append(pend.expired, e.Session)
		}
	}
}

// decide removes a waiter's callback and queues its outcome.
func (s *Set) decide(p *part, w locktable.WaiterID, o Outcome, pend *pending) {
	if done := p.slots[w]; done != nil {
		delete(p.slots, w)
		pend.outcome = append(pend.outcome, decided{done, o})
	}
}

// settle finishes what effects started once no part mutex is held.
// Releasing an expired session's locks decides more outcomes, so it runs
// until both lists are empty.
func (s *Set) settle(pend *pending) {
	for len(pend.outcome) > 0 || len(pend.expired) > 0 {
		for len(pend.outcome) > 0 {
			d := pend.outcome[0]
			pend.outcome = pend.outcome[1:]
			d.done(d.o)
		}
		if len(pend.expired) > 0 {
			id := pend.expired[0]
			pend.expired = pend.expired[1:]
			s.releaseSession(id, pend)
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

func (s *Set) tick(p *part, now locktable.Time) {
	var pend pending
	p.mu.Lock()
	s.apply(p, p.table.Tick(now), &pend)
	s.rearm(p)
	p.mu.Unlock()
	s.settle(&pend)
}

// LockAsync asks for name for session. If another session holds it and
// wait > 0, the request queues: LockAsync returns Queued with a *Wait, and
// done later receives the outcome (a hand-over, or Unavailable once wait
// has passed), unless Cancel withdraws it first. There is no polling:
// the releasing goroutine or the deadline timer delivers the outcome.
func (s *Set) LockAsync(session string, name []byte, wait time.Duration, done Done) (locktable.Result, *Wait, error) {
	p := s.partOf(name)
	now := s.clock()
	var wid locktable.WaiterID
	if wait > 0 {
		wid = locktable.WaiterID(s.nextWaiter.Add(1))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	res, _, err := p.table.Lock(now, session, name, wid, now+int64(wait))
	if s.cfg.AutoEpoch && p.table.TokensLeft() < lowTokens {
		p.table.SetEpoch(p.table.Epoch() + 1)
	}
	if err != nil || res.Status != locktable.Queued {
		if res.Status == locktable.Granted && !res.Reentrant {
			s.grants.Add(1)
		}
		return res, nil, err
	}
	p.slots[wid] = done
	s.rearm(p)
	return res, &Wait{p: p, id: wid}, nil
}

// Cancel withdraws a queued request and reports true if it did; done will
// not be called. False means the outcome was decided first: done has
// been called or is being called, and the caller must take its outcome
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
		return o.Result(), nil
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
func (o Outcome) Result() locktable.Result {
	if o.Granted {
		return locktable.Result{Status: locktable.Granted, Token: o.Token}
	}
	return locktable.Result{Status: locktable.Unavailable}
}

// Unlock releases name if session holds it, handing it to the next waiter.
func (s *Set) Unlock(session string, name []byte) locktable.Result {
	p := s.partOf(name)
	var pend pending
	p.mu.Lock()
	res, fx := p.table.Unlock(s.clock(), session, name)
	s.apply(p, fx, &pend)
	p.mu.Unlock()
	s.settle(&pend)
	return res
}

// ReleaseSession releases every lock session holds and drops its waiters,
// in every partition, and returns how many locks it released.
func (s *Set) ReleaseSession(session string) int {
	var pend pending
	n := s.releaseSession(session, &pend)
	s.settle(&pend)
	return n
}

func (s *Set) releaseSession(session string, pend *pending) int {
	total := 0
	for _, p := range s.parts {
		p.mu.Lock()
		n, fx := p.table.ReleaseSession(s.clock(), session)
		s.apply(p, fx, pend)
		p.mu.Unlock()
		total += n
	}
	return total
}

// Token returns session's fencing token for name.
func (s *Set) Token(session string, name []byte) (uint64, locktable.Status) {
	p := s.partOf(name)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.table.Token(session, name)
}

// Info reports on name as session sees it.
func (s *Set) Info(session string, name []byte) locktable.Info {
	p := s.partOf(name)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.table.Info(s.clock(), session, name)
}

// HeldBy counts the locks session holds across all partitions.
func (s *Set) HeldBy(session string) int {
	n := 0
	for _, p := range s.parts {
		p.mu.Lock()
		n += p.table.HeldBy(session)
		p.mu.Unlock()
	}
	return n
}

// Attach binds session id to a connection on home; see locktable.Attach.
// If an expired incarnation of id is found, its locks are released before
// Attach returns, so the new session starts empty.
func (s *Set) Attach(id, home string) (locktable.Attachment, error) {
	p := s.partOf([]byte(id))
	var pend pending
	p.mu.Lock()
	a, fx, err := p.table.Attach(s.clock(), id, home)
	s.apply(p, fx, &pend)
	s.rearm(p)
	p.mu.Unlock()
	s.settle(&pend)
	return a, err
}

// Detach records that the connection of attach epoch has gone; the
// session's locks are released once its timeout passes unresumed.
func (s *Set) Detach(id string, epoch uint64) {
	p := s.partOf([]byte(id))
	var pend pending
	p.mu.Lock()
	s.apply(p, p.table.Detach(s.clock(), id, epoch), &pend)
	s.rearm(p)
	p.mu.Unlock()
	s.settle(&pend)
}

// SetTimeout sets how long session id survives detached.
func (s *Set) SetTimeout(id string, d time.Duration) error {
	p := s.partOf([]byte(id))
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.table.SetTimeout(id, d)
}

// Session returns session id's record.
func (s *Set) Session(id string) (locktable.Session, bool) {
	p := s.partOf([]byte(id))
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.table.Session(id)
}

// Counts sums the tables' counts.
type Counts struct {
	locktable.Counts
	Grants uint64 // grants issued since start, hand-overs included
}

// Counts returns the set's sizes.
func (s *Set) Counts() Counts {
	var c Counts
	for _, p := range s.parts {
		p.mu.Lock()
		t := p.table.Counts()
		p.mu.Unlock()
		c.Locks += t.Locks
		c.Waiters += t.Waiters
		c.Sessions += t.Sessions
	}
	c.Grants = s.grants.Load()
	return c
}
