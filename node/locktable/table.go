// Package locktable is the lock state of one partition as a deterministic
// state machine: held locks, their FIFO waiters, fencing tokens, and the
// session records that hash to the partition.
//
// The table has no goroutines, reads no clock, does no I/O and keeps no
// randomness. Time enters every transition as an argument (now, on the
// node's monotonic clock, in nanoseconds), and every consequence of a
// transition comes back as a value: the Result of the call plus Effects
// such as "waiter W was granted with token T" or "session S expired". The
// caller (the network edge) turns those into replies, wake-ups and
// replication messages. Two tables fed the same calls hold identical
// state, which Snapshot makes checkable byte for byte.
//
// A Table is not safe for concurrent use; its owner serialises calls.
package locktable

import (
	"cmp"
	"errors"
	"math"
	"slices"
	"time"
)

// Time is a reading of the caller's monotonic clock in nanoseconds.
type Time = int64

// WaiterID names one blocked lock request. The caller picks it; it must be
// non-zero and unique among the table's live waiters.
type WaiterID uint64

// Sentinel errors. They carry the package prefix and are compared with
// errors.Is.
var (
	// ErrExhausted: this epoch has issued its last token; the owner must
	// move the table to a higher epoch (SetEpoch) before it grants again.
	ErrExhausted = errors.New("locktable: token space of this epoch exhausted")
	// ErrStaleEpoch: SetEpoch was asked to move the epoch backwards.
	ErrStaleEpoch = errors.New("locktable: epoch not above the current one")
	// ErrEpochRange: an epoch above MaxEpoch, which tokens cannot carry.
	ErrEpochRange = errors.New("locktable: epoch above 2^32-1")
	// ErrBadWant: a mode the table does not know, a permit of a
	// semaphore of no permits, or a limit on a lock. The edges refuse
	// these first; the table does not take them on trust.
	ErrBadWant = errors.New("locktable: a permit needs a limit of 1 or more, and nothing else a limit; only an exclusive request a value")
)

// Mode says how a request wants a name, and how a grant holds it.
type Mode uint8

const (
	// Exclusive: alone (lock). The zero value, so every request that
	// names no mode is the original protocol's lock.
	Exclusive Mode = iota
	// Shared: together with other shared holders, never with an
	// exclusive one (rlock).
	Shared
	// Permit: one of a semaphore's Limit permits (acquire).
	Permit
)

var modeNames = [...]string{"exclusive", "shared", "permit"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "mode?"
}

// Want is what a lock request asks for: a mode and, for a permit, the
// semaphore's number of permits.
type Want struct {
	Mode  Mode
	Limit uint32 // Permit only: 1 or more
	// Value, for an exclusive request, is what its grant publishes to
	// whoever asks who leads the name (a campaign); "" publishes nothing.
	Value string
}

// Kind is what a name is while it has holders or waiters: a lock (taken
// exclusive or shared) or a semaphore. A name is one kind at a time.
type Kind uint8

const (
	KindLock Kind = iota
	KindSemaphore
)

func (k Kind) String() string {
	if k == KindSemaphore {
		return "semaphore"
	}
	return "lock"
}

func kindOf(m Mode) Kind {
	if m == Permit {
		return KindSemaphore
	}
	return KindLock
}

// Status is the definite outcome of a lock-side transition.
type Status uint8

const (
	_ Status = iota
	// Granted: the caller's session holds the lock (Result.Token says with
	// which token; Result.Reentrant says whether it already did).
	Granted
	// Queued: the request waits in FIFO order behind the holder. Its
	// outcome arrives later as a Granted or TimedOut effect.
	Queued
	// Unavailable: held by another session and the request would not wait.
	Unavailable
	// TooManyWaiters: the lock's queue is at Limits.MaxWaiters.
	TooManyWaiters
	// Unlocked: the caller's session held the lock and has released it.
	Unlocked
	// NotYours: the lock is held by another session.
	NotYours
	// NotLocked: nobody holds the lock.
	NotLocked
	// KindMismatch: the name is held or awaited as another kind
	// (Result.Kind says which).
	KindMismatch
	// LimitMismatch: the semaphore has another number of permits
	// (Result.Limit says how many).
	LimitMismatch
	// NoUpgrade: the session holds the name shared and asked for it
	// exclusively. Waiting would deadlock with a second such session.
	NoUpgrade
)

var statusNames = [...]string{"", "granted", "queued", "unavailable", "too_many_waiters", "unlocked", "not_yours", "not_locked",
	"kind_mismatch", "limit_mismatch", "no_upgrade"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status?"
}

// Result is the immediate answer to a lock-side call.
type Result struct {
	Status Status
	// Token is the fencing token of the grant when Status is Granted.
	Token uint64
	// Reentrant is set when a Granted lock was already held by the session,
	// so it adds nothing to the session's count of held locks.
	Reentrant bool
	// Kind is the name's kind on KindMismatch.
	Kind Kind
	// Limit is the semaphore's number of permits on LimitMismatch.
	Limit uint32
}

