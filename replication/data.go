package replication

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
	"github.com/elock/elock/node/wire"
)

// Peer methods of the data plane.
const (
	mReplicate byte = peer.MinMethod + iota // owner -> replica: changes
	mSnapshot                               // owner -> replica: a full copy
	mSeal                                   // leader -> owner: stop serving, before a hand-over
)

// Incarnation names one run of a node: its id and its boot nonce.
type Incarnation struct{ ID, Nonce string }

// DataConfig configures the data plane of one node.
type DataConfig struct {
	Self Incarnation
	Pool *peer.Pool
	// Lease reports whether this node holds a lease the voters honour,
	// renewed by a request sent no earlier than since (the zero time: any
	// renewal). A lease is granted only to a node that has applied the
	// table the leader had when it granted it.
	Lease func(since time.Time) bool
	// SealHold is how long a sealed partition waits for its hand-over
	// before it may serve again (default 5 s).
	SealHold time.Duration
	// LockDelay is how long a partition whose every copy was lost refuses
	// grants: the longest session timeout plus the lease.
	LockDelay time.Duration
	// AwaitTimeout bounds the wait for a replica's acknowledgement.
	AwaitTimeout time.Duration
	// Expired is told that a session expired (see partition.Replicator).
	Expired func(id string)
	Logger  *slog.Logger
}

// Data is the data plane of one node: it implements partition.Replicator
// for the node's partition.Set, keeps each partition's role here (owner,
// replica or none) in step with the partition table, streams an owner's
// changes to its replica, and applies a replica's.
type Data struct {
	cfg   DataConfig
	log   *slog.Logger
	set   *partition.Set
	parts []*local

	mu     sync.Mutex // guards links, state and closed
	links  map[string]*link
	state  *State
	closed bool

	reconciled atomic.Uint64 // index of the last table whose roles are in effect
	wg         sync.WaitGroup
	stop       chan struct{}
}

type role uint8

const (
	none role = iota
	owner
	replica
)

func (r role) String() string {
	return [...]string{"none", "owner", "replica"}[r]
}

// local is one partition as this node serves it. mu is taken with the
// partition's mutex held or alone; never the other way round.
type local struct {
	mu    sync.Mutex
	id    int
	role  role
	epoch uint64
	part  Part

	// Owner side.
	gen        uint64 // grows each time this node becomes the owner anew
	sealed     bool
	sealUntil  time.Time
	delayUntil time.Time // a Lost partition refuses grants until then
	alone      bool      // no replica and no other node: nothing to replicate to
	link       *link     // to the replica; nil when there is none
	seq        uint64    // last position recorded at this epoch
	acked      uint64    // highest position the replica acknowledged
	synced     bool      // the replica holds a full copy at this epoch
	out        []entry   // recorded, not yet sent
	ackc       chan struct{}

	// Replica side.
	rseq    uint64 // last position applied at this epoch
	rsynced bool
	chunks  []byte // a snapshot being received
}

// entry is one recorded operation's changes.
type entry struct {
	from, to uint64
	changes  []locktable.Change
}

// NewData returns the data plane. Bind must follow before use.
func NewData(cfg DataConfig, partitions int) *Data {
	if cfg.AwaitTimeout <= 0 {
		cfg.AwaitTimeout = 3 * time.Second
	}
	if cfg.SealHold <= 0 {
		cfg.SealHold = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Data{cfg: cfg, log: log, links: make(map[string]*link), stop: make(chan struct{})}
	d.parts = make([]*local, partitions)
	for i := range d.parts {
		d.parts[i] = &local{id: i, ackc: make(chan struct{})}
	}
	return d
}

// Bind gives the data plane the partition set it replicates for.
func (d *Data) Bind(s *partition.Set) { d.set = s }

// Close stops every link.
func (d *Data) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	close(d.stop)
	d.mu.Unlock()
	d.wg.Wait()
}

// Reconciled is the index of the last partition table whose roles this
// node has taken up.
func (d *Data) Reconciled() uint64 { return d.reconciled.Load() }

