package replication

import (
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/elock/elock/ring"
)

const testParts = 16

// cluster builds a table over nodes with the ring's placement, every
// partition synced at epoch 100.
func cluster(ids ...string) (*State, map[int]uint64) {
	st := &State{Nodes: map[string]Node{}}
	for _, id := range ids {
		st.Nodes[id] = Node{ID: id, Nonce: id + "-1"}
	}
	synced := map[int]uint64{}
	for p, a := range ring.Place(ids, testParts) {
		st.Parts = append(st.Parts, Part{Epoch: 100, Owner: a.Owner, ONonce: a.Owner + "-1", Replica: a.Replica, RNonce: a.Replica + "-1"})
		synced[p] = 100
	}
	return st, synced
}

// partWhere returns the first partition for which f holds, or -1.
func partWhere(st *State, f func(Part) bool) int {
	for i, cur := range st.Parts {
		if f(cur) {
			return i
		}
	}
	return -1
}

func view(st *State, synced map[int]uint64, dead ...string) leaderView {
	isDead := func(inc Incarnation) bool {
		return slices.Contains(dead, inc.ID) || st.Nodes[inc.ID].Nonce != inc.Nonce
	}
	var usable []string
	for id, n := range st.Nodes {
		if !slices.Contains(dead, id) && !n.Leaving {
			usable = append(usable, id)
		}
	}
	slices.Sort(usable)
	return leaderView{
		usable:   usable,
		alive:    func(inc Incarnation) bool { return !isDead(inc) },
		fresh:    func(inc Incarnation) bool { return !isDead(inc) },
		synced:   synced,
		informed: true,
		gone:     isDead,
		// Every live replica has reported since any owner's lease ran out.
		reportedAfter: func(Incarnation, Incarnation) bool { return true },
	}
}

func TestPlanStable(t *testing.T) {
	st, synced := cluster("a", "b", "c")
	repairs, handovers, _ := plan(st, view(st, synced), testParts, 100)
	if len(repairs) != 0 || len(handovers) != 0 {
		t.Fatalf("a healthy placed table changed: %v %v", repairs, handovers)
	}
}

// An owner whose lease ran out is taken over by its live replica: the
// replica holds the state. Its replica is replaced at the same epoch.
func TestPlanTakeover(t *testing.T) {
	st, synced := cluster("a", "b", "c")
	repairs, _, _ := plan(st, view(st, synced, "a"), testParts, 100)
	for _, r := range repairs {
		cur := st.Parts[r.P]
		switch {
		case cur.Owner == "a":
			if r.To.Mode != Takeover || r.To.Owner != cur.Replica || r.To.ONonce != cur.RNonce {
				t.Errorf("partition %d of a: %+v, want a takeover by its replica %s", r.P, r.To, cur.Replica)
			}
			if r.To.Replica == "" || r.To.Replica == "a" || r.To.Replica == r.To.Owner {
				t.Errorf("partition %d: new replica %q", r.P, r.To.Replica)
			}
		case cur.Replica == "a":
			if r.To.Mode != Keep || r.To.Owner != cur.Owner || r.To.Replica == "a" {
				t.Errorf("partition %d replicated by a: %+v, want a new replica", r.P, r.To)
			}
		default:
			t.Errorf("partition %d untouched by a's death changed: %+v", r.P, r.To)
		}
		if r.From != cur.Epoch || r.To.Epoch != cur.Epoch+1 {
			t.Errorf("partition %d: epoch %d -> %d from %d", r.P, r.From, r.To.Epoch, cur.Epoch)
		}
	}
	if len(repairs) == 0 {
		t.Fatal("nothing taken over")
	}
}

// With owner and replica both gone, nothing survived: the partition is
// lost and starts empty behind a lock-delay.
func TestPlanDoubleFailure(t *testing.T) {
	st, synced := cluster("a", "b", "c", "d", "e")
	repairs, _, _ := plan(st, view(st, synced, "a", "b"), testParts, 100)
	lost := 0
	for _, r := range repairs {
		cur := st.Parts[r.P]
		both := (cur.Owner == "a" || cur.Owner == "b") && (cur.Replica == "a" || cur.Replica == "b")
		if both != (r.To.Mode == Lost) {
			t.Errorf("partition %d (owner %s replica %s): mode %v", r.P, cur.Owner, cur.Replica, r.To.Mode)
		}
		if r.To.Mode == Lost {
			lost++
			if r.To.Owner == "a" || r.To.Owner == "b" || r.To.Owner == "" {
				t.Errorf("lost partition %d given to %q", r.P, r.To.Owner)
			}
			if r.To.LostAt != r.To.Epoch {
				t.Errorf("lost partition %d: lost at %d, recorded %d", r.P, r.To.Epoch, r.To.LostAt)
			}
		}
	}
	t.Logf("%d of %d partitions lost", lost, testParts)
}

// The epoch of a partition's last loss goes with it to every later epoch,
// for nodes that skip epochs (see TestSkippedLossBeforeAKeepStartsOver).
func TestPlanCarriesTheLastLoss(t *testing.T) {
	st, synced := cluster("a", "b", "c", "d")
	for p := range st.Parts {
		st.Parts[p].LostAt = 1
	}
	repairs, _, _ := plan(st, view(st, synced, "a"), testParts, 100)
	if len(repairs) == 0 {
		t.Fatal("nothing moved")
	}
	for _, r := range repairs {
		if r.To.LostAt != 1 {
			t.Errorf("partition %d moved (%v) without its last loss: %d", r.P, r.To.Mode, r.To.LostAt)
		}
	}
}

