package history

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"

	"github.com/anishathalye/porcupine"
)

// State is the sequential model of one lock name: who holds it, in which
// mode, with which token, and what the next new grant's token must
// exceed. A name is a lock (held exclusively by one session, or shared by
// several) or a semaphore (its permits held by up to LIMIT sessions); the
// model needs not know which, as a history asks for a name only as one
// kind (a request of the other kind is refused with 400, which the
// workload treats as a protocol error).
type State struct {
	// Holder is the session holding the name exclusively; "" if none.
	Holder string
	// Token is the exclusive holder's fencing token; 0 when there is none
	// or it is not known (the grant's outcome was unknown, or its client
	// did not learn the token).
	Token uint64
	// Shared is the set of sessions holding the name shared, or holding
	// one of its permits, with their tokens (0: not known), in the
	// canonical form sharedSet gives it, so that equal sets are equal
	// strings: porcupine caches states by value.
	Shared string
	// Last is a lower bound on the last token granted for the name: every
	// new grant's token must be above it. A grant with an unknown token t
	// satisfies t > Last, so it raises Last by one, which keeps the bound
	// sound for integer tokens.
	Last uint64
}

func (s State) String() string {
	switch {
	case s.Holder != "":
		return fmt.Sprintf("held by %s, token %s (last token >= %d)", s.Holder, tokenString(s.Token), s.Last)
	case s.Shared != "":
		var parts []string
		for _, x := range s.sharers() {
			parts = append(parts, fmt.Sprintf("%s (token %s)", x.session, tokenString(x.token)))
		}
		return fmt.Sprintf("held shared or as permits by %s (last token >= %d)", strings.Join(parts, ", "), s.Last)
	}
	return fmt.Sprintf("free (last token >= %d)", s.Last)
}

// sharer is a session of State.Shared and its token.
type sharer struct {
	session string
	token   uint64
}

// sharedSet encodes sharers, sorted by session, as State.Shared: each
// "session\x01token\x00". Validate refuses sessions with either byte.
func sharedSet(xs []sharer) string {
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(x.session)
		b.WriteByte(1)
		b.WriteString(strconv.FormatUint(x.token, 10))
		b.WriteByte(0)
	}
	return b.String()
}

// sharers decodes Shared.
func (s State) sharers() []sharer {
	var xs []sharer
	for e := range strings.SplitSeq(strings.TrimSuffix(s.Shared, "\x00"), "\x00") {
		if e == "" {
			continue
		}
		i := strings.IndexByte(e, 1)
		tok, _ := strconv.ParseUint(e[i+1:], 10, 64)
		xs = append(xs, sharer{session: e[:i], token: tok})
	}
	return xs
}

// shares reports whether session holds the name shared or a permit, and
// its token.
func (s State) shares(session string) (token uint64, ok bool) {
	i := strings.Index("\x00"+s.Shared, "\x00"+session+"\x01")
	if i < 0 {
		return 0, false
	}
	rest := s.Shared[i+len(session)+1:]
	tok, _ := strconv.ParseUint(rest[:strings.IndexByte(rest, 0)], 10, 64)
	return tok, true
}

// holds reports whether session holds the name in any mode.
func (s State) holds(session string) bool {
	_, shared := s.shares(session)
	return s.Holder == session || shared
}

// others reports whether a session other than session holds the name.
func (s State) others(session string) bool {
	n := s.nShared()
	if _, ok := s.shares(session); ok {
		n--
	}
	return s.Holder != "" && s.Holder != session || n > 0
}

// nShared is how many sessions hold the name shared or a permit.
func (s State) nShared() int { return strings.Count(s.Shared, "\x00") }

func (s State) free() bool { return s.Holder == "" && s.Shared == "" }

