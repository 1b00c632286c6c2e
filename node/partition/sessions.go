// Session records and what a session holds: attach, detach, timeouts,
// a resume's listing, and the counts stats reports.

package partition

import (
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
)

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
		if _, ok := t.Session(id); !ok {
			if aerr = roomFor(&s.sessions, s.cfg.MaxSessions, "sessions"); aerr != nil {
				return
			}
		}
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
	// Handoffs counts the grants to a queued waiter, since start.
	Handoffs uint64
	// Detached counts the session records no connection speaks for.
	Detached int
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
			c.Detached += t.Detached()
		})
	}
	c.Grants = s.grants.Load()
	c.Handoffs = s.handoffs.Load()
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
