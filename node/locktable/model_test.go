package locktable_test

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/elock/elock/node/locktable"
)

// model is a naive reference implementation of the lock table: plain maps
// and slices, a linear scan for everything. It is written from the
// package's documented contract, so that the real table's linked lists,
// heaps and indexes have something dumb to be compared with.
type model struct {
	limits  locktable.Limits
	changes bool
	epoch   uint64
	count   uint64
	seq     int // orders acquisitions: ReleaseSession releases newest first
	// attaches numbers every attach: session epochs never repeat.
	attaches uint64
	locks    map[string]*mLock
	records  map[string]*mSession
}

type mLock struct {
	owner string
	token uint64
	since locktable.Time
	seq   int
	queue []mWaiter // oldest first
}

type mWaiter struct {
	id       locktable.WaiterID
	session  string
	deadline locktable.Time
}

type mSession struct {
	timeout  time.Duration
	attached bool
	epoch    uint64
	born     uint64 // the attach that created it; a resume keeps it
	home     string
	expires  locktable.Time
}

func newModel(epoch uint64, limits locktable.Limits, changes bool) *model {
	return &model{
		limits: limits, changes: changes, epoch: min(epoch, locktable.MaxEpoch),
		locks: map[string]*mLock{}, records: map[string]*mSession{},
	}
}

func (m *model) waiters() int {
	n := 0
	for _, l := range m.locks {
		n += len(l.queue)
	}
	return n
}

func (m *model) tokensLeft() uint64 { return 1<<32 - 1 - m.count }

// canPromise: a new grant or a new waiter must leave one token for every
// queued waiter's hand-over.
func (m *model) canPromise() bool { return m.tokensLeft() > uint64(m.waiters()) }

func (m *model) issue() uint64 {
	m.count++
	return m.epoch<<32 | m.count
}

func (m *model) setEpoch(e uint64) error {
	if e > locktable.MaxEpoch {
		return locktable.ErrEpochRange
	}
	if e <= m.epoch {
		return locktable.ErrStaleEpoch
	}
	m.epoch, m.count = e, 0
	return nil
}

func (m *model) lock(now locktable.Time, s, name string, w locktable.WaiterID, deadline locktable.Time) (locktable.Result, []locktable.Effect, error) {
	if l := m.locks[name]; l != nil {
		switch {
		case l.owner == s:
			return locktable.Result{Status: locktable.Granted, Token: l.token, Reentrant: true}, nil, nil
		case w == 0:
			return locktable.Result{Status: locktable.Unavailable}, nil, nil
		case m.limits.MaxWaiters > 0 && len(l.queue) >= m.limits.MaxWaiters:
			return locktable.Result{Status: locktable.TooManyWaiters}, nil, nil
		case !m.canPromise():
			return locktable.Result{}, nil, locktable.ErrExhausted
		}
		l.queue = append(l.queue, mWaiter{id: w, session: s, deadline: deadline})
		return locktable.Result{Status: locktable.Queued}, nil, nil
	}
	if !m.canPromise() {
		return locktable.Result{}, nil, locktable.ErrExhausted
	}
	tok := m.issue()
	m.seq++
	m.locks[name] = &mLock{owner: s, token: tok, since: now, seq: m.seq}
	var fx []locktable.Effect
	if m.changes {
		fx = append(fx, locktable.Effect{Kind: locktable.LockHeld, Session: s, Name: name, Token: tok})
	}
	return locktable.Result{Status: locktable.Granted, Token: tok}, fx, nil
}

