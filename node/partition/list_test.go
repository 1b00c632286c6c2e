package partition

import (
	"fmt"
	"slices"
	"testing"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
)

// List merges the partitions' listings into one, in order, cut at the
// limit, and names the partitions it was refused.
func TestListAcrossPartitions(t *testing.T) {
	s := newSet(t, 0)
	var want []string
	for i := range 40 {
		name := fmt.Sprintf("n%02d", i)
		want = append(want, name)
		if res, err := s.Lock(t.Context(), "s", []byte(name), 0); err != nil || res.Status != locktable.Granted {
			t.Fatalf("lock %s: %v %v", name, res.Status, err)
		}
	}
	if _, err := s.Lock(t.Context(), "s", []byte("other"), 0); err != nil {
		t.Fatal(err)
	}
	names := func(ls []locktable.Listed) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Name)
		}
		return out
	}
	got, trunc, missed := s.List(nil, []byte("n"), 100, locktable.ListByName)
	if !slices.Equal(names(got), want) || trunc || missed != nil {
		t.Fatalf("List = %v, %v, %v; want %v", names(got), trunc, missed, want)
	}
	got, trunc, _ = s.List(nil, []byte("n"), 7, locktable.ListByName)
	if !slices.Equal(names(got), want[:7]) || !trunc {
		t.Fatalf("List limit 7 = %v, %v; want %v, truncated", names(got), trunc, want[:7])
	}
	got, trunc, _ = s.List(nil, []byte("n"), 1, locktable.ListByName)
	if !slices.Equal(names(got), want[:1]) || !trunc {
		t.Fatalf("List limit 1 = %v, %v", names(got), trunc)
	}
	p := s.PartitionOf([]byte("other"))
	got, _, _ = s.List([]int{p}, nil, 100, locktable.ListByName)
	if !slices.Contains(names(got), "other") {
		t.Fatalf("List of partition %d = %v, want other in it", p, names(got))
	}
	if _, _, missed := s.List([]int{-1, 8}, nil, 10, locktable.ListByName); !slices.Equal(missed, []int{-1, 8}) {
		t.Fatalf("out-of-range partitions missed = %v", missed)
	}
}

// admitRep refuses reads of one partition, as for a partition another
// node owns.
type admitRep struct{ refuse int }

func (r admitRep) Admit(p int, _ Op) error {
	if p == r.refuse {
		return failure.Retry(failure.Moved, "moved")
	}
	return nil
}
func (admitRep) Record(int, []locktable.Change) uint64     { return 0 }
func (admitRep) Confirm(_ int, _ uint64, then func(error)) { then(nil) }

func TestListMissesRefusedPartitions(t *testing.T) {
	s, err := New(Config{Partitions: 4, Limits: locktable.Limits{MaxWaiters: 10}, Epoch: 1, Replicator: admitRep{refuse: 2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, _, missed := s.List(nil, nil, 10, locktable.ListByName); !slices.Equal(missed, []int{2}) {
		t.Fatalf("missed = %v, want [2]", missed)
	}
}