// A partition still in the lock-delay of an earlier loss carries it
// through every kind of move: a takeover, a keep and a hand-over each
// give the next owner the unsettled loss (found by the fault suite: a
// keep, then a hand-over, dropped it, and the new owner granted at once).
// A settled loss stays settled.
func TestPlanMovesCarryAnUnsettledLoss(t *testing.T) {
	st, synced := cluster("a", "b", "c")
	st.Parts[0].Mode, st.Parts[0].LostAt = Lost, 100
	cur := st.Parts[0]
	check := func(what string, to Part, settled bool) {
		t.Helper()
		if to.LostAt != 100 || to.Settled != settled || to.Mode == Lost {
			t.Errorf("%s of a partition lost at 100 (settled %v): %+v", what, settled, to)
		}
	}
	repairs, _, _ := plan(st, view(st, synced, cur.Owner), testParts, 100)
	found := false
	for _, r := range repairs {
		if r.P == 0 {
			found = true
			if r.To.Mode != Takeover {
				t.Errorf("takeover of a lost partition: mode %v", r.To.Mode)
			}
			check("a takeover", r.To, false)
		}
	}
	if !found {
		t.Fatal("partition 0 was not taken over")
	}
	check("a keep", keep(st, 0, cur, "c", true).To, false)
	check("a hand-over", move(st, 0, cur, cur.Replica, cur.Owner, Handover).To, false)
	st.Parts[0].Settled = true
	check("a keep", keep(st, 0, st.Parts[0], "c", true).To, true)
	if to := move(st, 0, st.Parts[0], "c", "", Lost).To; to.LostAt != to.Epoch || to.Settled {
		t.Errorf("a new loss: %+v; want it unsettled at its own epoch", to)
	}
}

// A node that restarted is a new incarnation under the same id: the old
// one's partitions are taken over, and the old one as replica is replaced,
// even by the same id.
func TestPlanRestartedNode(t *testing.T) {
	st, synced := cluster("a", "b", "c")
	st.Nodes["a"] = Node{ID: "a", Nonce: "a-2"}
	repairs, _, _ := plan(st, view(st, synced), testParts, 100)
	for _, r := range repairs {
		cur := st.Parts[r.P]
		if cur.Owner == "a" && r.To.Mode != Takeover {
			t.Errorf("partition %d owned by the old a: %v", r.P, r.To.Mode)
		}
		if r.To.Owner == "a" && r.To.ONonce != "a-2" || r.To.Replica == "a" && r.To.RNonce != "a-2" {
			t.Errorf("partition %d assigned to the old incarnation: %+v", r.P, r.To)
		}
	}
	if len(repairs) == 0 {
		t.Fatal("the restart changed nothing")
	}
}

// A leaving owner first gets its future owner as replica, then, once
// synced, hands over; at most maxMoves per round.
func TestPlanLeaveHandsOver(t *testing.T) {
	st, synced := cluster("a", "b", "c")
	st.Nodes["a"] = Node{ID: "a", Nonce: "a-1", Leaving: true}
	repairs, handovers, _ := plan(st, view(st, synced), testParts, 3)
	if len(repairs)+len(handovers) == 0 {
		t.Fatal("a leaving node keeps its partitions")
	}
	moves := 0
	for _, h := range handovers {
		if h.cur.Owner != "a" || h.to != h.cur.Replica || h.next == "a" {
			t.Errorf("hand-over %+v", h)
		}
		moves++
	}
	for _, r := range repairs {
		cur := st.Parts[r.P]
		if cur.Replica == "a" { // a replaced as replica: a repair, not a move
			continue
		}
		if cur.Owner == "a" && (r.To.Mode != Keep || r.To.Owner != "a") {
			t.Errorf("partition %d: %+v, want a keeps it while its future owner syncs", r.P, r.To)
		}
		moves++
	}
	if moves > 3 {
		t.Errorf("%d moves in one round, want at most 3", moves)
	}
	// Unsynced replicas are not handed over to.
	_, handovers, _ = plan(st, view(st, map[int]uint64{}), testParts, 100)
	if len(handovers) != 0 {
		t.Errorf("handed over to unsynced replicas: %v", handovers)
	}
}

// A join moves partitions to the new node: the ring's owner for some
// partitions becomes the new node, which first becomes their replica.
func TestPlanJoinMovesTowardPlacement(t *testing.T) {
	st, synced := cluster("a", "b", "c")
	st.Nodes["d"] = Node{ID: "d", Nonce: "d-1"}
	repairs, _, _ := plan(st, view(st, synced), testParts, 100)
	toD := 0
	for _, r := range repairs {
		if r.To.Replica == "d" && r.To.Mode == Keep {
			toD++
		}
	}
	if toD == 0 {
		t.Fatal("no partition moves toward the joined node")
	}
}

func TestPlanDeterministic(t *testing.T) {
	st, synced := cluster("a", "b", "c", "d")
	r1, h1, _ := plan(st, view(st, synced, "b"), testParts, 5)
	r2, h2, _ := plan(st, view(st, synced, "b"), testParts, 5)
	if !reflect.DeepEqual(r1, r2) || !reflect.DeepEqual(h1, h2) {
		t.Fatal("plan gave two answers for one input")
	}
}

// Owner and replica out of reach but not known to be gone (a network
// partition): the partition waits for them, unserved, rather than start
// empty and lose grants that still exist on the other side.
func TestPlanBothUnreachableWaits(t *testing.T) {
	st, synced := cluster("a", "b", "c", "d", "e")
	v := view(st, synced, "a", "b")
	v.gone = func(Incarnation) bool { return false }
	repairs, _, _ := plan(st, v, testParts, 100)
	for _, r := range repairs {
		cur := st.Parts[r.P]
		if r.To.Mode == Lost {
			t.Errorf("partition %d (owner %s, replica %s) declared lost while both may come back", r.P, cur.Owner, cur.Replica)
		}
	}
}