// EffectKind says what an Effect reports.
type EffectKind uint8

const (
	_ EffectKind = iota
	// WaiterGranted: Waiter now holds Name with Token. The caller delivers
	// the grant to the waiting connection, or releases it if that
	// connection is gone.
	WaiterGranted
	// WaiterTimedOut: Waiter reached its deadline without a grant and has
	// left the queue.
	WaiterTimedOut
	// SessionExpired: the session record Session, last attached at
	// Epoch, stayed detached for its whole timeout and is gone. The
	// caller releases the session's locks in every partition
	// (ReleaseSessionUpTo Epoch).
	SessionExpired
	// LockHeld: Session now holds Name with Token (a new grant, a
	// hand-over, or a raised epoch). Replication ships these to the
	// replica (GrantChange).
	LockHeld
	// LockFreed: Session no longer holds Name, which it held with Token.
	LockFreed
	// LockWanted: Session started waiting for Name. Reported with
	// LockHeld and LockFreed, for whoever tells a holder it is wanted
	// (State gives the count); replicas ignore it.
	LockWanted
)

// Effect is one consequence of a transition, reported as a value.
type Effect struct {
	Kind    EffectKind
	Waiter  WaiterID
	Session string
	Name    string
	Token   uint64
	Epoch   uint64 // SessionExpired
}

// Limits bounds what one client can make the table hold.
type Limits struct {
	// MaxWaiters is the most requests that may queue on one name, of
	// every mode.
	MaxWaiters int
	// DefaultTimeout is a new session's detach timeout.
	DefaultTimeout time.Duration
}

// Table is one partition's lock state. Create it with New.
type Table struct {
	limits Limits
	epoch  uint64 // high 32 bits of every token issued in this epoch
	count  uint64 // grants issued in this epoch; low 32 bits of tokens
	// attaches numbers every Attach, so session epochs never repeat in
	// this table, not even for a new session under an expired one's id.
	attaches uint64
	// changes asks the table to report LockHeld/LockFreed effects, which
	// only a replicating owner needs.
	changes bool

	locks    map[string]*lock
	holders  map[string]*holder // sessions holding or awaiting a lock here
	waiters  map[WaiterID]*waiter
	records  map[string]*Session // session records owned by this partition
	held     int                 // grants, of every mode
	waitHeap deadlineHeap[*waiter]
	sessHeap deadlineHeap[*Session]

	// values holds what exclusive grants publish, by name (setValue).
	values map[string]string
	// unserved lists locks whose queues CancelWaitLater left unserved,
	// for the next Tick.
	unserved []*lock

	fx []Effect // effects of the current call; reused between calls
}

// lock is one name that has holders. A name nobody holds has no entry:
// the table forgets names nobody holds, so memory follows what is held,
// not what was ever named. Token monotonicity does not need per-name
// memory because tokens come from the partition-wide counter.
//
// A lock's waiters queue behind its holders, so an entry with waiters
// always has a holder: whenever a holder or a waiter leaves, promote
// grants the queue's head all it admits (at once, or, for a wait
// withdrawn while the owner may not grant, at the next Tick).
//
// Fields are ordered to pack: a million held locks are a lock and a
// grant each, and every eight bytes here is 8 MB there.
type lock struct {
	name string
	// limit is a semaphore's number of permits.
	limit uint32
	kind  Kind
	// excl: a lock held exclusively, by its only grant.
	excl bool
	// Grants by session: one holder is kept in first, more in many (made
	// once a second one comes, so an exclusive lock costs no map).
	first   *grant
	many    map[string]*grant
	ngrants int32
	qlen    int32
	// queue is the FIFO of waiters, oldest first.
	qhead, qtail *waiter
}

// grant is one session's hold on a lock.
type grant struct {
	lk    *lock
	owner *holder
	token uint64
	since Time
	mode  Mode
	// claim says whether a client of the holder may know of this grant
	// beyond the one request it answered (see Drop).
	claim claim
	// epoch is the highest attach epoch of the holder's requests that
	// were told of this grant: the one that made it (or the wait it was
	// handed to), any re-entrant lock since, and a resume's listing
	// (ClaimHeld). A release bounded below it (ReleaseSessionUpTo) leaves
	// the grant: a later attachment or session under the id claimed it.
	epoch uint64
	// prev and next link the grants of one holder, for ReleaseSession.
	prev, next *grant
}

func (l *lock) grantOf(session string) *grant {
	if l.many != nil {
		return l.many[session]
	}
	if l.first != nil && l.first.owner.id == session {
		return l.first
	}
	return nil
}

func (l *lock) addGrant(g *grant) {
	switch {
	case l.many != nil:
		l.many[g.owner.id] = g
	case l.first == nil:
		l.first = g
	default:
		l.many = map[string]*grant{l.first.owner.id: l.first, g.owner.id: g}
		l.first = nil
	}
	l.ngrants++
	l.excl = g.mode == Exclusive
}

