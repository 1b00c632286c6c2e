package history

import (
	"fmt"
	"strings"
)

// CheckPermits checks that a semaphore never had more than LIMIT
// sessions certainly holding its permits at once. A permit is certainly
// held as a lock is (see CheckOverlap): from the reply to its grant until
// the invocation of the first operation that may release it. LIMIT is
// the largest that any of the holds' grants named, so that a history
// whose requests disagree on it is judged by the most permissive. One
// hold more than that at any instant is a violation; fewer holders than
// the real number are seen, never more, so the check is conservative.
func CheckPermits(h []Operation) Check {
	c, ops, perName, releases, ok := byHolds("permits", h)
	if !ok {
		return c
	}
	var notes []string
	for _, n := range names(ops) {
		var hs []hold // sorted by start, as holds returns them
		for _, hd := range holds(n, perName[n], releases) {
			if hd.mode == Permit {
				hs = append(hs, hd)
			}
		}
		if len(hs) == 0 {
			continue
		}
		// A session's holds of one mode never intersect (holds merges
		// them), so the active holds are as many sessions.
		var active []hold
		peak, limit := 0, 0
		for _, cur := range hs {
			kept := active[:0]
			for _, a := range active {
				if a.until > cur.from {
					kept = append(kept, a)
				}
			}
			active = append(kept, cur)
			lim := 0
			for _, a := range active {
				lim = max(lim, a.limit())
			}
			peak, limit = max(peak, len(active)), max(limit, lim)
			if len(active) > lim {
				c.Violations = append(c.Violations, permitsViolation(n, lim, active))
			}
		}
		notes = append(notes, fmt.Sprintf("%q: %d permit holds, at most %d of %d at once", n, len(hs), peak, limit))
	}
	if notes == nil {
		c.Note = "no certain permit holds"
	} else {
		c.Note = strings.Join(notes, "; ")
	}
	return c
}

// permitsViolation describes holds, more than limit, that were all
// certainly held when the last of them began.
func permitsViolation(name string, limit int, holds []hold) Violation {
	last := holds[len(holds)-1]
	until := last.until
	for _, a := range holds {
		until = min(until, a.until)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "semaphore %q: %d sessions held permits of %d during [%s, %s):", name, len(holds), limit, stamp(last.from), stamp(until))
	var ops []rec
	for _, a := range holds {
		b.WriteString(" ")
		b.WriteString(a.String())
		b.WriteString(";")
		ops = append(ops, a.grants...)
		if a.end != nil {
			ops = append(ops, *a.end)
		}
	}
	return violation(name, strings.TrimSuffix(b.String(), ";"), ops...)
}
