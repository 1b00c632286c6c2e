package replication

import (
	"context"
	"math"
	"time"

	"github.com/elock/elock/node/failure"
	"github.com/elock/elock/node/locktable"
	"github.com/elock/elock/node/peer"
)

// The replica's side of the data stream: it applies an owner's changes
// and installs its full copies, only for the partitions it replicates at
// the epoch they were sent at.

// Replica status codes in a Replicate reply, one per partition.
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
func (d *Data) serveReplicate(conn context.Context, _ peer.Method, payload []byte, reply func([]byte, error)) {
	dec := peer.Dec{B: payload}
	n := dec.Count(minBatchPart)
	out := peer.Enc{B: make([]byte, 0, 8+8*n)}
	out.Uint(uint64(n))
	for range n {
		p, epoch, from, to := int(dec.Uint()), dec.Uint(), dec.Uint(), dec.Uint()
		changes := make([]locktable.Change, dec.Count(minChange))
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
			case l.role != replica || l.epoch != epoch || !peer.CallerIs(conn, l.part.Owner):
				// Only the owner this replica's table names may change
				// its copy (with peer TLS, by its certificate).
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

// serveSnapshot installs a full copy, chunk by chunk. An empty reply
// takes the chunk; a refusal says why it was not.
func (d *Data) serveSnapshot(conn context.Context, _ peer.Method, payload []byte, reply func([]byte, error)) {
	dec := peer.Dec{B: payload}
	p, epoch, seq := int(dec.Uint()), dec.Uint(), dec.Uint()
	off, total := dec.Uint(), dec.Uint()
	chunk := dec.Bytes()
	if err := dec.End(); err != nil || p < 0 || p >= len(d.parts) {
		reply(nil, peer.ErrMalformed)
		return
	}
	var err error
	l := d.parts[p]
	d.set.With(p, func(t *locktable.Table, now locktable.Time) *locktable.Table {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.role != replica || l.epoch != epoch || !peer.CallerIs(conn, l.part.Owner) {
			err = failure.Retry(failure.Moved, "stale epoch, or not from the owner")
			return t
		}
		if l.rsynced && seq < l.rseq {
			// A copy older than what this replica acknowledged since: a
			// request that the owner gave up on, delivered late. Taking
			// it would drop acknowledged changes, and a takeover from this
			// copy would lose them.
			err = failure.Retry(failure.Moved, "stale copy")
			return t
		}
		if off == 0 {
			l.chunks = l.chunks[:0]
		}
		if uint64(len(l.chunks)) != off {
			err = failure.Retry(failure.Internal, "chunk out of order")
			return t
		}
		l.chunks = append(l.chunks, chunk...)
		if uint64(len(l.chunks)) < total {
			return t
		}
		nt, rerr := locktable.Restore(now, l.chunks, d.set.Limits(), true)
		l.chunks = nil
		if rerr != nil {
			err = failure.Retry(failure.Internal, rerr.Error())
			return t
		}
		l.rseq, l.rsynced = seq, true
		return nt
	})
	reply(nil, err)
}

// minChange is the fewest bytes an encoded change takes (a byte per
// field), and minBatchPart those of a partition's entry in a Replicate
// batch (partition, epoch, positions, count): the bounds Count checks
// counts against.
const (
	minChange    = 14
	minBatchPart = 5
)

func decodeChange(d *peer.Dec) locktable.Change {
	c := locktable.Change{
		Kind: locktable.ChangeKind(d.Uint()), Name: d.Str(), Session: d.Str(), Token: d.Uint(),
		Age: time.Duration(d.Int()), Timeout: time.Duration(d.Int()), Attached: d.Bool(),
		Epoch: d.Uint(), Born: d.Uint(), Home: d.Str(), Left: time.Duration(d.Int()),
	}
	mode, limit, value := d.Uint(), d.Uint(), d.Str()
	// A grant's mode, limit and value must describe a state the table can
	// hold: a permit of a semaphore of at least one permit, or a lock's
	// grant with no limit; a value only on an exclusive grant.
	if mode > uint64(locktable.Permit) || limit > math.MaxUint32 || (mode == uint64(locktable.Permit)) != (limit > 0) ||
		value != "" && mode != uint64(locktable.Exclusive) {
		d.Fail()
		return c
	}
	c.Mode, c.Limit, c.Value = locktable.Mode(mode), uint32(limit), value
	return c
}