func (l *lock) removeGrant(g *grant) {
	if l.many != nil {
		delete(l.many, g.owner.id)
	} else if l.first == g {
		l.first = nil
	}
	l.ngrants--
	if l.ngrants == 0 {
		l.excl, l.many = false, nil
	}
}

// each calls f for every grant of the lock, in no order: for what does
// not depend on it (maxima, a listing that sorts). f must not change the
// lock's grants; for that, and for anything built in order, see grants.
func (l *lock) each(f func(*grant)) {
	if l.many == nil {
		if l.first != nil {
			f(l.first)
		}
		return
	}
	for _, g := range l.many {
		f(g)
	}
}

// grants returns the lock's grants in token order, so that whatever is
// built from them is the same on every table with the same state.
func (l *lock) grants() []*grant {
	if l.many == nil {
		if l.first == nil {
			return nil
		}
		return []*grant{l.first}
	}
	gs := make([]*grant, 0, len(l.many))
	for _, g := range l.many {
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(a, b *grant) int { return cmp.Compare(a.token, b.token) })
	return gs
}

// admits reports whether a request in mode m could hold l now, ignoring
// the queue.
func (l *lock) admits(m Mode) bool {
	switch {
	case l.kind == KindSemaphore:
		return uint32(l.ngrants) < l.limit
	case m == Exclusive:
		return l.ngrants == 0
	default:
		return !l.excl
	}
}

// covers reports whether a grant in mode held answers a request of the
// same session in mode m: the same mode, or shared under exclusive.
func covers(held, m Mode) bool {
	return held == m || held == Exclusive && m == Shared
}

// claim is what a lock's holder may know of its current grant.
type claim uint8

const (
	// claimUnknown: the grant was copied from another table, which knew.
	claimUnknown claim = iota
	// claimNone: granted here, and told only to the request it answered.
	claimNone
	// claimTold: the holder has been told of it since, by a re-entrant
	// lock, another wait of the same session, token, info, or the list
	// of its locks a resume gives the client (ClaimHeld).
	claimTold
)

// holder is a session as seen by this partition's locks.
type holder struct {
	id    string
	locks *grant // head of the list of grants it holds here
	nheld int
	// waits lists its queued requests, oldest first, so ReleaseSession
	// drops them in a deterministic order without a search.
	waits, waitsTail *waiter
	nwait            int
	// oldest is at most the lowest epoch among its grants and waits here
	// (lowered as they are attached, raised by a bounded release), so
	// that a release bounded below it (as before every request of a
	// mesh session; see ReleaseSessionUpTo) returns without a walk.
	oldest uint64
}

type waiter struct {
	id       WaiterID
	h        *holder
	lk       *lock
	mode     Mode
	value    string // an exclusive request's Want.Value
	deadline Time
	epoch    uint64 // the attach epoch of the request that queued it
	heapIdx  int
	prev     *waiter // in the lock's queue
	next     *waiter
	hprev    *waiter // in the holder's list of waits
	hnext    *waiter
}

func (w *waiter) when() Time { return w.deadline }

// before breaks deadline ties by id, so that every replica expires equal
// deadlines in the same order.
func (w *waiter) before(o *waiter) bool { return w.id < o.id }
func (w *waiter) index() *int           { return &w.heapIdx }
func (s *Session) when() Time           { return s.Expires }
func (s *Session) index() *int          { return &s.heapIdx }
func (t *Table) effect(e Effect)        { t.fx = append(t.fx, e) }
func (t *Table) begin()                 { t.fx = t.fx[:0] }
func (t *Table) effects() []Effect      { return t.fx }

// New returns an empty table whose tokens start in the given epoch, which
// must not exceed MaxEpoch (it is clamped). recordChanges asks for
// LockHeld/LockFreed effects.
func New(epoch uint64, limits Limits, recordChanges bool) *Table {
	epoch = min(epoch, MaxEpoch)
	return &Table{
		limits:  limits,
		epoch:   epoch,
		changes: recordChanges,
		locks:   make(map[string]*lock),
		holders: make(map[string]*holder),
		waiters: make(map[WaiterID]*waiter),
		records: make(map[string]*Session),
	}
}

// Epoch returns the epoch tokens are currently issued in.
func (t *Table) Epoch() uint64 { return t.epoch }

// MaxEpoch is the highest epoch: tokens carry the epoch in their high 32
// bits.
const MaxEpoch = 1<<32 - 1

// FirstSessionEpoch makes every later Attach's epoch above n. A table
// that replaces a lost one knows nothing of the epochs the old one gave
// out, and a copy may lag its owner's last attaches; but lock owners fence
// a session's requests below the highest attach epoch they have seen of
// it (a resume), and bound releases by epochs: attach epochs must never
// go back. Its caller passes a bound above anything an earlier owner of
// the partition could have reached (replication's becomeOwner, at every
// new ownership).
func (t *Table) FirstSessionEpoch(n uint64) {
	t.attaches = max(t.attaches, n)
}

