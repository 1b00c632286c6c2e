package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/elock/elock/testcluster"
)

// Kind is a kind of fault.
type Kind string

// The faults of the schedule.
const (
	KillRestart Kind = "kill-restart"     // SIGKILL a node, then start it again
	Pause       Kind = "pause"            // SIGSTOP a node past its lease, then SIGCONT
	Halves      Kind = "partition-halves" // cut the nodes into a minority and a majority
	Isolate     Kind = "isolate-one"      // cut one node off from all others
	IsolatePair Kind = "isolate-owner-and-replica"
	OneWay      Kind = "one-way"      // drop packets from some nodes to others, not back
	Bridge      Kind = "bridge"       // two sides that cannot talk, and one node that talks to both
	JoinLeave   Kind = "join-leave"   // a new node joins, then leaves with SIGTERM
	LeaveRejoin Kind = "leave-rejoin" // a node leaves with SIGTERM, then starts again
)

// PauseHold is the shortest a pause lasts.
const PauseHold = 8 * time.Second

// Kinds lists every fault.
var Kinds = []Kind{KillRestart, Pause, Halves, Isolate, IsolatePair, OneWay, Bridge, JoinLeave, LeaveRejoin}

// Fault is one fault of a step.
type Fault struct {
	Kind  Kind
	Nodes []int // the nodes it acts on (for halves: the minority)
	// Name is the hot lock whose owner and replica IsolatePair cut off.
	Name string
}

// Step is one or two faults applied together, held, then undone.
type Step struct {
	Faults []Fault
	Hold   time.Duration
	// Start and End are when the faults were applied and undone, on the
	// clock passed to Run (the history's).
	Start, End time.Duration
}

func (s Step) String() string {
	var parts []string
	for _, f := range s.Faults {
		p := fmt.Sprintf("%s%v", f.Kind, f.Nodes)
		if f.Name != "" {
			p += "(" + f.Name + ")"
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("%s hold %v [%v..%v]", strings.Join(parts, " + "), s.Hold, s.Start.Round(time.Millisecond), s.End.Round(time.Millisecond))
}

// Plan draws a schedule from seed: steps until their holds add up to
// duration, cycling through every kind, those of first (in a shuffled
// order) before the rest (shuffled too), with a second fault on other
// nodes now and then. nodes is the cluster's size; names are the hot
// locks. At most two nodes are ever down or cut off from the majority at
// once, so a voter majority always remains.
func Plan(seed uint64, nodes int, duration time.Duration, first []Kind, names []string) []Step {
	rng := rand.New(rand.NewPCG(seed, 0x6e656d))
	shuffled := func(ks []Kind) []Kind {
		ks = slices.Clone(ks)
		rng.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
		return ks
	}
	var rest []Kind
	for _, k := range Kinds {
		if !slices.Contains(first, k) {
			rest = append(rest, k)
		}
	}
	order := append(shuffled(first), shuffled(rest)...)
	var steps []Step
	var total time.Duration
	for i := 0; total < duration; i++ {
		k := order[i%len(order)]
		f := draw(rng, k, nodes, names, nil)
		st := Step{Faults: []Fault{f}, Hold: time.Duration(3+rng.IntN(6)) * time.Second}
		// Now and then a second fault at once, on another node. Only after
		// a fault that takes down or cuts off at most one node, so a voter
		// majority always remains; and never a second kill, which could
		// take both copies of a partition for good.
		if rng.IntN(3) == 0 && slices.Contains([]Kind{KillRestart, Pause, Isolate, LeaveRejoin}, f.Kind) {
			second := []Kind{KillRestart, Pause, OneWay}[rng.IntN(3)]
			if second == KillRestart && f.Kind == KillRestart {
				second = Pause
			}
			if g := draw(rng, second, nodes, names, f.Nodes); len(g.Nodes) > 0 {
				st.Faults = append(st.Faults, g)
			}
		}
		for _, f := range st.Faults {
			if f.Kind == Pause {
				// Past gossip's detection (4-6 s here) and the owner lease,
				// so the paused node is declared dead and replaced.
				st.Hold = max(st.Hold, PauseHold)
			}
		}
		steps = append(steps, st)
		total += st.Hold
	}
	return steps
}

// draw picks the nodes of one fault, avoiding those in busy.
func draw(rng *rand.Rand, k Kind, nodes int, names []string, busy []int) Fault {
	free := make([]int, 0, nodes)
	for i := range nodes {
		if !slices.Contains(busy, i) {
			free = append(free, i)
		}
	}
	rng.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	pick := func(n int) []int { return slices.Clone(free[:min(n, len(free))]) }
	switch k {
	case Halves:
		return Fault{Kind: k, Nodes: pick((nodes - 1) / 2)}
	case IsolatePair:
		return Fault{Kind: k, Name: names[rng.IntN(len(names))]}
	case OneWay:
		return Fault{Kind: k, Nodes: pick(2)} // from Nodes[0] to Nodes[1]
	case Bridge:
		return Fault{Kind: k, Nodes: pick(1)} // the bridge; the rest split in two
	case JoinLeave:
		return Fault{Kind: k}
	}
	return Fault{Kind: k, Nodes: pick(1)}
}

// Runner applies a schedule to a cluster.
type Runner struct {
	C   *testcluster.Cluster
	Net *Net
	// Now is the clock steps are stamped with.
	Now func() time.Duration
	// Converge bounds the wait for the cluster to settle after a step.
	Converge time.Duration
	// Logf reports progress.
	Logf func(format string, args ...any)
}

// Run applies every step in turn: inject, hold, undo, and wait until the
// cluster has converged again. It stamps each step's Start and End.
func (r *Runner) Run(ctx context.Context, steps []Step) error {
	for i := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		st := &steps[i]
		undo, err := r.inject(st.Faults)
		st.Start = r.Now()
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i, st, err)
		}
		select {
		case <-time.After(st.Hold):
		case <-ctx.Done():
		}
		for j := len(undo) - 1; j >= 0; j-- {
			if err := undo[j](); err != nil {
				return fmt.Errorf("undoing step %d (%s): %w", i, st, err)
			}
		}
		st.End = r.Now()
		if r.Logf != nil {
			r.Logf("step %d: %s", i, st)
		}
		if err := r.C.WaitConverged(r.Converge); err != nil {
			return fmt.Errorf("after step %d (%s): %w", i, st, err)
		}
	}
	return nil
}

