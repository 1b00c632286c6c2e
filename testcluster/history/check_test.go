package history

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Sessions A, B, C are clients 0, 1, 2; names a and b.
const (
	A = "A"
	B = "B"
	C = "C"
)

// checkCase is a history and the checkers that must find it wrong.
type checkCase struct {
	name string
	h    []Operation
	// fail lists the checkers that must report a violation (by their
	// names in checkerNames); the others must pass.
	fail string
}

var checkCases = []checkCase{
	{
		// A's wait was granted while its connection was lost; the server
		// dropped the undelivered grant before A resumed, and B took the
		// lock: A's own lock after the resume sees B's hold.
		name: "an undelivered grant dropped before the resume",
		h: []Operation{
			lw(0, A, "a", 5, 0, U, Unknown, 0),
			dr(0, A, "a", 0, 40),
			lk(1, B, "a", 50, 60, Acquired, 2),
			rs(0, A, 30, 40, OK),
			lk(0, A, "a", 70, 80, Unavailable, 0),
		},
	},
	{
		// The drop window closed at the resume: a later 409 to A while A
		// certainly still holds the lock is a violation.
		name: "a grant lost after the drop window closed",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lw(0, A, "b", 5, 20, U, Unknown, 0),
			dr(0, A, "b", 20, 40),
			rs(0, A, 30, 40, OK),
			lk(1, B, "a", 50, 60, Acquired, 2),
		},
		fail: "overlap lost lin",
	},
	{
		name: "two overlapping grants to different sessions",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lk(1, B, "a", 20, 30, Acquired, 2),
		},
		fail: "overlap lost lin",
	},
	{
		name: "grant after a release",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ul(0, A, "a", 15, 18, Unlocked),
			lk(1, B, "a", 20, 30, Acquired, 2),
		},
	},
	{
		name: "grant concurrent with the release",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ul(0, A, "a", 20, 30, Unlocked),
			lk(1, B, "a", 25, 35, Acquired, 2),
		},
	},
	{
		name: "grants on different names",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lk(1, B, "b", 5, 15, Acquired, 1),
		},
	},
	{
		name: "re-entrant grant",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lk(0, A, "a", 20, 30, Acquired, 1),
			ul(0, A, "a", 40, 50, Unlocked),
			lk(1, B, "a", 60, 70, Acquired, 2),
		},
	},
	{
		name: "re-entrant grant with a new token",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lk(0, A, "a", 20, 30, Acquired, 3),
		},
		fail: "lost lin",
	},
	{
		name: "409 that only another holder explains, with none",
		h: []Operation{
			lk(0, A, "a", 0, 10, Unavailable, 0),
		},
		fail: "lin",
	},
	{
		name: "409 explained by the holder",
		h: []Operation{
			lk(1, B, "a", 0, 10, Acquired, 1),
			lk(0, A, "a", 20, 30, Unavailable, 0),
		},
	},
	{
		name: "409 explained by a concurrent grant",
		h: []Operation{
			lk(1, B, "a", 0, 30, Acquired, 1),
			lk(0, A, "a", 10, 20, Unavailable, 0),
		},
	},
	{
		name: "409 explained by an indeterminate lock",
		h: []Operation{
			lk(1, B, "a", 0, U, Unknown, 0),
			lk(0, A, "a", 20, 30, Unavailable, 0),
		},
	},
	{
		name: "409 to the holder itself",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lk(0, A, "a", 20, 30, Unavailable, 0),
		},
		fail: "lost lin",
	},
	{
		name: "409 after the holder released",
		h: []Operation{
			lk(1, B, "a", 0, 10, Acquired, 1),
			ul(1, B, "a", 12, 15, Unlocked),
			lk(0, A, "a", 20, 30, Unavailable, 0),
		},
		fail: "lin",
	},
	{
		name: "token going backwards",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 5),
			ul(0, A, "a", 20, 30, Unlocked),
			lk(1, B, "a", 40, 50, Acquired, 3),
		},
		fail: "tokens lin",
	},
	{
		name: "token granted twice",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 5),
			ul(0, A, "a", 20, 30, Unlocked),
			lk(1, B, "a", 40, 50, Acquired, 5),
		},
		fail: "tokens lin",
	},
	{
		name: "tokens on different names are independent",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 5),
			lk(1, B, "b", 20, 30, Acquired, 3),
		},
	},
	{
		name: "grant whose token the client missed",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 0),
			ul(0, A, "a", 20, 30, Unlocked),
			lk(1, B, "a", 40, 50, Acquired, 2),
		},
	},
	{
		name: "grant after one whose token the client missed cannot reuse the lowest token",
		h: []Operation{
			lk(2, C, "a", 0, 5, Acquired, 1),
			ul(2, C, "a", 6, 7, Unlocked),
			lk(0, A, "a", 10, 20, Acquired, 0),
			ul(0, A, "a", 20, 30, Unlocked),
			lk(1, B, "a", 40, 50, Acquired, 2),
		},
		fail: "lin",
	},
	{
		name: "indeterminate lock that later shows as held",
		h: []Operation{
			lk(0, A, "a", 0, U, Unknown, 0),
			lk(1, B, "a", 20, 30, Unavailable, 0),
			lk(0, A, "a", 40, 50, Acquired, 7),
			ul(0, A, "a", 60, 70, Unlocked),
			lk(1, B, "a", 80, 90, Acquired, 8),
		},
	},
	{
		name: "indeterminate lock that shows as held, then a token going backwards",
		h: []Operation{
			lk(0, A, "a", 0, U, Unknown, 0),
			lk(1, B, "a", 20, 30, Unavailable, 0),
			lk(0, A, "a", 40, 50, Acquired, 7),
			ul(0, A, "a", 60, 70, Unlocked),
			lk(1, B, "a", 80, 90, Acquired, 6),
		},
		fail: "tokens lin",
	},
	{
		name: "indeterminate lock cannot explain an unlock after another grant",
		h: []Operation{
			lk(0, A, "a", 0, U, Unknown, 0),
			lk(1, B, "a", 20, 30, Acquired, 1),
			ul(0, A, "a", 40, 50, Unlocked),
		},
		fail: "lost lin",
	},
	{
		name: "indeterminate unlock followed by another session acquiring",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ul(0, A, "a", 20, U, Unknown),
			lk(1, B, "a", 30, 40, Acquired, 2),
		},
	},
	{
		name: "indeterminate unlock invoked after another session acquired",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lk(1, B, "a", 30, 40, Acquired, 2),
			ul(0, A, "a", 50, U, Unknown),
		},
		fail: "overlap lost lin",
	},
	{
		name: "indeterminate unlock that did not happen",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ul(0, A, "a", 20, U, Unknown),
			lk(1, B, "a", 30, 40, Unavailable, 0),
			ul(1, B, "a", 50, 60, NotYours),
		},
	},
	{
		name: "session expiry releases a lock",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ex(0, A, 5, 105),
			lk(1, B, "a", 110, 120, Acquired, 2),
		},
	},
	{
		name: "grant before the session could expire",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ex(0, A, 5, 105),
			lk(1, B, "a", 50, 60, Acquired, 2),
		},
		fail: "overlap lost lin",
	},
	{
		name: "session resumed before its expiry keeps its lock",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ex(0, A, 5, 105),
			rs(0, A, 60, 70, OK),
			lk(1, B, "a", 110, 120, Acquired, 2),
		},
		fail: "overlap lost lin",
	},
	{
		name: "session resumed maybe after its expiry",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ex(0, A, 5, 105),
			rs(0, A, 100, 110, OK),
			lk(1, B, "a", 120, 130, Acquired, 2),
		},
	},
	{
		name: "the resume that attached the lost connection does not cancel its expiry",
		h: []Operation{
			rs(0, A, 20, 25, OK),
			lk(0, A, "a", 30, 40, Acquired, 1),
			ex(0, A, 20, 120),
			lk(1, B, "a", 130, 140, Acquired, 2),
		},
	},
	{
		name: "failed resume does not keep the lock",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ex(0, A, 5, 105),
			rs(0, A, 60, 70, NotYours),
			lk(1, B, "a", 110, 120, Acquired, 2),
		},
	},
	{
		name: "unlock_all releasing several names",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lk(0, A, "b", 10, 20, Acquired, 1),
			ua(0, A, 30, 40, OK),
			lk(1, B, "a", 50, 60, Acquired, 2),
			lk(1, B, "b", 60, 70, Acquired, 2),
		},
	},
	{
		name: "indeterminate unlock_all releasing several names",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lk(0, A, "b", 10, 20, Acquired, 1),
			ua(0, A, 30, U, Unknown),
			lk(1, B, "a", 50, 60, Acquired, 2),
			lk(1, B, "b", 60, 70, Acquired, 2),
		},
	},
	{
		name: "grant before unlock_all",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lk(0, A, "b", 10, 20, Acquired, 1),
			lk(1, B, "b", 25, 28, Acquired, 2),
			ua(0, A, 30, 40, OK),
			lk(1, B, "a", 50, 60, Acquired, 2),
		},
		fail: "overlap lost lin",
	},
	{
		name: "unlock_all of another session releases nothing",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ua(1, B, 20, 30, OK),
			lk(1, B, "a", 40, 50, Acquired, 2),
		},
		fail: "overlap lost lin",
	},
	{
		name: "lock_wait that hands over after an unlock",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lw(1, B, "a", 5, 20, 60, Acquired, 2),
			ul(0, A, "a", 40, 50, Unlocked),
		},
	},
	{
		name: "lock_wait granted before the unlock",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lw(1, B, "a", 5, 20, 35, Acquired, 2),
			ul(0, A, "a", 40, 50, Unlocked),
		},
		fail: "overlap lost lin",
	},
	{
		name: "lock_wait that times out",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lw(1, B, "a", 5, 20, 70, Unavailable, 0),
		},
	},
	{
		name: "lock_wait hand-over, then a third client's 409",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			lw(1, B, "a", 5, 20, 60, Acquired, 2),
			ul(0, A, "a", 40, 50, Unlocked),
			lk(2, C, "a", 52, 58, Unavailable, 0),
		},
	},
	{
		name: "not_yours and not_locked",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ul(1, B, "a", 20, 30, NotYours),
			ul(0, A, "a", 40, 50, Unlocked),
			ul(1, B, "a", 60, 70, NotLocked),
		},
	},
	{
		name: "not_locked while held",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ul(1, B, "a", 20, 30, NotLocked),
		},
		fail: "lost lin",
	},
	{
		name: "not_yours to the holder",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ul(0, A, "a", 20, 30, NotYours),
		},
		fail: "lost lin",
	},
	{
		name: "unlocked by another session while held",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ul(1, B, "a", 20, 30, Unlocked),
		},
		fail: "lost lin",
	},
	{
		name: "refused operations did nothing",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ul(0, A, "a", 12, 14, Refused),
			lk(1, B, "a", 20, 30, Refused, 0),
			lk(1, B, "a", 40, 50, Unavailable, 0),
		},
	},
	{
		name: "unlock pipelined behind the grant",
		h: []Operation{
			lk(0, A, "a", 0, 10, Acquired, 1),
			ul(0, A, "a", 5, 15, Unlocked),
			lk(1, B, "a", 12, 20, Acquired, 2),
		},
	},
	{
		name: "empty history",
	},
}

