package mesh

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/peer"
)

// locksOf lists through node id's Backend, as the locks command does.
func locksOf(t *testing.T, mm *memMesh, id string, q node.LockQuery) node.LockList {
	t.Helper()
	l, err := mm.nodes[id].home.Locks(context.Background(), q)
	if err != nil {
		t.Fatalf("locks at %s: %v", id, err)
	}
	return l
}

func names(l node.LockList) []string {
	var out []string
	for _, e := range l.Locks {
		out = append(out, e.Name)
	}
	return out
}

// Every node answers locks with the locks of every partition, from their
// owners, with the holders' labels from their homes, and the same after
// a partition moves.
func TestLocksGathersEveryOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n3", "n2"}, "n1", "n2", "n3")
		defer mm.close()
		s1 := attach(t, mm, "n1", keyIn("s", 0))
		s3 := attach(t, mm, "n3", keyIn("s", 2))
		mm.nodes["n1"].clients.setLabel(s1.ID, "web:1")
		var want []string
		for p := range memParts {
			for i, s := range []node.SessionRef{s1, s3} {
				name := keyIn(fmt.Sprintf("app/%d", i), p)
				home := map[int]string{0: "n1", 1: "n3"}[i]
				if a := <-lockAsync(mm, home, s, name); a.err != nil || a.res.Status != locktable.Granted {
					t.Fatalf("lock %s: %+v", name, a)
				}
				want = append(want, name)
			}
		}
		if a := <-lockAsync(mm, "n1", s1, "zzz"); a.err != nil {
			t.Fatal(a.err)
		}
		slices.Sort(want)
		q := node.LockQuery{Prefix: []byte("app/"), Limit: 100}
		check := func(nodes ...string) {
			t.Helper()
			for _, id := range nodes {
				l := locksOf(t, mm, id, q)
				if !slices.Equal(names(l), want) || l.Truncated {
					t.Fatalf("locks at %s = %v (truncated %v), want %v", id, names(l), l.Truncated, want)
				}
				for _, e := range l.Locks {
					wantLabel := ""
					if e.Name[len("app/")] == '0' {
						wantLabel = "web:1"
					}
					if e.Label != wantLabel || e.Token == 0 {
						t.Fatalf("at %s: %+v, want label %q", id, e, wantLabel)
					}
				}
			}
		}
		check("n1", "n2", "n3")
		// The limit keeps the first; a truncated answer says so.
		if l := locksOf(t, mm, "n2", node.LockQuery{Prefix: []byte("app/"), Limit: 3}); !slices.Equal(names(l), want[:3]) || !l.Truncated {
			t.Fatalf("limit 3 = %v %v", names(l), l.Truncated)
		}
		// Partition 1's owner is cut off: the answer waits for its new
		// owner (which, without replicas here, holds nothing of it).
		mm.net.setCut("n2", true)
		done := make(chan node.LockList, 1)
		go func() {
			l, err := mm.nodes["n1"].home.Locks(context.Background(), q)
			if err != nil {
				t.Error(err)
			}
			done <- l
		}()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if len(done) != 0 {
			t.Fatal("answered without the owner of partitions 1 and 3")
		}
		mm.move(1, "n3")
		mm.move(3, "n1")
		l := <-done
		var left []string
		for _, n := range want {
			if p := partitionOf(n); p != 1 && p != 3 {
				left = append(left, n)
			}
		}
		if !slices.Equal(names(l), left) {
			t.Fatalf("after the move: %v, want %v", names(l), left)
		}
	})
}

func partitionOf(name string) int {
	for p := range memParts {
		for i := range 2 {
			if keyIn(fmt.Sprintf("app/%d", i), p) == name {
				return p
			}
		}
	}
	return -1
}