// retryable builds the 503 of a partition that cannot serve here now.
func retryable(p int, why string) error {
	return wire.Retry("partition " + strconv.Itoa(p) + " " + why + "; retry")
}

// ErrMoved is wrapped by refusals from a node that does not own the
// partition: the home should refresh its table and ask the owner.
var ErrMoved = partition.ErrNotOwner

// Admit implements partition.Replicator.
func (d *Data) Admit(p int, op partition.Op) error {
	l := d.parts[p]
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.role != owner {
		return fmt.Errorf("%w: %w", ErrMoved, retryable(p, "is not owned by this node"))
	}
	if !d.cfg.Lease(time.Time{}) {
		return retryable(p, "has no owner lease")
	}
	if l.sealed {
		// The hand-over has not come here, but the leader may have decided
		// it late and this node not applied it yet: serving again under a
		// lease from before the seal ran out could answer from a copy the
		// new owner has moved on from. A lease renewed since was granted
		// only after this node applied every table the leader had then.
		if time.Now().Before(l.sealUntil) || !d.cfg.Lease(l.sealUntil) {
			return fmt.Errorf("%w: %w", ErrMoved, retryable(p, "is moving to another node"))
		}
		l.sealed = false // the hand-over never came; serve again
	}
	if op == partition.Read || op == partition.Tick {
		return nil
	}
	if !l.alone && !l.synced {
		return retryable(p, "has no synced replica")
	}
	if op == partition.Grant && time.Now().Before(l.delayUntil) {
		return retryable(p, "lost both copies; refusing grants until the lock-delay passes")
	}
	return nil
}

// Record implements partition.Replicator.
func (d *Data) Record(p int, changes []locktable.Change) uint64 {
	l := d.parts[p]
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.alone || l.link == nil {
		return 0
	}
	if len(changes) == 0 {
		if l.acked >= l.seq {
			return 0
		}
		return l.seq
	}
	l.seq++
	l.out = append(l.out, entry{from: l.seq, to: l.seq, changes: changes})
	l.link.poke(p)
	return l.seq
}

// Await implements partition.Replicator. Only the replica's
// acknowledgement confirms a position: an ownership that ends first
// leaves the outcome unknown.
func (d *Data) Await(p int, pos uint64) error {
	l := d.parts[p]
	timer := time.NewTimer(d.cfg.AwaitTimeout)
	defer timer.Stop()
	l.mu.Lock()
	// Positions keep counting while this node stays the owner, whoever the
	// replica: a new replica's full copy confirms everything before it. A
	// new ownership (gen) counts from zero again, so its positions say
	// nothing of this one's.
	gen := l.gen
	for {
		switch {
		case l.gen != gen:
			l.mu.Unlock()
			return wire.Indeterminate("partition " + strconv.Itoa(p) + " changed hands before its replica confirmed; outcome unknown")
		case l.acked >= pos:
			l.mu.Unlock()
			return nil
		case l.role != owner:
			l.mu.Unlock()
			return wire.Indeterminate("partition " + strconv.Itoa(p) + " changed hands before its replica confirmed; outcome unknown")
		}
		ch := l.ackc
		l.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			d.resync(p, gen, pos)
			return wire.Indeterminate("partition " + strconv.Itoa(p) + " replica did not confirm in time; outcome unknown")
		}
		l.mu.Lock()
	}
}

// resync sends a full copy of p when position pos of ownership gen is
// still unconfirmed after a whole AwaitTimeout. Every path that loses a
// batch should already do so; this bounds the damage of one that does not
// (the answers waiting on pos, and every hand-over seal, would otherwise
// wait until the next change happens to send a later position).
func (d *Data) resync(p int, gen, pos uint64) {
	l := d.parts[p]
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.role != owner || l.gen != gen || l.link == nil || l.acked >= pos || !l.synced {
		return
	}
	d.log.Warn("replica has not confirmed a position in time; sending a full copy", "partition", p, "replica", l.link.id, "position", pos, "acked", l.acked, "recorded", l.seq)
	l.synced, l.out = false, nil
	l.link.poke(p)
}

