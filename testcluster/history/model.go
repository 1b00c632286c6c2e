package history

import (
	"fmt"
	"hash/maphash"
	"strconv"

	"github.com/anishathalye/porcupine"
)

// State is the sequential model of one lock name: who holds it, with which
// token, and what the next new grant's token must exceed.
type State struct {
	// Holder is the session holding the name; "" when free.
	Holder string
	// Token is the holder's fencing token; 0 when free or not known (the
	// grant's outcome was unknown, or its client did not learn the token).
	Token uint64
	// Last is a lower bound on the last token granted for the name: every
	// new grant's token must be above it. A grant with an unknown token t
	// satisfies t > Last, so it raises Last by one, which keeps the bound
	// sound for integer tokens.
	Last uint64
}

func (s State) String() string {
	if s.Holder == "" {
		return fmt.Sprintf("free (last token >= %d)", s.Last)
	}
	tok := "?"
	if s.Token != 0 {
		tok = strconv.FormatUint(s.Token, 10)
	}
	return fmt.Sprintf("held by %s, token %s (last token >= %d)", s.Holder, tok, s.Last)
}

// Step is the sequential specification of one lock name. It reports
// whether a session's operation o could have produced its result in state
// s, and the state after it. o.Status Unknown means "happened, whatever its
// answer was": not happening at all is the same as taking effect after
// every other operation, which porcupine may choose because an unknown
// operation never returns.
//
//   - lock, lock_wait by session S:
//     Acquired T: if S holds, re-entrant: T is S's token (when both known);
//     if free, a new grant: T > Last (T unknown raises Last by one);
//     if another session holds, impossible.
//     Unavailable: another session holds. (A lock_wait that timed out is
//     taken as one instant at which another session held.)
//     Unknown: a grant if free, else nothing.
//   - unlock by S: Unlocked if S holds, then free; NotYours if another
//     session holds; NotLocked if free. Unknown: frees if S holds.
//   - unlock_all, expire of S: frees the name if S holds; always possible.
//     Names are independent: unlock_all and expiry are checked per name as
//     "release if held by S", not as one atomic step over all names,
//     because names live on different owner nodes.
func Step(s State, o Operation) (bool, State) {
	switch o.Kind {
	case Lock, LockWait:
		switch o.Status {
		case Acquired:
			switch {
			case s.Holder == o.Session:
				if o.Token == 0 {
					return true, s
				}
				if s.Token == 0 {
					// The holder's grant had an unknown token t; t was
					// the last grant, so t >= Last.
					if o.Token < s.Last {
						return false, s
					}
					return true, State{Holder: s.Holder, Token: o.Token, Last: o.Token}
				}
				return o.Token == s.Token, s
			case s.Holder == "":
				return grant(s, o.Session, o.Token)
			}
			return false, s
		case Unavailable:
			return s.Holder != "" && s.Holder != o.Session, s
		case Unknown:
			if s.Holder == "" {
				return grant(s, o.Session, 0)
			}
			return true, s
		}
	case Unlock:
		switch o.Status {
		case Unlocked:
			if s.Holder != o.Session {
				return false, s
			}
			return true, State{Last: s.Last}
		case NotYours:
			return s.Holder != "" && s.Holder != o.Session, s
		case NotLocked:
			return s.Holder == "", s
		case Unknown:
			return true, release(s, o.Session)
		}
	case UnlockAll, Expire, Drop:
		// Drop is per name: it only ever sees its own name's state.
		return true, release(s, o.Session)
	}
	return false, s
}

func grant(s State, session string, token uint64) (bool, State) {
	if token == 0 {
		return true, State{Holder: session, Last: s.Last + 1}
	}
	if token <= s.Last {
		return false, s
	}
	return true, State{Holder: session, Token: token, Last: token}
}

func release(s State, session string) State {
	if s.Holder != session {
		return s
	}
	return State{Last: s.Last}
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