func TestCheckers(t *testing.T) {
	for _, tc := range slices.Concat(checkCases, sharedCases, permitCases) {
		t.Run(tc.name, func(t *testing.T) {
			failed, verdicts, err := checkers(tc.h, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{}
			for _, f := range strings.Fields(tc.fail) {
				want[f] = true
			}
			for _, name := range checkerNames {
				if failed[name] != want[name] {
					t.Errorf("%s: failed=%v, want %v", name, failed[name], want[name])
				}
			}
			if t.Failed() {
				for _, v := range verdicts {
					t.Log(v)
				}
			}
		})
	}
}

// TestMessages checks that violation messages name what a reader needs.
func TestMessages(t *testing.T) {
	h := []Operation{
		lk(3, "S1", "a", 0, 10, Acquired, 5),
		lk(7, "S2", "a", 20, 30, Acquired, 4),
	}
	for _, v := range []Check{CheckOverlap(h), CheckLostGrants(h), CheckTokens(h)} {
		if len(v.Violations) != 1 {
			t.Fatalf("%s: %d violations, want 1:\n%s", v.Checker, len(v.Violations), v)
		}
		msg := v.Violations[0].Message
		for _, want := range []string{`"a"`, "S1", "S2", "client 3", "client 7", "token 5", "token 4"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: message lacks %q: %s", v.Checker, want, msg)
			}
		}
		if !slices.Equal(v.Violations[0].Sessions, []string{"S1", "S2"}) {
			t.Errorf("%s: sessions %v", v.Checker, v.Violations[0].Sessions)
		}
		t.Log(v)
	}
	overlap := CheckOverlap(h).Violations[0].Message
	if !strings.Contains(overlap, "[0.030000s, never)") {
		t.Errorf("overlap message lacks the interval: %s", overlap)
	}
	lin, err := CheckLinearizable(h, 0)
	if err != nil {
		t.Fatal(err)
	}
	if lin.Result != porcupine.Illegal || len(lin.Names) != 1 || lin.Names[0].Result != porcupine.Illegal {
		t.Fatalf("linearizability: %v", lin)
	}
	s := lin.String()
	for _, want := range []string{`lock "a"`, "not linearizable", "#0", "acquired 5", "before token 4 of #1", "S2"} {
		if !strings.Contains(s, want) {
			t.Errorf("linearizability message lacks %q: %s", want, s)
		}
	}
	t.Log(s)
}

