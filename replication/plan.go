package replication

import "github.com/elock/elock/ring"

// leaderView is what the leader knows besides the table.
type leaderView struct {
	// usable lists, sorted, the nodes that may be given partitions:
	// registered, heard from within their lease, and not leaving.
	usable []string
	// alive: heard from within the lease plus the margin. An owner that
	// is not may be taken over.
	alive func(Incarnation) bool
	// fresh: heard from recently (half a lease). A replica that is not is
	// replaced, which needs no lease to run out: it changes nobody's
	// right to serve.
	fresh func(Incarnation) bool
	// synced holds, by partition, the epoch at which its owner reported a
	// synced replica, or its replica reported holding a full copy.
	synced map[int]uint64
	// informed: every live node has had time to report to this leader, so
	// a live replica missing from synced is known to lack a full copy.
	informed bool
	// gone: the incarnation is certainly not coming back with its state
	// (a newer incarnation of its node registered, or it left), or it has
	// been silent for so long (ControlConfig.LostAfter) that waiting longer
	// for it is worse than the loss.
	gone func(Incarnation) bool
	// prevSynced holds, by partition, the epoch at which its previous
	// replica (Part.Prev) reported still holding its full copy.
	prevSynced map[int]uint64
	// reportedAfter: the first incarnation's latest report reached this
	// leader after the second's lease must have run out. A replica that
	// reported no full copy then cannot have one the owner made grants
	// against: an owner serves nothing while its replica is unsynced, and
	// nothing at all without its lease.
	reportedAfter func(replica, owner Incarnation) bool
	// frozen holds, by partition, the epoch its owner froze: it promised
	// never to serve at it (Data.serveReplaced).
	frozen map[int]uint64
}

// handover is a partition to seal and hand to its synced replica.
type handover struct {
	p        int
	cur      Part
	to, next string
}

// check is a replica to replace whose copy may or may not exist while an
// older copy is on record: the owner says which first (serveReplaced),
// and keep records the copy its answer names.
type check struct {
	p       int
	cur     Part
	replica string
}

// move builds the assignment of partition p from cur to a new epoch.
func move(st *State, p int, cur Part, owner, replica string, mode Mode) Assignment {
	to := Part{Epoch: cur.Epoch + 1, Owner: owner, ONonce: st.Nodes[owner].Nonce, Replica: replica, Mode: mode}
	if replica != "" {
		to.RNonce = st.Nodes[replica].Nonce
	}
	// The last loss, and whether its lock-delay has passed, go with the
	// partition to every later epoch, whatever the move: each new owner
	// waits out an unsettled loss's delay (becomeOwner). Carried only by
	// a takeover (as before), it was dropped by a keep or a hand-over
	// that came first, and the next owner granted at once while a holder
	// from before the loss still held (found by the fault suite).
	to.LostAt, to.Settled = cur.LostAt, cur.Settled
	if mode == Lost {
		to.LostAt, to.Settled = to.Epoch, false
	}
	return Assignment{P: p, From: cur.Epoch, To: to}
}

// handOver builds the hand-over of h's partition, which its owner sealed
// at position sealed. The old owner's sealed table is a full copy of
// everything the new owner starts from, and while the new owner's replica
// has no copy yet it is the only other one: a new replica other than the
// old owner has none, so the old owner is recorded as the previous copy,
// which takes over if the new owner dies before its replica is synced;
// an old owner that stays as the replica holds its table as that
// replica's copy (Data.reconcile). Found by the fault suite: a hand-over
// went to a node killed a moment before, and the partition was declared
// lost while the old owner held a complete copy.
func handOver(st *State, h handover, sealed uint64) Assignment {
	a := move(st, h.p, h.cur, h.to, h.next, Handover)
	a.To.Sealed = sealed
	if h.next != h.cur.Owner && !st.Nodes[h.cur.Owner].Leaving {
		a.To.Prev, a.To.PNonce, a.To.PEpoch = h.cur.Owner, h.cur.ONonce, h.cur.Epoch
	}
	return a
}

// keep builds a move of p that changes only its replica, and records
// which copy is the latest while the new replica has none. If the
// current replica may have held a full copy at this epoch (copied), it
// is recorded: every grant the owner acknowledged since is in it and in
// no older copy, and it is only taken over from once it reports itself
// synced at that epoch. Otherwise (the owner said it never synced it, and
// froze the epoch), and for a partition without a replica, whose owner
// could acknowledge nothing, the copy recorded before is kept. Which it
// is cannot be told from the leader's reports alone (the owner's report
// of a synced replica can lag the copy by a heartbeat): plan asks the
// owner where an older copy is on record, and otherwise records the
// replica. Recording it when it never held a copy pushed the only
// complete one off the record (found by the fault suite); keeping an
// older copy when it did could let that take over without the grants of
// the epochs since (found by review).
func keep(st *State, p int, cur Part, replica string, copied bool) Assignment {
	a := move(st, p, cur, cur.Owner, replica, Keep)
	switch {
	case cur.Replica != "" && copied:
		a.To.Prev, a.To.PNonce, a.To.PEpoch = cur.Replica, cur.RNonce, cur.Epoch
	default:
		a.To.Prev, a.To.PNonce, a.To.PEpoch = cur.Prev, cur.PNonce, cur.PEpoch
	}
	// A previous replica that is now the owner, or the replica again,
	// gave up its old copy; one that is leaving takes it away.
	if a.To.Prev == a.To.Owner || a.To.Prev == a.To.Replica || st.Nodes[a.To.Prev].Leaving {
		a.To.Prev, a.To.PNonce, a.To.PEpoch = "", "", 0
	}
	return a
}

