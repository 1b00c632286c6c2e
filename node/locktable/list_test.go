package locktable_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
)

// TestList checks the listing query: prefix, order, limit and the
// truncation flag, on a table with holders of known ages and queues.
func TestList(t *testing.T) {
	tb := locktable.New(1, locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Second}, false)
	sec := int64(time.Second)
	lock := func(now int64, s, name string) {
		t.Helper()
		if _, _, err := tb.Lock(now, s, []byte(name), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	queue := func(now int64, s, name string, w locktable.WaiterID) {
		t.Helper()
		res, _, err := tb.Lock(now, s, []byte(name), w, now+100*sec)
		if err != nil || res.Status != locktable.Queued {
			t.Fatalf("queue %s on %s: %v %v", s, name, res.Status, err)
		}
	}
	lock(0, "s1", "app/b")     // held 10 s at now
	lock(2*sec, "s2", "app/a") // 8 s
	lock(5*sec, "s3", "app/c") // 5 s
	lock(1*sec, "s4", "zed")   // 9 s, outside the prefix
	queue(6*sec, "s5", "app/c", 1)
	queue(6*sec, "s6", "app/c", 2)
	queue(6*sec, "s7", "app/a", 3)
	now := 10 * sec

	names := func(ls []locktable.Listed) string {
		out := ""
		for _, l := range ls {
			out += fmt.Sprintf("%s/%s/%d/%d ", l.Name, l.Session, l.HeldFor/time.Second, l.Waiters)
		}
		return out
	}
	tests := []struct {
		prefix string
		limit  int
		order  locktable.ListOrder
		want   string
		trunc  bool
	}{
		{"app/", 10, locktable.ListByName, "app/a/s2/8/1 app/b/s1/10/0 app/c/s3/5/2 ", false},
		{"", 10, locktable.ListByName, "app/a/s2/8/1 app/b/s1/10/0 app/c/s3/5/2 zed/s4/9/0 ", false},
		{"app/", 2, locktable.ListByName, "app/a/s2/8/1 app/b/s1/10/0 ", true},
		{"app/", 3, locktable.ListByName, "app/a/s2/8/1 app/b/s1/10/0 app/c/s3/5/2 ", false},
		{"", 2, locktable.ListByHeld, "app/b/s1/10/0 zed/s4/9/0 ", true},
		{"app/", 10, locktable.ListByHeld, "app/b/s1/10/0 app/a/s2/8/1 app/c/s3/5/2 ", false},
		{"", 3, locktable.ListByWaiters, "app/c/s3/5/2 app/a/s2/8/1 app/b/s1/10/0 ", true},
		{"nope", 10, locktable.ListByName, "", false},
		{"app/", 0, locktable.ListByName, "", true},
		{"app/a", 10, locktable.ListByName, "app/a/s2/8/1 ", false},
	}
	for _, tc := range tests {
		got, trunc := tb.List(now, []byte(tc.prefix), tc.limit, tc.order)
		if names(got) != tc.want || trunc != tc.trunc {
			t.Errorf("List(%q, %d, %d) = %q, %v; want %q, %v", tc.prefix, tc.limit, tc.order, names(got), trunc, tc.want, tc.trunc)
		}
	}
	// Listing reads only: the table is as it was.
	before := tb.Snapshot(now)
	tb.List(now, nil, 10, locktable.ListByHeld)
	if !reflect.DeepEqual(before, tb.Snapshot(now)) {
		t.Error("List changed the table")
	}
}

// TestListOrderTies breaks ties by name in every order.
func TestListOrderTies(t *testing.T) {
	a := locktable.Listed{Name: "a", HeldFor: time.Second, Waiters: 1}
	b := locktable.Listed{Name: "b", HeldFor: time.Second, Waiters: 1}
	for _, o := range []locktable.ListOrder{locktable.ListByName, locktable.ListByHeld, locktable.ListByWaiters} {
		if o.Compare(a, b) >= 0 || o.Compare(b, a) <= 0 || o.Compare(a, a) != 0 {
			t.Errorf("order %d does not break a tie by name", o)
		}
	}
}

// TestListKeepsTheTrueTop checks List against sorting every match and
// cutting at the limit, on random tables with many ties in age and
// queue length: the bounded heap List keeps must give the same answer in
// every order, for every limit.
func TestListKeepsTheTrueTop(t *testing.T) {
	sec := int64(time.Second)
	for seed := range 30 {
		rng := rand.New(rand.NewPCG(uint64(seed), 1))
		tb := locktable.New(1, locktable.Limits{MaxWaiters: 10, DefaultTimeout: time.Second}, false)
		n := 1 + rng.IntN(60)
		w := locktable.WaiterID(1)
		for i := range n {
			name := fmt.Sprintf("%c/%d", 'a'+rng.IntN(3), i)
			at := int64(rng.IntN(4)) * sec // few distinct ages: ties
			if _, _, err := tb.Lock(at, fmt.Sprint("h", i), []byte(name), 0, 0); err != nil {
				t.Fatal(err)
			}
			for range rng.IntN(3) {
				if _, _, err := tb.Lock(at, fmt.Sprint("w", w), []byte(name), w, 100*sec); err != nil {
					t.Fatal(err)
				}
				w++
			}
		}
		now := 10 * sec
		for _, prefix := range []string{"", "a/", "b/1"} {
			all, _ := tb.List(now, []byte(prefix), n+1, locktable.ListByName)
			for _, o := range []locktable.ListOrder{locktable.ListByName, locktable.ListByHeld, locktable.ListByWaiters} {
				want := slices.Clone(all)
				slices.SortFunc(want, o.Compare)
				for limit := 1; limit <= len(all)+1; limit++ {
					got, truncated := tb.List(now, []byte(prefix), limit, o)
					cut := want[:min(limit, len(want))]
					if !reflect.DeepEqual(got, cut) && !(len(got) == 0 && len(cut) == 0) || truncated != (len(want) > limit) {
						t.Fatalf("seed %d, prefix %q, order %d, limit %d: got %d (truncated %v), want %d of %d", seed, prefix, o, limit, len(got), truncated, len(cut), len(want))
					}
				}
			}
		}
	}
}
