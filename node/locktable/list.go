package locktable

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// ListOrder is the order List returns held locks in, and so which of
// them a limit keeps.
type ListOrder uint8

const (
	// ListByName: by name, bytewise.
	ListByName ListOrder = iota
	// ListByHeld: longest held first.
	ListByHeld
	// ListByWaiters: longest queue first.
	ListByWaiters
)

// Listed is one grant as List reports it: a shared lock or a semaphore
// has one per holder. Session is the holder's id:
// it must never reach a client (knowing an id lets one resume its
// session); the edge turns it into the holder's label.
type Listed struct {
	Name    string
	Token   uint64
	HeldFor time.Duration
	Waiters int
	Session string
}

// Compare orders a before b (negative), after it (positive) or alike
// (zero, only for the same grant) in order o. Ties break by name, then
// token (a shared name has a row per grant), so that every order is
// total and a merge of several lists is deterministic.
func (o ListOrder) Compare(a, b Listed) int {
	switch o {
	case ListByHeld:
		if c := cmp.Compare(b.HeldFor, a.HeldFor); c != 0 {
			return c
		}
	case ListByWaiters:
		if c := cmp.Compare(b.Waiters, a.Waiters); c != 0 {
			return c
		}
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return cmp.Compare(a.Token, b.Token)
}

// List returns the first limit held locks whose names start with prefix,
// in order o, and whether more matched. It only reads: it claims nothing
// and has no effect. A limit below 1 lists nothing.
//
// The map of held locks has no order, so it looks at every one of them,
// but it keeps only the best limit seen so far, in a heap whose top is
// the worst of them: the caller holds the partition while it runs, so a
// listing costs O(n log limit) time and O(limit) memory, not a sort of
// every match.
func (t *Table) List(now Time, prefix []byte, limit int, o ListOrder) (out []Listed, truncated bool) {
	if limit < 1 {
		return nil, len(t.locks) > 0 && t.anyUnder(prefix)
	}
	p := string(prefix)
	h := listHeap{o: o}
	offer := func(x Listed) {
		switch {
		case len(h.items) < limit:
			h.push(x)
		case o.Compare(x, h.items[0]) < 0:
			h.items[0] = x
			h.down(0)
			truncated = true
		default:
			truncated = true
		}
	}
	for name, l := range t.locks {
		if !strings.HasPrefix(name, p) {
			continue
		}
		l.each(func(g *grant) { offer(listed(now, g)) })
	}
	out = h.items
	slices.SortFunc(out, o.Compare)
	return out, truncated
}

func listed(now Time, g *grant) Listed {
	return Listed{Name: g.lk.name, Token: g.token, HeldFor: time.Duration(now - g.since), Waiters: int(g.lk.qlen), Session: g.owner.id}
}

// anyUnder reports whether a held lock's name starts with prefix.
func (t *Table) anyUnder(prefix []byte) bool {
	p := string(prefix)
	for name := range t.locks {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// listHeap keeps List's best entries so far with the worst on top.
type listHeap struct {
	o     ListOrder
	items []Listed
}

// worse reports whether items[i] comes after items[j] in the order.
func (h *listHeap) worse(i, j int) bool { return h.o.Compare(h.items[i], h.items[j]) > 0 }

func (h *listHeap) push(x Listed) {
	h.items = append(h.items, x)
	for i := len(h.items) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.worse(i, parent) {
			break
		}
		h.items[i], h.items[parent] = h.items[parent], h.items[i]
		i = parent
	}
}

func (h *listHeap) down(i int) {
	n := len(h.items)
	for {
		worst, l, r := i, 2*i+1, 2*i+2
		if l < n && h.worse(l, worst) {
			worst = l
		}
		if r < n && h.worse(r, worst) {
			worst = r
		}
		if worst == i {
			return
		}
		h.items[i], h.items[worst] = h.items[worst], h.items[i]
		i = worst
	}
}