// A dead owner whose replica has no full copy yet (it was assigned, and
// the copy is still on its way) is not taken over: the replica holds none
// of the owner's grants. The partition waits for the owner while it may
// come back, and is lost, behind a lock-delay, once the owner is gone.
func TestPlanUnsyncedReplicaDoesNotTakeOver(t *testing.T) {
	st, synced := cluster("a", "b", "c", "d")
	for p, cur := range st.Parts {
		if cur.Owner == "a" {
			delete(synced, p)
		}
	}
	v := view(st, synced, "a")
	v.gone = func(Incarnation) bool { return false } // a is only out of reach
	repairs, _, _ := plan(st, v, testParts, 100)
	for _, r := range repairs {
		if st.Parts[r.P].Owner == "a" {
			t.Errorf("partition %d of unreachable a with an unsynced replica changed: %+v", r.P, r.To)
		}
	}
	repairs, _, _ = plan(st, view(st, synced, "a"), testParts, 100) // a is gone
	n := 0
	for _, r := range repairs {
		if st.Parts[r.P].Owner == "a" {
			n++
			if r.To.Mode != Lost {
				t.Errorf("partition %d of gone a with an unsynced replica: mode %v, want lost", r.P, r.To.Mode)
			}
		}
	}
	if n == 0 {
		t.Fatal("no partition of a was decided")
	}

	// A new leader that has not yet heard every replica's report does not
	// take a missing report for a missing copy.
	v = view(st, synced, "a")
	v.informed = false
	repairs, _, _ = plan(st, v, testParts, 100)
	for _, r := range repairs {
		if st.Parts[r.P].Owner == "a" {
			t.Errorf("partition %d of gone a decided (%v) before its replica could report", r.P, r.To.Mode)
		}
	}
}

// A replica replaced while synced is recorded as the previous replica: if
// the owner then dies before the new replica has a copy, its copy is the
// latest one left. A leaving replica takes its copy away, and a replica
// replaced before the leader heard of its copy is recorded all the same.
func TestPlanKeepRecordsPrevReplica(t *testing.T) {
	st, synced := cluster("a", "b", "c", "d")
	p := partWhere(st, func(cur Part) bool { return cur.Replica == "b" })
	if p < 0 {
		t.Fatal("b replicates nothing")
	}
	repairs, _, _ := plan(st, view(st, synced, "b"), testParts, 100)
	var to Part
	for _, r := range repairs {
		if r.P == p {
			to = r.To
		}
	}
	if to.Mode != Keep || to.Replica == "b" || !to.PrevIs("b", "b-1") || to.PEpoch != 100 {
		t.Fatalf("replacing synced replica b: %+v; want Prev b at epoch 100", to)
	}
	// A replica that leaves takes its copy away: it is not recorded.
	leaving, lsynced := cluster("a", "b", "c", "d")
	n := leaving.Nodes["b"]
	n.Leaving = true
	leaving.Nodes["b"] = n
	repairs, _, _ = plan(leaving, view(leaving, lsynced), testParts, 100)
	for _, r := range repairs {
		if r.P == p && r.To.Prev != "" {
			t.Fatalf("replacing leaving replica b: %+v; want no previous replica", r.To)
		}
	}
	// The new replica is replaced in turn before the leader heard that it
	// got its copy. It may have got it, and the owner may have granted
	// since; or not, and b's copy is still the latest. The owner is asked
	// which; then the copy it names is recorded (the new replica's is
	// taken over from only if it reports a copy).
	st.Parts[p] = to
	delete(synced, p)
	ck := checkOf(t, st, view(st, synced, "b", to.Replica), p)
	if a := keep(st, p, ck.cur, ck.replica, true).To; !a.PrevIs(to.Replica, to.RNonce) || a.PEpoch != to.Epoch {
		t.Fatalf("replacing a replica that held a copy: %+v; want Prev %s at epoch %d", a, to.Replica, to.Epoch)
	}
	if a := keep(st, p, ck.cur, ck.replica, false).To; !a.PrevIs("b", "b-1") || a.PEpoch != 100 {
		t.Fatalf("replacing a replica that never held a copy: %+v; want Prev b at epoch 100", a)
	}
}

// checkOf returns the check plan makes of partition p, failing t if it
// makes none, or decides p without one.
func checkOf(t *testing.T, st *State, v leaderView, p int) check {
	t.Helper()
	repairs, _, checks := plan(st, v, testParts, 100)
	for _, r := range repairs {
		if r.P == p {
			t.Fatalf("partition %d decided without asking its owner: %+v", p, r.To)
		}
	}
	for _, c := range checks {
		if c.p == p {
			return c
		}
	}
	t.Fatalf("partition %d: no replica check", p)
	return check{}
}