func TestMalformed(t *testing.T) {
	for _, h := range [][]Operation{
		{lk(0, A, "", 0, 10, Acquired, 1)},
		{lk(0, "", "a", 0, 10, Acquired, 1)},
		{lk(0, A, "a", 10, 5, Acquired, 1)},
		{lk(0, A, "a", 0, 10, Unlocked, 0)},
		{ua(0, A, 0, 10, Acquired)},
		{lk(-1, A, "a", 0, 10, Acquired, 1)},
		{mk(Kind(99), 0, A, "a", 0, 0, 10, OK, 0)},
		{aq(0, A, "s", 0, 0, 10, Acquired, 1)},    // no limit
		{rl(0, "A\x01", "r", 0, 10, Acquired, 1)}, // the model's separator
		{rl(0, A, "r", 0, 10, NoUpgrade, 0)},      // only a lock is told no_upgrade
	} {
		if err := Validate(h); err == nil {
			t.Errorf("Validate(%v) = nil", h)
		}
		if _, err := CheckLinearizable(h, 0); err == nil {
			t.Errorf("CheckLinearizable(%v): no error", h)
		}
		if c := CheckOverlap(h); c.OK() {
			t.Errorf("CheckOverlap(%v) passed", h)
		}
	}
}

func TestStep(t *testing.T) {
	op := func(kind Kind, session string, st Status, tok uint64) Operation {
		return Operation{Op: Op{Kind: kind, Session: session, Name: "a"}, Result: Result{Status: st, Token: tok}}
	}
	free := State{Last: 4}
	held := State{Holder: A, Token: 4, Last: 4}
	heldUnknown := State{Holder: A, Last: 5} // token >= 5
	x := func(holder string, tok, last uint64) State { return State{Holder: holder, Token: tok, Last: last} }
	for _, tc := range []struct {
		s    State
		o    Operation
		ok   bool
		next State
	}{
		{free, op(Lock, A, Acquired, 5), true, x(A, 5, 5)},
		{free, op(Lock, A, Acquired, 4), false, free},
		{free, op(Lock, A, Acquired, 0), true, x(A, 0, 5)},
		{free, op(Lock, A, Unavailable, 0), false, free},
		{free, op(Lock, A, Unknown, 0), true, x(A, 0, 5)},
		{held, op(Lock, A, Acquired, 4), true, held},
		{held, op(LockWait, A, Acquired, 5), false, held},
		{held, op(Lock, B, Acquired, 5), false, held},
		{held, op(Lock, B, Unavailable, 0), true, held},
		{held, op(LockWait, A, Unavailable, 0), false, held},
		{held, op(Lock, B, Unknown, 0), true, held},
		{heldUnknown, op(Lock, A, Acquired, 5), true, x(A, 5, 5)},
		{heldUnknown, op(Lock, A, Acquired, 4), false, heldUnknown},
		{heldUnknown, op(Lock, A, Acquired, 0), true, heldUnknown},
		{held, op(Unlock, A, Unlocked, 0), true, free},
		{held, op(Unlock, B, NotYours, 0), true, held},
		{held, op(Unlock, B, NotLocked, 0), false, held},
		{free, op(Unlock, B, NotLocked, 0), true, free},
		{free, op(Unlock, B, NotYours, 0), false, free},
		{held, op(Unlock, B, Unknown, 0), true, held},
		{held, op(Unlock, A, Unknown, 0), true, free},
		{held, op(UnlockAll, B, OK, 0), true, held},
		{held, op(UnlockAll, A, Unknown, 0), true, free},
		{held, op(Expire, A, Unknown, 0), true, free},
		{held, op(Expire, B, OK, 0), true, held},
	} {
		ok, next := Step(tc.s, tc.o)
		if ok != tc.ok || (ok && next != tc.next) {
			t.Errorf("Step(%v, %s) = %v, %v; want %v, %v", tc.s, tc.o.describe(), ok, next, tc.ok, tc.next)
		}
	}
}
