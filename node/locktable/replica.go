package locktable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// ChangeKind says what a Change does to a replica's table.
type ChangeKind uint8

const (
	_ ChangeKind = iota
	// ChangeHeld: Session holds Name in Mode with Token, for Age so far,
	// claimed up to attach Epoch. An exclusive grant is the name's only
	// one: it replaces any other.
	ChangeHeld
	// ChangeFreed: Session no longer holds Name; with no Session, nobody
	// holds Name.
	ChangeFreed
	// ChangeSession: the session record Session is as described.
	ChangeSession
	// ChangeSessionGone: the session record Session no longer exists.
	ChangeSessionGone
)

// Change is one state change as an owner ships it to its replica. Times
// are durations relative to the moment the owner encoded the change, so
// that the replica, which reads another clock, can place them on its own.
// Waiters are not replicated: they belong to live connections, whose
// homes ask the new owner again after a takeover.
type Change struct {
	Kind    ChangeKind
	Name    string
	Session string
	Token   uint64
	Age     time.Duration // ChangeHeld: how long it has been held
	// Epoch: ChangeHeld, the grant's epoch (see Table.Acquire);
	// ChangeSession, the record's attach epoch.
	Epoch uint64
	// ChangeHeld: how the grant holds the name, and a semaphore's
	// number of permits.
	Mode  Mode
	Limit uint32
	// Value is what an exclusive grant publishes (Want.Value).
	Value string
	// ChangeSession:
	Born     uint64 // the attach epoch that created the session (Session.Born)
	Timeout  time.Duration
	Attached bool
	Home     string
	Left     time.Duration // detached: time until it expires
}

// GrantChange describes session's grant of name as a Change: held, or
// freed.
func (t *Table) GrantChange(now Time, name, session string) Change {
	var g *grant
	if l := t.locks[name]; l != nil {
		g = l.grantOf(session)
	}
	if g == nil {
		return Change{Kind: ChangeFreed, Name: name, Session: session}
	}
	c := Change{Kind: ChangeHeld, Name: name, Session: session, Token: g.token, Age: time.Duration(now - g.since), Epoch: g.epoch,
		Mode: g.mode, Limit: g.lk.limit}
	if g.mode == Exclusive {
		c.Value = t.values[name]
	}
	return c
}

// SessionChange describes session id's record as a Change.
func (t *Table) SessionChange(now Time, id string) Change {
	s := t.records[id]
	if s == nil {
		return Change{Kind: ChangeSessionGone, Session: id}
	}
	c := Change{Kind: ChangeSession, Session: id, Timeout: s.Timeout, Attached: s.Attached, Epoch: s.Epoch, Born: s.Born, Home: s.Home}
	if !s.Attached {
		c.Left = time.Duration(s.Expires - now)
	}
	return c
}

// Apply puts a replicated change into this table. A replica's table is
// only ever changed this way (and by Restore); it is not ticked, because
// only the owner decides when a session expires. A lock that changes
// holder on a replica has no queue to hand it over to.
func (t *Table) Apply(now Time, c Change) {
	switch c.Kind {
	case ChangeHeld:
		kind := kindOf(c.Mode)
		l := t.locks[c.Name]
		if l != nil && (l.kind != kind || c.Mode == Exclusive || l.excl) {
			// The owner's name is now this grant's kind, and an exclusive
			// grant has it alone (its other holders' frees come in the same
			// batch): whatever this copy had of it is gone.
			t.freeName(l)
			l = nil
		}
		if l == nil {
			l = &lock{name: c.Name, kind: kind}
			t.locks[c.Name] = l
		}
		if kind == KindSemaphore {
			l.limit = c.Limit
		}
		if g := l.grantOf(c.Session); g != nil {
			t.unhold(g)
			t.dropIfIdle(g.owner)
		}
		// Claims are not replicated: whoever takes this copy over cannot
		// tell whether the holder heard of the grant twice.
		t.hold(&grant{lk: l, owner: t.holder(c.Session), mode: c.Mode, token: c.Token, since: now - int64(c.Age), claim: claimUnknown, epoch: c.Epoch})
		if c.Mode == Exclusive {
			t.setValue(l, c.Value)
		}
	case ChangeFreed:
		l := t.locks[c.Name]
		switch {
		case l == nil:
		case c.Session == "":
			t.freeName(l)
		default:
			if g := l.grantOf(c.Session); g != nil {
				t.unhold(g)
				t.dropIfIdle(g.owner)
			}
			if l.ngrants == 0 {
				t.freeName(l)
			}
		}
	case ChangeSession:
		s := t.records[c.Session]
		if s == nil {
			s = &Session{ID: c.Session, heapIdx: -1}
			t.records[c.Session] = s
		}
		t.sessHeap.remove(s)
		s.Timeout, s.Attached, s.Epoch, s.Born, s.Home = c.Timeout, c.Attached, c.Epoch, c.Born, c.Home
		s.Expires = 0
		if !s.Attached {
			s.Expires = addSaturating(now, c.Left)
			t.sessHeap.push(s)
		}
		// Epochs this table hands out later must stay above every one the
		// owner has used, should this replica become the owner.
		t.attaches = max(t.attaches, c.Epoch)
	case ChangeSessionGone:
		if s := t.records[c.Session]; s != nil {
			t.sessHeap.remove(s)
			delete(t.records, c.Session)
		}
	}
}

