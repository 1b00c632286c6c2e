package history

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Linearizability is the verdict of CheckLinearizable.
type Linearizability struct {
	// Result is porcupine's verdict over all names: Illegal if some name's
	// history is certainly not linearizable, else Unknown if the timeout
	// cut the search short, else Ok.
	Result porcupine.CheckResult
	// Names has one entry per lock name, sorted by name.
	Names []NameResult
	// TimedOut reports whether the search hit the timeout.
	TimedOut bool
	Elapsed  time.Duration

	model porcupine.Model
	info  porcupine.LinearizationInfo
}

// NameResult is the verdict on one lock name.
type NameResult struct {
	Name string
	// Ops is how many operations were checked for the name; Indeterminate
	// how many of them have an unknown outcome (each makes the search
	// costlier).
	Ops, Indeterminate int
	// Result is Ok if the name's history is linearizable, Illegal if not,
	// Unknown if the timeout stopped the search first. Porcupine does not
	// say which names it finished: once the search timed out, every name
	// without a linearization is reported Unknown, though some may be
	// Illegal (Linearizability.Result then says Illegal).
	Result porcupine.CheckResult
	// Detail explains a non-Ok result: how far porcupine got, in which
	// state, and which operation it could not place next.
	Detail string
}

// CheckLinearizable checks h with porcupine, one partition per lock name,
// against Step. Each partition holds the name's requests (lock, rlock and
// acquire, waiting or not), unlocks and drops, plus the unlock_all and
// expiry operations of every session that may have held the name. An operation with an unknown outcome ends
// after every other one. timeout bounds the whole search (0: no bound).
// The error reports a malformed history.
func CheckLinearizable(h []Operation, timeout time.Duration) (*Linearizability, error) {
	ops, err := prepare(h)
	if err != nil {
		return nil, err
	}
	// An unknown outcome returns after everything else.
	end := time.Duration(0)
	for _, o := range ops {
		end = max(end, o.Call)
		if o.Return != Never {
			end = max(end, o.Return)
		}
	}
	infinity := int64(end) + 1

	ns := names(ops)
	perName := byName(ops)
	parts := make([][]porcupine.Operation, len(ns))
	res := &Linearizability{Names: make([]NameResult, len(ns))}
	for i, n := range ns {
		// Sessions that may hold n. Release operations of any other
		// session are no-ops on n; leaving them out keeps the search small.
		mayHold := map[string]bool{}
		for _, o := range perName[n] {
			if o.Kind.Takes() && (o.Status == Acquired || o.Status == Unknown) {
				mayHold[o.Session] = true
			}
		}
		// Known tokens of n, sorted, distinct: each first shows in its new
		// grant, and the pruning in step waits for it there. A token that
		// a re-entrant grant may show first, after later tokens (see
		// mayReenter), is left out: nothing waits for it.
		reentrant := mayReenter(perName[n])
		hidden := map[uint64]bool{}
		for _, o := range perName[n] {
			if reentrant[o.id] {
				hidden[o.Token] = true
			}
		}
		var tokens []uint64
		for _, o := range perName[n] {
			if o.grant() && o.Token != 0 && !hidden[o.Token] {
				tokens = append(tokens, o.Token)
			}
		}
		slices.Sort(tokens)
		tokens = slices.Compact(tokens)
		nr := NameResult{Name: n}
		for _, o := range ops {
			var relevant bool
			switch {
			case o.Kind.Takes():
				relevant = o.Name == n
			case o.Kind == Unlock:
				// An unknown unlock by a session that never held n
				// changes nothing; a known one still observes n.
				relevant = o.Name == n && (o.Status != Unknown || mayHold[o.Session])
			case o.Kind == UnlockAll || o.Kind == Expire:
				relevant = mayHold[o.Session]
			case o.Kind == Drop:
				relevant = o.Name == n && mayHold[o.Session]
			}
			if !relevant {
				continue
			}
			ret := int64(o.Return)
			switch {
			case o.Return == Never:
				ret = infinity
				nr.Indeterminate++
			case o.Kind == Drop:
				// A drop may release (Drop): not releasing is the same
				// as releasing after everything else, which an open end
				// lets porcupine choose. Without it a drop would force
				// the release of a grant a resume had kept (full run 38,
				// seed 19: a grant made for a lost wait, kept by the
				// resume, then asked for again re-entrantly).
				ret = infinity
			}
			in := input{Operation: o.Operation}
			in.Name = n
			if o.grant() && o.Token != 0 {
				if j, _ := slices.BinarySearch(tokens, o.Token); j > 0 {
					in.pred = tokens[j-1]
				}
			}
			parts[i] = append(parts[i], porcupine.Operation{
				ClientId: o.Client,
				Input:    in,
				Call:     int64(o.Call),
				Output:   o.Result,
				Return:   ret,
				Metadata: meta{id: o.id, session: o.Session},
			})
		}
		nr.Ops = len(parts[i])
		res.Names[i] = nr
	}
	// Drop names left without operations (impossible today, but porcupine
	// must not see an empty partition).
	for i := len(parts) - 1; i >= 0; i-- {
		if len(parts[i]) == 0 {
			parts = slices.Delete(parts, i, i+1)
			res.Names = slices.Delete(res.Names, i, i+1)
		}
	}

	res.model = model(parts)
	var all []porcupine.Operation
	for _, p := range parts {
		all = append(all, p...)
	}
	start := time.Now()
	res.Result, res.info = porcupine.CheckOperationsVerbose(res.model, all, timeout)
	res.Elapsed = time.Since(start)
	res.TimedOut = res.Result == porcupine.Unknown || (timeout > 0 && res.Elapsed >= timeout)

	partials := res.info.PartialLinearizationsOperations()
	for i := range res.Names {
		nr := &res.Names[i]
		best := longest(partials[i])
		if len(best) == nr.Ops {
			nr.Result = porcupine.Ok
			continue
		}
		nr.Result = porcupine.Illegal
		if res.TimedOut {
			nr.Result = porcupine.Unknown
		}
		nr.Detail = explain(parts[i], best)
	}
	return res, nil
}