// Expired implements partition.Replicator.
func (d *Data) Expired(id string) {
	if d.cfg.Expired != nil {
		d.cfg.Expired(id)
	}
}

// ack advances a partition's acknowledged position: only the replica's
// acknowledgement may. Called with l.mu.
func (l *local) ack(pos uint64) {
	l.acked = max(l.acked, pos)
	l.wake()
}

// wake makes every Await look again. Called with l.mu.
func (l *local) wake() {
	close(l.ackc)
	l.ackc = make(chan struct{})
}

// Synced lists, by epoch, the partitions this node owns with a synced
// replica (or alone) and those it replicates with a full copy, for the
// leader's decisions: only a replica with a full copy may take over.
func (d *Data) Synced() map[int]uint64 {
	out := make(map[int]uint64)
	for _, l := range d.parts {
		l.mu.Lock()
		if l.role == owner && (l.synced || l.alone) || l.role == replica && l.rsynced {
			out[l.id] = l.epoch
		}
		l.mu.Unlock()
	}
	return out
}

// DelayOver lists Lost partitions owned here whose lock-delay has passed.
func (d *Data) DelayOver() map[int]uint64 {
	out := make(map[int]uint64)
	now := time.Now()
	for _, l := range d.parts {
		l.mu.Lock()
		if l.role == owner && l.part.Mode == Lost && !l.part.Settled && !now.Before(l.delayUntil) {
			out[l.id] = l.epoch
		}
		l.mu.Unlock()
	}
	return out
}

// InLockDelay reports whether partition p is owned here and still in the
// lock-delay of a loss: what it lacks may not have ended.
func (d *Data) InLockDelay(p int) bool {
	l := d.parts[p]
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.role == owner && time.Now().Before(l.delayUntil)
}

// Serving reports whether every partition this node owns may be served.
func (d *Data) Serving() bool {
	for _, l := range d.parts {
		l.mu.Lock()
		bad := l.role == owner && !l.alone && !l.synced
		l.mu.Unlock()
		if bad {
			return false
		}
	}
	return true
}

// Roles counts the partitions this node owns and replicates, and those
// it owns without a synced replica.
func (d *Data) Roles() (owned, replicated, unsynced int) {
	for _, l := range d.parts {
		l.mu.Lock()
		switch l.role {
		case owner:
			owned++
			if !l.alone && !l.synced {
				unsynced++
			}
		case replica:
			// A previous replica's kept copy (Part.Prev) is no role in
			// the table: a leaving node need not wait for it to move.
			if l.epoch == l.part.Epoch {
				replicated++
			}
		}
		l.mu.Unlock()
	}
	return owned, replicated, unsynced
}