// A partition nobody answers for fails the whole command as retryable:
// never a silently partial list.
func TestLocksWithoutAnOwnerFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2")
		defer mm.close()
		mm.net.setCut("n2", true)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := mm.nodes["n1"].home.Locks(ctx, node.LockQuery{Limit: 10})
		if failure.ClassOf(err) != failure.Retryable {
			t.Fatalf("err = %v, want retryable", err)
		}
	})
}

// An owner whose answer is cut short (truncated) bounds the merge: what
// it left out sorts after its last lock, so the merged list stops there.
func TestLocksMergeStopsAtATruncatedOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n2"}, "n1", "n2")
		defer mm.close()
		// n2 answers with a few locks at most, whatever the limit.
		mm.nodes["n2"].owner.lim.listBytes = 20
		s := attach(t, mm, "n1", keyIn("s", 0))
		var want []string
		for p := range memParts {
			for i := range 3 {
				name := keyIn(fmt.Sprintf("k%d", i), p)
				if a := <-lockAsync(mm, "n1", s, name); a.err != nil {
					t.Fatal(a.err)
				}
				want = append(want, name)
				// Ages that interleave the owners' locks, so the held
				// order is not the name order.
				time.Sleep(time.Duration((p*7+i*3)%5) * time.Second)
			}
		}
		slices.Sort(want)
		// The true order of every lock, from a listing no owner cuts.
		mm.nodes["n2"].owner.lim.listBytes = 1 << 20
		full := map[node.LockOrder][]string{}
		for _, o := range []node.LockOrder{node.ByName, node.ByHeld, node.ByWaiters} {
			full[o] = names(locksOf(t, mm, "n1", node.LockQuery{Limit: 100, Order: o}))
			if len(full[o]) != len(want) {
				t.Fatalf("order %d: %d locks, want %d", o, len(full[o]), len(want))
			}
		}
		if slices.Equal(full[node.ByHeld], full[node.ByName]) {
			t.Fatalf("the held order is the name order (%v): the test would not tell them apart", full[node.ByHeld])
		}
		// Both owners cut their answers short, at different points, so
		// the merge must stop at the earliest of their last locks.
		mm.nodes["n2"].owner.lim.listBytes = 20
		mm.nodes["n1"].owner.lim.listBytes = 45
		for limit := 1; limit <= len(want)+1; limit++ {
			for _, o := range []node.LockOrder{node.ByName, node.ByHeld, node.ByWaiters} {
				l := locksOf(t, mm, "n1", node.LockQuery{Limit: limit, Order: o})
				if len(l.Locks) == 0 || len(l.Locks) > limit || !l.Truncated {
					t.Fatalf("limit %d order %d: %v %v", limit, o, names(l), l.Truncated)
				}
				// Whatever it lists is the true first few, in order.
				if !slices.Equal(names(l), full[o][:len(l.Locks)]) {
					t.Fatalf("limit %d order %d: %v, want a prefix of %v", limit, o, names(l), full[o])
				}
			}
		}
	})
}