// A takeover records the old owner as the previous copy. When the new
// owner's replica is replaced before the leader heard that it synced,
// the owner is asked: if the replica held a copy, the old owner's copy
// may miss grants the new owner made at its epoch, and the replica is
// recorded instead, so the old owner cannot take over without them
// (found by review). If it never held one, the old owner's copy is the
// only complete one, and stays on record (found by the fault suite: it
// was pushed off, and the partition lost).
func TestPlanKeepAfterTakeoverAsksTheOwner(t *testing.T) {
	st, synced := cluster("a", "b", "c", "d")
	p := partWhere(st, func(cur Part) bool { return cur.Owner == "b" })
	// b took over p from a (paused) at epoch 101; its replica c is now
	// out of reach, and no report of c's copy has reached the leader.
	cur := st.Parts[p]
	replica := "c"
	if cur.Replica == "c" {
		replica = "d"
	}
	st.Parts[p] = Part{Epoch: 101, Owner: "b", ONonce: "b-1", Replica: replica, RNonce: replica + "-1", Mode: Takeover, Prev: "a", PNonce: "a-1", PEpoch: 100}
	delete(synced, p)
	v := view(st, synced, replica)
	ck := checkOf(t, st, v, p)
	if a := keep(st, p, ck.cur, ck.replica, true).To; a.Mode != Keep || a.PrevIs("a", "a-1") {
		t.Fatalf("replacing b's replica that held a copy: %+v; want a keep that no longer names a's copy", a)
	}
	if a := keep(st, p, ck.cur, ck.replica, false).To; a.Mode != Keep || !a.PrevIs("a", "a-1") || a.PEpoch != 100 {
		t.Fatalf("replacing b's replica that never held a copy: %+v; want a's copy kept on record", a)
	}
	// Once the owner froze the epoch, the partition moves on without
	// asking again, even to the same replica, and keeps a's copy.
	v = view(st, synced)
	v.frozen = map[int]uint64{p: 101}
	repairs, _, checks := plan(st, v, testParts, 100)
	if len(checks) != 0 {
		t.Fatalf("asked again after the owner froze the epoch: %v", checks)
	}
	for _, r := range repairs {
		if r.P == p {
			if r.To.Mode != Keep || r.To.Epoch != 102 || !r.To.PrevIs("a", "a-1") {
				t.Fatalf("moving on from a frozen epoch: %+v; want a keep at 102 with a's copy on record", r.To)
			}
			return
		}
	}
	t.Fatal("the frozen epoch was not moved on from")
}

// An owner that dies while its replica has no copy yet leaves the
// previous replica's copy as the only one: the partition waits for that
// replica, and it takes over; only without it is the partition lost.
func TestPlanPrevReplicaTakesOver(t *testing.T) {
	base := func() (*State, map[int]uint64, map[int]uint64) {
		st, synced := cluster("a", "b", "c", "d")
		for p := range st.Parts {
			st.Parts[p] = Part{Epoch: 101, Owner: "a", ONonce: "a-1", Replica: "c", RNonce: "c-1", Prev: "b", PNonce: "b-1", PEpoch: 100}
			delete(synced, p) // c never got its copy
		}
		return st, synced, map[int]uint64{0: 100}
	}
	decide := func(st *State, v leaderView) Part {
		repairs, _, _ := plan(st, v, testParts, 100)
		for _, r := range repairs {
			if r.P == 0 {
				return r.To
			}
		}
		return Part{}
	}
	tests := []struct {
		name       string
		prevAlive  bool
		prevSynced bool
		reported   bool // c reported after a's lease ran out
		wait       bool // no decision yet
		want       Mode
		owner      string
	}{
		{"previous replica back with its copy", true, true, true, false, Takeover, "b"},
		{"previous replica paused", false, false, true, true, 0, ""},
		{"replica not heard since the owner's lease", true, true, false, true, 0, ""},
		{"previous replica alive without a copy", true, false, true, false, Lost, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, synced, prevSynced := base()
			dead := []string{"a"}
			if !tt.prevAlive {
				dead = append(dead, "b")
			}
			v := view(st, synced, dead...)
			gone := v.gone
			v.gone = func(inc Incarnation) bool { return inc.ID != "b" && gone(inc) } // b may come back
			if tt.prevSynced {
				v.prevSynced = prevSynced
			}
			v.reportedAfter = func(Incarnation, Incarnation) bool { return tt.reported }
			got := decide(st, v)
			switch {
			case tt.wait && got.Epoch != 0:
				t.Fatalf("decided %+v; want to wait", got)
			case !tt.wait && (got.Epoch == 0 || got.Mode != tt.want || tt.owner != "" && got.Owner != tt.owner):
				t.Fatalf("decision %+v; want mode %v owner %q", got, tt.want, tt.owner)
			}
		})
	}
}

// A takeover by the replica keeps the old owner on record as the previous
// copy when it may come back with its state (paused, cut off), so that it
// can take over again if the new owner dies before its replica is synced;
// an old owner that is gone for good (restarted) is not recorded.
func TestPlanTakeoverRecordsTheOldOwner(t *testing.T) {
	for _, gone := range []bool{false, true} {
		st, synced := cluster("a", "b", "c")
		v := view(st, synced, "a")
		if !gone {
			isGone := v.gone
			v.gone = func(inc Incarnation) bool { return inc.ID != "a" && isGone(inc) } // a may come back
		}
		repairs, _, _ := plan(st, v, testParts, 100)
		n := 0
		for _, r := range repairs {
			if st.Parts[r.P].Owner != "a" {
				continue
			}
			n++
			want := Part{}
			if !gone {
				want = Part{Prev: "a", PNonce: "a-1", PEpoch: 100}
			}
			if r.To.Mode != Takeover || r.To.Prev != want.Prev || r.To.PNonce != want.PNonce || r.To.PEpoch != want.PEpoch {
				t.Errorf("gone=%v: takeover of partition %d: %+v; want previous copy %q at epoch %d", gone, r.P, r.To, want.Prev, want.PEpoch)
			}
		}
		if n == 0 {
			t.Fatal("no partition of a was taken over")
		}
	}
}

