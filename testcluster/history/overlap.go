package history

import (
	"fmt"
)

// CheckOverlap checks that no two sessions certainly held a name at the
// same time. Session S certainly holds name N from the reply to its grant
// until the invocation of the first operation that may release it: an
// unlock of N, an unlock_all, or S's expiry, indeterminate ones included,
// that could take effect after the grant did. A hold never released lasts
// to the end of the history. Re-entrant grants extend the same hold. Two
// holds of different sessions violate the property when their intervals
// intersect.
func CheckOverlap(h []Operation) Check {
	const checker = "overlap"
	ops, err := prepare(h)
	if err != nil {
		return malformed(checker, len(h), err)
	}
	c := Check{Checker: checker, Ops: len(ops)}
	releases := releasesBySession(ops)
	perName := byName(ops)
	for _, n := range names(ops) {
		hs := holds(n, perName[n], releases)
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
				if a.session == cur.session {
					continue
				}
				c.Violations = append(c.Violations, overlapViolation(n, a, cur))
			}
			active = append(active, cur)
		}
	}
	return c
}

func overlapViolation(name string, a, b hold) Violation {
	from, until := max(a.from, b.from), min(a.until, b.until)
	msg := fmt.Sprintf("lock %q: sessions %s (client %d) and %s (client %d) both held it during [%s, %s): %s; %s",
		name, a.session, a.client, b.session, b.client, stamp(from), stamp(until), a, b)
	ops := append(append([]rec{}, a.grants...), b.grants...)
	if a.end != nil {
		ops = append(ops, *a.end)
	}
	if b.end != nil {
		ops = append(ops, *b.end)
	}
	return violation(name, msg, ops...)
}
