package locktable

import (
	"math/rand/v2"
	"slices"
	"testing"
)

type item struct {
	d   Time
	idx int
	id  int
}

func (x *item) when() Time  { return x.d }
func (x *item) index() *int { return &x.idx }

func (x *item) before(o *item) bool { return x.id < o.id }

// checkHeap verifies the heap property and that every entry knows where it
// is.
func checkHeap(t *testing.T, h *deadlineHeap[*item]) {
	t.Helper()
	for i, x := range h.items {
		if x.idx != i {
			t.Fatalf("item %d at %d thinks it is at %d", x.id, i, x.idx)
		}
		if i > 0 && h.less(i, (i-1)/2) {
			t.Fatalf("heap property broken at %d", i)
		}
	}
}

// TestHeapAgainstSortedSlice pushes and removes at random and compares the
// minimum with a sorted slice of the live deadlines.
func TestHeapAgainstSortedSlice(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var h deadlineHeap[*item]
		var live []*item // the model: live items, any order
		var dead []*item // removed items, to remove again
		for step := range 2000 {
			switch op := rng.IntN(10); {
			case op < 5 || len(live) == 0:
				// Few distinct deadlines, so ties are common.
				x := &item{d: Time(rng.IntN(20) - 5), idx: -1, id: step}
				h.push(x)
				live = append(live, x)
			case op < 8:
				i := rng.IntN(len(live))
				x := live[i]
				h.remove(x)
				if x.idx != -1 {
					t.Fatalf("removed item keeps index %d", x.idx)
				}
				live = slices.Delete(live, i, i+1)
				dead = append(dead, x)
			case op < 9:
				// Removing the minimum the way Tick does: peek, remove.
				x, ok := h.peek()
				if !ok {
					t.Fatal("peek on a non-empty heap failed")
				}
				h.remove(x)
				i := slices.Index(live, x)
				live = slices.Delete(live, i, i+1)
				dead = append(dead, x)
			default:
				if len(dead) > 0 {
					// Removing what is not in the heap changes nothing.
					before := slices.Clone(h.items)
					h.remove(dead[rng.IntN(len(dead))])
					if !slices.Equal(before, h.items) {
						t.Fatal("removing an absent item changed the heap")
					}
				}
			}
			checkHeap(t, &h)
			if len(h.items) != len(live) {
				t.Fatalf("seed %d step %d: heap has %d items, model %d", seed, step, len(h.items), len(live))
			}
			d, ok := h.min()
			if len(live) == 0 {
				if ok {
					t.Fatal("min of an empty heap")
				}
				continue
			}
			want := slices.MinFunc(live, func(a, b *item) int { return int(a.d - b.d) }).d
			if !ok || d != want {
				t.Fatalf("seed %d step %d: min = %d, %v; want %d", seed, step, d, ok, want)
			}
			if p, _ := h.peek(); p.d != want {
				t.Fatalf("peek has deadline %d, want %d", p.d, want)
			}
		}
		// Draining in peek order yields the deadlines sorted.
		var got, want []Time
		for _, x := range live {
			want = append(want, x.d)
		}
		slices.Sort(want)
		for {
			x, ok := h.peek()
			if !ok {
				break
			}
			h.remove(x)
			got = append(got, x.d)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("drained %v, want %v", got, want)
		}
	}
}

func TestHeapEmpty(t *testing.T) {
	var h deadlineHeap[*item]
	if _, ok := h.min(); ok {
		t.Error("min of empty heap")
	}
	if x, ok := h.peek(); ok || x != nil {
		t.Error("peek of empty heap")
	}
	h.remove(&item{idx: -1})
	h.remove(&item{idx: 3})
	x := &item{d: 7, idx: -1}
	h.push(x)
	h.remove(&item{d: 7, idx: 0}) // right index, other item
	if len(h.items) != 1 || h.items[0] != x {
		t.Error("removing a stranger with a matching index removed an entry")
	}
}
