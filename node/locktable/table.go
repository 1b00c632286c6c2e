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
	"errors"
	"math"
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
)

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
)

var statusNames = [...]string{"", "granted", "queued", "unavailable", "too_many_waiters", "unlocked", "not_yours", "not_locked"}

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
	// LockHeld: Name is now held by Session with Token (a new grant or a
	// hand-over). Replication ships these to the replica.
	LockHeld
	// LockFreed: Name is no longer held.
	LockFreed
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
	// MaxWaiters is the most requests that may queue on one lock.
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
	held     int                 // locks with a holder (== len(locks))
	waitHeap deadlineHeap[*waiter]
	sessHeap deadlineHeap[*Session]

	fx []Effect // effects of the current call; reused between calls
}

// lock is one held lock name. A free lock has no entry: the table forgets
// names nobody holds, so memory follows what is held, not what was ever
// named. Token monotonicity does not need per-name memory because tokens
// come from the partition-wide counter.
type lock struct {
	name  string
	owner *holder
	token uint64
	since Time
	// queue is the FIFO of waiters, oldest first.
	qhead, qtail *waiter
	qlen         int32
	// claim says whether a client of the holder may know of this grant
	// beyond the one request it answered (see Drop).
	claim claim
	// epoch is the highest attach epoch of the holder's requests that
	// were told of this grant: the one that made it (or the wait it was
	// handed to), any re-entrant lock since, and a resume's listing
	// (ClaimHeld). A release bounded below it (ReleaseSessionUpTo) leaves
	// the lock: a later attachment or session under the id claimed it.
	epoch uint64
	// prev and next link the locks of one holder, for ReleaseSession.
	prev, next *lock
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
	locks *lock // head of the list of locks it holds here
	nheld int
	// waits lists its queued requests, oldest first, so ReleaseSession
	// drops them in a deterministic order without a search.
	waits, waitsTail *waiter
	nwait            int
	// oldest is at most the lowest epoch among its locks and waits here
	// (lowered as they are attached, raised by a bounded release), so
	// that a release bounded below it (as before every request of a
	// mesh session; see ReleaseSessionUpTo) returns without a walk.
	oldest uint64
}