// release frees name and hands it to its oldest waiter, whose session's
// other waiters on name are granted too.
func (m *model) release(now locktable.Time, name string) []locktable.Effect {
	l := m.locks[name]
	var fx []locktable.Effect
	// Waiters past their deadline have timed out, ticked or not.
	for len(l.queue) > 0 && l.queue[0].deadline <= now {
		w := l.queue[0]
		l.queue = l.queue[1:]
		fx = append(fx, locktable.Effect{Kind: locktable.WaiterTimedOut, Waiter: w.id, Session: w.session, Name: name})
	}
	if len(l.queue) == 0 {
		delete(m.locks, name)
		if m.changes {
			fx = append(fx, locktable.Effect{Kind: locktable.LockFreed, Name: name})
		}
		return fx
	}
	next := l.queue[0].session
	tok := m.issue()
	m.seq++
	l.owner, l.token, l.since, l.seq = next, tok, now, m.seq
	if m.changes {
		fx = append(fx, locktable.Effect{Kind: locktable.LockHeld, Session: next, Name: name, Token: tok})
	}
	var rest []mWaiter
	for _, w := range l.queue {
		if w.session == next {
			fx = append(fx, locktable.Effect{Kind: locktable.WaiterGranted, Waiter: w.id, Session: next, Name: name, Token: tok})
		} else {
			rest = append(rest, w)
		}
	}
	l.queue = rest
	return fx
}

func (m *model) unlock(now locktable.Time, s, name string) (locktable.Result, []locktable.Effect) {
	l := m.locks[name]
	switch {
	case l == nil:
		return locktable.Result{Status: locktable.NotLocked}, nil
	case l.owner != s:
		return locktable.Result{Status: locktable.NotYours}, nil
	}
	return locktable.Result{Status: locktable.Unlocked}, m.release(now, name)
}

func (m *model) releaseSession(now locktable.Time, s string) (int, []locktable.Effect) {
	var mine []string
	for name, l := range m.locks {
		if l.owner == s {
			mine = append(mine, name)
		}
	}
	slices.SortFunc(mine, func(a, b string) int { return cmp.Compare(m.locks[b].seq, m.locks[a].seq) })
	var fx []locktable.Effect
	for _, name := range mine {
		fx = append(fx, m.release(now, name)...)
	}
	// Its waits are answered as run out, in the order they were queued
	// (waiter ids are handed out in that order).
	var dropped []locktable.Effect
	for name, l := range m.locks {
		l.queue = slices.DeleteFunc(l.queue, func(w mWaiter) bool {
			if w.session == s {
				dropped = append(dropped, locktable.Effect{Kind: locktable.WaiterTimedOut, Waiter: w.id, Session: s, Name: name})
			}
			return w.session == s
		})
	}
	slices.SortFunc(dropped, func(a, b locktable.Effect) int { return cmp.Compare(a.Waiter, b.Waiter) })
	return len(mine), append(fx, dropped...)
}

func (m *model) cancel(id locktable.WaiterID) bool {
	for _, l := range m.locks {
		for i, w := range l.queue {
			if w.id == id {
				l.queue = slices.Delete(l.queue, i, i+1)
				return true
			}
		}
	}
	return false
}

// tick removes what is due at now and returns it as groups of equal
// deadline, earliest first: waiters, then sessions. The order within a
// group is not specified.
func (m *model) tick(now locktable.Time) [][]locktable.Effect {
	type due struct {
		at locktable.Time
		e  locktable.Effect
	}
	var ws, ss []due
	for name, l := range m.locks {
		l.queue = slices.DeleteFunc(l.queue, func(w mWaiter) bool {
			if w.deadline > now {
				return false
			}
			ws = append(ws, due{w.deadline, locktable.Effect{Kind: locktable.WaiterTimedOut, Waiter: w.id, Session: w.session, Name: name}})
			return true
		})
	}
	for id, r := range m.records {
		if !r.attached && r.expires <= now {
			delete(m.records, id)
			ss = append(ss, due{r.expires, locktable.Effect{Kind: locktable.SessionExpired, Session: id, Epoch: r.epoch}})
		}
	}
	var groups [][]locktable.Effect
	for _, list := range [][]due{ws, ss} {
		slices.SortFunc(list, func(a, b due) int { return cmp.Compare(a.at, b.at) })
		for i, d := range list {
			if i == 0 || d.at != list[i-1].at {
				groups = append(groups, nil)
			}
			groups[len(groups)-1] = append(groups[len(groups)-1], d.e)
		}
	}
	return groups
}

