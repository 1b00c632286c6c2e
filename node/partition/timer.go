// The set's one timer: the deadlines of every partition's waiters and
// sessions, fired from one goroutine.

package partition

import (
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
)

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
// waits for a synced replica; a session's expiry, and a grant to the
// waiters behind one that timed out, are replicated, and their
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
	s.noteWatched(p, &pend)
	pos := s.record(p, now, &pend)
	s.recount(p)
	s.rearm(p)
	p.mu.Unlock()
	s.deliver(p, &pend, pos)
}

// deliver settles what an operation nobody waits on decided (a tick, a
// withdrawn wait) once its changes at pos are confirmed, without
// blocking the caller.
func (s *Set) deliver(p *part, pend *pending, pos uint64) {
	if pos == 0 {
		s.settle(pend, nil)
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
		s.settle(pend, err)
	})
}

// retryTick is how soon a partition whose deadlines could not be served
// is looked at again.
const retryTick = 100 * time.Millisecond