// SetEpoch moves the table to a higher epoch and restarts the token
// counter, so every later token is above every earlier one.
func (t *Table) SetEpoch(e uint64) error {
	if e > MaxEpoch {
		return ErrEpochRange
	}
	if e <= t.epoch {
		return ErrStaleEpoch
	}
	t.epoch, t.count = e, 0
	return nil
}

// TokensLeft reports how many grants this epoch can still issue.
func (t *Table) TokensLeft() uint64 { return 1<<32 - 1 - t.count }

// reserveToken reports whether one more grant or waiter fits in this
// epoch. Every queued waiter may later need a token for its hand-over, so
// the table keeps that many in reserve: a release never finds the epoch
// exhausted with waiters to serve.
func (t *Table) reserveToken() bool {
	return t.TokensLeft() > uint64(len(t.waiters))
}

func (t *Table) nextToken() (uint64, bool) {
	if t.count >= 1<<32-1 {
		return 0, false
	}
	t.count++
	return t.epoch<<32 | t.count, true
}

func (t *Table) holder(id string) *holder {
	h := t.holders[id]
	if h == nil {
		h = &holder{id: id, oldest: math.MaxUint64}
		t.holders[id] = h
	}
	return h
}

// dropIfIdle forgets a holder with no locks and no waits here.
func (t *Table) dropIfIdle(h *holder) {
	if h.nheld == 0 && h.nwait == 0 {
		delete(t.holders, h.id)
	}
}

// Lock asks for name exclusively on behalf of session. If it cannot be
// granted now and w is non-zero, the request queues until deadline;
// otherwise it is Unavailable. The returned effects are valid until the
// next call.
func (t *Table) Lock(now Time, session string, name []byte, w WaiterID, deadline Time) (Result, []Effect, error) {
	return t.LockAt(now, session, 0, name, w, deadline)
}

// LockAt is Lock for a request sent by a session attached at epoch (see
// ReleaseSessionUpTo).
func (t *Table) LockAt(now Time, session string, epoch uint64, name []byte, w WaiterID, deadline Time) (Result, []Effect, error) {
	return t.Acquire(now, session, epoch, name, Want{}, w, deadline)
}

// Acquire asks for name in the mode want gives, on behalf of session
// attached at epoch. Requests of every mode queue in one FIFO: a request
// is granted at once only when nobody waits and the holders admit it, so
// a waiting exclusive request holds back every later shared one, and the
// shared requests at the head are granted together. A session's second
// request for a name it holds is re-entrant: it gets the grant it has
// (and a later epoch raises the grant's, reported as LockHeld so that a
// replica learns it), unless it holds the name shared and asks for it
// exclusively (NoUpgrade).
func (t *Table) Acquire(now Time, session string, epoch uint64, name []byte, want Want, w WaiterID, deadline Time) (Result, []Effect, error) {
	t.begin()
	if want.Mode > Permit || (want.Mode == Permit) != (want.Limit > 0) || want.Value != "" && want.Mode != Exclusive {
		return Result{}, nil, ErrBadWant
	}
	kind := kindOf(want.Mode)
	l := t.locks[string(name)]
	if l != nil {
		switch {
		case l.kind != kind:
			return Result{Status: KindMismatch, Kind: l.kind}, nil, nil
		case kind == KindSemaphore && l.limit != want.Limit:
			return Result{Status: LimitMismatch, Limit: l.limit}, nil, nil
		}
		if g := l.grantOf(session); g != nil {
			if !covers(g.mode, want.Mode) {
				return Result{Status: NoUpgrade}, nil, nil
			}
			g.claim = claimTold
			raised := epoch > g.epoch
			g.epoch = max(g.epoch, epoch)
			// A campaign of the leader publishes its new value; a plain
			// lock leaves the value as it is.
			if want.Value != "" && want.Value != t.values[l.name] {
				t.setValue(l, want.Value)
				raised = true
			}
			if raised && t.changes {
				t.effect(Effect{Kind: LockHeld, Session: session, Name: l.name, Token: g.token})
			}
			return Result{Status: Granted, Token: g.token, Reentrant: true}, t.effects(), nil
		}
		if l.qlen > 0 || !l.admits(want.Mode) {
			if w == 0 {
				return Result{Status: Unavailable}, nil, nil
			}
			if t.limits.MaxWaiters > 0 && int(l.qlen) >= t.limits.MaxWaiters {
				return Result{Status: TooManyWaiters}, nil, nil
			}
			if !t.reserveToken() {
				return Result{}, nil, ErrExhausted
			}
			t.enqueue(l, session, epoch, want, w, deadline)
			if t.changes {
				t.effect(Effect{Kind: LockWanted, Session: session, Name: l.name})
				return Result{Status: Queued}, t.effects(), nil
			}
			return Result{Status: Queued}, nil, nil
		}
	}
	if !t.reserveToken() {
		return Result{}, nil, ErrExhausted
	}
	if l == nil {
		l = &lock{name: string(name), kind: kind, limit: want.Limit}
		if kind == KindLock {
			l.limit = 0
		}
		t.locks[l.name] = l
	}
	tok, _ := t.nextToken()
	t.grant(now, l, t.holder(session), want.Mode, want.Value, tok, epoch)
	return Result{Status: Granted, Token: tok}, t.effects(), nil
}