// Step is the sequential specification of one lock name. It reports
// whether a session's operation o could have produced its result in state
// s, and the state after it. o.Status Unknown means "happened, whatever its
// answer was": not happening at all is the same as taking effect after
// every other operation, which porcupine may choose because an unknown
// operation never returns.
//
//   - lock, lock_wait by session S:
//     Acquired T: if S holds exclusively, re-entrant: T is S's token (when
//     both known); if free, a new grant: T > Last (T unknown raises Last
//     by one); otherwise impossible (S holding shared is told
//     no_upgrade).
//     Unavailable: S holds nothing and another session holds the name,
//     in any mode. (A lock_wait that timed out is taken as one instant at
//     which another session held.)
//     NoUpgrade: S holds the name shared.
//     Unknown: a grant if free, else nothing.
//   - rlock, rlock_wait by S:
//     Acquired T: if S holds exclusively, re-entrant as for lock; if
//     another session does, impossible; if S holds shared, re-entrant: T
//     is S's token (when both known; a token first shown here may be
//     below Last, as other shared grants may have come since, and raises
//     Last to it at least); else a new shared grant: T > Last.
//     Unavailable: S holds nothing and another session holds the name. A
//     waiting exclusive request holds back later shared ones, so a 409 is
//     possible while only shared holders hold; the model does not keep
//     waiters, so it allows a 409 whenever someone else holds.
//     Unknown: a shared grant unless S holds or another session holds
//     exclusively, else nothing.
//   - acquire, acquire_wait of LIMIT L by S:
//     Acquired T: if S holds a permit, re-entrant as for rlock; if fewer
//     than L sessions hold one, a new permit: T > Last; else impossible.
//     Unavailable: S holds none and another session holds one (waiters
//     queue behind holders, so a 409 needs a holder; the model allows it
//     below L holders, because a waiter ahead holds it back).
//     Unknown: a permit if S holds none and fewer than L do, else nothing.
//   - unlock by S: Unlocked if S holds, in any mode, then S's hold is
//     released; NotYours if S holds nothing and another session holds;
//     NotLocked if nobody holds. Unknown: releases S's hold if any.
//   - unlock_all, expire of S: releases S's hold if any; always possible.
//   - drop of S's name: releases S's hold if any; CheckLinearizable lets
//     it take effect at any time after its call, or in effect never, as
//     the server may or may not release (see Drop).
//     Names are independent: unlock_all and expiry are checked per name as
//     "release if held by S", not as one atomic step over all names,
//     because names live on different owner nodes.
func Step(s State, o Operation) (bool, State) {
	switch o.Kind.Mode() {
	case Exclusive:
		switch o.Status {
		case Acquired:
			switch {
			case s.Holder == o.Session:
				return reenter(s, o.Token)
			case s.free():
				return grant(s, o.Session, o.Token)
			}
			return false, s
		case Unavailable:
			return !s.holds(o.Session) && s.others(o.Session), s
		case NoUpgrade:
			_, ok := s.shares(o.Session)
			return ok, s
		case Unknown:
			if s.free() {
				return grant(s, o.Session, 0)
			}
			return true, s
		}
		return false, s
	case Shared, Permit:
		switch o.Status {
		case Acquired:
			switch {
			case s.Holder == o.Session && o.Kind.Mode() == Shared:
				return reenter(s, o.Token)
			case s.Holder != "":
				return false, s
			}
			if tok, ok := s.shares(o.Session); ok {
				return reshare(s, o.Session, tok, o.Token)
			}
			switch {
			case o.Kind.Mode() == Permit && s.nShared() >= o.Limit:
				return false, s
			}
			return share(s, o.Session, o.Token)
		case Unavailable:
			return !s.holds(o.Session) && s.others(o.Session), s
		case Unknown:
			if _, held := s.shares(o.Session); s.Holder == "" && !held && (o.Kind.Mode() == Shared || s.nShared() < o.Limit) {
				return share(s, o.Session, 0)
			}
			return true, s
		}
		return false, s
	}
	switch o.Kind {
	case Unlock:
		switch o.Status {
		case Unlocked:
			if !s.holds(o.Session) {
				return false, s
			}
			return true, release(s, o.Session)
		case NotYours:
			return !s.holds(o.Session) && s.others(o.Session), s
		case NotLocked:
			return s.free(), s
		case Unknown:
			return true, release(s, o.Session)
		}
	case UnlockAll, Expire, Drop:
		// Drop is per name: it only ever sees its own name's state.
		return true, release(s, o.Session)
	}
	return false, s
}

