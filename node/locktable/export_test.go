package locktable

import (
	"fmt"
	"slices"
)

// SetCount sets how many grants the current epoch has issued, so that a
// test reaches the end of the token space without 2^32 grants.
func (t *Table) SetCount(n uint64) { t.count = n }

// Floor returns the lower bound a session's holder record keeps of the
// epochs of its locks and waits here (holder.oldest), and false if the
// session has nothing here.
func (t *Table) Floor(session string) (uint64, bool) {
	if h := t.holders[session]; h != nil {
		return h.oldest, true
	}
	return 0, false
}

// CheckInvariants verifies the table's internal structure: the indexes,
// linked lists and heaps all describe the same state, and no record is
// kept for a session with nothing here.
func (t *Table) CheckInvariants() error {
	nwait := map[*holder]int{}
	nheld := map[*holder]int{}
	queued, grants := 0, 0
	for name, l := range t.locks {
		if l.name != name {
			return fmt.Errorf("lock %q: filed as %q", l.name, name)
		}
		gs := l.grants()
		if len(gs) == 0 || len(gs) != int(l.ngrants) || (l.many != nil) == (l.first != nil) {
			return fmt.Errorf("lock %q: ngrants %d, %d grants (first %v, many %v)", name, l.ngrants, len(gs), l.first != nil, l.many != nil)
		}
		if l.kind == KindSemaphore && (l.limit == 0 || uint32(len(gs)) > l.limit) || l.kind == KindLock && l.limit != 0 {
			return fmt.Errorf("lock %q: %v with limit %d and %d holders", name, l.kind, l.limit, len(gs))
		}
		for _, g := range gs {
			switch {
			case g.lk != l || g.owner == nil || t.holders[g.owner.id] != g.owner || l.grantOf(g.owner.id) != g:
				return fmt.Errorf("lock %q: bad grant of %v", name, g.owner)
			case kindOf(g.mode) != l.kind:
				return fmt.Errorf("lock %q: a %v grant of a %v", name, g.mode, l.kind)
			case g.mode == Exclusive && len(gs) > 1:
				return fmt.Errorf("lock %q: an exclusive grant among %d", name, len(gs))
			case (g.mode == Exclusive) != l.excl:
				return fmt.Errorf("lock %q: excl %v with a %v grant", name, l.excl, g.mode)
			case g.epoch < g.owner.oldest:
				return fmt.Errorf("lock %q: epoch %d below its holder's oldest %d", name, g.epoch, g.owner.oldest)
			}
			nheld[g.owner]++
		}
		grants += len(gs)
		if w := l.qhead; w != nil && l.admits(w.mode) && !slices.Contains(t.unserved, l) {
			return fmt.Errorf("lock %q: its head waiter %d (%v) would be admitted", name, w.id, w.mode)
		}
		n := 0
		var prev *waiter
		for w := l.qhead; w != nil; w = w.next {
			switch {
			case w.prev != prev:
				return fmt.Errorf("lock %q: waiter %d has a bad prev link", name, w.id)
			case w.lk != l:
				return fmt.Errorf("lock %q: waiter %d points at lock %q", name, w.id, w.lk.name)
			case t.waiters[w.id] != w:
				return fmt.Errorf("lock %q: waiter %d is not indexed", name, w.id)
			case t.holders[w.h.id] != w.h:
				return fmt.Errorf("lock %q: waiter %d's session %q is not indexed", name, w.id, w.h.id)
			case w.epoch < w.h.oldest:
				return fmt.Errorf("lock %q: waiter %d's epoch %d below its session's oldest %d", name, w.id, w.epoch, w.h.oldest)
			case l.grantOf(w.h.id) != nil:
				return fmt.Errorf("lock %q: its holder %q waits for it", name, w.h.id)
			case kindOf(w.mode) != l.kind:
				return fmt.Errorf("lock %q: a %v waiter of a %v", name, w.mode, l.kind)
			case w.heapIdx < 0 || w.heapIdx >= len(t.waitHeap.items) || t.waitHeap.items[w.heapIdx] != w:
				return fmt.Errorf("lock %q: waiter %d is not in the heap at %d", name, w.id, w.heapIdx)
			}
			nwait[w.h]++
			prev = w
			n++
		}
		if l.qtail != prev || int(l.qlen) != n {
			return fmt.Errorf("lock %q: qlen %d, %d in the list, bad tail=%v", name, l.qlen, n, l.qtail != prev)
		}
		queued += n
	}
	if grants != t.held {
		return fmt.Errorf("held = %d, %d grants", t.held, grants)
	}
	if queued != len(t.waiters) || queued != len(t.waitHeap.items) {
		return fmt.Errorf("%d queued, %d indexed, %d in the heap", queued, len(t.waiters), len(t.waitHeap.items))
	}
	for id, h := range t.holders {
		if h.id != id {
			return fmt.Errorf("holder %q filed as %q", h.id, id)
		}
		if h.nheld == 0 && h.nwait == 0 {
			return fmt.Errorf("holder %q holds and awaits nothing but is kept", id)
		}
		if h.nwait != nwait[h] || h.nheld != nheld[h] {
			return fmt.Errorf("holder %q: nheld %d nwait %d; really %d, %d", id, h.nheld, h.nwait, nheld[h], nwait[h])
		}
		n := 0
		var prev *grant
		for g := h.locks; g != nil; g = g.next {
			if g.prev != prev || g.owner != h {
				return fmt.Errorf("holder %q: bad lock list at %q", id, g.lk.name)
			}
			prev = g
			n++
		}
		if n != h.nheld {
			return fmt.Errorf("holder %q: %d locks in its list, nheld %d", id, n, h.nheld)
		}
	}
	detached := 0
	for id, s := range t.records {
		if s.ID != id {
			return fmt.Errorf("session %q filed as %q", s.ID, id)
		}
		inHeap := s.heapIdx >= 0 && s.heapIdx < len(t.sessHeap.items) && t.sessHeap.items[s.heapIdx] == s
		if inHeap == s.Attached {
			return fmt.Errorf("session %q: attached %v, in the expiry heap %v", id, s.Attached, inHeap)
		}
		if !s.Attached {
			detached++
		}
	}
	if detached != len(t.sessHeap.items) {
		return fmt.Errorf("%d detached sessions, %d in the expiry heap", detached, len(t.sessHeap.items))
	}
	if err := heapOK(&t.waitHeap); err != nil {
		return fmt.Errorf("waiter heap: %w", err)
	}
	if err := heapOK(&t.sessHeap); err != nil {
		return fmt.Errorf("session heap: %w", err)
	}
	return nil
}

func heapOK[T deadlined[T]](h *deadlineHeap[T]) error {
	for i, x := range h.items {
		if *x.index() != i {
			return fmt.Errorf("entry at %d thinks it is at %d", i, *x.index())
		}
		if i > 0 && h.less(i, (i-1)/2) {
			return fmt.Errorf("heap order broken at %d", i)
		}
	}
	return nil
}

// NameChanges describes name's whole state as Changes, the way a
// replica could learn it from scratch: nobody holds it, then each grant
// in token order.
func (t *Table) NameChanges(now Time, name string) []Change {
	out := []Change{{Kind: ChangeFreed, Name: name}}
	if l := t.locks[name]; l != nil {
		for _, g := range l.grants() {
			out = append(out, t.GrantChange(now, name, g.owner.id))
		}
	}
	return out
}