// grant makes h a holder of l.
func (t *Table) grant(now Time, l *lock, h *holder, m Mode, value string, tok, epoch uint64) *grant {
	g := &grant{lk: l, owner: h, mode: m, token: tok, since: now, claim: claimNone, epoch: epoch}
	t.setValue(l, value)
	t.hold(g)
	if t.changes {
		t.effect(Effect{Kind: LockHeld, Session: h.id, Name: l.name, Token: tok})
	}
	return g
}

func (t *Table) enqueue(l *lock, session string, epoch uint64, want Want, id WaiterID, deadline Time) {
	h := t.holder(session)
	w := &waiter{id: id, h: h, lk: l, mode: want.Mode, value: want.Value, deadline: deadline, epoch: epoch, heapIdx: -1}
	h.oldest = min(h.oldest, epoch)
	if l.qtail == nil {
		l.qhead = w
	} else {
		l.qtail.next = w
		w.prev = l.qtail
	}
	l.qtail = w
	l.qlen++
	if h.waitsTail == nil {
		h.waits = w
	} else {
		h.waitsTail.hnext = w
		w.hprev = h.waitsTail
	}
	h.waitsTail = w
	h.nwait++
	t.waiters[id] = w
	t.waitHeap.push(w)
}

// unqueue removes w from its lock's queue and every index.
func (t *Table) unqueue(w *waiter) {
	l := w.lk
	if w.prev == nil {
		l.qhead = w.next
	} else {
		w.prev.next = w.next
	}
	if w.next == nil {
		l.qtail = w.prev
	} else {
		w.next.prev = w.prev
	}
	w.prev, w.next = nil, nil
	l.qlen--
	h := w.h
	if w.hprev == nil {
		h.waits = w.hnext
	} else {
		w.hprev.hnext = w.hnext
	}
	if w.hnext == nil {
		h.waitsTail = w.hprev
	} else {
		w.hnext.hprev = w.hprev
	}
	w.hprev, w.hnext = nil, nil
	h.nwait--
	delete(t.waiters, w.id)
	t.waitHeap.remove(w)
}

// attach adds g to its holder's list.
func (t *Table) attach(g *grant, h *holder) {
	g.owner = h
	g.prev = nil
	g.next = h.locks
	if h.locks != nil {
		h.locks.prev = g
	}
	h.locks = g
	h.nheld++
	h.oldest = min(h.oldest, g.epoch)
}

// detachHolder unlinks g from its holder's list.
func (t *Table) detachHolder(g *grant) {
	h := g.owner
	if g.prev == nil {
		h.locks = g.next
	} else {
		g.prev.next = g.next
	}
	if g.next != nil {
		g.next.prev = g.prev
	}
	g.prev, g.next = nil, nil
	h.nheld--
}

// ungrant removes g from its lock and holder, leaving the lock's queue
// for promote and the holder record for the caller to drop.
func (t *Table) ungrant(g *grant) {
	t.unhold(g)
	if t.changes {
		t.effect(Effect{Kind: LockFreed, Session: g.owner.id, Name: g.lk.name, Token: g.token})
	}
}

// hold adds g to its lock and holder, reporting nothing: unhold's twin.
func (t *Table) hold(g *grant) {
	g.lk.addGrant(g)
	t.held++
	t.attach(g, g.owner)
}

// unhold removes g from its lock and holder, reporting nothing.
func (t *Table) unhold(g *grant) {
	if g.mode == Exclusive {
		delete(t.values, g.lk.name)
	}
	g.lk.removeGrant(g)
	t.held--
	t.detachHolder(g)
}

// release frees g and serves the queue. It cannot run out of tokens:
// Acquire keeps one in reserve for every queued waiter. The holder
// record is left for the caller to drop.
func (t *Table) release(now Time, g *grant) {
	t.ungrant(g)
	t.promote(now, g.lk)
}

// promote serves l's queue after a holder or a waiter left it: waiters
// at the head leave if their deadline has passed, and the head is
// granted while the holders admit it. A lock left with neither holders
// nor waiters is forgotten.
func (t *Table) promote(now Time, l *lock) {
	for w := l.qhead; w != nil; w = l.qhead {
		if w.deadline <= now {
			// Past its deadline it has timed out even if no Tick said so
			// yet (an owner without a lease ticks nothing): its client
			// was told, or is about to be, that it did not get the lock.
			h := w.h
			t.unqueue(w)
			t.dropIfIdle(h)
			t.effect(Effect{Kind: WaiterTimedOut, Waiter: w.id, Session: h.id, Name: l.name})
			continue
		}
		if !l.admits(w.mode) {
			break
		}
		tok, _ := t.nextToken()
		t.handTo(now, l, w, tok)
	}
	if l.ngrants == 0 && l.qlen == 0 && t.locks[l.name] == l {
		delete(t.locks, l.name)
	}
}

