package replication

import (
	"sync/atomic"
	"time"
)

// Lease is this node's lease from the control plane's leader: an owner
// serves only while it holds one. The control plane renews it (Control);
// the data plane consults it before serving (Data.Admit) and records
// which table's roles it has taken up, because a lease counts only for a
// table this node has applied: a node whose partitions were taken over
// while it was cut off learns so before it may serve again.
//
// It is built first and given to both planes, which then need nothing of
// each other to check it. Its fields are atomics; it takes no mutex.
type Lease struct {
	start time.Time
	until atomic.Int64  // nanoseconds since start
	sent  atomic.Int64  // when the renewal that granted it left, since start
	index atomic.Uint64 // the table index the leader had when it granted it
	// reconciled is the index of the last table whose roles the data
	// plane has taken up.
	reconciled atomic.Uint64
}

// NewLease returns a lease not yet granted.
func NewLease() *Lease { return &Lease{start: time.Now()} }

func (l *Lease) now() int64 { return int64(time.Since(l.start)) }

// grant records a lease of length d for table index, renewed by a request
// sent at sent (from now()): the leader counts from no earlier than that.
func (l *Lease) grant(sent int64, d time.Duration, index uint64) {
	l.index.Store(index)
	l.sent.Store(sent)
	l.until.Store(sent + int64(d))
}

// Valid reports whether this node holds an unexpired lease granted for a
// table it has taken up.
func (l *Lease) Valid() bool {
	return l.now() < l.until.Load() && l.reconciled.Load() >= l.index.Load()
}

// ValidSince is Valid for a lease renewed by a request sent no earlier
// than since.
func (l *Lease) ValidSince(since time.Time) bool {
	return l.Valid() && l.sent.Load() >= int64(since.Sub(l.start))
}

// Remaining is how long the lease has left; 0 when it is not Valid.
func (l *Lease) Remaining() time.Duration {
	if !l.Valid() {
		return 0
	}
	return time.Duration(l.until.Load() - l.now())
}

// Reconciled is the index of the last partition table whose roles this
// node has taken up.
func (l *Lease) Reconciled() uint64 { return l.reconciled.Load() }

func (l *Lease) reconcile(index uint64) { l.reconciled.Store(index) }
