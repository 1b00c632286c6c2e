package locktable

import (
	"errors"
	"math"
	"slices"
	"strings"
	"time"
)

// ErrAttached: the session is attached to a live connection, so it cannot
// be attached to another (the "403 cannot set conn id" of the protocol).
var ErrAttached = errors.New("locktable: session attached to a live connection")

// ErrNoSession: no record of that session in this partition.
var ErrNoSession = errors.New("locktable: no such session")

// Session is the record of one client session, kept by the partition its
// id hashes to. Its locks live in the partitions their names hash to; the
// record only decides when the session ends.
type Session struct {
	ID      string
	Timeout time.Duration // how long it survives detached
	// Attached is true while a live connection speaks for the session.
	Attached bool
	// Epoch grows on every attach; it is unique in the table, across
	// expiries too. A detach carries the epoch of the attach it ends, so a
	// stale home cannot detach a session that has since been resumed.
	Epoch uint64
	// Born is the attach epoch that created this incarnation of the id;
	// resumes keep it. Locks and waits of this id with an older epoch
	// belong to an earlier incarnation that expired, whose release did
	// not reach them: the new session never took them.
	Born uint64
	// Home names the node whose connection the session is attached to.
	Home string
	// Expires is when a detached session ends.
	Expires Time

	heapIdx int
}

// Attachment describes a successful Attach.
type Attachment struct {
	// Resumed is true when an existing, unexpired session was taken over
	// with its locks; false when the session is new (and holds nothing).
	Resumed bool
	Epoch   uint64
	// Born is the attach epoch that created the session (Session.Born):
	// Epoch for a new session, earlier for a resumed one.
	Born    uint64
	Timeout time.Duration
}

// Attach binds session id to a connection on home. A detached session
// that has not expired is resumed. An unknown id, or one whose timeout has
// run out, starts a new empty session under that id; in the second case
// the old incarnation's SessionExpired effect comes first, and the caller
// must finish releasing its locks before the new session acts.
func (t *Table) Attach(now Time, id, home string) (Attachment, []Effect, error) {
	t.begin()
	s := t.records[id]
	if s != nil {
		if s.Attached {
			return Attachment{}, nil, ErrAttached
		}
		if s.Expires <= now {
			t.expire(s)
			s = nil
		}
	}
	t.attaches++
	if s == nil {
		s = &Session{ID: id, Timeout: t.limits.DefaultTimeout, Attached: true, Epoch: t.attaches, Born: t.attaches, Home: home, heapIdx: -1}
		t.records[id] = s
		return Attachment{Epoch: s.Epoch, Born: s.Born, Timeout: s.Timeout}, t.effects(), nil
	}
	t.sessHeap.remove(s)
	s.Attached, s.Home, s.Expires = true, home, 0
	s.Epoch = t.attaches
	return Attachment{Resumed: true, Epoch: s.Epoch, Born: s.Born, Timeout: s.Timeout}, t.effects(), nil
}

// Detach records that the connection of attach epoch has gone. The
// session expires Timeout later unless it is attached again first; with a
// zero timeout it expires at once and the SessionExpired effect is
// returned now. A stale epoch is ignored.
func (t *Table) Detach(now Time, id string, epoch uint64) []Effect {
	t.begin()
	s := t.records[id]
	if s == nil || !s.Attached || s.Epoch != epoch {
		return nil
	}
	s.Attached, s.Home = false, ""
	s.Expires = addSaturating(now, s.Timeout)
	if s.Timeout <= 0 {
		t.expire(s)
		return t.effects()
	}
	t.sessHeap.push(s)
	return nil
}

func (t *Table) expire(s *Session) {
	t.sessHeap.remove(s)
	delete(t.records, s.ID)
	t.effect(Effect{Kind: SessionExpired, Session: s.ID, Epoch: s.Epoch})
}

// addSaturating returns now+d, or the latest Time if that overflows: a
// timeout too long to represent never runs out.
func addSaturating(now Time, d time.Duration) Time {
	if d > 0 && now > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return now + int64(d)
}

// SetTimeout changes how long session id survives detached. A negative
// timeout counts as zero.
func (t *Table) SetTimeout(id string, d time.Duration) error {
	s := t.records[id]
	if s == nil {
		return ErrNoSession
	}
	s.Timeout = max(d, 0)
	return nil
}

// before breaks expiry ties by id, so every replica expires equal
// deadlines in the same order.
func (s *Session) before(o *Session) bool { return s.ID < o.ID }

// Session returns a copy of session id's record.
func (t *Table) Session(id string) (Session, bool) {
	s := t.records[id]
	if s == nil {
		return Session{}, false
	}
	c := *s
	c.heapIdx = 0
	return c, true
}

// Sessions returns a copy of every session record in the table, sorted by
// id.
func (t *Table) Sessions() []Session {
	out := make([]Session, 0, len(t.records))
	for _, s := range t.records {
		c := *s
		c.heapIdx = 0
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Session) int { return strings.Compare(a.ID, b.ID) })
	return out
}