// handTo grants l to waiter w, and answers every later wait of the same
// session on l with that grant when it covers it. (A later wait it does
// not cover asked for an upgrade and is refused as timed out: it would
// wait for its own session.)
func (t *Table) handTo(now Time, l *lock, w *waiter, tok uint64) {
	h := w.h
	g := t.grant(now, l, h, w.mode, w.value, tok, w.epoch)
	t.unqueue(w)
	t.effect(Effect{Kind: WaiterGranted, Waiter: w.id, Session: h.id, Name: l.name, Token: tok})
	for w = l.qhead; h.nwait > 0 && w != nil; {
		next := w.next
		if w.h == h {
			t.unqueue(w)
			if covers(g.mode, w.mode) {
				// Another request of the holder hears of this grant:
				// taking it back because the first one's client is gone
				// would take it from this one.
				g.claim = claimTold
				raised := w.epoch > g.epoch
				g.epoch = max(g.epoch, w.epoch)
				if w.value != "" && w.value != t.values[l.name] {
					t.setValue(l, w.value) // the later campaign's
					raised = true
				}
				if raised && t.changes {
					t.effect(Effect{Kind: LockHeld, Session: h.id, Name: l.name, Token: tok})
				}
				t.effect(Effect{Kind: WaiterGranted, Waiter: w.id, Session: h.id, Name: l.name, Token: tok})
			} else {
				t.effect(Effect{Kind: WaiterTimedOut, Waiter: w.id, Session: h.id, Name: l.name})
			}
		}
		w = next
	}
}

// Unlock releases whatever session holds of name.
func (t *Table) Unlock(now Time, session string, name []byte) (Result, []Effect) {
	t.begin()
	l := t.locks[string(name)]
	if l == nil || l.ngrants == 0 {
		return Result{Status: NotLocked}, nil
	}
	g := l.grantOf(session)
	if g == nil {
		return Result{Status: NotYours}, nil
	}
	h := g.owner
	t.release(now, g)
	t.dropIfIdle(h)
	return Result{Status: Unlocked}, t.effects()
}

// Drop releases session's grant of name if it was made with token and the
// session has not been told of it since: the grant went to a connection
// whose client can no longer hear of it. Unlike Unlock it is safe to send
// from a home the session has left, because it can only take back that
// one grant, and only while no client of the session can believe it
// holds it.
//
// Claims are not replicated, so a grant this table took over from
// another (claimUnknown) may have been told to anyone: Drop keeps it and
// answers Granted, and the caller may fall back to Unlock, which only
// the session's current home can send.
func (t *Table) Drop(now Time, session string, name []byte, token uint64) (Result, []Effect) {
	t.begin()
	l := t.locks[string(name)]
	if l == nil || l.ngrants == 0 {
		return Result{Status: NotLocked}, nil
	}
	g := l.grantOf(session)
	switch {
	case g == nil || g.token != token || g.claim == claimTold:
		return Result{Status: NotYours}, nil
	case g.claim == claimUnknown:
		return Result{Status: Granted, Token: g.token, Reentrant: true}, nil
	}
	h := g.owner
	t.release(now, g)
	t.dropIfIdle(h)
	return Result{Status: Unlocked}, t.effects()
}

// ReleaseSession releases every lock session holds in this partition and
// drops its waiters, as unlock_all and session expiry require. It returns
// how many grants were released.
func (t *Table) ReleaseSession(now Time, session string) (int, []Effect) {
	return t.ReleaseSessionUpTo(now, session, math.MaxUint64)
}

// ReleaseSessionUpTo is ReleaseSession bounded by an attach epoch: it
// leaves the grants and waits that a later attachment of the session, or
// a later session under the same id, made or claimed (epoch above upTo).
// A release sent when a session expired, or by a home the session has
// since left, can arrive after that; it must not take those locks.
func (t *Table) ReleaseSessionUpTo(now Time, session string, upTo uint64) (int, []Effect) {
	t.begin()
	h := t.holders[session]
	if h == nil || h.oldest > upTo {
		return 0, nil
	}
	n := 0
	for g := h.locks; g != nil; {
		next := g.next
		if g.epoch <= upTo {
			// release serves g's lock, which may grant other sessions'
			// waits, never h's: a session never waits for a lock it
			// holds, so h's lists change only by g leaving them.
			t.release(now, g)
			n++
		}
		g = next
	}
	// The waits leave first and their queues are served after, because
	// serving a queue may grant another wait of h (one above upTo),
	// which would change the list being walked.
	var touched []*lock
	for w := h.waits; w != nil; {
		next := w.hnext
		if w.epoch <= upTo {
			// Answered as a wait that ran out: whoever waits on it learns
			// it will not be granted, and lets go of it.
			t.unqueue(w)
			t.effect(Effect{Kind: WaiterTimedOut, Waiter: w.id, Session: h.id, Name: w.lk.name})
			if len(touched) == 0 || touched[len(touched)-1] != w.lk {
				touched = append(touched, w.lk)
			}
		}
		w = next
	}
	for _, l := range touched {
		t.promote(now, l)
	}
	if upTo < math.MaxUint64 {
		h.oldest = max(h.oldest, upTo+1) // all that is left is above upTo
	}
	t.dropIfIdle(h)
	return n, t.effects()
}