// A hand-over keeps the old owner's sealed table on record as the
// previous copy while the new owner's new replica has none: the new owner
// may die first. An old owner that stays as the replica needs no record
// (its table is that replica's copy), and a leaving one takes its copy
// away.
func TestHandOverRecordsTheOldOwner(t *testing.T) {
	st, _ := cluster("a", "b", "c")
	p := partWhere(st, func(cur Part) bool { return cur.Owner == "a" })
	cur := st.Parts[p]
	other := "b"
	if cur.Replica == "b" {
		other = "c"
	}
	a := handOver(st, handover{p, cur, cur.Replica, other}, 7)
	if to := a.To; to.Mode != Handover || to.Owner != cur.Replica || to.Sealed != 7 || !to.PrevIs("a", "a-1") || to.PEpoch != cur.Epoch {
		t.Fatalf("hand-over to a new replica: %+v; want the old owner a as the copy of epoch %d", to, cur.Epoch)
	}
	if to := handOver(st, handover{p, cur, cur.Replica, "a"}, 7).To; to.Prev != "" || to.Replica != "a" {
		t.Fatalf("hand-over with the old owner as replica: %+v; want no previous copy", to)
	}
	n := st.Nodes["a"]
	n.Leaving = true
	st.Nodes["a"] = n
	if to := handOver(st, handover{p, cur, cur.Replica, other}, 7).To; to.Prev != "" {
		t.Fatalf("hand-over from a leaving owner: %+v; want no previous copy", to)
	}
}

// A replica is picked only among nodes heard from recently: one alive
// but silent (paused) would be replaced as stale at once.
func TestPlanPicksOnlyFreshReplicas(t *testing.T) {
	st, synced := cluster("a", "b", "c", "d")
	v := view(st, synced, "a")
	v.fresh = func(inc Incarnation) bool { return inc.ID != "a" && inc.ID != "d" }
	repairs, _, _ := plan(st, v, testParts, 100)
	if len(repairs) == 0 {
		t.Fatal("nothing of a's was repaired")
	}
	for _, r := range repairs {
		if r.To.Replica == "d" {
			t.Errorf("partition %d: the silent node d picked as replica: %+v", r.P, r.To)
		}
	}
}

// A move toward the placement waits while the replica may still be
// getting its copy and an older copy is on record: the keep would put
// the replica on record in place of the older copy, perhaps the only
// complete one.
func TestPlanMoveWaitsForTheReplicasCopy(t *testing.T) {
	st, synced := cluster("a", "b", "c")
	st.Nodes["d"] = Node{ID: "d", Nonce: "d-1"}
	moved := func(synced map[int]uint64) int {
		repairs, _, _ := plan(st, view(st, synced), testParts, 100)
		return len(repairs)
	}
	if moved(synced) == 0 {
		t.Fatal("a join moved nothing")
	}
	for p := range st.Parts {
		st.Parts[p].Prev, st.Parts[p].PNonce, st.Parts[p].PEpoch = "a", "a-1", 99
		if st.Parts[p].Owner == "a" || st.Parts[p].Replica == "a" {
			st.Parts[p].Prev, st.Parts[p].PNonce = "b", "b-1"
			if st.Parts[p].Owner == "b" || st.Parts[p].Replica == "b" {
				st.Parts[p].Prev, st.Parts[p].PNonce = "c", "c-1"
			}
		}
	}
	if n := moved(map[int]uint64{}); n != 0 {
		t.Fatalf("%d moves while replicas may be getting their copies beside an older one", n)
	}
	if moved(synced) == 0 {
		t.Fatal("once the replicas are synced nothing moved")
	}
	// Without an older copy on record a move need not wait: the replica
	// it replaces is recorded as the previous copy if it had one.
	for p := range st.Parts {
		st.Parts[p].Prev, st.Parts[p].PNonce, st.Parts[p].PEpoch = "", "", 0
	}
	if moved(map[int]uint64{}) == 0 {
		t.Fatal("with no older copy on record, unsynced replicas hold every move back")
	}
}

// A replica that restarted (same id, new boot nonce) holds no copy: it is
// replaced, by its new incarnation if the placement still wants it, which
// then gets a copy of its own. Taken for the replica it was, it would be
// left in place, reported synced by nobody, and the partition would have
// no copy beside its owner's.
func TestPlanReassignsARestartedReplica(t *testing.T) {
	st, synced := cluster("a", "b", "c")
	st.Nodes["b"] = Node{ID: "b", Nonce: "b-2"}
	repairs, _, _ := plan(st, view(st, synced), testParts, 100)
	got := map[int]Part{}
	for _, r := range repairs {
		got[r.P] = r.To
	}
	n := 0
	for p, cur := range st.Parts {
		if cur.Replica != "b" {
			continue
		}
		n++
		to, ok := got[p]
		switch {
		case !ok:
			t.Errorf("partition %d keeps the old incarnation of b as its replica", p)
		case to.Mode != Keep || to.Owner != cur.Owner:
			t.Errorf("partition %d: %+v, want its owner to keep it with a new replica", p, to)
		case to.Replica == "b" && to.RNonce != "b-2":
			t.Errorf("partition %d: replica b with nonce %s, want b-2", p, to.RNonce)
		}
	}
	if n == 0 {
		t.Fatal("b replicates nothing")
	}
}

