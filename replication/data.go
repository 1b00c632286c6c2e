package replication

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/partition"
	"github.com/elock/elock/node/peer"
)

// Incarnation names one run of a node: its id and its boot nonce.
type Incarnation struct{ ID, Nonce string }

// DataConfig configures the data plane of one node. Start from
// DefaultDataConfig.
type DataConfig struct {
	Self Incarnation
	// Partitions configures the partition set the data plane hosts and
	// replicates; NewData fills in its Replicator.
	Partitions partition.Config
	Pool       *peer.Pool
	// Lease is this node's lease, renewed by the control plane.
	Lease *Lease
	// SealHold is how long a sealed partition waits for its hand-over
	// before it may serve again.
	SealHold time.Duration
	// LockDelay is how long a partition whose every copy was lost refuses
	// grants: the longest session timeout plus the lease.
	LockDelay time.Duration
	// AwaitTimeout bounds the wait for a replica's acknowledgement.
	AwaitTimeout time.Duration
	Logger       *slog.Logger
	// ObserveBatch, if set, is told the number of changes in each batch
	// shipped to a replica (for metrics); it must not block.
	ObserveBatch func(changes int)
}

// DefaultDataConfig returns the timings of a stock node; Self, Pool and
// Lease are left for the caller.
func DefaultDataConfig() DataConfig {
	return DataConfig{
		Partitions:   partition.Config{Partitions: partition.DefaultPartitions},
		SealHold:     5 * time.Second,
		LockDelay:    DefaultLease + 5*time.Minute,
		AwaitTimeout: 3 * time.Second,
	}
}

// Validate reports every setting that cannot work, joined.
func (c DataConfig) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("replication: "+format, args...))
		}
	}
	check(c.Self.ID != "" && c.Self.Nonce != "", "data plane without an incarnation")
	check(c.Pool != nil, "data plane without a peer pool")
	check(c.Lease != nil, "data plane without a lease")
	check(c.Partitions.Replicator == nil, "the partition set's replicator is the data plane itself")
	check(c.SealHold > 0, "seal hold %v is not positive", c.SealHold)
	check(c.LockDelay >= 0, "lock-delay %v is negative", c.LockDelay)
	check(c.AwaitTimeout > 0, "await timeout %v is not positive", c.AwaitTimeout)
	errs = append(errs, c.Partitions.Validate())
	return errors.Join(errs...)
}

// Data is the data plane of one node: it hosts the node's partition set
// and is its partition.Replicator, keeps each partition's role here
// (owner, replica or none) in step with the partition table (roles.go),
// streams an owner's changes to its replica (stream.go), and applies a
// replica's (replica.go).
//
// Lock order: a partition's mutex (taken through Set.With or by the set
// around Admit and Record), then that partition's local.mu, then a link's
// mu. Data.mu is a leaf: nothing is taken while it is held, and it may be
// taken with any of those held (linkTo, when an owner needs a link to a
// new replica).
type Data struct {
	cfg   DataConfig
	log   *slog.Logger
	set   *partition.Set
	parts []*local

	mu     sync.Mutex // guards links, state and closed
	links  map[string]*link
	state  *State
	closed bool

	wg   sync.WaitGroup // one count per link goroutine
	stop chan struct{}
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
	since      uint64 // the epoch at which this ownership began
	sealed     bool
	sealUntil  time.Time
	delayUntil time.Time // a Lost partition refuses grants until then
	alone      bool      // no replica and no other node: nothing to replicate to
	link       *link     // to the replica; nil when there is none
	seq        uint64    // last position recorded at this epoch
	acked      uint64    // highest position the replica acknowledged
	synced     bool      // the replica holds a full copy at this epoch
	// copiedAt is the last epoch at which the replica acknowledged a full
	// copy (synced may fall back at that epoch; this does not), and
	// frozenAt an epoch at which this owner promised the leader never to
	// have a replica synced, so never to change anything (serveReplaced).
	copiedAt, frozenAt uint64
	out                []entry // recorded, not yet sent
	// confirms wait for positions of this ownership to be acknowledged.
	confirms []confirm
	// closed: the data plane has stopped, so nothing will be acknowledged
	// again; a confirmation asked for now is answered at once.
	closed bool

	// Replica side.
	rseq    uint64 // last position applied at this epoch
	rsynced bool
	chunks  []byte // a snapshot being received
}

