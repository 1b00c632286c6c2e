package history

import (
	"fmt"
	"strings"
)

// CheckOverlap checks that an exclusive holder of a name never certainly
// held it together with another session, in any mode; shared holders
// (rlock) may hold it together, and so may holders of a semaphore's
// permits (CheckPermits counts those). Session S certainly holds name N
// from the reply to its grant until the invocation of the first
// operation that may release it: an unlock of N, an unlock_all, or S's
// expiry, indeterminate ones included, that could take effect after the
// grant did. A hold never released lasts to the end of the history.
// Re-entrant grants extend the same hold. Two holds of different
// sessions, one of them exclusive, violate the property when their
// intervals intersect.
func CheckOverlap(h []Operation) Check {
	c, ops, perName, releases, ok := byHolds("overlap", h)
	if !ok {
		return c
	}
	var count holdCount
	for _, n := range names(ops) {
		hs := holds(n, perName[n], releases)
		count.add(hs)
		// hs is sorted by start; active holds are those whose end is past
		// the current start.
		var active []hold
		for _, cur := range hs {
			kept := active[:0]
			for _, a := range active {
				if a.until > cur.from {
					kept = append(kept, a)
				}
			}
			active = kept
			for _, a := range active {
				if a.session == cur.session || (a.mode != Exclusive && cur.mode != Exclusive) {
					continue
				}
				c.Violations = append(c.Violations, overlapViolation(n, a, cur))
			}
			active = append(active, cur)
		}
	}
	c.Note = count.String()
	return c
}

func overlapViolation(name string, a, b hold) Violation {
	from, until := max(a.from, b.from), min(a.until, b.until)
	what := "both held it"
	if a.mode != b.mode {
		what = fmt.Sprintf("held it %s and %s", a.mode, b.mode)
	}
	msg := fmt.Sprintf("lock %q: sessions %s (client %d) and %s (client %d) %s during [%s, %s): %s; %s",
		name, a.session, a.client, b.session, b.client, what, stamp(from), stamp(until), a, b)
	ops := append(append([]rec{}, a.grants...), b.grants...)
	if a.end != nil {
		ops = append(ops, *a.end)
	}
	if b.end != nil {
		ops = append(ops, *b.end)
	}
	return violation(name, msg, ops...)
}

// holdCount counts certain holds by mode, so that a verdict shows what
// its checker looked at: a check of shared holds that saw none proves
// nothing.
type holdCount [Permit + 1]int

func (c *holdCount) add(hs []hold) {
	for _, h := range hs {
		c[h.mode]++
	}
}

func (c holdCount) String() string {
	var parts []string
	for m := Exclusive; m <= Permit; m++ {
		if c[m] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c[m], m))
		}
	}
	if parts == nil {
		return "no certain holds"
	}
	return "certain holds: " + strings.Join(parts, ", ")
}
