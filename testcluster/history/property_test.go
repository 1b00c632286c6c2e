package history

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

var simConfigs = map[string]simConfig{
	"calm": {clients: 4, names: 3, ops: 300, pResume: 0.7, timeout: 100 * ms},
	"faulty": {clients: 6, names: 3, ops: 400, pRefuse: 0.05, p504: 0.03, pLost: 0.03,
		pResume: 0.7, pNoToken: 0.05, pVeryLate: 0.2, timeout: 100 * ms},
	"hot": {clients: 8, names: 1, ops: 400, pRefuse: 0.03, p504: 0.02, pLost: 0.02,
		pResume: 0.7, pNoToken: 0.03, pVeryLate: 0.2, timeout: 100 * ms},
	"short-timeout": {clients: 6, names: 2, ops: 300, pRefuse: 0.05, p504: 0.05, pLost: 0.05,
		pResume: 0.8, pNoToken: 0.05, timeout: 30 * ms},
	// A name taken shared and exclusively, and a semaphore of 2 permits,
	// beside an exclusive name.
	"modes-calm": {clients: 6, names: 1, shared: 1, sems: 1, limit: 2, ops: 300, pResume: 0.7, timeout: 100 * ms},
	"modes-faulty": {clients: 7, names: 1, shared: 1, sems: 1, limit: 2, ops: 400, pRefuse: 0.05, p504: 0.03, pLost: 0.03,
		pResume: 0.7, pNoToken: 0.05, pVeryLate: 0.2, timeout: 100 * ms},
	// Every client on one shared name and one semaphore of 3 permits.
	"modes-hot": {clients: 8, shared: 1, sems: 1, limit: 3, ops: 400, pRefuse: 0.03, p504: 0.02, pLost: 0.02,
		pResume: 0.7, pNoToken: 0.03, pVeryLate: 0.2, timeout: 100 * ms},
}

const seeds = 25

// TestPropertyCorrect: histories of a correct server pass every checker.
func TestPropertyCorrect(t *testing.T) {
	for name, cfg := range simConfigs {
		t.Run(name, func(t *testing.T) {
			for seed := range uint64(seeds) {
				h := simulate(cfg, seed)
				mustPass(t, fmt.Sprintf("seed %d", seed), h)
			}
		})
	}
}

// TestPropertyLarge: a long history on two hot names, as the fault tests
// record, checks quickly.
func TestPropertyLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("long history")
	}
	cfg := simConfig{clients: 12, names: 2, ops: 3000, pRefuse: 0.03, p504: 0.02, pLost: 0.02,
		pResume: 0.7, pNoToken: 0.03, pVeryLate: 0.1, timeout: 100 * ms}
	h := simulate(cfg, 1)
	mustPass(t, "large", h)
}