// The previous copy, once gone for good, no longer holds back a loss:
// with the owner gone too and the replica alive without a copy, nothing
// survived, and the partition is lost (behind a lock-delay) rather than
// refused for ever.
func TestPlanGonePrevDoesNotBlockTheLoss(t *testing.T) {
	st, synced := cluster("a", "b", "c", "d", "e")
	p := partWhere(st, func(cur Part) bool { return cur.Owner == "a" })
	cur := st.Parts[p]
	prev := "b"
	if cur.Replica == prev {
		prev = "c"
	}
	st.Parts[p].Prev, st.Parts[p].PNonce, st.Parts[p].PEpoch = prev, prev+"-1", 99
	delete(synced, p) // the replica never got its copy
	for _, tc := range []struct {
		dead []string
		want Mode
	}{
		{[]string{"a", prev}, Lost}, // owner and previous copy gone
		{[]string{"a"}, Takeover},   // the previous copy takes over (prevSynced below)
	} {
		v := view(st, synced, tc.dead...)
		v.prevSynced = map[int]uint64{p: 99}
		repairs, _, _ := plan(st, v, testParts, 100)
		to := repairOf(repairs, p)
		switch {
		case to == nil:
			t.Errorf("dead %v: partition %d (owner a, replica %s, previous %s) undecided, want %v", tc.dead, p, cur.Replica, prev, tc.want)
		case to.Mode != tc.want:
			t.Errorf("dead %v: partition %d: %+v, want %v", tc.dead, p, *to, tc.want)
		case to.Mode == Takeover && to.Owner != prev:
			t.Errorf("dead %v: partition %d taken over by %s, want the previous copy %s", tc.dead, p, to.Owner, prev)
		}
	}
}

// A leaving owner hands its partition over and is not made the new
// owner's replica: it takes any copy away with it. With no other node
// usable, the new owner starts without a replica.
func TestPlanLeavingOwnerIsNotTheNextReplica(t *testing.T) {
	st, synced := cluster("a", "b")
	st.Nodes["a"] = Node{ID: "a", Nonce: "a-1", Leaving: true}
	_, handovers, _ := plan(st, view(st, synced), testParts, 100)
	if len(handovers) == 0 {
		t.Fatal("a leaving owner hands nothing over")
	}
	for _, h := range handovers {
		if h.next == "a" {
			t.Errorf("partition %d handed to %s with the leaving a as its replica", h.p, h.to)
		}
	}
	// Not leaving, an owner the placement moves away from stays on as
	// the replica when no other node is usable.
	st, synced = cluster("a", "b")
	v := view(st, synced)
	v.usable = []string{"b"}
	_, handovers, _ = plan(st, v, testParts, 100)
	n := 0
	for _, h := range handovers {
		if h.cur.Owner == "a" {
			n++
			if h.next != "a" {
				t.Errorf("partition %d: next replica %q, want the old owner a", h.p, h.next)
			}
		}
	}
	if n == 0 {
		t.Fatal("nothing moved off a")
	}
}

// A replica other than the placement's is moved there only once it is
// synced: moving it earlier would replace the only copy beside the
// owner's with one that has nothing yet.
func TestPlanMovesOnlyASyncedReplica(t *testing.T) {
	st, synced := cluster("a", "b", "c", "d")
	p := partWhere(st, func(cur Part) bool { return cur.Owner != "d" && cur.Replica != "d" })
	cur := st.Parts[p]
	// Put a replica the placement does not want in place.
	other := ""
	for _, id := range []string{"a", "b", "c", "d"} {
		if id != cur.Owner && id != cur.Replica {
			other = id
			break
		}
	}
	st.Parts[p].Replica, st.Parts[p].RNonce = other, other+"-1"
	for _, tc := range []struct {
		synced bool
		move   bool
	}{{true, true}, {false, false}} {
		s := map[int]uint64{}
		maps.Copy(s, synced)
		if !tc.synced {
			delete(s, p)
		}
		repairs, _, _ := plan(st, view(st, s), testParts, 100)
		moved := false
		for _, r := range repairs {
			if r.P == p {
				moved = true
				if r.To.Replica != cur.Replica {
					t.Errorf("synced %v: moved to %s, want the placement's %s", tc.synced, r.To.Replica, cur.Replica)
				}
			}
		}
		if moved != tc.move {
			t.Errorf("replica synced %v: moved %v, want %v", tc.synced, moved, tc.move)
		}
	}
}

// prevSetup returns partition p of a four-node table whose replica has
// not reported a copy, with a previous copy on record at the node that
// pick would otherwise choose once the replica is dead: the placement's
// replica among the other three.
func prevSetup(t *testing.T) (st *State, synced map[int]uint64, p int, prev string) {
	t.Helper()
	st, synced = cluster("a", "b", "c", "d")
	p = 0
	cur := st.Parts[p]
	var rest []string
	for _, id := range []string{"a", "b", "c", "d"} {
		if id != cur.Replica {
			rest = append(rest, id)
		}
	}
	d := ring.Place(rest, testParts)[p]
	prev = d.Replica
	if prev == cur.Owner {
		prev = d.Owner
	}
	st.Parts[p].Prev, st.Parts[p].PNonce, st.Parts[p].PEpoch = prev, prev+"-1", 99
	delete(synced, p)
	return st, synced, p, prev
}