// confirm is a caller waiting for a position to be acknowledged.
type confirm struct {
	seq  uint64
	at   time.Time // when it began to wait
	then func(error)
}

// Positions given out by Record carry the ownership they belong to (gen)
// above posBits: a position of an ownership that ended must never be
// confirmed by the acknowledgements of a later one, which counts again
// from zero.
const posBits = 40

func (l *local) position(seq uint64) uint64 { return l.gen<<posBits | seq }

// entry is one recorded operation's changes.
type entry struct {
	from, to uint64
	changes  []locktable.Change
}

// NewData builds the data plane and the partition set it hosts, which
// serves nothing until the first table gives this node a role.
func NewData(cfg DataConfig) (*Data, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Data{cfg: cfg, log: log, links: make(map[string]*link), stop: make(chan struct{})}
	d.parts = make([]*local, cfg.Partitions.Partitions)
	for i := range d.parts {
		d.parts[i] = &local{id: i}
	}
	pc := cfg.Partitions
	pc.Replicator = d
	set, err := partition.New(pc)
	if err != nil {
		return nil, err
	}
	d.set = set
	d.wg.Add(1)
	go d.expireConfirms()
	return d, nil
}

// Set returns the partition set this data plane hosts.
func (d *Data) Set() *partition.Set { return d.set }

// Register adds the data plane's peer methods to r.
func (d *Data) Register(r *peer.Registry) error {
	return errors.Join(
		r.Handle(peer.Replicate, d.serveReplicate),
		r.Handle(peer.Snapshot, d.serveSnapshot),
		r.Handle(peer.Seal, d.serveSeal),
		r.Handle(peer.Replaced, d.serveReplaced),
	)
}

// Close stops every link and the partition set's timer.
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
	// Nobody will acknowledge anything now: every waiting caller hears
	// that its outcome is unknown.
	d.Abandon()
	d.set.Close()
}

// Abandon answers every confirmation still waiting, and every one asked
// for from now on, as an unknown outcome, while the loops run on until
// Close: the node is shutting down, nothing it answers reaches a client
// any more, and the goroutines that are joined before the data plane
// closes must not wait for acknowledgements meanwhile. Found by the fault
// suite: a wait at a leaving node, granted by that node as owner and
// waiting for its replica's acknowledgement, held Mesh.Close for longer
// than the harness's 20 s.
func (d *Data) Abandon() {
	for _, l := range d.parts {
		l.mu.Lock()
		l.closed = true
		cs := l.takeConfirms()
		l.mu.Unlock()
		failConfirms(cs, errClosedUnconfirmed(l.id))
	}
}

// Reconciled is the index of the last partition table whose roles this
// node has taken up.
func (d *Data) Reconciled() uint64 { return d.cfg.Lease.Reconciled() }

// refuse builds the retryable failure of a partition that cannot serve
// here now.
func refuse(p int, r failure.Reason, why string) error {
	return failure.Retry(r, failure.Partition(p)+" "+why+"; retry")
}