// ips returns the addresses of nodes (by index).
func (r *Runner) ips(idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, IP(r.C.Node(i).ClientAddr))
	}
	return out
}

// live returns the indices of the running nodes.
func (r *Runner) live() []int { return r.C.Live() }

// inject applies faults and returns how to undo each.
func (r *Runner) inject(faults []Fault) ([]func() error, error) {
	var undo []func() error
	healNet := false
	for k := range faults {
		f := &faults[k]
		switch f.Kind {
		case KillRestart:
			i := r.pickLive(f.Nodes)
			r.C.Kill(i)
			undo = append(undo, func() error { r.C.Restart(i); return nil })
		case Pause:
			i := r.pickLive(f.Nodes)
			r.C.Pause(i)
			undo = append(undo, func() error { r.C.Resume(i); return nil })
		case Halves:
			minority := r.someLive(f.Nodes)
			if err := r.Net.Cut(r.ips(minority), r.ips(without(r.live(), minority))); err != nil {
				return undo, err
			}
			healNet = true
		case Isolate:
			i := r.pickLive(f.Nodes)
			if err := r.Net.Cut(r.ips([]int{i}), r.ips(without(r.live(), []int{i}))); err != nil {
				return undo, err
			}
			healNet = true
		case IsolatePair:
			_, owner, replica, _ := r.C.Where(f.Name)
			pair := []int{r.C.IndexOf(owner), r.C.IndexOf(replica)}
			if pair[0] < 0 || pair[1] < 0 {
				continue
			}
			f.Nodes = pair // for the record
			if err := r.Net.Cut(r.ips(pair), r.ips(without(r.live(), pair))); err != nil {
				return undo, err
			}
			healNet = true
		case OneWay:
			nodes := r.someLive(f.Nodes)
			if len(nodes) < 2 {
				continue
			}
			if err := r.Net.Drop(IP(r.C.Node(nodes[0]).ClientAddr), IP(r.C.Node(nodes[1]).ClientAddr)); err != nil {
				return undo, err
			}
			healNet = true
		case Bridge:
			b := r.pickLive(f.Nodes)
			rest := without(r.live(), []int{b})
			half := len(rest) / 2
			if err := r.Net.Cut(r.ips(rest[:half]), r.ips(rest[half:])); err != nil {
				return undo, err
			}
			healNet = true
		case JoinLeave:
			j := r.C.Join()
			undo = append(undo, func() error {
				if err := r.C.WaitConverged(r.Converge); err != nil {
					return fmt.Errorf("before the joined node leaves: %w", err)
				}
				return r.C.Stop(j)
			})
		case LeaveRejoin:
			i := r.pickLive(f.Nodes)
			if err := r.C.Stop(i); err != nil {
				return undo, err
			}
			undo = append(undo, func() error { r.C.Restart(i); return nil })
		}
	}
	if healNet {
		undo = append([]func() error{r.Net.Heal}, undo...)
	}
	return undo, nil
}

// pickLive returns the first of want that is running, or any running node.
func (r *Runner) pickLive(want []int) int {
	live := r.live()
	for _, i := range want {
		if slices.Contains(live, i) {
			return i
		}
	}
	return live[0]
}

// someLive keeps the running nodes of want.
func (r *Runner) someLive(want []int) []int {
	live := r.live()
	var out []int
	for _, i := range want {
		if slices.Contains(live, i) {
			out = append(out, i)
		}
	}
	return out
}

func without(all, drop []int) []int {
	var out []int
	for _, i := range all {
		if !slices.Contains(drop, i) {
			out = append(out, i)
		}
	}
	return out
}