// Apply takes up the roles of a new partition table. It is called in log
// order, for every table the control plane applies.
func (d *Data) Apply(old, cur *State, changed []int) {
	d.mu.Lock()
	d.state = cur
	d.mu.Unlock()
	alone := len(liveNodes(cur)) <= 1
	var evict []int
	for _, p := range changed {
		if d.reconcile(p, old.Part(p), cur.Part(p), cur, alone) {
			evict = append(evict, p)
		}
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
		d.set.Evict(p, fmt.Errorf("%w: %w", ErrMoved, retryable(p, "moved to another node")))
	}
	d.reconciled.Store(cur.Index)
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

// reconcile moves partition p to its role in cur. It reports whether
// requests queued here must be sent to the new owner.
func (d *Data) reconcile(p int, prev, cur Part, st *State, alone bool) (evict bool) {
	me := d.cfg.Self
	l := d.parts[p]
	d.set.With(p, func(t *locktable.Table, now locktable.Time) *locktable.Table {
		l.mu.Lock()
		defer l.mu.Unlock()
		was, wasEpoch := l.role, l.epoch
		wasOwner := was == owner
		switch {
		case cur.OwnedBy(me.ID, me.Nonce):
			t = d.becomeOwner(l, t, now, prev, cur, alone)
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
			l.wake() // every Await sees the role change
		}
		return t
	})
	return evict
}

// becomeOwner sets up l as the owner at cur's epoch. Called with the
// partition's mutex and l.mu held.
func (d *Data) becomeOwner(l *local, t *locktable.Table, now locktable.Time, prev, cur Part, alone bool) *locktable.Table {
	promoted := false
	switch {
	case l.role == owner && prev.OwnedBy(d.cfg.Self.ID, d.cfg.Self.Nonce):
		// Still ours; the replica may have changed.
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
	lostBefore := prev.Mode == Lost && !prev.Settled
	switch {
	case promoted:
		// Tokens of the new epoch are above all of the old one.
	case cur.Mode == Fresh:
		t = locktable.New(cur.Epoch, d.set.Limits(), true)
	default:
		// Lost, or a takeover without a synced copy: nothing survived.
		d.log.Warn("partition lost: starting empty behind a lock-delay", "partition", l.id, "epoch", cur.Epoch, "mode", cur.Mode, "delay", d.cfg.LockDelay)
		t = locktable.New(cur.Epoch, d.set.Limits(), true)
		lostBefore = true
	}
	if cur.Mode == Lost && !cur.Settled {
		lostBefore = true
	}
	if lostBefore {
		l.delayUntil = time.Now().Add(d.cfg.LockDelay)
	}
	if t.Epoch() < cur.Epoch {
		t.SetEpoch(cur.Epoch)
	}
	stillOwner := l.role == owner && prev.OwnedBy(d.cfg.Self.ID, d.cfg.Self.Nonce)
	newReplica := !(stillOwner && l.link != nil && prev.Replica == cur.Replica && prev.RNonce == cur.RNonce)
	if !stillOwner {
		l.gen++
		l.seq, l.acked = 0, 0
		l.wake()
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
	return t
}

// linkTo returns the link to a replica node, starting it if needed.
func (d *Data) linkTo(id string) *link {
	d.mu.Lock()
	defer d.mu.Unlock()
	if lk := d.links[id]; lk != nil {
		return lk
	}
	lk := &link{d: d, id: id, wake: make(chan struct{}, 1), inflight: make(chan struct{}, maxInflight), pending: make(map[int]bool)}
	d.links[id] = lk
	if !d.closed {
		d.wg.Add(1)
		go lk.run()
	}
	return lk
}

// addr returns a node's -peer address from the current table.
func (d *Data) addr(id string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n, ok := d.state.Node(id); ok {
		return n.PeerAddr
	}
	return ""
}

// link carries one owner node's changes to one replica node, for every
// partition it replicates there. Batches are pipelined: what is recorded
// goes out at once, up to maxInflight batches ahead of the replica's
// acknowledgements, in order on one connection, which the replica applies
// in order. What is recorded while the link is busy goes in one batch, so
// a busy link sends many operations per message and per syscall.
type link struct {
	d        *Data
	id       string
	wake     chan struct{}
	inflight chan struct{} // a slot per batch in flight

	mu      sync.Mutex // guards pending and failed
	pending map[int]bool
	failed  error // set by a batch that failed; the loop backs off
}

// maxInflight bounds the batches a link sends ahead of acknowledgements.
const maxInflight = 8

func (lk *link) poke(p int) {
	lk.mu.Lock()
	lk.pending[p] = true
	lk.mu.Unlock()
	select {
	case lk.wake <- struct{}{}:
	default:
	}
}

func (lk *link) take() ([]int, error) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	ps := make([]int, 0, len(lk.pending))
	for p := range lk.pending {
		ps = append(ps, p)
	}
	clear(lk.pending)
	slices.Sort(ps)
	err := lk.failed
	lk.failed = nil
	return ps, err
}

func (lk *link) fail(err error, ps []int) {
	lk.mu.Lock()
	if lk.failed == nil {
		lk.failed = err
	}
	for _, p := range ps {
		lk.pending[p] = true
	}
	lk.mu.Unlock()
	select {
	case lk.wake <- struct{}{}:
	default:
	}
}

func (lk *link) run() {
	defer lk.d.wg.Done()
	backoff := time.Duration(0)
	for {
		select {
		case <-lk.d.stop:
			return
		case <-lk.wake:
		}
		ps, failed := lk.take()
		if failed != nil {
			// Back off, then send every partition again in full.
			backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
			lk.d.log.Debug("replication link failed", "replica", lk.id, "err", failed, "backoff", backoff)
			select {
			case <-lk.d.stop:
				return
			case <-time.After(backoff):
			}
		} else if len(ps) > 0 {
			backoff = 0
		}
		if len(ps) == 0 {
			continue
		}
		if err := lk.send(ps); err != nil {
			lk.fail(err, ps)
		}
	}
}

// send ships, for each partition, a full copy if the replica lacks one,
// else the recorded changes; acknowledgements are taken in as they come.
func (lk *link) send(ps []int) error {
	d := lk.d
	type sent struct {
		p     int
		epoch uint64
		to    uint64
	}
	var batch []sent
	var body peer.Enc
	// A failed copy must not cost the changes already taken out of other
	// partitions for this batch: they go out regardless, and the error
	// comes back after them (the caller backs off and tries the copies
	// again). Returning at once dropped those changes, and a partition
	// whose positions nothing would send again waited for its replica
	// forever: found by the fault suite as a hot lock refused for 30 s
	// after healing, its owner sealed again and again for a hand-over.
	var copyErr error
	for _, p := range ps {
		l := d.parts[p]
		l.mu.Lock()
		if l.role != owner || l.link != lk {
			l.mu.Unlock()
			continue
		}
		if !l.synced {
			l.mu.Unlock()
			if copyErr == nil {
				// One failed copy is enough for this round: a replica
				// that does not answer would cost a timeout per copy.
				copyErr = lk.snapshot(p)
			}
			continue
		}
		out := l.out
		l.out = nil
		epoch := l.epoch
		l.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		body.Uint(uint64(p))
		body.Uint(epoch)
		body.Uint(out[0].from)
		body.Uint(out[len(out)-1].to)
		cnt := 0
		for _, en := range out {
			cnt += len(en.changes)
		}
		body.Uint(uint64(cnt))
		for _, en := range out {
			for _, c := range en.changes {
				encodeChange(&body, c)
			}
		}
		batch = append(batch, sent{p, epoch, out[len(out)-1].to})
	}
	if len(batch) == 0 {
		return copyErr
	}
	var e peer.Enc
	e.Uint(uint64(len(batch)))
	e.B = append(e.B, body.B...)
	addr := d.addr(lk.id)
	if addr == "" {
		for _, b := range batch {
			lk.unsync(b.p)
		}
		return fmt.Errorf("replica %s has no address", lk.id)
	}
	select {
	case lk.inflight <- struct{}{}:
	case <-d.stop:
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.AwaitTimeout)
	d.cfg.Pool.Get(addr).Go(ctx, mReplicate, e.B, func(reply []byte, err error) {
		cancel()
		<-lk.inflight
		var ps []int
		for _, b := range batch {
			ps = append(ps, b.p)
		}
		if err != nil {
			for _, b := range batch {
				lk.unsync(b.p)
			}
			lk.fail(err, ps)
			return
		}
		dec := peer.Dec{B: reply}
		for range dec.Len() {
			p, status := int(dec.Uint()), dec.Uint()
			for _, b := range batch {
				if b.p != p {
					continue
				}
				l := d.parts[p]
				l.mu.Lock()
				if l.role == owner && l.epoch == b.epoch && l.link == lk {
					if status == repOK {
						l.ack(b.to)
					} else {
						l.synced = false
					}
				}
				l.mu.Unlock()
				if status != repOK {
					lk.poke(p) // send a full copy
				}
			}
		}
		if err := dec.End(); err != nil {
			lk.fail(err, ps)
		}
	})
	return copyErr
}

// unsync marks p as needing a full copy again.
func (lk *link) unsync(p int) {
	l := lk.d.parts[p]
	l.mu.Lock()
	if l.link == lk {
		l.synced = false
	}
	l.mu.Unlock()
}

// snapshotChunk bounds one snapshot message, below peer.MaxFrame.
const snapshotChunk = 4 << 20

// snapshot sends a full copy of p, taken consistently with the positions
// recorded around it: every change up to the copy's position is in it.
func (lk *link) snapshot(p int) error {
	d := lk.d
	l := d.parts[p]
	var (
		data  []byte
		seq   uint64
		epoch uint64
		ok    bool
	)
	d.set.With(p, func(t *locktable.Table, now locktable.Time) *locktable.Table {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.role != owner || l.link != lk {
			return t
		}
		data, seq, epoch, ok = t.Snapshot(now), l.seq, l.epoch, true
		l.out = nil
		return t
	})
	if !ok {
		return nil
	}
	addr := d.addr(lk.id)
	if addr == "" {
		return fmt.Errorf("replica %s has no address", lk.id)
	}
	for off := 0; ; off += snapshotChunk {
		end := min(off+snapshotChunk, len(data))
		var e peer.Enc
		e.Uint(uint64(p))
		e.Uint(epoch)
		e.Uint(seq)
		e.Uint(uint64(off))
		e.Uint(uint64(len(data)))
		e.Bytes(data[off:end])
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.AwaitTimeout)
		reply, err := d.cfg.Pool.Get(addr).Call(ctx, mSnapshot, e.B)
		cancel()
		if err != nil {
			return err
		}
		if string(reply) != "ok" {
			return fmt.Errorf("replica %s refused the copy of partition %d: %s", lk.id, p, reply)
		}
		if end == len(data) {
			break
		}
	}
	l.mu.Lock()
	if l.role == owner && l.epoch == epoch && l.link == lk {
		l.synced = true
		l.ack(seq)
	}
	l.mu.Unlock()
	// Changes recorded while the copy travelled go next.
	lk.poke(p)
	return nil
}

func encodeChange(e *peer.Enc, c locktable.Change) {
	e.Uint(uint64(c.Kind))
	e.Str(c.Name)
	e.Str(c.Session)
	e.Uint(c.Token)
	e.Int(int64(c.Age))
	e.Int(int64(c.Timeout))
	e.Bool(c.Attached)
	e.Uint(c.Epoch)
	e.Str(c.Home)
	e.Int(int64(c.Left))
}

func decodeChange(d *peer.Dec) locktable.Change {
	return locktable.Change{
		Kind: locktable.ChangeKind(d.Uint()), Name: d.Str(), Session: d.Str(), Token: d.Uint(),
		Age: time.Duration(d.Int()), Timeout: time.Duration(d.Int()), Attached: d.Bool(),
		Epoch: d.Uint(), Home: d.Str(), Left: time.Duration(d.Int()),
	}
}

// Methods returns the peer methods the data plane serves.
func (d *Data) Methods() peer.Methods {
	return peer.Methods{
		mReplicate: d.serveReplicate,
		mSnapshot:  d.serveSnapshot,
		mSeal:      d.serveSeal,
	}
}

// Replica status codes in an mReplicate reply.
const (
	repOK       = 0
	repStale    = 1 // not the replica at that epoch
	repUnsynced = 2 // no full copy yet
	repGap      = 3 // positions missing
)

// serveReplicate applies an owner's changes, partition by partition, if
// this node is that partition's synced replica at that epoch; a replica
// refuses writes from any other epoch, so a deposed owner can never have
// a change acknowledged.
func (d *Data) serveReplicate(_ context.Context, _ byte, payload []byte, reply func([]byte, error)) {
	dec := peer.Dec{B: payload}
	var out peer.Enc
	n := dec.Len()
	out.Uint(uint64(n))
	for range n {
		p, epoch, from, to := int(dec.Uint()), dec.Uint(), dec.Uint(), dec.Uint()
		changes := make([]locktable.Change, dec.Len())
		for i := range changes {
			changes[i] = decodeChange(&dec)
		}
		if dec.Err() != nil || p < 0 || p >= len(d.parts) {
			reply(nil, peer.ErrMalformed)
			return
		}
		status := uint64(repOK)
		l := d.parts[p]
		d.set.With(p, func(t *locktable.Table, now locktable.Time) *locktable.Table {
			l.mu.Lock()
			defer l.mu.Unlock()
			switch {
			case l.role != replica || l.epoch != epoch:
				status = repStale
			case !l.rsynced:
				status = repUnsynced
			case from != l.rseq+1:
				status = repGap
			default:
				for _, c := range changes {
					t.Apply(now, c)
				}
				l.rseq = to
			}
			return t
		})
		out.Uint(uint64(p))
		out.Uint(status)
	}
	if err := dec.End(); err != nil {
		reply(nil, err)
		return
	}
	reply(out.B, nil)
}

// serveSnapshot installs a full copy, chunk by chunk.
func (d *Data) serveSnapshot(_ context.Context, _ byte, payload []byte, reply func([]byte, error)) {
	dec := peer.Dec{B: payload}
	p, epoch, seq := int(dec.Uint()), dec.Uint(), dec.Uint()
	off, total := dec.Uint(), dec.Uint()
	chunk := dec.Bytes()
	if err := dec.End(); err != nil || p < 0 || p >= len(d.parts) {
		reply(nil, peer.ErrMalformed)
		return
	}
	res := "ok"
	l := d.parts[p]
	d.set.With(p, func(t *locktable.Table, now locktable.Time) *locktable.Table {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.role != replica || l.epoch != epoch {
			res = "stale epoch"
			return t
		}
		if l.rsynced && seq < l.rseq {
			// A copy older than what this replica acknowledged since: a
			// request that the owner gave up on, delivered late. Taking
			// it would drop acknowledged changes, and a takeover from this
			// copy would lose them.
			res = "stale copy"
			return t
		}
		if off == 0 {
			l.chunks = l.chunks[:0]
		}
		if uint64(len(l.chunks)) != off {
			res = "chunk out of order"
			return t
		}
		l.chunks = append(l.chunks, chunk...)
		if uint64(len(l.chunks)) < total {
			return t
		}
		nt, err := locktable.Restore(now, l.chunks, d.set.Limits(), true)
		l.chunks = nil
		if err != nil {
			res = err.Error()
			return t
		}
		l.rseq, l.rsynced = seq, true
		return nt
	})
	reply([]byte(res), nil)
}

// Seal stops partition p from serving here ahead of a hand-over, waits
// until its replica has acknowledged everything, and returns the last
// acknowledged position. If no new epoch comes, it serves again later.
func (d *Data) serveSeal(_ context.Context, _ byte, payload []byte, reply func([]byte, error)) {
	dec := peer.Dec{B: payload}
	p, epoch := int(dec.Uint()), dec.Uint()
	if dec.End() != nil || p < 0 || p >= len(d.parts) {
		reply(nil, peer.ErrMalformed)
		return
	}
	l := d.parts[p]
	var pos uint64
	var err error
	// Taking the partition's mutex orders the seal after every operation
	// that has already begun.
	d.set.With(p, func(t *locktable.Table, _ locktable.Time) *locktable.Table {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.role != owner || l.epoch != epoch || !l.synced {
			err = fmt.Errorf("not the synced owner of partition %d at epoch %d", p, epoch)
			return t
		}
		l.sealed, l.sealUntil = true, time.Now().Add(d.cfg.SealHold)
		pos = l.seq
		return t
	})
	if err != nil {
		reply(nil, err)
		return
	}
	go func() {
		if err := d.Await(p, pos); err != nil {
			reply(nil, err)
			return
		}
		var e peer.Enc
		e.Uint(pos)
		reply(e.B, nil)
	}()
}