// Admit implements partition.Replicator.
func (d *Data) Admit(p int, op partition.Op) error {
	l := d.parts[p]
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.role != owner {
		return refuse(p, failure.Moved, "is not owned by this node")
	}
	if !d.cfg.Lease.Valid() {
		return refuse(p, failure.NoLease, "has no owner lease")
	}
	if l.sealed {
		// The hand-over has not come here, but the leader may have decided
		// it late and this node not applied it yet: serving again under a
		// lease from before the seal ran out could answer from a copy the
		// new owner has moved on from. A lease renewed since was granted
		// only after this node applied every table the leader had then.
		if time.Now().Before(l.sealUntil) || !d.cfg.Lease.ValidSince(l.sealUntil) {
			return refuse(p, failure.Moved, "is moving to another node")
		}
		l.sealed = false // the hand-over never came; serve again
	}
	if op == partition.Read || op == partition.Tick || op == partition.Claim {
		return nil
	}
	if !l.alone && !l.synced {
		return refuse(p, failure.NoReplica, "has no synced replica")
	}
	if op == partition.Grant && time.Now().Before(l.delayUntil) {
		return refuse(p, failure.LockDelay, "lost both copies; refusing grants until the lock-delay passes")
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
		return l.position(l.seq)
	}
	l.seq++
	l.out = append(l.out, entry{from: l.seq, to: l.seq, changes: changes})
	l.link.poke(p)
	return l.position(l.seq)
}

// notConfirmed is the outcome of a change applied here whose replica never
// confirmed it.
func notConfirmed(p int, why string) error {
	return failure.Unknown(failure.Unconfirmed, failure.Partition(p)+" "+why+"; outcome unknown")
}

// Confirm implements partition.Replicator. Only the replica's
// acknowledgement confirms a position: an ownership that ends first
// leaves the outcome unknown, and so does a replica that has not
// acknowledged within AwaitTimeout.
func (d *Data) Confirm(p int, pos uint64, then func(error)) {
	l := d.parts[p]
	l.mu.Lock()
	switch {
	case l.role != owner || l.gen != pos>>posBits:
		// Positions keep counting while this node stays the owner, whoever
		// the replica: a new replica's full copy confirms everything before
		// it. A new ownership (gen) counts from zero again, so its
		// positions say nothing of this one's.
		l.mu.Unlock()
		then(notConfirmed(p, "changed hands before its replica confirmed"))
	case l.acked >= pos&(1<<posBits-1):
		l.mu.Unlock()
		then(nil)
	case l.closed:
		// Nothing would answer it: the loops that read acknowledgements and
		// expire confirmations have stopped.
		l.mu.Unlock()
		then(errClosedUnconfirmed(p))
	default:
		l.confirms = append(l.confirms, confirm{seq: pos & (1<<posBits - 1), at: time.Now(), then: then})
		l.mu.Unlock()
	}
}

// Await blocks until position pos of p is confirmed, or cannot be.
func (d *Data) Await(p int, pos uint64) error {
	ch := make(chan error, 1)
	d.Confirm(p, pos, func(err error) { ch <- err })
	return <-ch
}

// expireConfirms answers, as unknown, every confirmation still waiting
// after AwaitTimeout, and has the partition's replica sent a full copy:
// every path that loses a batch should already do so; this bounds the
// damage of one that does not (the answers waiting, and every hand-over
// seal, would otherwise wait until the next change happens to send a
// later position).
func (d *Data) expireConfirms() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.AwaitTimeout / 10)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-d.cfg.AwaitTimeout)
		for _, l := range d.parts {
			l.mu.Lock()
			var late []confirm
			last := uint64(0)
			kept := l.confirms[:0]
			for _, c := range l.confirms {
				if c.at.Before(cutoff) {
					late = append(late, c)
					last = max(last, c.seq)
				} else {
					kept = append(kept, c)
				}
			}
			clear(l.confirms[len(kept):]) // the answered callbacks are not kept alive
			l.confirms = kept
			gen := l.gen
			l.mu.Unlock()
			if late != nil {
				d.resync(l.id, gen, last)
				failConfirms(late, notConfirmed(l.id, "replica did not confirm in time"))
			}
		}
	}
}

func errClosedUnconfirmed(p int) error {
	return notConfirmed(p, "is shutting down before its replica confirmed")
}

// resync sends a full copy of p when position pos of ownership gen is
// still unconfirmed after a whole AwaitTimeout.
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

