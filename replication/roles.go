package replication

import (
	"context"
	"log/slog"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/peer"
)

// Apply takes up the roles of a new partition table. It is called in log
// order, for every table the control plane applies.
func (d *Data) Apply(old, cur *State, changed []int) {
	d.mu.Lock()
	d.state = cur
	d.mu.Unlock()
	alone := len(liveNodes(cur)) <= 1
	var evict []int
	for _, p := range changed {
		ended, ev := d.reconcile(p, old.Part(p), cur.Part(p), alone)
		if ev {
			evict = append(evict, p)
		}
		failConfirms(ended, notConfirmed(p, "changed hands before its replica confirmed"))
	}
	// The count of nodes decides whether a replica-less owner is alone.
	for _, l := range d.parts {
		l.mu.Lock()
		if l.role == owner && l.part.Replica == "" {
			l.alone = alone
		}
		l.mu.Unlock()
	}
	for _, p := range evict {
		d.set.Evict(p, refuse(p, failure.Moved, "moved to another node"))
	}
	d.cfg.Lease.reconcile(cur.Index)
}

func liveNodes(s *State) []string {
	var ids []string
	for id, n := range s.Nodes {
		if !n.Leaving {
			ids = append(ids, id)
		}
	}
	return ids
}

// reconcile moves partition p to its role in cur. It returns the
// confirmations of an ownership that ended, and whether requests queued
// here must be sent to the new owner.
func (d *Data) reconcile(p int, prev, cur Part, alone bool) (ended []confirm, evict bool) {
	me := d.cfg.Self
	l := d.parts[p]
	d.set.With(p, func(t *locktable.Table, now locktable.Time) *locktable.Table {
		l.mu.Lock()
		defer l.mu.Unlock()
		was, wasEpoch := l.role, l.epoch
		wasOwner := was == owner
		switch {
		case cur.OwnedBy(me.ID, me.Nonce):
			t, ended = d.becomeOwner(l, t, prev, cur, alone)
		case cur.ReplicatedBy(me.ID, me.Nonce) && cur.Mode == Handover && cur.Epoch == prev.Epoch+1 &&
			l.role == owner && l.epoch == prev.Epoch && prev.OwnedBy(me.ID, me.Nonce):
			// Handed over by this node, which stays as the replica: its
			// sealed table is everything the new owner starts from (the
			// seal waited for the new owner to acknowledge all of it), so
			// it is a synced copy at the new epoch, at the first position
			// of the new ownership. Until the new owner's own copy comes
			// it is the only other copy; dropped as unsynced, the new
			// owner's death would lose the partition (found by the fault
			// suite). Whatever this node changed after its seal ran out
			// and its replica refused was answered as an unknown outcome.
			l.role, l.rsynced, l.rseq, l.chunks = replica, true, 0, nil
			l.epoch, l.part = cur.Epoch, cur
			l.link, l.out, l.sealed = nil, nil, false
		case cur.ReplicatedBy(me.ID, me.Nonce):
			if l.role != replica || l.epoch != cur.Epoch {
				// The owner sends a full copy at every epoch.
				l.role, l.rsynced, l.rseq, l.chunks = replica, false, 0, nil
			}
			l.epoch, l.part = cur.Epoch, cur
			l.link, l.out = nil, nil
		case cur.PrevIs(me.ID, me.Nonce) && l.role == replica && l.rsynced && l.epoch == cur.PEpoch:
			// Replaced as the replica, but the new one has no copy yet:
			// this copy may be the only one if the owner dies. Keep it, at
			// its epoch, which refuses every write of a later one.
			l.part = cur
		case cur.PrevIs(me.ID, me.Nonce) && l.role == owner && l.epoch == cur.PEpoch:
			// Taken over by the replica while this node could not serve (a
			// pause, a partition): its table is a full copy, and the only
			// one if the new owner dies before its own replica has one.
			// Keep it as a previous replica does, serving nothing; the
			// grants its replica never acknowledged are in it, and were
			// answered as unknown outcomes.
			l.role, l.rsynced, l.rseq, l.chunks = replica, true, l.seq, nil
			l.link, l.out, l.sealed = nil, nil, false
			l.part = cur
		default:
			if l.role != none {
				t = locktable.New(0, d.set.Limits(), true)
			}
			l.role, l.epoch, l.part = none, cur.Epoch, cur
			l.link, l.out, l.rsynced, l.chunks = nil, nil, false, nil
		}
		evict = wasOwner && l.role != owner
		if l.role != was || l.role != none && l.epoch != wasEpoch {
			// Every role this node takes or leaves after the first, for
			// the fault suite's reports: which copy served which epoch.
			level := slog.LevelInfo
			if prev.Epoch == 0 {
				level = slog.LevelDebug
			}
			d.log.Log(context.Background(), level, "partition role", "partition", p, "role", l.role, "was", was, "epoch", l.epoch, "mode", cur.Mode,
				"owner", cur.Owner, "replica", cur.Replica, "prev", cur.Prev, "synced", l.rsynced, "rseq", l.rseq, "sealed", cur.Sealed)
		}
		if l.role != owner {
			ended = append(ended, l.takeConfirms()...)
		}
		return t
	})
	return ended, evict
}

