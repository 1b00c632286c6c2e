package history

import (
	"fmt"
	"slices"
)

// CheckTokens checks the fencing tokens of acknowledged grants, per name:
//
//   - a token is never granted to two sessions;
//   - a grant that certainly came after another (its Call after the
//     other's Return) carries a token at least as large, and larger when
//     it went to another session. Equal tokens are a re-entrant grant.
//
// Grants whose token the client did not learn (0) are skipped.
func CheckTokens(h []Operation) Check {
	const checker = "tokens"
	ops, err := prepare(h)
	if err != nil {
		return malformed(checker, len(h), err)
	}
	c := Check{Checker: checker, Ops: len(ops)}
	perName := byName(ops)
	for _, n := range names(ops) {
		var grants []rec
		for _, o := range perName[n] {
			if o.grant() && o.Token != 0 {
				grants = append(grants, o)
			}
		}
		// Duplicates: the first grant of each token, per token.
		first := map[uint64]rec{}
		for _, g := range grants {
			f, ok := first[g.Token]
			if !ok {
				first[g.Token] = g
				continue
			}
			if f.Session != g.Session {
				c.Violations = append(c.Violations, violation(n, fmt.Sprintf(
					"lock %q: token %d granted to two sessions: %s (client %d) by #%d (call %s, reply %s) and %s (client %d) by #%d (call %s, reply %s)",
					n, g.Token, f.Session, f.Client, f.id, stamp(f.Call), stamp(f.Return), g.Session, g.Client, g.id, stamp(g.Call), stamp(g.Return)), f, g))
			}
		}
		// Order: sweep grants by Call; keep the largest token among those
		// that returned before the current Call.
		byReturn := slices.Clone(grants)
		slices.SortStableFunc(byReturn, func(a, b rec) int { return cmpTime(a.Return, b.Return) })
		var top *rec
		j := 0
		for _, g := range grants {
			for j < len(byReturn) && byReturn[j].Return < g.Call {
				if top == nil || byReturn[j].Token > top.Token {
					top = &byReturn[j]
				}
				j++
			}
			if top != nil && g.Token < top.Token {
				c.Violations = append(c.Violations, violation(n, fmt.Sprintf(
					"lock %q: token went backwards: session %s (client %d) was granted token %d by #%d (call %s, reply %s) after session %s (client %d) had been granted token %d by #%d (call %s, reply %s)",
					n, g.Session, g.Client, g.Token, g.id, stamp(g.Call), stamp(g.Return), top.Session, top.Client, top.Token, top.id, stamp(top.Call), stamp(top.Return)), *top, g))
			}
		}
	}
	return c
}