// SessionEpochBound is the highest attach epoch this table has given
// out; every later one is above it. It bounds the release of a session
// that has no record here (see ReleaseSessionUpTo): a new session under
// its id will attach above it.
func (t *Table) SessionEpochBound() uint64 { return t.attaches }

// CancelWait removes a queued waiter, as when its client disconnects or
// its wait times out at the edge. It reports false if w is not queued: it
// was already granted or timed out, and the caller has that effect. The
// waiter's leaving may let the waiters behind it in (a shared request
// behind a cancelled exclusive one): those grants are the effects.
func (t *Table) CancelWait(now Time, w WaiterID) (bool, []Effect) {
	t.begin()
	x := t.waiters[w]
	if x == nil {
		return false, nil
	}
	h, l := x.h, x.lk
	t.unqueue(x)
	t.dropIfIdle(h)
	t.promote(now, l)
	return true, t.effects()
}

// CancelWaitLater is CancelWait for an owner that may not grant now (no
// lease): the waiter leaves, and the queue behind it is served by the
// next Tick, which NextDeadline asks for at once. It reports false if w
// is not queued.
func (t *Table) CancelWaitLater(w WaiterID) bool {
	l := t.withdraw(w)
	if l == nil {
		return false
	}
	if !slices.Contains(t.unserved, l) {
		t.unserved = append(t.unserved, l)
	}
	return true
}

// Withdraw removes a queued waiter and leaves its queue unserved, for a
// table its node is giving up: every waiter leaves it, and nothing more
// is granted here. It reports false if w is not queued.
func (t *Table) Withdraw(w WaiterID) bool { return t.withdraw(w) != nil }

// withdraw removes waiter w and returns its lock, or nil if w is not
// queued.
func (t *Table) withdraw(w WaiterID) *lock {
	x := t.waiters[w]
	if x == nil {
		return nil
	}
	h, l := x.h, x.lk
	t.unqueue(x)
	t.dropIfIdle(h)
	return l
}

// Token returns the fencing token of session's grant of name. Telling
// the session of its grant claims it (see Drop).
func (t *Table) Token(session string, name []byte) (uint64, Status) {
	l := t.locks[string(name)]
	if l == nil || l.ngrants == 0 {
		return 0, NotLocked
	}
	g := l.grantOf(session)
	if g == nil {
		return 0, NotYours
	}
	g.claim = claimTold
	return g.token, Granted
}

// Proclaim changes the value session publishes as the exclusive holder
// of name (see Want.Value). A holder that holds name shared leads
// nothing: NotYours, as for another session's name.
func (t *Table) Proclaim(session string, name []byte, value string) (Result, []Effect) {
	t.begin()
	l := t.locks[string(name)]
	if l == nil || l.ngrants == 0 {
		return Result{Status: NotLocked}, nil
	}
	g := l.grantOf(session)
	if g == nil || g.mode != Exclusive {
		return Result{Status: NotYours}, nil
	}
	g.claim = claimTold
	if t.values[l.name] != value {
		t.setValue(l, value)
		if t.changes {
			t.effect(Effect{Kind: LockHeld, Session: session, Name: l.name, Token: g.token})
		}
	}
	return Result{Status: Granted, Token: g.token}, t.effects()
}

// Leader reports who leads name: the token and published value of its
// exclusive grant, and false when nobody holds it exclusively. It claims
// nothing.
func (t *Table) Leader(name []byte) (token uint64, value string, ok bool) {
	l := t.locks[string(name)]
	if l == nil || !l.excl {
		return 0, "", false
	}
	l.each(func(g *grant) { token = g.token }) // the only one
	return token, t.values[l.name], true
}

// setValue records the value l's exclusive grant publishes. Values live
// beside the grants, not in them: most locks never publish one, and a
// million held locks would carry a million empty strings.
func (t *Table) setValue(l *lock, value string) {
	if value == "" {
		delete(t.values, l.name)
		return
	}
	if t.values == nil {
		t.values = make(map[string]string)
	}
	t.values[l.name] = value
}

// Info describes one name as the info command shows it. It never carries
// a holder's session id.
type Info struct {
	Held bool
	Mine bool
	// Token is the session's own grant's when Mine, else the latest
	// grant's.
	Token uint64
	// HeldFor: how long the session's own grant, or else the oldest
	// grant, has been held.
	HeldFor time.Duration
	Waiters int
	Kind    Kind
	Mode    Mode // Exclusive or Shared when held; semaphores are Shared
	Holders int
	Limit   uint32 // semaphores
	Value   string // what an exclusive holder publishes (Want.Value)
}