// A replica replaced while an older copy is on record is picked beside
// that copy, not on it: made the replica, the previous copy's node would
// drop its copy for the owner's new one, and the owner's death before
// that arrived would lose a partition whose complete copy had just
// existed (found by review). With no other node, it is picked after all.
func TestPlanPicksBesideThePreviousCopy(t *testing.T) {
	st, synced, p, prev := prevSetup(t)
	cur := st.Parts[p]
	ck := checkOf(t, st, view(st, synced, cur.Replica), p)
	if ck.replica == prev || ck.replica == cur.Owner || ck.replica == cur.Replica {
		t.Fatalf("replacing dead %s beside previous copy %s: picked %s", cur.Replica, prev, ck.replica)
	}
	// An epoch the owner froze moves on beside the previous copy too.
	v := view(st, synced, cur.Replica)
	v.frozen = map[int]uint64{p: cur.Epoch}
	repairs, _, _ := plan(st, v, testParts, 100)
	if to := repairOf(repairs, p); to == nil || to.Replica == prev || !to.PrevIs(prev, prev+"-1") {
		t.Fatalf("moving on from a frozen epoch: %+v; want a replica beside previous copy %s", to, prev)
	}
	// A synced replica replaced is recorded in the previous copy's place,
	// and a previous copy whose node restarted is gone: neither is
	// avoided, and the placement's choice is taken.
	synced[p] = cur.Epoch
	repairs, _, _ = plan(st, view(st, synced, cur.Replica), testParts, 100)
	if r := repairOf(repairs, p); r == nil || r.Replica != prev {
		t.Fatalf("replacing a synced replica: %+v; want the placement's %s", r, prev)
	}
	delete(synced, p)
	restarted := *st
	restarted.Nodes = maps.Clone(st.Nodes)
	restarted.Nodes[prev] = Node{ID: prev, Nonce: prev + "-2"}
	ck = checkOf(t, &restarted, view(&restarted, synced, cur.Replica), p)
	if ck.replica != prev {
		t.Fatalf("replacing a replica beside a previous copy whose node restarted: picked %s, want the placement's %s", ck.replica, prev)
	}
	// The only other node left is the previous copy's: it is picked.
	v = view(st, synced, cur.Replica)
	v.usable = []string{cur.Owner, prev}
	slices.Sort(v.usable)
	ck = checkOf(t, st, v, p)
	if ck.replica != prev {
		t.Fatalf("with only %s left, picked %q", prev, ck.replica)
	}
}

// An owner that froze its epoch (its replica never held a copy at it)
// and then died leaves the previous copy as the latest, even when the
// replica is dead too and cannot say so itself: that copy takes over,
// and while it has not reported, the partition waits rather than be
// declared lost (found by review).
func TestPlanPrevTakesOverAFrozenEpoch(t *testing.T) {
	st, synced, p, prev := prevSetup(t)
	cur := st.Parts[p]
	v := view(st, synced, cur.Owner, cur.Replica)
	v.frozen = map[int]uint64{p: cur.Epoch}
	v.prevSynced = map[int]uint64{p: 99}
	decided := func(v leaderView) *Part {
		repairs, _, _ := plan(st, v, testParts, 100)
		return repairOf(repairs, p)
	}
	if to := decided(v); to == nil || to.Mode != Takeover || to.Owner != prev {
		t.Fatalf("owner and replica dead after a freeze: %+v; want a takeover by previous copy %s", to, prev)
	}
	// Not frozen, nothing tells the dead replica had no copy: lost, as
	// before.
	v.frozen = nil
	if to := decided(v); to == nil || to.Mode != Lost {
		t.Fatalf("owner and replica dead, no freeze: %+v; want lost", to)
	}
	// Frozen while the replica's copy was on its way, and reported synced
	// since: the owner acknowledged nothing at the frozen epoch, so the
	// previous copy still holds everything, and takes over.
	synced[p] = cur.Epoch
	v.frozen = map[int]uint64{p: cur.Epoch}
	if to := decided(v); to == nil || to.Mode != Takeover || to.Owner != prev {
		t.Fatalf("owner and synced replica dead after a freeze: %+v; want a takeover by previous copy %s", to, prev)
	}
	delete(synced, p)
	// A freeze of an earlier epoch says nothing of the grants made at
	// this one: the previous copy lacks them, and does not take over.
	v.frozen = map[int]uint64{p: cur.Epoch - 1}
	if to := decided(v); to == nil || to.Mode != Lost {
		t.Fatalf("owner and replica dead after a freeze of an earlier epoch: %+v; want lost", to)
	}
	// Frozen, with the previous copy out of reach but not gone: wait.
	v = view(st, synced, cur.Owner, cur.Replica, prev)
	v.gone = func(inc Incarnation) bool { return inc.ID != prev }
	v.frozen = map[int]uint64{p: cur.Epoch}
	if to := decided(v); to != nil {
		t.Fatalf("frozen, previous copy out of reach: %+v; want the partition to wait for it", *to)
	}
}

// keep leaves the previous copy on record only while it is a copy beside
// the partition's two roles: a previous copy's node that is now the owner
// or the replica gave that copy up, and one that is leaving takes it away.
func TestKeepDropsAPreviousCopyThatIsGone(t *testing.T) {
	st, _ := cluster("a", "b", "c", "d")
	st.Nodes["d"] = Node{ID: "d", Nonce: "d-1", Leaving: true}
	cur := Part{Epoch: 10, Owner: "a", ONonce: "a-1", Replica: "b", RNonce: "b-1", Mode: Keep}
	withPrev := func(id string) Part {
		c := cur
		c.Prev, c.PNonce, c.PEpoch = id, id+"-1", 9
		return c
	}
	for _, tc := range []struct {
		name    string
		cur     Part
		replica string
		want    string // the previous copy recorded
	}{
		{"kept beside the new replica", withPrev("c"), "b", "c"},
		{"the previous copy's node is the new replica", withPrev("c"), "c", ""},
		{"the previous copy's node is the owner", withPrev("a"), "c", ""},
		{"the previous copy's node is leaving", withPrev("d"), "c", ""},
	} {
		to := keep(st, 0, tc.cur, tc.replica, false).To
		if to.Prev != tc.want || (tc.want == "") != (to.PNonce == "" && to.PEpoch == 0) {
			t.Errorf("%s: previous copy %q (%q, %d), want %q", tc.name, to.Prev, to.PNonce, to.PEpoch, tc.want)
		}
	}
}