// freeName forgets l with every grant and wait it has, as a replica
// does when the owner says nobody holds it.
func (t *Table) freeName(l *lock) {
	for _, g := range l.grants() {
		t.unhold(g)
		t.dropIfIdle(g.owner)
	}
	for l.qhead != nil {
		w := l.qhead
		t.unqueue(w)
		t.dropIfIdle(w.h)
	}
	if t.locks[l.name] == l {
		delete(t.locks, l.name)
	}
}

// ErrCorrupt: a snapshot could not be decoded.
var ErrCorrupt = errors.New("locktable: corrupt snapshot")

// Restore builds a table from a Snapshot taken by another table, placing
// its relative times on this clock (now). Waiters are dropped, as in
// Apply: whoever waited asks the new owner again.
func Restore(now Time, b []byte, limits Limits, recordChanges bool) (*Table, error) {
	r := snapReader{b: b}
	t := New(r.uvarint(), limits, recordChanges)
	t.count = r.uvarint()
	t.attaches = r.uvarint()
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		name, limit := r.str(), r.uvarint()
		grants := r.uvarint()
		if limit > 0 && grants > limit || grants == 0 {
			r.err = fmt.Errorf("lock %q: %d grants of a limit of %d", name, grants, limit)
		}
		for g := grants; g > 0 && r.err == nil; g-- {
			c := Change{Kind: ChangeHeld, Name: name, Session: r.str(), Token: r.uvarint(), Age: time.Duration(r.varint()), Epoch: r.uvarint()}
			c.Mode = Mode(r.uvarint())
			c.Value = r.str()
			c.Limit = uint32(min(limit, math.MaxUint32))
			switch {
			case c.Mode > Permit || (c.Mode == Permit) != (limit > 0) || limit > math.MaxUint32:
				r.err = fmt.Errorf("lock %q: mode %d with limit %d", name, c.Mode, limit)
			case c.Mode == Exclusive && grants > 1:
				r.err = fmt.Errorf("lock %q: an exclusive grant among %d", name, grants)
			case t.Holds(c.Session, []byte(name)):
				r.err = fmt.Errorf("lock %q: two grants to one session", name)
			case c.Value != "" && c.Mode != Exclusive:
				r.err = fmt.Errorf("lock %q: a %v grant with a value", name, c.Mode)
			}
			if r.err == nil {
				t.Apply(now, c)
			}
		}
		for q := r.uvarint(); q > 0 && r.err == nil; q-- {
			r.uvarint()
			r.str()
			r.varint()
			r.uvarint()
			r.uvarint()
		}
	}
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		c := Change{Kind: ChangeSession, Session: r.str(), Timeout: time.Duration(r.varint())}
		c.Attached = r.uvarint() == 1
		c.Epoch = r.uvarint()
		c.Born = r.uvarint()
		c.Home = r.str()
		c.Left = time.Duration(r.varint())
		if r.err == nil {
			t.Apply(now, c)
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes after the end", len(r.b))
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, r.err)
	}
	return t, nil
}

