package history

import (
	"strings"
	"testing"
)

// Histories of shared locks (rlock beside lock) and of semaphores
// (acquire), for TestCheckers. Name "r" is a lock taken shared and
// exclusively; "s" is a semaphore of 2 permits unless a case says
// otherwise.

var sharedCases = []checkCase{
	{
		name: "two shared holders at once",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			rl(1, B, "r", 5, 15, Acquired, 2),
			ul(0, A, "r", 20, 30, Unlocked),
			ul(1, B, "r", 20, 30, Unlocked),
			lk(2, C, "r", 40, 50, Acquired, 3),
		},
	},
	{
		name: "exclusive grant while a shared holder holds",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			lk(1, B, "r", 20, 30, Acquired, 2),
		},
		fail: "overlap lost lin",
	},
	{
		name: "shared grant while an exclusive holder holds",
		h: []Operation{
			lk(0, A, "r", 0, 10, Acquired, 1),
			rl(1, B, "r", 20, 30, Acquired, 2),
		},
		fail: "overlap lost lin",
	},
	{
		name: "exclusive grant after one of two shared holders released",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			rl(1, B, "r", 5, 15, Acquired, 2),
			ul(0, A, "r", 20, 30, Unlocked),
			lk(2, C, "r", 40, 50, Acquired, 3),
		},
		fail: "overlap lost lin",
	},
	{
		name: "rlock_wait handed over by the exclusive holder's unlock",
		h: []Operation{
			lk(0, A, "r", 0, 10, Acquired, 1),
			rw(1, B, "r", 5, 20, 60, Acquired, 2),
			ul(0, A, "r", 40, 50, Unlocked),
		},
	},
	{
		// C's waiting lock holds back B's rlock although only A holds
		// the name, shared.
		name: "409 to an rlock behind a waiting exclusive request",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			lw(2, C, "r", 5, 12, 80, Acquired, 2),
			rl(1, B, "r", 20, 30, Unavailable, 0),
			ul(0, A, "r", 50, 60, Unlocked),
		},
	},
	{
		name: "409 to an rlock while nobody holds",
		h: []Operation{
			rl(1, B, "r", 0, 10, Unavailable, 0),
		},
		fail: "lin",
	},
	{
		name: "409 to an rlock by its shared holder",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			rl(1, B, "r", 5, 15, Acquired, 2),
			rl(0, A, "r", 20, 30, Unavailable, 0),
		},
		fail: "lost lin",
	},
	{
		name: "no_upgrade to a shared holder",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			lk(0, A, "r", 20, 30, NoUpgrade, 0),
			ul(0, A, "r", 40, 50, Unlocked),
			lk(0, A, "r", 60, 70, Acquired, 2),
		},
	},
	{
		name: "no_upgrade to a session that holds nothing",
		h: []Operation{
			lk(0, A, "r", 0, 10, NoUpgrade, 0),
		},
		fail: "lin",
	},
	{
		name: "no_upgrade to the exclusive holder",
		h: []Operation{
			lk(0, A, "r", 0, 10, Acquired, 1),
			lk(0, A, "r", 20, 30, NoUpgrade, 0),
		},
		fail: "lost lin",
	},
	{
		name: "no_upgrade to another session while one holds exclusively",
		h: []Operation{
			lk(0, A, "r", 0, 10, Acquired, 1),
			lk(1, B, "r", 20, 30, NoUpgrade, 0),
		},
		fail: "lost lin",
	},
	{
		name: "an exclusive grant to a shared holder",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			lk(0, A, "r", 20, 30, Acquired, 2),
		},
		fail: "lin",
	},
	{
		name: "rlock by the exclusive holder is re-entrant",
		h: []Operation{
			lk(0, A, "r", 0, 10, Acquired, 1),
			rl(0, A, "r", 20, 30, Acquired, 1),
			ul(0, A, "r", 40, 50, Unlocked),
			lk(1, B, "r", 60, 70, Acquired, 2),
		},
	},
	{
		name: "rlock by the exclusive holder with a new token",
		h: []Operation{
			lk(0, A, "r", 0, 10, Acquired, 1),
			rl(0, A, "r", 20, 30, Acquired, 2),
		},
		fail: "lost lin",
	},
	{
		name: "re-entrant rlock with a new token",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			rl(0, A, "r", 20, 30, Acquired, 3),
		},
		fail: "lost lin",
	},
	{
		// A's second rlock is re-entrant: it shows the token A had
		// before B's grant.
		name: "re-entrant rlock showing an older token after another's grant",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			rl(1, B, "r", 20, 30, Acquired, 2),
			rl(0, A, "r", 40, 50, Acquired, 1),
		},
	},
	{
		// A's first rlock took effect with token 1 unbeknown to A; its
		// second is re-entrant and shows token 1 after B's token 2.
		name: "re-entrant rlock revealing an unknown token after another's grant",
		h: []Operation{
			rl(0, A, "r", 0, U, Unknown, 0),
			rl(1, B, "r", 20, 30, Acquired, 2),
			rl(0, A, "r", 40, 50, Acquired, 1),
		},
	},
	{
		name: "a shared holder told not_yours",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			ul(0, A, "r", 20, 30, NotYours),
		},
		fail: "lost lin",
	},
	{
		name: "not_locked while a shared holder holds",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			ul(1, B, "r", 20, 30, NotLocked),
		},
		fail: "lost lin",
	},
	{
		name: "shared holders unlock their own, others are told not_yours",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			rl(1, B, "r", 5, 15, Acquired, 2),
			ul(2, C, "r", 20, 30, NotYours),
			ul(1, B, "r", 20, 30, Unlocked),
			ul(0, A, "r", 40, 50, Unlocked),
			ul(2, C, "r", 60, 70, NotLocked),
		},
	},
	{
		name: "one token for two shared holders",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 5),
			rl(1, B, "r", 20, 30, Acquired, 5),
		},
		fail: "tokens lin",
	},
	{
		name: "shared token going backwards after an exclusive grant",
		h: []Operation{
			lk(0, A, "r", 0, 10, Acquired, 5),
			ul(0, A, "r", 20, 30, Unlocked),
			rl(1, B, "r", 40, 50, Acquired, 3),
		},
		fail: "tokens lin",
	},
	{
		name: "a shared holder's expiry lets an exclusive request in",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			ex(0, A, 5, 105),
			lk(1, B, "r", 110, 120, Acquired, 2),
		},
	},
	{
		name: "an exclusive grant before a shared holder could expire",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			ex(0, A, 5, 105),
			lk(1, B, "r", 50, 60, Acquired, 2),
		},
		fail: "overlap lost lin",
	},
	{
		name: "unlock_all releasing a shared and an exclusive hold",
		h: []Operation{
			rl(0, A, "r", 0, 10, Acquired, 1),
			lk(0, A, "a", 10, 20, Acquired, 1),
			ua(0, A, 30, 40, OK),
			lk(1, B, "r", 50, 60, Acquired, 2),
			lk(1, B, "a", 60, 70, Acquired, 2),
		},
	},
	{
		name: "an undelivered shared grant dropped before the resume",
		h: []Operation{
			rw(0, A, "r", 5, 0, U, Unknown, 0),
			dr(0, A, "r", 0, 40),
			lk(1, B, "r", 50, 60, Acquired, 2),
			rs(0, A, 30, 40, OK),
		},
	},
}