// Info reports on name as seen by session.
func (t *Table) Info(now Time, session string, name []byte) Info {
	l := t.locks[string(name)]
	if l == nil || l.ngrants == 0 {
		return Info{}
	}
	in := Info{Held: true, Waiters: int(l.qlen), Kind: l.kind, Mode: Shared, Holders: int(l.ngrants), Limit: l.limit}
	if l.excl {
		in.Mode, in.Value = Exclusive, t.values[l.name]
	}
	if g := l.grantOf(session); g != nil {
		g.claim = claimTold
		in.Mine, in.Token, in.HeldFor = true, g.token, time.Duration(now-g.since)
		return in
	}
	l.each(func(g *grant) {
		in.Token = max(in.Token, g.token)
		in.HeldFor = max(in.HeldFor, time.Duration(now-g.since))
	})
	return in
}

// HeldBy returns how many grants session holds in this partition.
func (t *Table) HeldBy(session string) int {
	if h := t.holders[session]; h != nil {
		return h.nheld
	}
	return 0
}

// Counts summarises the table for stats.
type Counts struct {
	Locks    int // grants, of every mode
	Waiters  int // queued requests
	Sessions int // session records
}

// NameState is a name as a watcher sees it: held exclusively (by a
// leader, if it published a value), held shared (readers, or a
// semaphore's permits), or free.
type NameState struct {
	// Mode is Exclusive or Shared while held; Free reports free.
	Mode Mode
	Free bool
	// Token is the exclusive holder's, or the newest shared grant's;
	// 0 when free (the table forgets a free name, and its last token
	// with it: whoever watches remembers it).
	Token   uint64
	Value   string // what an exclusive holder published
	Holders int
	Waiters int
}

// State reports name as a watcher sees it. It claims nothing.
func (t *Table) State(name []byte) NameState {
	l := t.locks[string(name)]
	if l == nil || l.ngrants == 0 {
		return NameState{Free: true}
	}
	st := NameState{Mode: Shared, Holders: int(l.ngrants), Waiters: int(l.qlen)}
	if l.excl {
		st.Mode, st.Value = Exclusive, t.values[l.name]
	}
	l.each(func(g *grant) { st.Token = max(st.Token, g.token) })
	return st
}

// TokenOf reports the token of session's grant of name, 0 when it holds
// none. Unlike Token it claims nothing: no client is told of it.
func (t *Table) TokenOf(session string, name []byte) uint64 {
	if g := t.grantFor(session, name); g != nil {
		return g.token
	}
	return 0
}

// Holds reports whether session holds name, in any mode. Unlike Token it
// claims nothing.
func (t *Table) Holds(session string, name []byte) bool {
	return t.grantFor(session, name) != nil
}

// Locked reports whether any session holds name.
func (t *Table) Locked(name []byte) bool {
	l := t.locks[string(name)]
	return l != nil && l.ngrants > 0
}

// Counts returns the table's sizes.
func (t *Table) Counts() Counts {
	return Counts{Locks: t.held, Waiters: len(t.waiters), Sessions: len(t.records)}
}

// Detached counts the session records no connection speaks for: exactly
// those waiting in the expiry heap. (Not a field of Counts, which the
// model tests compare whole against a model that does not track it.)
func (t *Table) Detached() int { return len(t.sessHeap.items) }

// NextDeadline returns the earliest waiter deadline or session expiry, and
// false if there is none. The edge arms one timer for it and calls Tick.
func (t *Table) NextDeadline() (Time, bool) {
	if len(t.unserved) > 0 {
		return math.MinInt64, true
	}
	d, ok := t.waitHeap.min()
	if s, sok := t.sessHeap.min(); sok && (!ok || s < d) {
		d, ok = s, true
	}
	return d, ok
}

// Tick expires what is due at now: waiters past their deadline leave
// their queues (WaiterTimedOut), which may let the waiters behind them
// in, and session records detached for their whole timeout are dropped
// (SessionExpired). Tick does not release an expired session's locks;
// they may live in other partitions, so the caller calls ReleaseSession
// everywhere.
func (t *Table) Tick(now Time) []Effect {
	t.begin()
	// Every waiter due leaves first, in the heap's order, and the queues
	// they left are served after, so that what falls due at one instant
	// is reported in one order however the queues are arranged.
	touched := t.unserved
	t.unserved = nil
	for {
		w, ok := t.waitHeap.peek()
		if !ok || w.deadline > now {
			break
		}
		h, l := w.h, w.lk
		t.unqueue(w)
		t.dropIfIdle(h)
		t.effect(Effect{Kind: WaiterTimedOut, Waiter: w.id, Session: h.id, Name: l.name})
		if !slices.Contains(touched, l) {
			touched = append(touched, l)
		}
	}
	for _, l := range touched {
		t.promote(now, l)
	}
	for {
		s, ok := t.sessHeap.peek()
		if !ok || s.Expires > now {
			break
		}
		t.sessHeap.remove(s)
		delete(t.records, s.ID)
		t.effect(Effect{Kind: SessionExpired, Session: s.ID, Epoch: s.Epoch})
	}
	return t.effects()
}