// plan decides, for every partition, the one epoch change that moves it
// toward a healthy placement, in this order of urgency:
//
//  1. an owner that may no longer serve (its lease ran out, or it
//     restarted) is taken over by its replica, if that replica is known to
//     hold a full copy at the current epoch; with no such replica, once
//     every full copy is gone for good the partition is lost and a usable
//     node starts it empty behind a lock-delay (until then it waits,
//     unserved);
//  2. a replica that is gone, stale or leaving is replaced (the owner then
//     sends the new one a full copy), after asking the owner whether it
//     ever held a copy if an older one is on record (see keep), and beside
//     that older copy (see pick); an epoch the owner froze so is moved on
//     from;
//  3. a partition whose owner is leaving, or is not the one the ring
//     proposes, first gets the future owner as its replica, and once that
//     replica is synced is handed over (sealed by the old owner first);
//  4. a replica other than the ring's proposal is moved there.
//
// Steps 3 and 4 move at most maxMoves partitions per round, so a join or
// a leave does not move everything at once. plan is pure: the same table
// and view give the same decisions.
func plan(st *State, v leaderView, partitions, maxMoves int) (repairs []Assignment, handovers []handover, checks []check) {
	usable := make(map[string]bool, len(v.usable))
	for _, id := range v.usable {
		usable[id] = true
	}
	desired := ring.Place(v.usable, partitions)
	incOf := func(id string) Incarnation { return Incarnation{id, st.Nodes[id].Nonce} }
	current := func(id, nonce string) bool { return id != "" && st.Nodes[id].Nonce == nonce }
	// pick chooses a replica other than owner, preferring the placement,
	// among the nodes heard from recently: a node that is alive but not
	// fresh (paused, cut off) would be replaced at once as stale, and
	// each needless keep can push a complete previous copy off the record
	// (found by the fault suite: a paused node picked and replaced within
	// 100 ms made a copy-less node the previous copy).
	//
	// A replica replaced while an older copy stays on record (Part.Prev,
	// given as avoid) is picked beside that copy, not on it: a node made
	// the replica drops the copy it held to take the owner's new one, and
	// if the owner died before that arrived, the partition would be lost
	// while a complete copy had just existed (found by review). Only when
	// no other node is fresh (a small cluster) is it picked after all:
	// refusing would leave the owner without a replica, serving nothing,
	// for as long as the cluster stays that small.
	pick := func(d ring.Assignment, owner, avoid string) string {
		for _, skip := range []string{avoid, ""} {
			for _, id := range append([]string{d.Replica, d.Owner}, v.usable...) {
				if id != "" && id != owner && id != skip && usable[id] && v.fresh(incOf(id)) {
					return id
				}
			}
			if avoid == "" {
				break
			}
		}
		return ""
	}
	moves := 0
	for p, cur := range st.Parts {
		d := desired[p]
		ownerOK := current(cur.Owner, cur.ONonce) && v.alive(incOf(cur.Owner))
		replicaAlive := cur.Replica != "" && current(cur.Replica, cur.RNonce) && v.alive(incOf(cur.Replica))
		replicaOK := replicaAlive && v.fresh(incOf(cur.Replica))
		isSynced := v.synced[p] == cur.Epoch
		// The previous copy's node, while it may still hold that copy:
		// a replacement replica is picked beside it (see pick).
		prevKept := ""
		if current(cur.Prev, cur.PNonce) {
			prevKept = cur.Prev
		}
		switch {
		case !ownerOK:
			// Only a replica known to hold a full copy at this epoch may
			// take over: one still waiting for its copy holds nothing of
			// the grants the owner made before it was assigned.
			replicaHasState := replicaAlive && isSynced
			noCopy := cur.Replica == "" || v.gone(Incarnation{cur.Replica, cur.RNonce}) || replicaAlive && !isSynced && v.informed
			// The replica that replaced the last synced one may never
			// have got its copy: then the previous replica's copy is the
			// latest, if it kept it. That is known once the replica,
			// alive, reports no copy after the owner's lease ran out
			// (until then the partition waits), or once its owner froze
			// the epoch (below); otherwise, of a replica that is not alive
			// it cannot be known, and the loss is declared as before.
			prev := Incarnation{cur.Prev, cur.PNonce}
			// At an epoch its owner froze, the owner acknowledged nothing
			// (it froze only while its replica had no copy, and never
			// syncs it after; see Data.serveReplaced): the previous copy
			// holds everything acknowledged, whatever the replica holds or
			// can still say. Without this, an owner that died after
			// freezing, with its replica dead too, had its partition
			// declared lost while the previous copy survived (found by
			// review). Only the freeze of this very epoch counts: one of an
			// earlier epoch says nothing of the grants made since.
			frozen := v.frozen[p] == cur.Epoch
			// A previous replica that is alive and has not reported its
			// copy to an informed leader has none.
			prevMayHold := cur.Prev != "" && (!isSynced || frozen) && !v.gone(prev) &&
				!(v.informed && v.alive(prev) && v.prevSynced[p] != cur.PEpoch)
			replicaNeverSynced := prevMayHold && (frozen ||
				replicaAlive && v.informed && v.reportedAfter(Incarnation{cur.Replica, cur.RNonce}, Incarnation{cur.Owner, cur.ONonce}))
			prevHasState := replicaNeverSynced && prevKept != "" && v.alive(prev) && v.prevSynced[p] == cur.PEpoch
			switch {
			case replicaHasState:
				a := move(st, p, cur, cur.Replica, pick(d, cur.Replica, ""), Takeover)
				// The old owner, if it may come back with its state (a pause,
				// a network partition), holds a full copy too: keep it on
				// record as the previous copy, so that if the new owner dies
				// before its own replica is synced (it serves nothing until
				// then) the old owner takes over again instead of the
				// partition being declared lost. Found by the fault suite: an
				// owner paused and its replica killed at once; the dead
				// replica was made owner, and its restart lost the partition
				// while the paused owner woke with a complete copy.
				if current(cur.Owner, cur.ONonce) && !v.gone(incOf(cur.Owner)) && a.To.Replica != cur.Owner && !st.Nodes[cur.Owner].Leaving {
					a.To.Prev, a.To.PNonce, a.To.PEpoch = cur.Owner, cur.ONonce, cur.Epoch
				}
				repairs = append(repairs, a)
			case prevHasState:
				repairs = append(repairs, move(st, p, cur, cur.Prev, pick(d, cur.Prev, ""), Takeover))
			case v.gone(Incarnation{cur.Owner, cur.ONonce}) && noCopy && !(prevMayHold && (replicaAlive || frozen)):
				repairs = append(repairs, move(st, p, cur, d.Owner, pick(d, d.Owner, ""), Lost))
			default:
				// The only full copy is out of reach but may come back
				// with its state (a network partition, a pause): refuse
				// until it does, rather than start empty.
			}
		case v.frozen[p] == cur.Epoch:
			// The owner will serve nothing more at this epoch, and its
			// replica never held a copy at it: move on, to the same replica
			// if need be (the leader that asked may have failed to), beside
			// the previous copy, which stays on record.
			if r := pick(d, cur.Owner, prevKept); r != "" {
				repairs = append(repairs, keep(st, p, cur, r, false))
			}
		case !replicaOK || st.Nodes[cur.Replica].Leaving:
			// The same node id may come back as a new incarnation: that is
			// a new replica too, and needs its own epoch and copy.
			// The previous copy stays on record unless a synced replica
			// is recorded in its place (see keep).
			beside := prevKept
			if cur.Replica != "" && isSynced {
				beside = ""
			}
			if r := pick(d, cur.Owner, beside); r != "" && (r != cur.Replica || st.Nodes[r].Nonce != cur.RNonce) {
				if cur.Replica != "" && cur.Prev != "" && !isSynced {
					// Which copy to record, the replica's or the older
					// one: the owner knows (see keep).
					checks = append(checks, check{p, cur, r})
				} else {
					repairs = append(repairs, keep(st, p, cur, r, true))
				}
			}
		case (st.Nodes[cur.Owner].Leaving || cur.Owner != d.Owner) && moves < maxMoves:
			target := d.Owner
			switch {
			case target == cur.Owner:
			case cur.Replica != target && (isSynced || cur.Prev == ""):
				// The future owner first becomes the replica and gets a copy;
				// not while the replica may still be getting its copy and an
				// older one is on record: the keep would record the replica
				// in place of the older copy, which may be the only complete
				// one (see keep). Nothing urges a move: it waits.
				repairs = append(repairs, keep(st, p, cur, target, true))
				moves++
			case isSynced:
				next := pick(d, target, "")
				if !st.Nodes[cur.Owner].Leaving && (d.Replica == cur.Owner || d.Replica == "" || !usable[d.Replica]) {
					next = cur.Owner
				}
				handovers = append(handovers, handover{p, cur, target, next})
				moves++
			}
		case cur.Replica != d.Replica && d.Replica != "" && isSynced && moves < maxMoves:
			repairs = append(repairs, keep(st, p, cur, d.Replica, true))
			moves++
		}
	}
	return repairs, handovers, checks
}