// Labels are asked only of members gossip sees alive (a dead one would
// cost every listing the label timeout), and a label a member answers
// that a client could not have set (it would break the LOCK line) is
// left out.
func TestLocksLabelsFromLiveMembersOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n3", "n1"}, "n1", "n2", "n3")
		defer mm.close()
		s2 := attach(t, mm, "n2", keyIn("s", 1))
		s3 := attach(t, mm, "n3", keyIn("s", 2))
		mm.nodes["n2"].clients.setLabel(s2.ID, "two two") // no client could set it
		mm.nodes["n3"].clients.setLabel(s3.ID, "three:3")
		a2, a3 := keyIn("a", 0), keyIn("b", 0)
		for _, l := range []struct {
			home string
			s    node.SessionRef
			name string
		}{{"n2", s2, a2}, {"n3", s3, a3}} {
			if a := <-lockAsync(mm, l.home, l.s, l.name); a.err != nil || a.res.Status != locktable.Granted {
				t.Fatalf("lock %s: %+v", l.name, a)
			}
		}
		labels := func() map[string]string {
			t.Helper()
			out := map[string]string{}
			for _, e := range locksOf(t, mm, "n1", node.LockQuery{Limit: 10}).Locks {
				out[e.Name] = e.Label
			}
			return out
		}
		before := mm.net.count(peer.Labels)
		if got := labels(); got[a2] != "" || got[a3] != "three:3" {
			t.Fatalf("labels %v: want none for %s (not a label), three:3 for %s", got, a2, a3)
		}
		if asked := mm.net.count(peer.Labels) - before; asked != 3 {
			t.Fatalf("asked %d members for labels, want all 3", asked)
		}
		mm.net.setGone("n3", true)
		before = mm.net.count(peer.Labels)
		if got := labels(); got[a3] != "" {
			t.Fatalf("labels %v: want none from n3, which gossip calls dead", got)
		}
		if asked := mm.net.count(peer.Labels) - before; asked != 2 {
			t.Fatalf("asked %d members for labels, want the 2 alive", asked)
		}
	})
}

// An owner serves a few listings at once and refuses more as retryable:
// the asker tries again until its deadline, and answers once the owner
// has room.
func TestLocksWaitsForABusyOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n2", "n1", "n1"}, "n1", "n2")
		defer mm.close()
		busy := mm.nodes["n2"].owner.listing
		for range cap(busy) {
			busy <- struct{}{}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := mm.nodes["n1"].home.Locks(ctx, node.LockQuery{Limit: 10})
		cancel()
		if failure.ClassOf(err) != failure.Retryable {
			t.Fatalf("err = %v, want retryable while n2 is busy", err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := mm.nodes["n1"].home.Locks(context.Background(), node.LockQuery{Limit: 10})
			done <- err
		}()
		time.Sleep(time.Second)
		synctest.Wait()
		if len(done) != 0 {
			t.Fatal("answered while n2 was busy")
		}
		<-busy
		if err := <-done; err != nil {
			t.Fatalf("after n2 had room: %v", err)
		}
	})
}

// What an owner answers is checked before any of it reaches a client.
func TestDecodeListedRefusesWhatWasNotAsked(t *testing.T) {
	enc := func(name string, missed ...int) []byte {
		var e peer.Enc
		e.Uint(1)
		e.Str(name)
		e.Uint(7)
		e.Int(1)
		e.Uint(0)
		e.Str("sess")
		e.Bool(false)
		e.Uint(uint64(len(missed)))
		for _, p := range missed {
			e.Uint(uint64(p))
		}
		return e.B
	}
	if _, err := decodeListed(enc("ok", 2), []int{1, 2}); err != nil {
		t.Fatalf("a good answer: %v", err)
	}
	for _, c := range []struct {
		why string
		b   []byte
	}{
		{"a name with a space", enc("a b")},
		{"a name with a line end", enc("a\r\nLOCK x")},
		{"an empty name", enc("")},
		{"a partition not asked about", enc("ok", 3)},
		{"a partition twice", enc("ok", 1, 1)},
	} {
		if _, err := decodeListed(c.b, []int{1, 2}); err == nil {
			t.Errorf("%s: accepted", c.why)
		}
	}
}

// An owner refuses a listing that names a partition twice.
func TestListRefusesAPartitionAskedTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mm := newMemMesh(t, testHomeLease, [memParts]string{"n1", "n1", "n1", "n1"}, "n1")
		defer mm.close()
		o := mm.nodes["n1"].owner
		if _, err := o.list(context.Background(), encodeList(node.LockQuery{Limit: 5}, []int{0, 1})); err != nil {
			t.Fatalf("two partitions: %v", err)
		}
		if _, err := o.list(context.Background(), encodeList(node.LockQuery{Limit: 5}, []int{1, 1})); err == nil {
			t.Fatal("a partition asked twice was accepted")
		}
	})
}