// ack advances a partition's acknowledged position (only the replica's
// acknowledgement may) and returns the confirmations it satisfies, for
// the caller to answer once it has released l.mu. Called with l.mu.
func (l *local) ack(pos uint64) []confirm {
	l.acked = max(l.acked, pos)
	var ready []confirm
	kept := l.confirms[:0]
	for _, c := range l.confirms {
		if c.seq <= l.acked {
			ready = append(ready, c)
		} else {
			kept = append(kept, c)
		}
	}
	clear(l.confirms[len(kept):])
	l.confirms = kept
	return ready
}

// takeConfirms removes every waiting confirmation: the ownership they
// belong to has ended. Called with l.mu.
func (l *local) takeConfirms() []confirm {
	cs := l.confirms
	l.confirms = nil
	return cs
}

// answerConfirms tells each confirmation that its position is
// acknowledged. Called with no mutex held.
func answerConfirms(cs []confirm) {
	for _, c := range cs {
		c.then(nil)
	}
}

// failConfirms tells each confirmation that its position never will be.
// Called with no mutex held.
func failConfirms(cs []confirm, err error) {
	for _, c := range cs {
		c.then(err)
	}
}

// Synced lists, by epoch, the partitions this node owns with a synced
// replica (or alone) and those it replicates with a full copy, for the
// leader's decisions: only a replica with a full copy may take over.
func (d *Data) Synced() map[int]uint64 {
	return d.report(func(l *local) (uint64, bool) {
		return l.epoch, l.role == owner && (l.synced || l.alone) || l.role == replica && l.rsynced
	})
}

// report lists, by the epoch f gives, the partitions for which f, called
// under the partition's lock, reports true: what a heartbeat tells the
// leader.
func (d *Data) report(f func(l *local) (uint64, bool)) map[int]uint64 {
	out := make(map[int]uint64)
	for _, l := range d.parts {
		l.mu.Lock()
		if ep, ok := f(l); ok {
			out[l.id] = ep
		}
		l.mu.Unlock()
	}
	return out
}

// Frozen lists, by epoch, the partitions owned here that will never be
// served at their current epoch (serveReplaced): the leader moves each to
// a new one, even if the one that asked for it never did.
func (d *Data) Frozen() map[int]uint64 {
	return d.report(func(l *local) (uint64, bool) { return l.epoch, l.role == owner && l.frozenAt == l.epoch })
}

// DelayOver lists, by the epoch of their last loss, the partitions owned
// here whose loss is not settled and whose lock-delay has passed here.
func (d *Data) DelayOver() map[int]uint64 {
	now := time.Now()
	return d.report(func(l *local) (uint64, bool) {
		return l.part.LostAt, l.role == owner && l.part.UnsettledLoss(l.part.LostAt) && !now.Before(l.delayUntil)
	})
}

// InLockDelay reports whether partition p is owned here and still in the
// lock-delay of a loss: what it lacks may not have ended.
func (d *Data) InLockDelay(p int) bool {
	l := d.parts[p]
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.role == owner && time.Now().Before(l.delayUntil)
}

// OwnedSince reports whether this node owns partition p, and the epoch
// at which its unbroken ownership began: a replica change keeps it, a
// loss and a later return start it anew. An owner refuses a request
// addressed to an epoch before it (see mesh), because such a request was
// sent to an earlier ownership, which its sender may have given up on and
// asked elsewhere, and arrives only now (TCP delivers what a partition
// held back long after the sender stopped waiting).
func (d *Data) OwnedSince(p int) (uint64, bool) {
	if p < 0 || p >= len(d.parts) {
		return 0, false
	}
	l := d.parts[p]
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.since, l.role == owner
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

// Lag says how far behind the replicas this node feeds are: the changes
// its owned partitions recorded that their replicas have not
// acknowledged, and how long the oldest of those still awaited by a
// request has waited.
func (d *Data) Lag(now time.Time) (changes uint64, oldest time.Duration) {
	for _, l := range d.parts {
		l.mu.Lock()
		if l.role == owner && l.link != nil && l.seq > l.acked {
			changes += l.seq - l.acked
			if len(l.confirms) > 0 {
				oldest = max(oldest, now.Sub(l.confirms[0].at))
			}
		}
		l.mu.Unlock()
	}
	return changes, oldest
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