var permitCases = []checkCase{
	{
		name: "LIMIT holders at once",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(1, B, "s", 2, 5, 15, Acquired, 2),
			aq(2, C, "s", 2, 20, 30, Unavailable, 0),
		},
	},
	{
		name: "LIMIT+1 holders at once",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(1, B, "s", 2, 5, 15, Acquired, 2),
			aq(2, C, "s", 2, 20, 30, Acquired, 3),
		},
		fail: "permits lin",
	},
	{
		name: "a semaphore of one permit granted twice",
		h: []Operation{
			aq(0, A, "s", 1, 0, 10, Acquired, 1),
			aq(1, B, "s", 1, 20, 30, Acquired, 2),
		},
		fail: "permits lin",
	},
	{
		name: "a permit after another was released",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(1, B, "s", 2, 5, 15, Acquired, 2),
			ul(0, A, "s", 20, 30, Unlocked),
			aq(2, C, "s", 2, 40, 50, Acquired, 3),
		},
	},
	{
		name: "a permit concurrent with a release",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(1, B, "s", 2, 5, 15, Acquired, 2),
			ul(0, A, "s", 20, 30, Unlocked),
			aq(2, C, "s", 2, 25, 35, Acquired, 3),
		},
	},
	{
		name: "acquire_wait handed a permit by an unlock",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(1, B, "s", 2, 5, 15, Acquired, 2),
			aw(2, C, "s", 2, 5, 20, 60, Acquired, 3),
			ul(0, A, "s", 40, 50, Unlocked),
		},
	},
	{
		name: "acquire_wait granted before any permit was released",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(1, B, "s", 2, 5, 15, Acquired, 2),
			aw(2, C, "s", 2, 5, 20, 35, Acquired, 3),
			ul(0, A, "s", 40, 50, Unlocked),
		},
		fail: "permits lin",
	},
	{
		name: "409 while every permit is free",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Unavailable, 0),
		},
		fail: "lin",
	},
	{
		// Waiters queue behind holders: a 409 below LIMIT holders means
		// one waits ahead.
		name: "409 below LIMIT holders",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(1, B, "s", 2, 20, 30, Unavailable, 0),
		},
	},
	{
		name: "409 to a permit holder",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(0, A, "s", 2, 20, 30, Unavailable, 0),
		},
		fail: "lost lin",
	},
	{
		name: "re-entrant acquire keeps its token",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(0, A, "s", 2, 20, 30, Acquired, 1),
			aq(1, B, "s", 2, 40, 50, Acquired, 2),
		},
	},
	{
		name: "re-entrant acquire with a new token",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(0, A, "s", 2, 20, 30, Acquired, 3),
		},
		fail: "lost lin",
	},
	{
		name: "not_locked while a permit is held",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			ul(1, B, "s", 20, 30, NotLocked),
		},
		fail: "lost lin",
	},
	{
		name: "a permit holder told not_yours",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			ul(0, A, "s", 20, 30, NotYours),
		},
		fail: "lost lin",
	},
	{
		name: "one token for two permits",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 4),
			aq(1, B, "s", 2, 20, 30, Acquired, 4),
		},
		fail: "tokens lin",
	},
	{
		name: "a permit holder's expiry frees its permit",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(1, B, "s", 2, 5, 15, Acquired, 2),
			ex(0, A, 5, 105),
			aq(2, C, "s", 2, 110, 120, Acquired, 3),
		},
	},
	{
		name: "a permit taken before its holder could expire",
		h: []Operation{
			aq(0, A, "s", 2, 0, 10, Acquired, 1),
			aq(1, B, "s", 2, 5, 15, Acquired, 2),
			ex(0, A, 5, 105),
			aq(2, C, "s", 2, 50, 60, Acquired, 3),
		},
		fail: "permits lin",
	},
	{
		name: "an indeterminate acquire that did not happen",
		h: []Operation{
			aq(0, A, "s", 2, 0, U, Unknown, 0),
			aq(1, B, "s", 2, 10, 20, Acquired, 1),
			aq(2, C, "s", 2, 30, 40, Acquired, 2),
		},
	},
	{
		name: "an indeterminate acquire that shows as held",
		h: []Operation{
			aq(0, A, "s", 2, 0, U, Unknown, 0),
			aq(1, B, "s", 2, 10, 20, Acquired, 2),
			aq(2, C, "s", 2, 30, 40, Unavailable, 0),
			aq(0, A, "s", 2, 50, 60, Acquired, 1),
		},
	},
}