// longest returns the longest partial linearization, preferring, among
// equally long ones, the first in lexicographic order of operation ids,
// so that messages are deterministic.
func longest(ls [][]porcupine.Operation) []porcupine.Operation {
	var best []porcupine.Operation
	for _, l := range ls {
		if len(l) > len(best) || (len(l) == len(best) && lessIDs(l, best)) {
			best = l
		}
	}
	return best
}

func lessIDs(a, b []porcupine.Operation) bool {
	for i := range a {
		x, y := a[i].Metadata.(meta).id, b[i].Metadata.(meta).id
		if x != y {
			return x < y
		}
	}
	return false
}

// explain describes where the longest linearization of part stops: the
// state it reaches, and the first operation (by reply time) it leaves
// out, which every linearization must place before its reply.
func explain(part, prefix []porcupine.Operation) string {
	done := map[int]bool{}
	s := pstate{}
	for _, o := range prefix {
		in := o.Input.(input)
		in.Result = o.Output.(Result)
		_, s = step(s, in)
		done[o.Metadata.(meta).id] = true
	}
	var stuck *porcupine.Operation
	for i := range part {
		o := &part[i]
		if done[o.Metadata.(meta).id] {
			continue
		}
		if stuck == nil || o.Return < stuck.Return || (o.Return == stuck.Return && o.Call < stuck.Call) {
			stuck = o
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "at most %d of the operations can be ordered; after them the lock is %s", len(prefix), s.State)
	if stuck != nil {
		op := stuck.Input.(input).Operation
		op.Result = stuck.Output.(Result)
		if op.Status == Unknown {
			op.Return = Never
		}
		fmt.Fprintf(&b, ", and the earliest-returning operation left out is #%d %s", stuck.Metadata.(meta).id, op)
		if in := stuck.Input.(input); op.Status == Acquired && op.Token > s.seen && in.pred > s.seen {
			for _, o := range part {
				if x := o.Input.(input); o.Output.(Result).Status == Acquired && o.Output.(Result).Token == in.pred {
					fmt.Fprintf(&b, ", whose token cannot be granted before token %d of #%d %s", in.pred, o.Metadata.(meta).id, x.Operation)
					break
				}
			}
		}
	}
	return b.String()
}

// OK reports whether every name is linearizable.
func (l *Linearizability) OK() bool { return l.Result == porcupine.Ok }

// String summarises the verdict, one line per name that is not Ok.
func (l *Linearizability) String() string {
	var b strings.Builder
	ops, unknown := 0, 0
	for _, n := range l.Names {
		ops += n.Ops
		unknown += n.Indeterminate
	}
	fmt.Fprintf(&b, "linearizability: %s (%d names, %d operations of which %d indeterminate, checked in %v", l.Result, len(l.Names), ops, unknown, l.Elapsed.Round(time.Millisecond))
	if l.TimedOut {
		b.WriteString(", timed out")
	}
	b.WriteString(")")
	for _, n := range l.Names {
		if n.Result == porcupine.Ok {
			continue
		}
		what := "not linearizable"
		if n.Result == porcupine.Unknown {
			what = "not verified before the timeout (or not linearizable)"
		}
		fmt.Fprintf(&b, "\n  lock %q: %s (%d operations, %d indeterminate): %s", n.Name, what, n.Ops, n.Indeterminate, n.Detail)
	}
	return b.String()
}

// Err returns nil if OK, else an error carrying String.
func (l *Linearizability) Err() error {
	if l.OK() {
		return nil
	}
	return fmt.Errorf("history: %s", l)
}

// WriteVisualization writes porcupine's HTML visualisation of the check,
// every name a partition, to path.
func (l *Linearizability) WriteVisualization(path string) error {
	if err := porcupine.VisualizePath(l.model, l.info, path); err != nil {
		return fmt.Errorf("history: visualization: %w", err)
	}
	return nil
}