// reenter is a grant to the exclusive holder of s, showing token (0:
// unknown).
func reenter(s State, token uint64) (bool, State) {
	if token == 0 {
		return true, s
	}
	if s.Token == 0 {
		// The holder's grant had an unknown token t; t was the last
		// grant, as nothing is granted beside an exclusive one, so
		// t >= Last.
		if token < s.Last {
			return false, s
		}
		s.Token, s.Last = token, token
		return true, s
	}
	return token == s.Token, s
}

// grant is a new exclusive grant to session.
func grant(s State, session string, token uint64) (bool, State) {
	if token == 0 {
		return true, State{Holder: session, Last: s.Last + 1}
	}
	if token <= s.Last {
		return false, s
	}
	return true, State{Holder: session, Token: token, Last: token}
}

// share is a new shared grant, or a new permit, to session.
func share(s State, session string, token uint64) (bool, State) {
	switch {
	case token == 0:
		s.Last++
	case token <= s.Last:
		return false, s
	default:
		s.Last = token
	}
	xs := s.sharers()
	i, _ := slices.BinarySearchFunc(xs, session, func(x sharer, t string) int { return strings.Compare(x.session, t) })
	s.Shared = sharedSet(slices.Insert(xs, i, sharer{session, token}))
	return true, s
}

// reshare is a re-entrant grant to a shared or permit holder whose token
// is held (0: unknown), showing token (0: unknown).
func reshare(s State, session string, held, token uint64) (bool, State) {
	switch {
	case token == 0:
		return true, s
	case held != 0:
		return token == held, s
	}
	// The grant's token is revealed. Other grants may have come since,
	// so it may be below Last; it was granted, so Last is at least it.
	xs := s.sharers()
	for i := range xs {
		if xs[i].session == session {
			xs[i].token = token
		}
	}
	s.Shared, s.Last = sharedSet(xs), max(s.Last, token)
	return true, s
}

// release ends whatever session holds.
func release(s State, session string) State {
	if s.Holder == session {
		return State{Last: s.Last}
	}
	if _, ok := s.shares(session); ok {
		s.Shared = sharedSet(slices.DeleteFunc(s.sharers(), func(x sharer) bool { return x.session == session }))
	}
	return s
}

// input is a porcupine operation's input.
type input struct {
	Operation
	// pred is the largest token below Token that some grant of the name
	// carries; 0 if none, or if the operation carries no token.
	pred uint64
}

// pstate is the state porcupine explores: the model's, and the largest
// token that has appeared in an Acquired result so far.
type pstate struct {
	State
	seen uint64
}

// step is Step with one pruning rule, which keeps porcupine from
// exploring orders bound to fail; it accepts exactly the histories Step
// accepts. The first grant that shows token T needs every smaller token
// the history shows for the name to have appeared already: one that
// appeared later would be a new grant or the reveal of an unknown token,
// and Step rejects both unless the token is at least Last, which is at
// least T by then.
func step(s pstate, in input) (bool, pstate) {
	if in.Status == Acquired && in.Token > s.seen && in.pred > s.seen {
		return false, s
	}
	ok, next := Step(s.State, in.Operation)
	seen := s.seen
	if ok && in.Status == Acquired {
		seen = max(seen, in.Token)
	}
	return ok, pstate{State: next, seen: seen}
}

// meta is a porcupine operation's metadata: which operation it is.
type meta struct {
	id      int
	session string
}

// model is the porcupine model of one name, partitioned by parts.
func model(parts [][]porcupine.Operation) porcupine.Model {
	seed := maphash.MakeSeed()
	return porcupine.Model{
		Partition: func([]porcupine.Operation) [][]porcupine.Operation { return parts },
		Init:      func() any { return pstate{} },
		Step: func(s, in, out any) (bool, any) {
			o := in.(input)
			o.Result = out.(Result)
			return step(s.(pstate), o)
		},
		Hash: func(s any) uint64 { return maphash.Comparable(seed, s.(pstate)) },
		DescribeOperation: func(in, out any) string {
			o := in.(input)
			o.Result = out.(Result)
			return o.describe()
		},
		DescribeState: func(s any) string { return s.(pstate).State.String() },
		DescribeOperationMetadata: func(m any) string {
			if m == nil {
				return ""
			}
			x := m.(meta)
			return fmt.Sprintf("#%d session %s", x.id, x.session)
		},
	}
}