func TestStepModes(t *testing.T) {
	op := func(kind Kind, session string, st Status, tok uint64) Operation {
		return Operation{Op: Op{Kind: kind, Session: session, Name: "r", Limit: 2}, Result: Result{Status: st, Token: tok}}
	}
	shared := func(last uint64, xs ...sharer) State {
		return State{Shared: sharedSet(xs), Last: last}
	}
	free := State{Last: 4}
	excl := State{Holder: A, Token: 4, Last: 4}
	a5, a0, a7, b6, b0, b5 := sharer{A, 5}, sharer{A, 0}, sharer{A, 7}, sharer{B, 6}, sharer{B, 0}, sharer{B, 5}
	for _, tc := range []struct {
		s    State
		o    Operation
		ok   bool
		next State
	}{
		{free, op(RLock, A, Acquired, 5), true, shared(5, a5)},
		{free, op(RLock, A, Acquired, 4), false, free},
		{free, op(RLockWait, A, Acquired, 0), true, shared(5, a0)},
		{free, op(RLock, A, Unavailable, 0), false, free},
		{free, op(RLock, A, Unknown, 0), true, shared(5, a0)},
		{shared(5, a5), op(RLock, B, Acquired, 6), true, shared(6, a5, b6)},
		{shared(5, b5), op(RLock, A, Acquired, 6), true, shared(6, sharer{A, 6}, b5)}, // kept sorted
		{shared(5, a5), op(RLock, B, Unavailable, 0), true, shared(5, a5)},
		{shared(5, a5), op(RLock, A, Unavailable, 0), false, shared(5, a5)},
		{shared(5, a5), op(RLock, A, Acquired, 5), true, shared(5, a5)},         // re-entrant
		{shared(5, a5), op(RLock, A, Acquired, 0), true, shared(5, a5)},         // re-entrant, token missed
		{shared(5, a5), op(RLock, A, Acquired, 3), false, shared(5, a5)},        // re-entrant, another token
		{shared(6, a0, b6), op(RLock, A, Acquired, 5), true, shared(6, a5, b6)}, // reveals A's token
		{shared(5, a0), op(RLock, A, Acquired, 7), true, shared(7, a7)},         // reveals, raises Last
		{shared(5, a5), op(Lock, B, Acquired, 6), false, shared(5, a5)},         // exclusive beside shared
		{shared(5, a5), op(Lock, A, Acquired, 6), false, shared(5, a5)},         // an upgrade
		{shared(5, a5), op(Lock, A, NoUpgrade, 0), true, shared(5, a5)},         //
		{shared(5, a5), op(Lock, B, NoUpgrade, 0), false, shared(5, a5)},        // B holds nothing
		{shared(5, a5), op(Lock, B, Unavailable, 0), true, shared(5, a5)},
		{shared(5, a5), op(Lock, A, Unavailable, 0), false, shared(5, a5)},
		{shared(5, a5), op(Lock, B, Unknown, 0), true, shared(5, a5)},
		{excl, op(RLock, A, Acquired, 4), true, excl}, // re-entrant under exclusive
		{excl, op(RLock, A, Acquired, 5), false, excl},
		{excl, op(RLock, B, Acquired, 5), false, excl},
		{excl, op(RLock, B, Unavailable, 0), true, excl},
		{excl, op(RLock, B, Unknown, 0), true, excl},
		{excl, op(Lock, A, NoUpgrade, 0), false, excl},
		{shared(6, a5, b6), op(Unlock, A, Unlocked, 0), true, shared(6, b6)},
		{shared(6, a5, b6), op(Unlock, C, NotYours, 0), true, shared(6, a5, b6)},
		{shared(6, a5, b6), op(Unlock, A, NotYours, 0), false, shared(6, a5, b6)},
		{shared(6, a5, b6), op(Unlock, C, NotLocked, 0), false, shared(6, a5, b6)},
		{shared(6, a5, b6), op(Unlock, C, Unlocked, 0), false, shared(6, a5, b6)},
		{shared(6, a5, b6), op(Unlock, B, Unknown, 0), true, shared(6, a5)},
		{shared(6, a5, b6), op(Expire, A, Unknown, 0), true, shared(6, b6)},
		{shared(5, a5), op(UnlockAll, A, OK, 0), true, shared(5)},
		{free, op(Acquire, A, Acquired, 5), true, shared(5, a5)},
		{shared(5, a5), op(Acquire, B, Acquired, 6), true, shared(6, a5, b6)},
		{shared(6, a5, b6), op(Acquire, C, Acquired, 7), false, shared(6, a5, b6)}, // limit 2
		{shared(6, a5, b6), op(AcquireWait, C, Unknown, 0), true, shared(6, a5, b6)},
		{shared(6, a5, b6), op(Acquire, C, Unavailable, 0), true, shared(6, a5, b6)},
		{shared(5, a5), op(Acquire, B, Unavailable, 0), true, shared(5, a5)}, // a waiter ahead
		{shared(5, a5), op(Acquire, A, Unavailable, 0), false, shared(5, a5)},
		{shared(5, a5), op(Acquire, A, Acquired, 5), true, shared(5, a5)},
		{shared(5, a5), op(Acquire, A, Acquired, 6), false, shared(5, a5)},
		{shared(5, a5), op(Acquire, B, Unknown, 0), true, shared(6, a5, b0)},
		{free, op(Acquire, A, Unavailable, 0), false, free},
	} {
		ok, next := Step(tc.s, tc.o)
		if ok != tc.ok || (ok && next != tc.next) {
			t.Errorf("Step(%v, %s by %s) = %v, %v; want %v, %v", tc.s, tc.o.describe(), tc.o.Session, ok, next, tc.ok, tc.next)
		}
	}
}

