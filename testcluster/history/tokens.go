package history

import (
	"fmt"
	"slices"
)

// CheckTokens checks the fencing tokens of acknowledged grants, per name,
// across every mode (exclusive, shared and permits draw from one
// sequence):
//
//   - a token is never granted to two sessions;
//   - a grant that certainly came after another (its Call after the
//     other's Return) carries a token at least as large, and larger when
//     it went to another session. Equal tokens are a re-entrant grant.
//
// Grants whose token the client did not learn (0) are skipped. Where a
// name is also granted shared or as permits, a re-entrant grant may come
// after other sessions' grants and show the older token its session was
// granted before them: a grant whose session may already have held the
// name (an earlier request of it with an unknown outcome or token, or
// with the same token) is not held to the order.
func CheckTokens(h []Operation) Check {
	const checker = "tokens"
	ops, err := prepare(h)
	if err != nil {
		return malformed(checker, len(h), err)
	}
	c := Check{Checker: checker, Ops: len(ops)}
	perName := byName(ops)
	granted := 0
	for _, n := range names(ops) {
		var grants []rec
		for _, o := range perName[n] {
			if o.grant() && o.Token != 0 {
				grants = append(grants, o)
			}
		}
		granted += len(grants)
		reentrant := mayReenter(perName[n])
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
			if top != nil && g.Token < top.Token && !reentrant[g.id] {
				c.Violations = append(c.Violations, violation(n, fmt.Sprintf(
					"lock %q: token went backwards: session %s (client %d) was granted token %d by #%d (call %s, reply %s) after session %s (client %d) had been granted token %d by #%d (call %s, reply %s)",
					n, g.Session, g.Client, g.Token, g.id, stamp(g.Call), stamp(g.Return), top.Session, top.Client, top.Token, top.id, stamp(top.Call), stamp(top.Return)), *top, g))
			}
		}
	}
	c.Note = fmt.Sprintf("%d grants with a known token", granted)
	return c
}

// mayReenter returns the grants of ops (one name's operations, in Call
// order) that may be re-entrant grants showing an older token after
// other sessions' grants: those of a session with an earlier request for
// the name whose outcome or token is unknown, or whose token is the same.
// It is empty unless the name has a shared or permit grant, or a request
// for one of unknown outcome: an exclusive holder keeps everyone else
// out, so its re-entrant grant shows the latest token.
func mayReenter(ops []rec) map[int]bool {
	sharing := false
	for _, o := range ops {
		if o.Kind.Takes() && o.Kind.Mode() != Exclusive && (o.Status == Acquired || o.Status == Unknown) {
			sharing = true
			break
		}
	}
	out := map[int]bool{}
	if !sharing {
		return out
	}
	// seen[session] holds the tokens that session was shown so far; 0
	// stands for an unknown one.
	seen := map[string]map[uint64]bool{}
	for _, o := range ops {
		if !o.Kind.Takes() || (o.Status != Acquired && o.Status != Unknown) {
			continue
		}
		s := seen[o.Session]
		if s == nil {
			s = map[uint64]bool{}
			seen[o.Session] = s
		}
		if o.grant() && o.Token != 0 && (s[0] || s[o.Token]) {
			out[o.id] = true
		}
		tok := o.Token
		if o.Status == Unknown {
			tok = 0
		}
		s[tok] = true
	}
	return out
}