type waiter struct {
	id       WaiterID
	h        *holder
	lk       *lock
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

// Lock asks for name on behalf of session. If another session holds it and
// w is non-zero, the request queues until deadline; otherwise it is
// Unavailable. The returned effects are valid until the next call.
func (t *Table) Lock(now Time, session string, name []byte, w WaiterID, deadline Time) (Result, []Effect, error) {
	return t.LockAt(now, session, 0, name, w, deadline)
}

// LockAt is Lock for a request sent by a session attached at epoch (see
// ReleaseSessionUpTo). A re-entrant grant to a later epoch raises the
// lock's epoch, and reports LockHeld so that a replica learns it.
func (t *Table) LockAt(now Time, session string, epoch uint64, name []byte, w WaiterID, deadline Time) (Result, []Effect, error) {
	t.begin()
	if l := t.locks[string(name)]; l != nil {
		if l.owner.id == session {
			l.claim = claimTold
			if epoch > l.epoch {
				l.epoch = epoch
				if t.changes {
					t.effect(Effect{Kind: LockHeld, Session: session, Name: l.name, Token: l.token})
				}
			}
			return Result{Status: Granted, Token: l.token, Reentrant: true}, t.effects(), nil
		}
		if w == 0 {
			return Result{Status: Unavailable}, nil, nil
		}
		if t.limits.MaxWaiters > 0 && int(l.qlen) >= t.limits.MaxWaiters {
			return Result{Status: TooManyWaiters}, nil, nil
		}
		if !t.reserveToken() {
			return Result{}, nil, ErrExhausted
		}
		t.enqueue(l, session, epoch, w, deadline)
		return Result{Status: Queued}, nil, nil
	}
	if !t.reserveToken() {
		return Result{}, nil, ErrExhausted
	}
	tok, _ := t.nextToken()
	l := &lock{name: string(name), token: tok, since: now, claim: claimNone, epoch: epoch}
	t.locks[l.name] = l
	t.held++
	t.attach(l, t.holder(session))
	if t.changes {
		t.effect(Effect{Kind: LockHeld, Session: session, Name: l.name, Token: tok})
	}
	return Result{Status: Granted, Token: tok}, t.effects(), nil
}

func (t *Table) enqueue(l *lock, session string, epoch uint64, id WaiterID, deadline Time) {
	h := t.holder(session)
	w := &waiter{id: id, h: h, lk: l, deadline: deadline, epoch: epoch, heapIdx: -1}
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

// attach makes h the holder of l.
func (t *Table) attach(l *lock, h *holder) {
	l.owner = h
	l.prev = nil
	l.next = h.locks
	if h.locks != nil {
		h.locks.prev = l
	}
	h.locks = l
	h.nheld++
	h.oldest = min(h.oldest, l.epoch)
}

// detachHolder unlinks l from its holder's list.
func (t *Table) detachHolder(l *lock) {
	h := l.owner
	if l.prev == nil {
		h.locks = l.next
	} else {
		l.prev.next = l.next
	}
	if l.next != nil {
		l.next.prev = l.prev
	}
	l.prev, l.next, l.owner = nil, nil, nil
	h.nheld--
}

// release frees l from its holder and hands it to the oldest waiter, if
// any. It cannot run out of tokens: Lock keeps one in reserve for every
// queued waiter. The holder record is left for the caller to drop.
func (t *Table) release(now Time, l *lock) {
	t.detachHolder(l)
	// A waiter past its deadline has timed out even if no Tick said so
	// yet (an owner without a lease ticks nothing): its client was told,
	// or is about to be, that it did not get the lock.
	for w := l.qhead; w != nil && w.deadline <= now; w = l.qhead {
		h := w.h
		t.unqueue(w)
		t.dropIfIdle(h)
		t.effect(Effect{Kind: WaiterTimedOut, Waiter: w.id, Session: h.id, Name: l.name})
	}
	w := l.qhead
	if w == nil {
		delete(t.locks, l.name)
		t.held--
		if t.changes {
			t.effect(Effect{Kind: LockFreed, Name: l.name})
		}
		return
	}
	tok, _ := t.nextToken()
	t.handTo(now, l, w, tok)
}

// handTo grants l to waiter w (and to any later waiter of the same
// session, which now holds it re-entrantly).
func (t *Table) handTo(now Time, l *lock, w *waiter, tok uint64) {
	h := w.h
	l.token, l.since, l.claim, l.epoch = tok, now, claimNone, w.epoch
	t.attach(l, h)
	if t.changes {
		// A replica's copy is taken when the effects are handled, with
		// the epoch that the loop below may still raise.
		t.effect(Effect{Kind: LockHeld, Session: h.id, Name: l.name, Token: tok})
	}
	t.unqueue(w)
	t.effect(Effect{Kind: WaiterGranted, Waiter: w.id, Session: h.id, Name: l.name, Token: tok})
	for w = l.qhead; h.nwait > 0 && w != nil; {
		next := w.next
		if w.h == h {
			// Another request of the holder hears of this grant: taking
			// it back because the first one's client is gone would take
			// it from this one.
			l.claim = claimTold
			l.epoch = max(l.epoch, w.epoch)
			t.unqueue(w)
			t.effect(Effect{Kind: WaiterGranted, Waiter: w.id, Session: h.id, Name: l.name, Token: tok})
		}
		w = next
	}
}

// Unlock releases name if session holds it.
func (t *Table) Unlock(now Time, session string, name []byte) (Result, []Effect) {
	t.begin()
	l := t.locks[string(name)]
	switch {
	case l == nil:
		return Result{Status: NotLocked}, nil
	case l.owner.id != session:
		return Result{Status: NotYours}, nil
	}
	h := l.owner
	t.release(now, l)
	t.dropIfIdle(h)
	return Result{Status: Unlocked}, t.effects()
}

// Drop releases name if session holds it under token and has not been
// told of it since: the grant went to a connection whose client can no
// longer hear of it. Unlike Unlock it is safe to send from a home the
// session has left, because it can only take back that one grant, and
// only while no client of the session can believe it holds it.
//
// Claims are not replicated, so a grant this table took over from
// another (claimUnknown) may have been told to anyone: Drop keeps it and
// answers Granted, and the caller may fall back to Unlock, which only
// the session's current home can send.
func (t *Table) Drop(now Time, session string, name []byte, token uint64) (Result, []Effect) {
	t.begin()
	l := t.locks[string(name)]
	switch {
	case l == nil:
		return Result{Status: NotLocked}, nil
	case l.owner.id != session || l.token != token || l.claim == claimTold:
		return Result{Status: NotYours}, nil
	case l.claim == claimUnknown:
		return Result{Status: Granted, Token: l.token, Reentrant: true}, nil
	}
	h := l.owner
	t.release(now, l)
	t.dropIfIdle(h)
	return Result{Status: Unlocked}, t.effects()
}

// ReleaseSession releases every lock session holds in this partition and
// drops its waiters, as unlock_all and session expiry require. It returns
// how many locks were released.
func (t *Table) ReleaseSession(now Time, session string) (int, []Effect) {
	return t.ReleaseSessionUpTo(now, session, math.MaxUint64)
}

// ReleaseSessionUpTo is ReleaseSession bounded by an attach epoch: it
// leaves the locks and waits that a later attachment of the session, or
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
	for l := h.locks; l != nil; {
		next := l.next
		if l.epoch <= upTo {
			// release hands l, if at all, to another session's wait: a
			// session never waits for a lock it holds, so h's lists
			// change only by l leaving them.
			t.release(now, l)
			n++
		}
		l = next
	}
	for w := h.waits; w != nil; {
		next := w.hnext
		if w.epoch <= upTo {
			// Answered as a wait that ran out: whoever waits on it learns
			// it will not be granted, and lets go of it.
			t.unqueue(w)
			t.effect(Effect{Kind: WaiterTimedOut, Waiter: w.id, Session: h.id, Name: w.lk.name})
		}
		w = next
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
// was already granted or timed out, and the caller has that effect.
func (t *Table) CancelWait(w WaiterID) bool {
	x := t.waiters[w]
	if x == nil {
		return false
	}
	h := x.h
	t.unqueue(x)
	t.dropIfIdle(h)
	return true
}

// Token returns the fencing token of session's grant of name. Telling
// the session of its grant claims it (see Drop).
func (t *Table) Token(session string, name []byte) (uint64, Status) {
	l := t.locks[string(name)]
	switch {
	case l == nil:
		return 0, NotLocked
	case l.owner.id != session:
		return 0, NotYours
	}
	l.claim = claimTold
	return l.token, Granted
}

// Info describes one lock as the info command shows it. It never carries
// the holder's session id.
type Info struct {
	Held    bool
	Mine    bool
	Token   uint64
	HeldFor time.Duration
	Waiters int
}

// Info reports on name as seen by session.
func (t *Table) Info(now Time, session string, name []byte) Info {
	l := t.locks[string(name)]
	if l == nil {
		return Info{}
	}
	if l.owner.id == session {
		l.claim = claimTold
	}
	return Info{
		Held:    true,
		Mine:    l.owner.id == session,
		Token:   l.token,
		HeldFor: time.Duration(now - l.since),
		Waiters: int(l.qlen),
	}
}

// HeldBy returns how many locks session holds in this partition.
func (t *Table) HeldBy(session string) int {
	if h := t.holders[session]; h != nil {
		return h.nheld
	}
	return 0
}

// Counts summarises the table for stats.
type Counts struct {
	Locks    int // held lock names
	Waiters  int // queued requests
	Sessions int // session records
}

// Locked reports whether any session holds name.
func (t *Table) Locked(name []byte) bool { return t.locks[string(name)] != nil }

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
	d, ok := t.waitHeap.min()
	if s, sok := t.sessHeap.min(); sok && (!ok || s < d) {
		d, ok = s, true
	}
	return d, ok
}

// Tick expires what is due at now: waiters past their deadline leave
// their queues (WaiterTimedOut) and session records detached for their
// whole timeout are dropped (SessionExpired). Tick does not release an
// expired session's locks; they may live in other partitions, so the
// caller calls ReleaseSession everywhere.
func (t *Table) Tick(now Time) []Effect {
	t.begin()
	for {
		w, ok := t.waitHeap.peek()
		if !ok || w.deadline > now {
			break
		}
		h := w.h
		t.unqueue(w)
		t.dropIfIdle(h)
		t.effect(Effect{Kind: WaiterTimedOut, Waiter: w.id, Session: h.id, Name: w.lk.name})
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