// TestModeMessages: the verdicts name the modes, the semaphore's limit,
// and what each checker looked at.
func TestModeMessages(t *testing.T) {
	h := []Operation{
		rl(3, "S1", "r", 0, 10, Acquired, 5),
		lk(7, "S2", "r", 20, 30, Acquired, 6),
		aq(3, "S1", "s", 2, 0, 10, Acquired, 1),
		aq(4, "S3", "s", 2, 0, 10, Acquired, 2),
		aq(7, "S2", "s", 2, 20, 30, Acquired, 3),
	}
	for _, tc := range []struct {
		c    Check
		want []string
	}{
		{CheckOverlap(h), []string{"overlap: 1 violations", "certain holds: 1 exclusive, 1 shared, 3 permit", `lock "r"`, "held it shared and exclusive", "S1", "S2", "client 3", "client 7", "token 5", "token 6"}},
		{CheckPermits(h), []string{"permits: 1 violations", `"s": 3 permit holds, at most 3 of 2 at once`, `semaphore "s": 3 sessions held permits of 2`, "S1", "S2", "S3", "held a permit with token 3"}},
		{CheckLostGrants(h), []string{"lost-grants: 1 violations", `lock "r"`, "held it shared with token 5", "granted exclusive to session S2 (client 7) with token 6"}},
		{CheckTokens(h), []string{"tokens: ok", "5 grants with a known token"}},
	} {
		s := tc.c.String()
		for _, w := range tc.want {
			if !strings.Contains(s, w) {
				t.Errorf("%s lacks %q:\n%s", tc.c.Checker, w, s)
			}
		}
	}
}
