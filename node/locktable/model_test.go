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
	kind   locktable.Kind
	limit  uint32
	value  string    // what its exclusive grant publishes
	grants []mGrant  // in the order they were made
	queue  []mWaiter // oldest first
}

type mGrant struct {
	session string
	mode    locktable.Mode
	token   uint64
	since   locktable.Time
	seq     int
}

type mWaiter struct {
	id       locktable.WaiterID
	session  string
	mode     locktable.Mode
	value    string
	deadline locktable.Time
}

func (l *mLock) grantOf(s string) int {
	return slices.IndexFunc(l.grants, func(g mGrant) bool { return g.session == s })
}

// admits: a semaphore has a free permit; an exclusive request needs no
// holder; a shared one no exclusive holder.
func (l *mLock) admits(mode locktable.Mode) bool {
	switch {
	case l.kind == locktable.KindSemaphore:
		return len(l.grants) < int(l.limit)
	case mode == locktable.Exclusive:
		return len(l.grants) == 0
	}
	return !slices.ContainsFunc(l.grants, func(g mGrant) bool { return g.mode == locktable.Exclusive })
}

func modelCovers(held, want locktable.Mode) bool {
	return held == want || held == locktable.Exclusive && want == locktable.Shared
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

func (m *model) lock(now locktable.Time, s, name string, want locktable.Want, w locktable.WaiterID, deadline locktable.Time) (locktable.Result, []locktable.Effect, error) {
	kind := locktable.KindLock
	if want.Mode == locktable.Permit {
		kind = locktable.KindSemaphore
	}
	l := m.locks[name]
	if l != nil {
		if l.kind != kind {
			return locktable.Result{Status: locktable.KindMismatch, Kind: l.kind}, nil, nil
		}
		if kind == locktable.KindSemaphore && l.limit != want.Limit {
			return locktable.Result{Status: locktable.LimitMismatch, Limit: l.limit}, nil, nil
		}
		if i := l.grantOf(s); i >= 0 {
			if !modelCovers(l.grants[i].mode, want.Mode) {
				return locktable.Result{Status: locktable.NoUpgrade}, nil, nil
			}
			var fx []locktable.Effect
			if want.Value != "" && want.Value != l.value {
				l.value = want.Value
				if m.changes {
					fx = append(fx, locktable.Effect{Kind: locktable.LockHeld, Session: s, Name: name, Token: l.grants[i].token})
				}
			}
			return locktable.Result{Status: locktable.Granted, Token: l.grants[i].token, Reentrant: true}, fx, nil
		}
		if len(l.queue) > 0 || !l.admits(want.Mode) {
			switch {
			case w == 0:
				return locktable.Result{Status: locktable.Unavailable}, nil, nil
			case m.limits.MaxWaiters > 0 && len(l.queue) >= m.limits.MaxWaiters:
				return locktable.Result{Status: locktable.TooManyWaiters}, nil, nil
			case !m.canPromise():
				return locktable.Result{}, nil, locktable.ErrExhausted
			}
			l.queue = append(l.queue, mWaiter{id: w, session: s, mode: want.Mode, value: want.Value, deadline: deadline})
			if m.changes {
				return locktable.Result{Status: locktable.Queued}, []locktable.Effect{{Kind: locktable.LockWanted, Session: s, Name: name}}, nil
			}
			return locktable.Result{Status: locktable.Queued}, nil, nil
		}
	}
	if !m.canPromise() {
		return locktable.Result{}, nil, locktable.ErrExhausted
	}
	if l == nil {
		l = &mLock{kind: kind}
		if kind == locktable.KindSemaphore {
			l.limit = want.Limit
		}
		m.locks[name] = l
	}
	tok, fx := m.grant(now, name, l, s, want.Mode)
	if want.Mode == locktable.Exclusive {
		l.value = want.Value
	}
	return locktable.Result{Status: locktable.Granted, Token: tok}, fx, nil
}

func (m *model) grant(now locktable.Time, name string, l *mLock, s string, mode locktable.Mode) (uint64, []locktable.Effect) {
	tok := m.issue()
	m.seq++
	l.grants = append(l.grants, mGrant{session: s, mode: mode, token: tok, since: now, seq: m.seq})
	if m.changes {
		return tok, []locktable.Effect{{Kind: locktable.LockHeld, Session: s, Name: name, Token: tok}}
	}
	return tok, nil
}

// promote serves name's queue: waiters past their deadline at the head
// time out (ticked or not); the head is granted while the holders admit
// it, and the same session's other waits on name hear of that grant
// (granted when it covers them, refused as timed out when not).
func (m *model) promote(now locktable.Time, name string) []locktable.Effect {
	l := m.locks[name]
	if l == nil {
		return nil
	}
	var fx []locktable.Effect
	for len(l.queue) > 0 {
		w := l.queue[0]
		if w.deadline <= now {
			l.queue = l.queue[1:]
			fx = append(fx, locktable.Effect{Kind: locktable.WaiterTimedOut, Waiter: w.id, Session: w.session, Name: name})
			continue
		}
		if !l.admits(w.mode) {
			break
		}
		l.queue = l.queue[1:]
		tok, held := m.grant(now, name, l, w.session, w.mode)
		if w.mode == locktable.Exclusive {
			l.value = w.value
		}
		fx = append(fx, held...)
		fx = append(fx, locktable.Effect{Kind: locktable.WaiterGranted, Waiter: w.id, Session: w.session, Name: name, Token: tok})
		var rest []mWaiter
		for _, x := range l.queue {
			switch {
			case x.session != w.session:
				rest = append(rest, x)
			case modelCovers(w.mode, x.mode):
				if x.value != "" && x.value != l.value {
					l.value = x.value // the later campaign's
					if m.changes {
						fx = append(fx, locktable.Effect{Kind: locktable.LockHeld, Session: x.session, Name: name, Token: tok})
					}
				}
				fx = append(fx, locktable.Effect{Kind: locktable.WaiterGranted, Waiter: x.id, Session: x.session, Name: name, Token: tok})
			default:
				fx = append(fx, locktable.Effect{Kind: locktable.WaiterTimedOut, Waiter: x.id, Session: x.session, Name: name})
			}
		}
		l.queue = rest
	}
	if len(l.grants) == 0 && len(l.queue) == 0 {
		delete(m.locks, name)
	}
	return fx
}

// release frees s's grant of name and serves the queue.
func (m *model) release(now locktable.Time, name, s string) []locktable.Effect {
	l := m.locks[name]
	g := l.grants[l.grantOf(s)]
	if g.mode == locktable.Exclusive {
		l.value = ""
	}
	l.grants = slices.Delete(l.grants, l.grantOf(s), l.grantOf(s)+1)
	var fx []locktable.Effect
	if m.changes {
		fx = append(fx, locktable.Effect{Kind: locktable.LockFreed, Session: s, Name: name, Token: g.token})
	}
	return append(fx, m.promote(now, name)...)
}

func (m *model) unlock(now locktable.Time, s, name string) (locktable.Result, []locktable.Effect) {
	l := m.locks[name]
	switch {
	case l == nil:
		return locktable.Result{Status: locktable.NotLocked}, nil
	case l.grantOf(s) < 0:
		return locktable.Result{Status: locktable.NotYours}, nil
	}
	return locktable.Result{Status: locktable.Unlocked}, m.release(now, name, s)
}

func (m *model) releaseSession(now locktable.Time, s string) (int, []locktable.Effect) {
	type held struct {
		name string
		seq  int
	}
	var mine []held
	for name, l := range m.locks {
		if i := l.grantOf(s); i >= 0 {
			mine = append(mine, held{name, l.grants[i].seq})
		}
	}
	// Newest grant first.
	slices.SortFunc(mine, func(a, b held) int { return cmp.Compare(b.seq, a.seq) })
	var fx []locktable.Effect
	for _, h := range mine {
		fx = append(fx, m.release(now, h.name, s)...)
	}
	// Its waits are answered as run out, in the order they were queued
	// (waiter ids are handed out in that order); then their queues are
	// served, in the order of the first wait each lost.
	type dropped struct {
		name string
		id   locktable.WaiterID
	}
	var gone []dropped
	for name, l := range m.locks {
		l.queue = slices.DeleteFunc(l.queue, func(w mWaiter) bool {
			if w.session == s {
				gone = append(gone, dropped{name, w.id})
			}
			return w.session == s
		})
	}
	slices.SortFunc(gone, func(a, b dropped) int { return cmp.Compare(a.id, b.id) })
	var names []string
	for _, d := range gone {
		fx = append(fx, locktable.Effect{Kind: locktable.WaiterTimedOut, Waiter: d.id, Session: s, Name: d.name})
		if !slices.Contains(names, d.name) {
			names = append(names, d.name)
		}
	}
	for _, n := range names {
		fx = append(fx, m.promote(now, n)...)
	}
	return len(mine), fx
}

func (m *model) cancel(now locktable.Time, id locktable.WaiterID) (bool, []locktable.Effect) {
	for name, l := range m.locks {
		for i, w := range l.queue {
			if w.id == id {
				l.queue = slices.Delete(l.queue, i, i+1)
				return true, m.promote(now, name)
			}
		}
	}
	return false, nil
}

// tick times out the waiters due at now, earliest deadline (then
// lowest id) first, then serves the queues they left in the order it
// first left each, then ends the sessions due, earliest (then lowest id)
// first.
func (m *model) tick(now locktable.Time) []locktable.Effect {
	var fx []locktable.Effect
	var touched []string
	for {
		var due *mWaiter
		var dueName string
		for name, l := range m.locks {
			for i := range l.queue {
				w := &l.queue[i]
				if w.deadline <= now && (due == nil || w.deadline < due.deadline || w.deadline == due.deadline && w.id < due.id) {
					due, dueName = w, name
				}
			}
		}
		if due == nil {
			break
		}
		w := *due
		l := m.locks[dueName]
		l.queue = slices.DeleteFunc(l.queue, func(x mWaiter) bool { return x.id == w.id })
		fx = append(fx, locktable.Effect{Kind: locktable.WaiterTimedOut, Waiter: w.id, Session: w.session, Name: dueName})
		if !slices.Contains(touched, dueName) {
			touched = append(touched, dueName)
		}
	}
	for _, n := range touched {
		fx = append(fx, m.promote(now, n)...)
	}
	var ids []string
	for id, r := range m.records {
		if !r.attached && r.expires <= now {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b string) int {
		if c := cmp.Compare(m.records[a].expires, m.records[b].expires); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for _, id := range ids {
		fx = append(fx, locktable.Effect{Kind: locktable.SessionExpired, Session: id, Epoch: m.records[id].epoch})
		delete(m.records, id)
	}
	return fx
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
	case l.grantOf(s) < 0:
		return 0, locktable.NotYours
	}
	return l.grants[l.grantOf(s)].token, locktable.Granted
}

// info: the session's own grant when it holds one, else the newest
// token and the longest hold.
func (m *model) info(now locktable.Time, s, name string) locktable.Info {
	l := m.locks[name]
	if l == nil {
		return locktable.Info{}
	}
	in := locktable.Info{Held: true, Waiters: len(l.queue), Kind: l.kind, Mode: locktable.Shared, Holders: len(l.grants), Limit: l.limit}
	if !l.admits(locktable.Shared) && l.kind == locktable.KindLock {
		in.Mode, in.Value = locktable.Exclusive, l.value
	}
	if i := l.grantOf(s); i >= 0 {
		in.Mine, in.Token, in.HeldFor = true, l.grants[i].token, time.Duration(now-l.grants[i].since)
		return in
	}
	for _, g := range l.grants {
		in.Token = max(in.Token, g.token)
		in.HeldFor = max(in.HeldFor, time.Duration(now-g.since))
	}
	return in
}

// state: free, or the exclusive holder's token and value, or the
// number of shared holders and the newest token among them.
func (m *model) state(name string) locktable.NameState {
	l := m.locks[name]
	if l == nil {
		return locktable.NameState{Free: true}
	}
	st := locktable.NameState{Mode: locktable.Shared, Holders: len(l.grants), Waiters: len(l.queue)}
	for _, g := range l.grants {
		st.Token = max(st.Token, g.token)
		if g.mode == locktable.Exclusive {
			st.Mode, st.Value = locktable.Exclusive, l.value
		}
	}
	return st
}

// proclaim: only the exclusive holder publishes.
func (m *model) proclaim(s, name, value string) (locktable.Result, []locktable.Effect) {
	l := m.locks[name]
	if l == nil {
		return locktable.Result{Status: locktable.NotLocked}, nil
	}
	i := l.grantOf(s)
	if i < 0 || l.grants[i].mode != locktable.Exclusive {
		return locktable.Result{Status: locktable.NotYours}, nil
	}
	var fx []locktable.Effect
	if l.value != value {
		l.value = value
		if m.changes {
			fx = append(fx, locktable.Effect{Kind: locktable.LockHeld, Session: s, Name: name, Token: l.grants[i].token})
		}
	}
	return locktable.Result{Status: locktable.Granted, Token: l.grants[i].token}, fx
}

func (m *model) heldBy(s string) int {
	n := 0
	for _, l := range m.locks {
		if l.grantOf(s) >= 0 {
			n++
		}
	}
	return n
}

func (m *model) counts() locktable.Counts {
	n := 0
	for _, l := range m.locks {
		n += len(l.grants)
	}
	return locktable.Counts{Locks: n, Waiters: m.waiters(), Sessions: len(m.records)}
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