// becomeOwner sets up l as the owner at cur's epoch, and returns the
// confirmations of an earlier ownership. Called with the partition's
// mutex and l.mu held.
func (d *Data) becomeOwner(l *local, t *locktable.Table, prev, cur Part, alone bool) (*locktable.Table, []confirm) {
	ownedBefore := l.role == owner && prev.OwnedBy(d.cfg.Self.ID, d.cfg.Self.Nonce)
	// An ownership goes on only from one epoch to the next. A node that
	// restores a raft snapshot can see its ownership at one epoch and then
	// at a later one with others between: it starts a new one (a new
	// since, so that late requests to the earlier one are refused;
	// answers still waiting are unknown), with its table or an empty one
	// as below (found by review).
	stillOwner := ownedBefore && cur.Epoch <= prev.Epoch+1
	// A loss at an epoch this node skipped: every copy from before it is
	// void. Others may have owned the partition between, granted and
	// released; a table from before would bring back locks released since
	// and miss the grants made since, and serve without the loss's
	// lock-delay (found by review).
	skippedLoss := cur.LostAt > prev.Epoch && cur.LostAt < cur.Epoch
	promoted := false
	switch {
	case skippedLoss:
	case ownedBefore && (stillOwner || cur.Mode != Lost):
		// Still ours; the replica may have changed. Not when a raft
		// snapshot skipped epochs to a loss (as above). A skip to a keep
		// or a takeover with no loss between keeps it: a keep had this
		// owner all along, and a takeover chose this copy.
		promoted = true
	case l.role == replica && l.rsynced && l.epoch == prev.Epoch &&
		(cur.Mode == Takeover || (cur.Mode == Handover && l.rseq >= cur.Sealed)):
		promoted = true
	case l.role == replica && l.rsynced && cur.Mode == Takeover &&
		prev.PrevIs(d.cfg.Self.ID, d.cfg.Self.Nonce) && l.epoch == prev.PEpoch:
		// The previous replica, whose copy outlived an owner that died
		// before its new replica was synced.
		promoted = true
	}
	delay := false
	switch {
	case promoted:
		// Tokens of the new epoch are above all of the old one.
	case cur.Mode == Fresh:
		t = locktable.New(cur.Epoch, d.set.Limits(), true)
	default:
		// Lost, or a takeover without a synced copy: nothing survived.
		d.log.Warn("partition lost: starting empty behind a lock-delay", "partition", l.id, "epoch", cur.Epoch, "mode", cur.Mode, "delay", d.cfg.LockDelay)
		t = locktable.New(cur.Epoch, d.set.Limits(), true)
		delay = true
	}
	// Until the table says the last loss's lock-delay has passed, every
	// new owner waits it out in full from now: it cannot know how long
	// the owners before it waited. An owner that goes on owning keeps the
	// delay it started. Keyed by the loss, not by the mode of this epoch:
	// a keep or a hand-over after the loss carries it (found by the fault
	// suite: a hand-over dropped it, and its new owner granted a lock
	// still held from before the loss).
	if cur.UnsettledLoss(cur.LostAt) && !(stillOwner && prev.LostAt == cur.LostAt) {
		delay = true
	}
	if delay {
		l.delayUntil = time.Now().Add(d.cfg.LockDelay)
	}
	if t.Epoch() < cur.Epoch {
		t.SetEpoch(cur.Epoch)
	}
	newReplica := !(stillOwner && l.link != nil && prev.Replica == cur.Replica && prev.RNonce == cur.RNonce)
	var ended []confirm
	if !stillOwner {
		// Session epochs given out from now on are above every one an
		// earlier owner of the partition gave out, even one its replica
		// never heard of, and even when every copy was lost: each
		// ownership numbers attaches from its epoch in the high 32 bits,
		// and counts fewer than 2^32. Lock owners fence requests below a
		// session's highest epoch (a resume), and a release of an ended
		// session is bounded by the highest epoch its partition had given
		// out (locktable.SessionEpochBound): an epoch that started again
		// lower would be fenced for good, or released by such a bound.
		t.FirstSessionEpoch(min(cur.Epoch, locktable.MaxEpoch) << 32)
		l.gen++
		l.since = cur.Epoch
		l.seq, l.acked = 0, 0
		ended = l.takeConfirms()
	}
	newEpoch := l.epoch != cur.Epoch
	l.role, l.epoch, l.part = owner, cur.Epoch, cur
	l.sealed = false
	l.alone = cur.Replica == "" && alone
	switch {
	case newReplica:
		l.synced, l.out = false, nil
		l.link = nil
		if cur.Replica != "" {
			l.link = d.linkTo(cur.Replica)
			l.link.poke(l.id) // send the full copy
		}
	case newEpoch && l.link != nil:
		// The same replica drops its copy at every new epoch, and this
		// node ignores acknowledgements of batches sent at the old one:
		// send a full copy now, which confirms every position recorded so
		// far. Waiting for the next change to find that out could leave
		// answers waiting on positions nothing would confirm.
		l.synced, l.out = false, nil
		l.link.poke(l.id)
	}
	return t, ended
}