func mustPass(t *testing.T, what string, h []Operation) {
	t.Helper()
	failed, verdicts, err := checkers(h, 20*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(failed) > 0 {
		dir := t.TempDir()
		if err := SaveReport(dir, h, verdicts...); err != nil {
			t.Log(err)
		}
		t.Errorf("%s: a correct history failed %v (report in %s)", what, failed, dir)
		for _, v := range verdicts {
			t.Log(v)
		}
	}
}

// TestPropertyViolations: one injected violation in a correct history is
// caught. Proving a history illegal makes porcupine explore every order of
// its operations, which indeterminate ones multiply, so linearizability
// has a short timeout here and passes as long as it is not Ok; the other
// checkers must name the violation.
func TestPropertyViolations(t *testing.T) {
	var illegal, timedOut int
	count := func(l *Linearizability) {
		if l.Result == porcupine.Illegal {
			illegal++
		} else {
			timedOut++
		}
	}
	for name, cfg := range simConfigs {
		t.Run(name, func(t *testing.T) {
			for seed := range uint64(violationSeeds) {
				h := simulate(cfg, seed)
				rng := rand.New(rand.NewPCG(seed, 7))
				if bad, what, ok := swapTokens(h, rng); ok {
					count(mustFail(t, fmt.Sprintf("seed %d: %s", seed, what), bad, "tokens", "lin"))
				}
				if bad, what, ok := duplicateGrant(h, rng); ok {
					count(mustFail(t, fmt.Sprintf("seed %d: %s", seed, what), bad, "tokens", "overlap", "lost", "lin"))
				}
				if bad, what, ok := overflowPermits(h, rng); ok {
					count(mustFail(t, fmt.Sprintf("seed %d: %s", seed, what), bad, "permits", "lin"))
				}
			}
		})
	}
	t.Logf("porcupine proved %d injected violations illegal and timed out on %d", illegal, timedOut)
}

const violationSeeds = 6

func mustFail(t *testing.T, what string, h []Operation, want ...string) *Linearizability {
	t.Helper()
	failed, verdicts, err := checkers(h, 300*time.Millisecond)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for _, w := range want {
		if !failed[w] {
			t.Errorf("%s: %s passed", what, w)
			for _, v := range verdicts {
				t.Log(v)
			}
		}
	}
	return verdicts[len(verdicts)-1].(*Linearizability)
}

// swapTokens swaps the tokens of two new grants of a name, one certainly
// before the other. Where a name is also granted shared or as permits, a
// grant of a session that may have held the name unbeknown to its client
// (an earlier request of unknown outcome or token) may be a re-entrant
// one, which may show an older token: neither grant is of such a session,
// and they go to two sessions.
func swapTokens(h []Operation, rng *rand.Rand) ([]Operation, string, bool) {
	type key struct {
		name  string
		token uint64
	}
	seen := map[key]bool{}
	sharing := map[string]bool{}
	unsure := map[key2]bool{} // name and session with a request of unknown outcome or token
	for _, o := range h {
		if o.Kind.Takes() && o.Kind.Mode() != Exclusive {
			sharing[o.Name] = true
		}
		if o.Kind.Takes() && (o.Status == Unknown || o.Status == Acquired && o.Token == 0) {
			unsure[key2{o.Name, o.Session}] = true
		}
	}
	var first []int // first grant of each token
	for i, o := range h {
		if o.Kind.Takes() && o.Status == Acquired && o.Token != 0 && !seen[key{o.Name, o.Token}] {
			seen[key{o.Name, o.Token}] = true
			first = append(first, i)
		}
	}
	var pairs [][2]int
	for _, i := range first {
		for _, j := range first {
			a, b := h[i], h[j]
			if a.Name != b.Name || a.Return >= b.Call || a.Token >= b.Token {
				continue
			}
			if sharing[a.Name] && (a.Session == b.Session || unsure[key2{a.Name, a.Session}] || unsure[key2{b.Name, b.Session}]) {
				continue
			}
			pairs = append(pairs, [2]int{i, j})
		}
	}
	if len(pairs) == 0 {
		return nil, "", false
	}
	p := pairs[rng.IntN(len(pairs))]
	bad := slices.Clone(h)
	bad[p[0]].Token, bad[p[1]].Token = bad[p[1]].Token, bad[p[0]].Token
	return bad, fmt.Sprintf("tokens of #%d and #%d swapped", p[0], p[1]), true
}

type key2 struct{ name, session string }

// certainHolds returns the certain holds of h, of the given modes.
func certainHolds(h []Operation, modes ...Mode) []hold {
	ops, err := prepare(h)
	if err != nil {
		panic(err)
	}
	releases := releasesBySession(ops)
	perName := byName(ops)
	var hs []hold
	for _, n := range names(ops) {
		for _, hd := range holds(n, perName[n], releases) {
			if slices.Contains(modes, hd.mode) {
				hs = append(hs, hd)
			}
		}
	}
	return hs
}

// inside returns a window [call, ret] in the middle of hd.
func inside(hd hold) (call, ret time.Duration) {
	if hd.until == Never {
		return hd.from + ms/1000, hd.from + 2*ms/1000
	}
	third := (hd.until - hd.from) / 3
	return hd.from + third, hd.from + 2*third
}

func nextClient(h []Operation) int {
	client := 0
	for _, o := range h {
		client = max(client, o.Client+1)
	}
	return client
}

// duplicateGrant grants the token of a certain exclusive or shared hold
// to an intruding session, exclusively, while the hold lasts.
func duplicateGrant(h []Operation, rng *rand.Rand) ([]Operation, string, bool) {
	hs := slices.DeleteFunc(certainHolds(h, Exclusive, Shared), func(hd hold) bool { return holdToken(hd) == 0 })
	if len(hs) == 0 {
		return nil, "", false
	}
	hd := hs[rng.IntN(len(hs))]
	call, ret := inside(hd)
	intruder := Operation{
		Op:     Op{Client: nextClient(h), Session: "intruder", Kind: Lock, Name: hd.name},
		Result: Result{Status: Acquired, Token: holdToken(hd)},
		Call:   call, Return: ret,
	}
	bad := append(slices.Clone(h), intruder)
	return bad, fmt.Sprintf("token %d of %s's %s hold granted again to an intruder during [%s, %s]", holdToken(hd), hd.session, hd.mode, stamp(call), stamp(ret)), true
}

// overflowPermits grants LIMIT more permits, to as many intruding
// sessions, while a certain permit hold lasts. Their tokens are unknown,
// so that only the count is wrong.
func overflowPermits(h []Operation, rng *rand.Rand) ([]Operation, string, bool) {
	hs := certainHolds(h, Permit)
	if len(hs) == 0 {
		return nil, "", false
	}
	hd := hs[rng.IntN(len(hs))]
	call, ret := inside(hd)
	bad := slices.Clone(h)
	client := nextClient(h)
	for i := range hd.limit() {
		bad = append(bad, Operation{
			Op:     Op{Client: client + i, Session: fmt.Sprintf("intruder-%d", i), Kind: Acquire, Name: hd.name, Limit: hd.limit()},
			Result: Result{Status: Acquired},
			Call:   call, Return: ret,
		})
	}
	return bad, fmt.Sprintf("%d more permits of %q granted to intruders during [%s, %s], while %s held one", hd.limit(), hd.name, stamp(call), stamp(ret), hd.session), true
}