func (m *model) attach(now locktable.Time, id, home string) (locktable.Attachment, []locktable.Effect, error) {
	var fx []locktable.Effect
	r := m.records[id]
	if r != nil && r.attached {
		return locktable.Attachment{}, nil, locktable.ErrAttached
	}
	if r != nil && r.expires <= now {
		delete(m.records, id)
		fx = append(fx, locktable.Effect{Kind: locktable.SessionExpired, Session: id, Epoch: r.epoch})
		r = nil
	}
	m.attaches++
	if r == nil {
		m.records[id] = &mSession{timeout: m.limits.DefaultTimeout, attached: true, epoch: m.attaches, born: m.attaches, home: home}
		return locktable.Attachment{Epoch: m.attaches, Born: m.attaches, Timeout: m.limits.DefaultTimeout}, fx, nil
	}
	r.attached, r.home, r.expires = true, home, 0
	r.epoch = m.attaches
	return locktable.Attachment{Resumed: true, Epoch: r.epoch, Born: r.born, Timeout: r.timeout}, fx, nil
}

func (m *model) detach(now locktable.Time, id string, epoch uint64) []locktable.Effect {
	r := m.records[id]
	if r == nil || !r.attached || r.epoch != epoch {
		return nil
	}
	r.attached, r.home, r.expires = false, "", now+locktable.Time(r.timeout)
	if r.timeout <= 0 {
		delete(m.records, id)
		return []locktable.Effect{{Kind: locktable.SessionExpired, Session: id, Epoch: r.epoch}}
	}
	return nil
}

func (m *model) setTimeout(id string, d time.Duration) error {
	r := m.records[id]
	if r == nil {
		return locktable.ErrNoSession
	}
	r.timeout = max(d, 0)
	return nil
}

func (m *model) session(id string) (locktable.Session, bool) {
	r := m.records[id]
	if r == nil {
		return locktable.Session{}, false
	}
	return locktable.Session{ID: id, Timeout: r.timeout, Attached: r.attached, Epoch: r.epoch, Born: r.born, Home: r.home, Expires: r.expires}, true
}

func (m *model) token(s, name string) (uint64, locktable.Status) {
	l := m.locks[name]
	switch {
	case l == nil:
		return 0, locktable.NotLocked
	case l.owner != s:
		return 0, locktable.NotYours
	}
	return l.token, locktable.Granted
}

func (m *model) info(now locktable.Time, s, name string) locktable.Info {
	l := m.locks[name]
	if l == nil {
		return locktable.Info{}
	}
	return locktable.Info{Held: true, Mine: l.owner == s, Token: l.token, HeldFor: time.Duration(now - l.since), Waiters: len(l.queue)}
}

func (m *model) heldBy(s string) int {
	n := 0
	for _, l := range m.locks {
		if l.owner == s {
			n++
		}
	}
	return n
}

func (m *model) counts() locktable.Counts {
	return locktable.Counts{Locks: len(m.locks), Waiters: m.waiters(), Sessions: len(m.records)}
}

func (m *model) nextDeadline() (locktable.Time, bool) {
	var d locktable.Time
	ok := false
	consider := func(t locktable.Time) {
		if !ok || t < d {
			d, ok = t, true
		}
	}
	for _, l := range m.locks {
		for _, w := range l.queue {
			consider(w.deadline)
		}
	}
	for _, r := range m.records {
		if !r.attached {
			consider(r.expires)
		}
	}
	return d, ok
}

// fxString renders an effect list for failure messages and for comparing
// lists as multisets.
func fxString(fx []locktable.Effect) []string {
	out := make([]string, len(fx))
	for i, e := range fx {
		out[i] = fmtEffect(e)
	}
	return out
}

func sameFx(a, b []locktable.Effect) bool {
	return slices.Equal(a, b) || (len(a) == 0 && len(b) == 0)
}

func describe(fx []locktable.Effect) string { return fmt.Sprint(fxString(fx)) }