// callerVoter reports whether the caller of a request (its connection
// context conn) is a voter in st; on a mesh without peer TLS, where
// nobody's identity is known, every caller is.
func callerVoter(conn context.Context, st *State) bool {
	names, ok := peer.CallerNames(conn)
	return !ok || st.Names(names, func(n Node) bool { return n.Voter })
}

// fromLeader reads the partition and epoch of a request that only the
// leader makes (what names it), and refuses it from anyone else. The
// data plane does not track which voter leads; a voter is a node the
// table trusts with the control plane already. A seal holds a partition
// down and a replica check freezes an epoch: nobody else may do either.
func (d *Data) fromLeader(conn context.Context, payload []byte, what string) (p int, epoch uint64, err error) {
	dec := peer.Dec{B: payload}
	p, epoch = int(dec.Uint()), dec.Uint()
	if dec.End() != nil || p < 0 || p >= len(d.parts) {
		return 0, 0, peer.ErrMalformed
	}
	d.mu.Lock()
	st := d.state
	d.mu.Unlock()
	if !callerVoter(conn, st) {
		return 0, 0, failure.Refuse(failure.Unspecified, what+" from a node that is not a voter")
	}
	return p, epoch, nil
}

// serveSeal stops partition p from serving here ahead of a hand-over,
// waits until its replica has acknowledged everything, and returns the
// last acknowledged position. If no new epoch comes, it serves again
// after SealHold.
func (d *Data) serveSeal(conn context.Context, _ peer.Method, payload []byte, reply func([]byte, error)) {
	p, epoch, err := d.fromLeader(conn, payload, "a seal")
	if err != nil {
		reply(nil, err)
		return
	}
	l := d.parts[p]
	var seq, pos uint64
	// Taking the partition's mutex orders the seal after every operation
	// that has already begun.
	d.set.With(p, func(t *locktable.Table, _ locktable.Time) *locktable.Table {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.role != owner || l.epoch != epoch || !l.synced {
			err = failure.Retry(failure.Moved, "not the synced owner of "+failure.Partition(p)+" at that epoch")
			return t
		}
		l.sealed, l.sealUntil = true, time.Now().Add(d.cfg.SealHold)
		seq, pos = l.seq, l.position(l.seq)
		return t
	})
	if err != nil {
		reply(nil, err)
		return
	}
	d.Confirm(p, pos, func(err error) {
		if err != nil {
			reply(nil, err)
			return
		}
		var e peer.Enc
		e.Uint(seq) // the replica compares its own count of positions
		reply(e.B, nil)
	})
}

// serveReplaced answers the leader, which is about to replace partition
// p's replica at epoch epoch while an older copy is on record (Part.Prev):
// did that replica ever hold a full copy at this epoch? If it did, this
// owner may have changed the partition since, with the replica's
// acknowledgement, and the replica's copy is the one to record. If it did
// not, this owner has changed nothing at this epoch (it serves nothing
// without a synced replica), and it promises never to: the epoch is
// frozen, so the older copy stays complete, and is recorded instead.
// Without this the leader had to guess, and recorded the replica, whose
// copy may never have existed: the fault suite found the only complete
// copy pushed off the record that way, and the partition lost.
func (d *Data) serveReplaced(conn context.Context, _ peer.Method, payload []byte, reply func([]byte, error)) {
	p, epoch, err := d.fromLeader(conn, payload, "a replica check")
	if err != nil {
		reply(nil, err)
		return
	}
	l := d.parts[p]
	var copied bool
	// The partition's mutex orders this after every operation that has
	// begun, and before any copy is marked acknowledged.
	d.set.With(p, func(t *locktable.Table, _ locktable.Time) *locktable.Table {
		l.mu.Lock()
		defer l.mu.Unlock()
		switch {
		case l.role != owner || l.epoch != epoch:
			err = failure.Retry(failure.Moved, "not the owner of "+failure.Partition(p)+" at that epoch")
		case l.copiedAt == epoch:
			copied = true
		default:
			l.frozenAt = epoch
		}
		return t
	})
	if err != nil {
		reply(nil, err)
		return
	}
	var e peer.Enc
	e.Bool(copied)
	reply(e.B, nil)
}
