package nemesis

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/elock/elock/testcluster/history"
)

// Availability is what clients saw during the windows of one kind of
// fault (from its injection until the next step began).
type Availability struct {
	Kind     Kind
	Windows  int
	Answered int // a definite answer: 200, 409, 403, 400 no upgrade
	Refused  int // 503: retryable, nothing happened
	Unknown  int // outcome unknown (504, connection lost)
	// Longest is the longest time one lock name went without any
	// definite answer, in any window of this kind: from the window's
	// start or an answer to the next answer or the window's end.
	Longest time.Duration
	// LongestName and LongestEnd say where the longest gap was: which
	// name, and when it ended (on the history's clock).
	LongestName string
	LongestEnd  time.Duration
}

func (a Availability) String() string {
	return fmt.Sprintf("%s: %d answered, %d refused, %d unknown; longest gap %v (%s, until %v)",
		a.Kind, a.Answered, a.Refused, a.Unknown, a.Longest.Round(time.Millisecond), a.LongestName, a.LongestEnd.Round(time.Millisecond))
}

// gap records a gap of one name in a's longest, if it is.
func (a *Availability) gap(name string, from, to time.Duration) {
	if to-from > a.Longest {
		a.Longest, a.LongestName, a.LongestEnd = to-from, name, to
	}
}

// Fraction of operations answered definitely.
func (a Availability) Fraction() float64 {
	n := a.Answered + a.Refused + a.Unknown
	if n == 0 {
		return 1
	}
	return float64(a.Answered) / float64(n)
}

// Measure computes, per fault kind, the availability over the windows of
// the steps that included it. A step's window runs from its Start to the
// next step's Start (or the end of the history).
func Measure(h []history.Operation, steps []Step) []Availability {
	byKind := map[Kind]*Availability{}
	end := time.Duration(0)
	for _, o := range h {
		if o.Return != history.Never {
			end = max(end, o.Return)
		}
	}
	for i, st := range steps {
		from, to := st.Start, end
		if i+1 < len(steps) {
			to = steps[i+1].Start
		}
		for _, f := range st.Faults {
			a := byKind[f.Kind]
			if a == nil {
				a = &Availability{Kind: f.Kind}
				byKind[f.Kind] = a
			}
			a.Windows++
			lastOK := map[string]time.Duration{}
			var ops []history.Operation
			for _, o := range h {
				if (!o.Kind.Takes() && o.Kind != history.Unlock) || o.Call < from || o.Call >= to {
					continue
				}
				ops = append(ops, o)
			}
			slices.SortFunc(ops, func(x, y history.Operation) int { return int(x.Call - y.Call) })
			names := map[string]bool{}
			for _, o := range ops {
				names[o.Name] = true
				switch o.Status {
				case history.Refused:
					a.Refused++
				case history.Unknown:
					a.Unknown++
				default:
					a.Answered++
					last, ok := lastOK[o.Name]
					if !ok {
						last = from
					}
					a.gap(o.Name, last, o.Return)
					lastOK[o.Name] = max(last, o.Return)
				}
			}
			// A name still without an answer when the window closed was
			// unavailable until then at least.
			for n := range names {
				last, ok := lastOK[n]
				if !ok {
					last = from
				}
				a.gap(n, last, to)
			}
		}
	}
	out := make([]Availability, 0, len(byKind))
	for _, a := range byKind {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// Table renders availability figures, merged by kind.
func Table(as []Availability) string {
	merged := map[Kind]*Availability{}
	for _, a := range as {
		m := merged[a.Kind]
		if m == nil {
			c := a
			merged[a.Kind] = &c
			continue
		}
		m.Windows += a.Windows
		m.Answered += a.Answered
		m.Refused += a.Refused
		m.Unknown += a.Unknown
		if a.Longest > m.Longest {
			m.Longest, m.LongestName, m.LongestEnd = a.Longest, a.LongestName, a.LongestEnd
		}
	}
	var kinds []Kind
	for k := range merged {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	var b strings.Builder
	fmt.Fprintf(&b, "| fault | windows | answered 200/409/403 | refused 503 | unknown | longest wait of a name for an answer |\n|---|--:|--:|--:|--:|--:|\n")
	for _, k := range kinds {
		a := merged[k]
		n := a.Answered + a.Refused + a.Unknown
		fmt.Fprintf(&b, "| %s | %d | %.1f%% | %.1f%% | %.1f%% | %.1fs |\n", k, a.Windows, pct(a.Answered, n), pct(a.Refused, n), pct(a.Unknown, n), a.Longest.Seconds())
	}
	return b.String()
}

func pct(x, n int) float64 {
	if n == 0 {
		return 0
	}
	return 100 * float64(x) / float64(n)
}