// HeldNames lists the names session holds in this table.
func (t *Table) HeldNames(session string) []string {
	h := t.holders[session]
	if h == nil {
		return nil
	}
	names := make([]string, 0, h.nheld)
	for g := h.locks; g != nil; g = g.next {
		names = append(names, g.lk.name)
	}
	return names
}

// ClaimHeld is HeldNames for a client attached at epoch, of the session
// born at born, that is told the list, as a resume tells it: each grant
// counts as known to it (see Drop), and its epoch rises to epoch (see
// LockAt), so neither an old home's Drop nor a release bounded below
// epoch (a late unlock_all of the old home, an expiry of an earlier
// incarnation) takes a lock the client was just told it holds. Raised
// epochs are reported as LockHeld. Grants older than born are an ended
// session's under the same id (see Leftover): not listed, not raised.
func (t *Table) ClaimHeld(session string, born, epoch uint64) ([]string, []Effect) {
	t.begin()
	h := t.holders[session]
	if h == nil {
		return nil, nil
	}
	names := make([]string, 0, h.nheld)
	for g := h.locks; g != nil; g = g.next {
		if g.epoch < born {
			continue
		}
		names = append(names, g.lk.name)
		if g.claim == claimNone {
			g.claim = claimTold
		}
		if epoch > g.epoch {
			g.epoch = epoch
			if t.changes {
				t.effect(Effect{Kind: LockHeld, Session: session, Name: g.lk.name, Token: g.token})
			}
		}
	}
	return names, t.effects()
}

// HeldBelow counts the locks of the session born at born held here whose
// epoch is below epoch: those ClaimHeld would raise.
func (t *Table) HeldBelow(session string, born, epoch uint64) int {
	n := 0
	if h := t.holders[session]; h != nil {
		for g := h.locks; g != nil; g = g.next {
			if g.epoch >= born && g.epoch < epoch {
				n++
			}
		}
	}
	return n
}

// HeldAfter reports whether session holds name at an epoch above epoch:
// a later attachment of the session was told of the grant (see LockAt,
// ClaimHeld), which a request sent at epoch must not take from it.
func (t *Table) HeldAfter(session string, name []byte, epoch uint64) bool {
	g := t.grantFor(session, name)
	return g != nil && g.epoch > epoch
}

// Leftover reports whether name is held under session's id at an epoch
// below born: by an earlier session under the id, which expired and
// whose release has not reached this table yet. The session born at born
// never took it and is never told it holds it; its own requests treat
// such a grant as another session's, or release it first (see
// ReleaseSessionUpTo), and the owner's sweep releases it.
func (t *Table) Leftover(session string, born uint64, name []byte) bool {
	g := t.grantFor(session, name)
	return g != nil && g.epoch < born
}

func (t *Table) grantFor(session string, name []byte) *grant {
	if l := t.locks[string(name)]; l != nil {
		return l.grantOf(session)
	}
	return nil
}

// Holding is a session that holds or awaits locks in a table, with the
// oldest attach epoch among those locks and waits.
type Holding struct {
	Session string
	Oldest  uint64
}

// Holders lists the sessions that hold or await a lock in this table, for
// the sweep that checks they are still alive, and still the incarnation
// that took them.
func (t *Table) Holders() []Holding {
	out := make([]Holding, 0, len(t.holders))
	for id, h := range t.holders {
		oldest := uint64(math.MaxUint64)
		for g := h.locks; g != nil; g = g.next {
			oldest = min(oldest, g.epoch)
		}
		for w := h.waits; w != nil; w = w.hnext {
			oldest = min(oldest, w.epoch)
		}
		out = append(out, Holding{id, oldest})
	}
	return out
}

// snapReader decodes the varint layout of Snapshot.
type snapReader struct {
	b   []byte
	err error
}

func (r *snapReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *snapReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *snapReader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errors.New("string past the end")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
