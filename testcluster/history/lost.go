package history

import (
	"fmt"
	"sort"
)

// CheckLostGrants checks that a grant acknowledged to a session is kept
// while the session certainly holds the name, that is, from the grant's
// reply until the invocation of the first operation that may release it
// (an unlock, unlock_all, or the session's expiry; a session that resumed
// before its expiry did not expire). An operation that certainly took
// effect inside that interval, its whole [Call, Return] within it, must
// see the lock held by that session:
//
//   - no other session is granted the name;
//   - no one is told not_locked, and no other session unlocks it;
//   - the holder is not told 409 or not_yours, and a re-entrant grant
//     carries the holder's token.
//
// CheckOverlap and CheckLinearizable catch most of these too; this checker
// names the grant that was lost and the operation that shows it.
func CheckLostGrants(h []Operation) Check {
	const checker = "lost-grants"
	ops, err := prepare(h)
	if err != nil {
		return malformed(checker, len(h), err)
	}
	c := Check{Checker: checker, Ops: len(ops)}
	releases := releasesBySession(ops)
	perName := byName(ops)
	for _, n := range names(ops) {
		on := perName[n] // sorted by Call
		reported := map[int]bool{}
		for _, hd := range holds(n, on, releases) {
			first := sort.Search(len(on), func(i int) bool { return on[i].Call >= hd.from })
			for _, y := range on[first:] {
				if y.Call >= hd.until {
					break
				}
				if y.Return >= hd.until || reported[y.id] {
					continue
				}
				if why := contradicts(hd, y); why != "" {
					reported[y.id] = true
					c.Violations = append(c.Violations, lostViolation(n, hd, y, why))
				}
			}
		}
	}
	return c
}

// contradicts says how y, which took effect while hd certainly held its
// name, shows the grant lost; "" if it does not.
func contradicts(hd hold, y rec) string {
	own := y.Session == hd.session
	switch {
	case y.grant() && !own:
		return fmt.Sprintf("was granted to session %s (client %d) with token %s", y.Session, y.Client, tokenString(y.Token))
	case y.grant() && own:
		if t := holdToken(hd); t != 0 && y.Token != 0 && y.Token != t {
			return fmt.Sprintf("was re-granted to its holder with token %d instead of %d", y.Token, t)
		}
	case y.Kind == Unlock && y.Status == NotLocked:
		return fmt.Sprintf("was reported not_locked to session %s (client %d)", y.Session, y.Client)
	case y.Kind == Unlock && y.Status == Unlocked && !own:
		return fmt.Sprintf("was unlocked by session %s (client %d)", y.Session, y.Client)
	case y.Kind == Unlock && y.Status == NotYours && own:
		return "was reported not_yours to its holder"
	case (y.Kind == Lock || y.Kind == LockWait) && y.Status == Unavailable && own:
		return "was refused (409) to its holder"
	}
	return ""
}

// holdToken returns the token of the first grant of hd that knows it.
func holdToken(hd hold) uint64 {
	for _, g := range hd.grants {
		if g.Token != 0 {
			return g.Token
		}
	}
	return 0
}

func tokenString(t uint64) string {
	if t == 0 {
		return "?"
	}
	return fmt.Sprint(t)
}

func lostViolation(name string, hd hold, y rec, why string) Violation {
	msg := fmt.Sprintf("lock %q: grant lost: %s; yet it %s: #%d %s", name, hd, why, y.id, y.Operation)
	ops := append(append([]rec{}, hd.grants...), y)
	if hd.end != nil {
		ops = append(ops, *hd.end)
	}
	return violation(name, msg, ops...)
}
