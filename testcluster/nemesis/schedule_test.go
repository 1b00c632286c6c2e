package nemesis

import (
	"slices"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	names := []string{"a", "b"}
	for seed := range uint64(50) {
		first := []Kind{Kinds[seed%uint64(len(Kinds))], Kinds[(seed+4)%uint64(len(Kinds))]}
		steps := Plan(seed, 5, 3*time.Minute, first, names)
		if !slices.EqualFunc(steps, Plan(seed, 5, 3*time.Minute, first, names), func(a, b Step) bool { return a.String() == b.String() }) {
			t.Fatalf("seed %d: two plans differ", seed)
		}
		var total time.Duration
		seen := map[Kind]bool{}
		for i, st := range steps {
			total += st.Hold
			if i < len(first) && !slices.Contains(first, st.Faults[0].Kind) {
				t.Errorf("seed %d step %d: %s before the first kinds %v", seed, i, st, first)
			}
			if len(st.Faults) == 0 || len(st.Faults) > 2 {
				t.Fatalf("seed %d step %d: %d faults", seed, i, len(st.Faults))
			}
			var busy []int
			kills := 0
			for _, f := range st.Faults {
				seen[f.Kind] = true
				if f.Kind == KillRestart {
					kills++
				}
				if f.Kind == Pause && st.Hold < PauseHold {
					t.Errorf("seed %d step %d: pause held only %v", seed, i, st.Hold)
				}
				if f.Kind == IsolatePair && !slices.Contains(names, f.Name) {
					t.Errorf("seed %d step %d: isolates the copies of unknown name %q", seed, i, f.Name)
				}
				for _, n := range f.Nodes {
					if n < 0 || n >= 5 || slices.Contains(busy, n) {
						t.Errorf("seed %d step %d: node %d out of range or used twice: %s", seed, i, n, st)
					}
					busy = append(busy, n)
				}
			}
			if kills > 1 {
				t.Errorf("seed %d step %d: two kills at once could lose both copies: %s", seed, i, st)
			}
			if len(st.Faults) == 2 && !slices.Contains([]Kind{KillRestart, Pause, Isolate, LeaveRejoin}, st.Faults[0].Kind) {
				t.Errorf("seed %d step %d: a second fault after %s could leave no majority", seed, i, st.Faults[0].Kind)
			}
			if st.Faults[0].Kind == Halves && len(st.Faults[0].Nodes) != 2 {
				t.Errorf("seed %d step %d: minority of %d nodes out of 5", seed, i, len(st.Faults[0].Nodes))
			}
		}
		if total < 3*time.Minute {
			t.Errorf("seed %d: holds add up to %v, want at least 3m", seed, total)
		}
		for _, k := range Kinds {
			if !seen[k] {
				t.Errorf("seed %d: 3 minutes of schedule never %s", seed, k)
			}
		}
	}
}
