package locktable_test

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/elock/elock/node/locktable"
)

// TestModel drives the table and the naive model with the same random
// operations and compares every answer, every effect list and everything
// observable after each step, over exclusive, shared and permit
// requests. Effects are compared in order: ties among deadlines break by
// waiter id and session id, which replicas need to be deterministic.
//
// ReleaseSession's effects are compared in order too: the model releases
// the most recently acquired lock first, as the table does. That order is
// not part of the contract, but tokens depend on it, and it is
// deterministic, which is what replicas need.
func TestModel(t *testing.T) {
	// Each rapid.Check runs 100 random cases; a few rounds cover more
	// without making the test slow.
	for round := range 10 {
		t.Run(fmt.Sprint(round), func(t *testing.T) { rapid.Check(t, checkModel) })
	}
}

// checkModel is one random case of TestModel.
func checkModel(rt *rapid.T) {
	limits := locktable.Limits{
		MaxWaiters:     rapid.IntRange(0, 3).Draw(rt, "maxWaiters"),
		DefaultTimeout: time.Duration(rapid.IntRange(0, 60).Draw(rt, "defaultTimeout")),
	}
	changes := rapid.Bool().Draw(rt, "recordChanges")
	epoch := uint64(rapid.IntRange(0, 3).Draw(rt, "epoch"))
	tb := locktable.New(epoch, limits, changes)
	m := newModel(epoch, limits, changes)
	// Sometimes start a few tokens short of the end of the epoch, so the
	// reserve rule and SetEpoch get exercised.
	if rapid.Bool().Draw(rt, "nearEnd") {
		left := uint64(rapid.IntRange(0, 8).Draw(rt, "tokensLeft"))
		tb.SetCount(1<<32 - 1 - left)
		m.count = 1<<32 - 1 - left
	}
	now := locktable.Time(rapid.Int64Range(-1000, 1000).Draw(rt, "start"))
	var gen opGen
	steps := rapid.IntRange(1, 200).Draw(rt, "steps")
	for i := range steps {
		o := gen.draw(rt)
		now += o.dt
		got := applyTable(tb, now, o)
		want := applyModel(m, now, o)
		if got.head != want.head || !sameFx(got.fx, want.fx) {
			rt.Fatalf("step %d, %v at %d:\n got  %v\n want %v", i, o, now, got, want)
		}
		if err := tb.CheckInvariants(); err != nil {
			rt.Fatalf("step %d, %v at %d: %v", i, o, now, err)
		}
		if d := stateDiff(tb, m, now); d != "" {
			rt.Fatalf("step %d, %v at %d: %s", i, o, now, d)
		}
	}
}
