package ring

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/buraksezer/consistent"
)

func newDiscardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i+1)
	}
	return out
}

func TestRingHash(t *testing.T) {
	if RingHash(128) != RingHash(128) {
		t.Fatal("RingHash is not stable")
	}
	if RingHash(128) == RingHash(127) {
		t.Fatal("RingHash ignores the partition count")
	}
	// Golden value: placement changed, or this hash did. Either way every
	// node of a mixed-version cluster would refuse the others; bump
	// placementVersion only on purpose.
	if got, want := RingHash(128), "216c566297455916"; got != want {
		t.Errorf("RingHash(128) = %s, want %s", got, want)
	}
}

func TestPartitionOfMatchesConsistent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, partitions := range []int{1, 7, 128, 271, 1024} {
		c := consistent.New([]consistent.Member{ringMember("n1"), ringMember("n2")},
			consistent.Config{PartitionCount: partitions, ReplicationFactor: virtualNodes, Load: loadFactor, Hasher: xxhasher{}})
		for i := 0; i < 2000; i++ {
			key := make([]byte, rng.IntN(40))
			for j := range key {
				key[j] = byte(rng.Uint32())
			}
			if got, want := PartitionOf(key, partitions), c.FindPartitionID(key); got != want {
				t.Fatalf("PartitionOf(%x, %d) = %d, consistent says %d", key, partitions, got, want)
			}
		}
	}
}

func TestPlaceDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 1; n <= 9; n++ {
		want := Place(ids(n), testPartitions)
		for range 20 {
			shuffled := append(ids(n), ids(n)[:rng.IntN(n+1)]...) // with duplicates
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if got := Place(shuffled, testPartitions); !reflect.DeepEqual(got, want) {
				t.Fatalf("Place(%v) differs from Place(%v)", shuffled, ids(n))
			}
		}
	}
	if Place(nil, testPartitions) != nil {
		t.Error("Place(nil) != nil")
	}
}

func TestPlaceInvariants(t *testing.T) {
	for _, partitions := range []int{1, 7, 128, 271} {
		for n := 1; n <= 12; n++ {
			as := Place(ids(n), partitions)
			if len(as) != partitions {
				t.Fatalf("n=%d p=%d: %d assignments", n, partitions, len(as))
			}
			owned := map[string]int{}
			for p, a := range as {
				switch {
				case a.Owner == "":
					t.Fatalf("n=%d p=%d: partition %d has no owner", n, partitions, p)
				case n == 1 && a.Replica != "":
					t.Fatalf("single member: partition %d has replica %q", p, a.Replica)
				case n > 1 && (a.Replica == "" || a.Replica == a.Owner):
					t.Fatalf("n=%d p=%d: partition %d owner %q replica %q", n, partitions, p, a.Owner, a.Replica)
				}
				owned[a.Owner]++
			}
			limit := int(math.Ceil(float64(partitions) / float64(n) * loadFactor))
			for id, k := range owned {
				if k > limit {
					t.Errorf("n=%d p=%d: %s owns %d partitions, bound %d", n, partitions, id, k, limit)
				}
			}
		}
	}
}

// movedPercent places testPartitions over before and after and returns the
// percentages of partitions whose owner and whose replica changed.
func movedPercent(before, after []string) (owner, replica float64) {
	o, r := Moved(Place(before, testPartitions), Place(after, testPartitions))
	return 100 * float64(o) / testPartitions, 100 * float64(r) / testPartitions
}

func TestMoved(t *testing.T) {
	a := []Assignment{{"n1", "n2"}, {"n2", "n3"}, {"n3", "n1"}}
	b := []Assignment{{"n1", "n3"}, {"n3", "n1"}, {"n3", "n1"}}
	if o, r := Moved(a, b); o != 1 || r != 2 {
		t.Errorf("Moved = %d, %d; want 1, 2", o, r)
	}
	if o, r := Moved(a, a[:1]); o != 2 || r != 2 {
		t.Errorf("Moved with a shorter slice = %d, %d; want 2, 2", o, r)
	}

	// The figures for the design: a 4th node joining 3, and each of 4
	// leaving.
	o, r := movedPercent(ids(3), ids(4))
	t.Logf("n4 joins n1..n3 (%d partitions): owner moved %.1f%%, replica moved %.1f%%", testPartitions, o, r)
	if o < 100.0/4/loadFactor || o == 100 {
		t.Errorf("owner moved %.1f%% on join: implausible", o)
	}
	for _, gone := range ids(4) {
		after := slices.DeleteFunc(ids(4), func(s string) bool { return s == gone })
		o, r := movedPercent(ids(4), after)
		t.Logf("%s leaves n1..n4: owner moved %.1f%%, replica moved %.1f%%", gone, o, r)
		if o == 0 {
			t.Errorf("no owner moved when %s left", gone)
		}
	}

	// How often does the replica inherit a removed owner's partitions?
	before := Place(ids(4), testPartitions)
	for _, gone := range ids(4) {
		after := Place(slices.DeleteFunc(ids(4), func(s string) bool { return s == gone }), testPartitions)
		owned, inherited := 0, 0
		for p := range before {
			if before[p].Owner == gone {
				owned++
				if after[p].Owner == before[p].Replica {
					inherited++
				}
			}
		}
		t.Logf("%s leaves: its replica becomes owner of %d of its %d partitions", gone, inherited, owned)
	}
}

// BenchmarkPlacementMoves reports the share of partitions whose owner and
// replica move when n4 joins n1..n3 and when n4 leaves n1..n4.
func BenchmarkPlacementMoves(b *testing.B) {
	var jo, jr, lo, lr float64
	for b.Loop() {
		jo, jr = movedPercent(ids(3), ids(4))
		lo, lr = movedPercent(ids(4), ids(3))
	}
	b.ReportMetric(jo, "join-owner-moved-%")
	b.ReportMetric(jr, "join-replica-moved-%")
	b.ReportMetric(lo, "leave-owner-moved-%")
	b.ReportMetric(lr, "leave-replica-moved-%")
}