// Moves toward the placement (a replica first, then a hand-over, then a
// replica change) are limited to maxMoves per round, whichever kind they
// are: a join or a leave never moves every partition at once.
func TestPlanLimitsMovesPerRound(t *testing.T) {
	count := func(repairs []Assignment, handovers []handover) int { return len(repairs) + len(handovers) }
	// Future owners as replicas (a join).
	st, synced := cluster("a", "b", "c")
	st.Nodes["d"] = Node{ID: "d", Nonce: "d-1"}
	if r, h, _ := plan(st, view(st, synced), testParts, 2); count(r, h) != 2 {
		t.Errorf("join: %d moves in a round of 2", count(r, h))
	}
	// A leaving owner's future owners as replicas: only its own
	// partitions count (replacing it as a replica is a repair, not a move).
	st, synced = cluster("a", "b", "c", "d")
	st.Nodes["a"] = Node{ID: "a", Nonce: "a-1", Leaving: true}
	owned := func(repairs []Assignment, handovers []handover) int {
		n := len(handovers)
		for _, r := range repairs {
			if st.Parts[r.P].Owner == "a" {
				n++
			}
		}
		return n
	}
	if r, h, _ := plan(st, view(st, synced), testParts, 100); owned(r, h) < 2 {
		t.Fatalf("leave: only %d of a's partitions move in an unlimited round", owned(r, h))
	}
	if r, h, _ := plan(st, view(st, synced), testParts, 1); owned(r, h) != 1 {
		t.Errorf("leave: %d of a's partitions move in a round of 1", owned(r, h))
	}
	// Hand-overs: every owner's replica is the placement's owner, synced.
	st, synced = cluster("a", "b", "c")
	for p, cur := range st.Parts {
		st.Parts[p].Owner, st.Parts[p].ONonce, st.Parts[p].Replica, st.Parts[p].RNonce = cur.Replica, cur.RNonce, cur.Owner, cur.ONonce
	}
	if r, h, _ := plan(st, view(st, synced), testParts, 2); len(h) != 2 || len(r) != 0 {
		t.Errorf("hand-overs: %d hand-overs and %d other moves in a round of 2", len(h), len(r))
	}
	// Replica changes: every replica is a node the placement does not want.
	st, synced = cluster("a", "b", "c", "d")
	for p, cur := range st.Parts {
		for _, id := range []string{"a", "b", "c", "d"} {
			if id != cur.Owner && id != cur.Replica {
				st.Parts[p].Replica, st.Parts[p].RNonce = id, id+"-1"
				break
			}
		}
	}
	if r, h, _ := plan(st, view(st, synced), testParts, 2); count(r, h) != 2 {
		t.Errorf("replica changes: %d moves in a round of 2", count(r, h))
	}
}

// repairOf returns the assignment repairs make of partition p, or nil.
func repairOf(repairs []Assignment, p int) *Part {
	for _, r := range repairs {
		if r.P == p {
			return &r.To
		}
	}
	return nil
}

// A replica that is gone is replaced only by a node that can take it:
// with none left, the partition keeps its record as it is (its owner
// serves nothing without a synced replica) rather than drop the replica.
func TestPlanKeepsTheReplicaWithNoneToReplaceIt(t *testing.T) {
	st, synced := cluster("a", "b")
	repairs, _, checks := plan(st, view(st, synced, "b"), testParts, 100)
	for _, r := range repairs {
		if st.Parts[r.P].Owner == "a" {
			t.Errorf("partition %d of a changed with no node to replicate it: %+v", r.P, r.To)
		}
	}
	if len(checks) != 0 {
		t.Errorf("replica checks with no node to replicate: %+v", checks)
	}
}

// A hand-over's next replica: the old owner stays on as the replica where
// the placement wants it there (even while not heard from lately: its
// sealed table is a synced copy at once), or names no replica; otherwise
// the placement's replica is taken.
func TestPlanHandOverPicksTheNextReplica(t *testing.T) {
	st, synced := cluster("a", "b", "c", "d")
	v := view(st, synced)
	desired := ring.Place(v.usable, testParts)
	for _, tc := range []struct {
		name      string
		owner     func(d ring.Assignment) string
		wantOwner bool // next is the old owner; else the placement's replica
		stale     bool // a was not heard from lately (its partitions only)
	}{
		{"the old owner is the placement's replica", func(d ring.Assignment) string { return d.Replica }, true, false},
		{"the old owner is the placement's replica, not heard from lately", func(d ring.Assignment) string { return d.Replica }, true, true},
		{"the old owner is outside the placement", func(d ring.Assignment) string {
			for _, id := range []string{"a", "b", "c", "d"} {
				if id != d.Owner && id != d.Replica {
					return id
				}
			}
			return ""
		}, false, false},
	} {
		st, synced := cluster("a", "b", "c", "d")
		for p := range st.Parts {
			d := desired[p]
			o := tc.owner(d)
			st.Parts[p].Owner, st.Parts[p].ONonce = o, o+"-1"
			st.Parts[p].Replica, st.Parts[p].RNonce = d.Owner, d.Owner+"-1"
		}
		v := view(st, synced)
		want := testParts
		if tc.stale {
			v.fresh = func(inc Incarnation) bool { return inc.ID != "a" }
			want = 0
			for _, cur := range st.Parts {
				if cur.Owner == "a" {
					want++
				}
			}
		}
		_, handovers, _ := plan(st, v, testParts, 100)
		if tc.stale {
			handovers = slices.DeleteFunc(handovers, func(h handover) bool { return h.cur.Owner != "a" })
		}
		if len(handovers) != want || want == 0 {
			t.Fatalf("%s: %d hand-overs, want %d", tc.name, len(handovers), want)
		}
		for _, h := range handovers {
			want := desired[h.p].Replica
			if tc.wantOwner {
				want = h.cur.Owner
			}
			if h.to != desired[h.p].Owner || h.next != want {
				t.Errorf("%s: partition %d handed to %s with next replica %s, want %s and %s", tc.name, h.p, h.to, h.next, desired[h.p].Owner, want)
			}
		}
	}
}
