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
// see the name held by that session, in the grant's mode:
//
//   - no other session is granted the name if the hold is exclusive, nor
//     exclusively if it is shared (other shared holders and other
//     permits are no sign of a loss; CheckPermits counts permits);
//   - no one is told not_locked;
//   - no other session unlocks an exclusive hold, or is told no_upgrade
//     (it would hold the name shared);
//   - the holder is not told 409 or not_yours, nor no_upgrade while it
//     holds exclusively, and a re-entrant grant carries the holder's
//     token.
//
// CheckOverlap and CheckLinearizable catch most of these too; this checker
// names the grant that was lost and the operation that shows it.
func CheckLostGrants(h []Operation) Check {
	c, ops, perName, releases, ok := byHolds("lost-grants", h)
	if !ok {
		return c
	}
	var count holdCount
	for _, n := range names(ops) {
		on := perName[n] // sorted by Call
		reported := map[int]bool{}
		hs := holds(n, on, releases)
		count.add(hs)
		for _, hd := range hs {
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
	c.Note = count.String()
	return c
}

// contradicts says how y, which took effect while hd certainly held its
// name, shows the grant lost; "" if it does not.
func contradicts(hd hold, y rec) string {
	own := y.Session == hd.session
	// covered: y asks for what hd already holds, so the server must
	// answer it as re-entrant, with hd's token. An exclusive hold covers
	// an rlock too.
	covered := own && (y.Kind.Mode() == hd.mode || hd.mode == Exclusive && y.Kind.Mode() == Shared)
	switch {
	case y.grant() && !own && (hd.mode == Exclusive || hd.mode == Shared && y.Kind.Mode() == Exclusive):
		return fmt.Sprintf("was granted %s to session %s (client %d) with token %s", y.Kind.Mode(), y.Session, y.Client, tokenString(y.Token))
	case y.grant() && covered:
		if t := holdToken(hd); t != 0 && y.Token != 0 && y.Token != t {
			return fmt.Sprintf("was re-granted to its holder with token %d instead of %d", y.Token, t)
		}
	case y.Kind == Unlock && y.Status == NotLocked:
		return fmt.Sprintf("was reported not_locked to session %s (client %d)", y.Session, y.Client)
	case y.Kind == Unlock && y.Status == Unlocked && !own && hd.mode == Exclusive:
		return fmt.Sprintf("was unlocked by session %s (client %d)", y.Session, y.Client)
	case y.Kind == Unlock && y.Status == NotYours && own:
		return "was reported not_yours to its holder"
	case y.Status == Unavailable && covered:
		return "was refused (409) to its holder"
	case y.Status == NoUpgrade && own && hd.mode == Exclusive:
		return "was refused as an upgrade (no_upgrade) to its exclusive holder"
	case y.Status == NoUpgrade && !own && hd.mode == Exclusive:
		return fmt.Sprintf("was refused as an upgrade (no_upgrade) to session %s (client %d), which would hold it shared", y.Session, y.Client)
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
