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

// Listed is one held lock as List reports it. Session is the holder's id:
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
// (zero, only for the same name) in order o. Ties break by name, so that
// every order is total and a merge of several lists is deterministic.
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
	return strings.Compare(a.Name, b.Name)
}

// List returns the first limit held locks whose names start with prefix,
// in order o, and whether more matched. It only reads: it claims nothing
// and has no effect. A limit below 1 lists nothing.
//
// The map of held locks has no order, so it looks at every one of them;
// what it keeps is at most the matching ones, which the table holds
// anyway.
func (t *Table) List(now Time, prefix []byte, limit int, o ListOrder) (out []Listed, truncated bool) {
	p := string(prefix)
	for name, l := range t.locks {
		if strings.HasPrefix(name, p) {
			out = append(out, Listed{Name: name, Token: l.token, HeldFor: time.Duration(now - l.since), Waiters: int(l.qlen), Session: l.owner.id})
		}
	}
	slices.SortFunc(out, o.Compare)
	if len(out) > max(limit, 0) {
		return slices.Clip(out[:max(limit, 0)]), true
	}
	return out, false
}
