package nemesis

import (
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/history"
)

func TestMeasure(t *testing.T) {
	s := time.Second
	op := func(name string, st history.Status, call, ret time.Duration) history.Operation {
		return history.Operation{Op: history.Op{Kind: history.Lock, Name: name}, Result: history.Result{Status: st}, Call: call, Return: ret}
	}
	h := []history.Operation{
		// Window of the pause: 10s..20s.
		op("a", history.Acquired, 10*s, 11*s),
		op("a", history.Refused, 12*s, 12*s),
		op("a", history.Unknown, 13*s, history.Never),
		op("a", history.Unavailable, 14*s, 17*s), // a: answers at 11s and 17s
		op("b", history.Refused, 15*s, 15*s),     // b: no answer until the window ends
		{Op: history.Op{Kind: history.Resume}, Result: history.Result{Status: history.OK}, Call: 15 * s, Return: 15 * s},
		// Window of the kill: 20s..30s (the end of the history).
		op("a", history.Acquired, 20*s, 21*s),
		op("a", history.Unlocked, 22*s, 30*s),
	}
	steps := []Step{
		{Faults: []Fault{{Kind: Pause}}, Start: 10 * s},
		{Faults: []Fault{{Kind: KillRestart}, {Kind: OneWay}}, Start: 20 * s},
	}
	got := Measure(h, steps)
	want := map[Kind]Availability{
		Pause:       {Kind: Pause, Windows: 1, Answered: 2, Refused: 2, Unknown: 1, Longest: 10 * s, LongestName: "b", LongestEnd: 20 * s},
		KillRestart: {Kind: KillRestart, Windows: 1, Answered: 2, Longest: 9 * s, LongestName: "a", LongestEnd: 30 * s},
		OneWay:      {Kind: OneWay, Windows: 1, Answered: 2, Longest: 9 * s, LongestName: "a", LongestEnd: 30 * s},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d kinds, want %d: %+v", len(got), len(want), got)
	}
	for _, a := range got {
		if a != want[a.Kind] {
			t.Errorf("%s: got %+v, want %+v", a.Kind, a, want[a.Kind])
		}
	}
	table := Table(append(got, Availability{Kind: Pause, Windows: 1, Answered: 5, Longest: s}))
	for _, line := range []string{"| pause | 2 | 70.0% | 20.0% | 10.0% | 10.0s |", "| kill-restart | 1 | 100.0% | 0.0% | 0.0% | 9.0s |"} {
		if !strings.Contains(table, line) {
			t.Errorf("table lacks %q:\n%s", line, table)
		}
	}
}
